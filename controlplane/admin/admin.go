// Package admin serves Sluice's HTTP API over fasthttp: health and
// readiness probes, Prometheus metrics, JSON views of the exporters and
// templates, and the operations (pipeline, listeners, drain) behind a
// Bearer token. `sluice run` and the split pod's controller serve the same
// path set through this one server, each as a Source; the data plane is
// read through it and never blocked.
package admin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-flow/sluice/dataplane/collector"
	"github.com/sluice-flow/sluice/dataplane/promtext"
	"github.com/sluice-flow/sluice/dataplane/tlsfiles"
)

// Source is what the admin API shows. Its methods are called from the
// server's goroutines and must be safe for concurrent use. A source may
// also implement PipelineSource, StatusSource, ViewSource, ListenerSource
// and DrainSource; a route whose interface the source lacks answers 501.
type Source interface {
	// Ready reports whether the process is accepting flow export.
	Ready() bool
	// AppendMetrics appends Prometheus text-format metrics.
	AppendMetrics(dst []byte) []byte
	// Exporters and Templates return the views /api/v1/exporters and
	// /api/v1/templates encode as JSON.
	Exporters() []collector.ExporterStatus
	Templates() []collector.TemplateStatus
}

// PipelineSource is implemented by sources whose pipeline can be read and
// replaced through /api/v1/pipeline.
type PipelineSource interface {
	// Pipeline returns the version and file of the pipeline in force (nil
	// for the built-in pass-through).
	Pipeline() (version uint64, file []byte)
	// SetPipeline compiles file and puts it in force, returning its
	// version; a file that does not compile is an *InputError, and the
	// pipeline in force stays.
	SetPipeline(ctx context.Context, file []byte) (version uint64, err error)
}

// ViewSource is implemented by sources whose views can fail (the
// controller reads them over D-Bus): its methods replace Source's
// Exporters and Templates, and an error answers 503.
type ViewSource interface {
	ExportersView(ctx context.Context) ([]collector.ExporterStatus, error)
	TemplatesView(ctx context.Context) ([]collector.TemplateStatus, error)
}

// StatusSource is implemented by sources with more to say in
// /api/v1/status than the server finds in Source.
type StatusSource interface {
	Status(ctx context.Context) (Status, error)
}

// ListenerSource is implemented by sources that open and close listeners
// at run time (POST and DELETE /api/v1/listeners). A URL that does not
// parse, or names no open listener, is an *InputError.
type ListenerSource interface {
	AddListener(ctx context.Context, url string) error
	RemoveListener(ctx context.Context, url string) error
}

// ListenerLister is implemented by sources that name their open listeners
// in /api/v1/status (when they are not a StatusSource).
type ListenerLister interface {
	Listeners() []string
}

// DrainSource is implemented by sources that drain on request (POST
// /api/v1/drain): stop reading, empty the rings into the outputs, flush.
// Drain returns once drained or when ctx ends.
type DrainSource interface {
	Drain(ctx context.Context) error
}

// Status is the view /api/v1/status encodes.
type Status struct {
	Ready     bool      `json:"ready"`
	Draining  bool      `json:"draining"`
	Version   string    `json:"version"`
	Started   time.Time `json:"started"`
	Listeners []string  `json:"listeners"`
	// Pipeline is the version of the pipeline in force.
	Pipeline  uint64 `json:"pipeline_version"`
	Exporters int    `json:"exporters"`
	Templates int    `json:"templates"`
	// Components lists the pod's processes (the split pod only).
	Components []Component `json:"components,omitempty"`
}

// Component is one process of the split pod as the controller sees it.
type Component struct {
	// Name is "collector", "mediator" or "bus".
	Name  string `json:"name"`
	Up    bool   `json:"up"`
	Ready bool   `json:"ready"`
	// Owner is the process's unique name on the pod's bus.
	Owner string `json:"owner,omitempty"`
	// Error says why the component could not be read, if it could not.
	Error string `json:"error,omitempty"`
}

// InputError marks an error caused by the request (HTTP 400).
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// Route is one method and path the server answers, as the OpenAPI
// document names it (path parameters in braces).
type Route struct {
	Method, Path string
}

// Mount hands every request under Prefix to Handler, behind the token when
// Auth is set. Routes lists what Handler answers, for /openapi.json and
// its test.
type Mount struct {
	Prefix  string
	Auth    bool
	Handler fasthttp.RequestHandler
	Routes  []Route
}

// Config configures the server.
type Config struct {
	// Addr is the listen address. Default: 127.0.0.1:8080.
	Addr string
	// Token guards mutations and views that may hold secrets (the
	// pipeline file): requests carry "Authorization: Bearer <Token>". The
	// default, empty, refuses them all.
	Token string
	// Mounts add handlers for the paths under their prefixes (the
	// controller's bus bridge).
	Mounts []Mount
	// TLSCertFile and TLSKeyFile, when set, serve the API over TLS
	// (HTTPS only); the files are read again when they change.
	TLSCertFile, TLSKeyFile string
}

// Server is the admin HTTP server.
type Server struct {
	cfg   Config
	src   Source
	log   *slog.Logger
	srv   *fasthttp.Server
	ln    net.Listener
	start time.Time
	spec  []byte // /openapi.json: the document cut to the routes served
}

// New returns a server for src.
func New(cfg Config, src Source, log *slog.Logger) *Server {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8080"
	}
	s := &Server{cfg: cfg, src: src, log: log, start: time.Now()}
	s.spec = specFor(s.Routes())
	s.srv = &fasthttp.Server{
		Handler:            s.handle,
		Name:               "sluice",
		ReadTimeout:        10 * time.Second,
		WriteTimeout:       30 * time.Second,
		IdleTimeout:        60 * time.Second,
		MaxRequestBodySize: 1 << 20,
		NoDefaultDate:      true,
		Logger:             HTTPLogger{log},
	}
	return s
}

// Listen opens the listening socket, so address and certificate errors
// surface at start.
func (s *Server) Listen() error {
	var files *tlsfiles.Store
	if s.cfg.TLSCertFile != "" || s.cfg.TLSKeyFile != "" {
		f, err := tlsfiles.Load(tlsfiles.Files{Cert: s.cfg.TLSCertFile, Key: s.cfg.TLSKeyFile})
		if err != nil {
			return fmt.Errorf("admin: %w", err)
		}
		files = f
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return err
	}
	if files != nil {
		ln = tls.NewListener(ln, files.ServerConfig())
	}
	s.ln = ln
	return nil
}

// TLS reports whether the server serves HTTPS.
func (s *Server) TLS() bool { return s.cfg.TLSCertFile != "" }

// Addr returns the bound address (after Listen).
func (s *Server) Addr() string {
	if s.ln == nil {
		return s.cfg.Addr
	}
	return s.ln.Addr().String()
}

// Serve serves until Shutdown; Listen must have succeeded.
func (s *Server) Serve() error {
	err := s.srv.Serve(s.ln)
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Shutdown stops the server, waiting for open requests up to ctx's end.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.srv.ShutdownWithContext(ctx)
}

// The process families the perf scripts read.
var (
	processCPUSeconds = promtext.Counter("process_cpu_seconds_total", "User and system CPU time spent.")
	processResident   = promtext.Gauge("process_resident_memory_bytes", "Resident memory size.")
	processStartTime  = promtext.Gauge("process_start_time_seconds", "Start time since the epoch.")
	goGoroutines      = promtext.Gauge("go_goroutines", "Goroutines that currently exist.")
)

// appendProcessMetrics adds the process figures the perf scripts read: CPU
// seconds, resident memory, goroutines, start time.
func (s *Server) appendProcessMetrics(b []byte) []byte {
	w := promtext.NewWriter(b)
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		w.Float(processCPUSeconds, float64(ru.Utime.Sec+ru.Stime.Sec)+float64(ru.Utime.Usec+ru.Stime.Usec)/1e6)
	}
	if rss, ok := residentBytes(); ok {
		w.Int(processResident, rss)
	}
	w.Int(processStartTime, s.start.Unix())
	w.Int(goGoroutines, int64(runtime.NumGoroutine()))
	return w.Bytes()
}

// residentBytes reads the resident set size from /proc/self/statm.
func residentBytes() (int64, bool) {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(data))
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * int64(os.Getpagesize()), true
}
