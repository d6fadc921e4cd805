// Package admin serves the per-process admin API over fasthttp: health and
// readiness probes, Prometheus metrics, and read-only JSON views of the
// exporters and templates the data plane knows. It reads the data plane
// through the Source interface and never blocks it.
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
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
)

// Source is what the admin API shows. Its methods are called from the
// server's goroutines and must be safe for concurrent use.
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

// InputError marks an error caused by the request (HTTP 400).
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// Config configures the server.
type Config struct {
	// Addr is the listen address. Default: 127.0.0.1:8080.
	Addr string
	// Token guards mutations and views that may hold secrets (the
	// pipeline file): requests carry "Authorization: Bearer <Token>". The
	// default, empty, refuses them all.
	Token string
}

// Server is the admin HTTP server.
type Server struct {
	cfg   Config
	src   Source
	log   *slog.Logger
	srv   *fasthttp.Server
	ln    net.Listener
	start time.Time
}

// New returns a server for src.
func New(cfg Config, src Source, log *slog.Logger) *Server {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:8080"
	}
	s := &Server{cfg: cfg, src: src, log: log, start: time.Now()}
	s.srv = &fasthttp.Server{
		Handler:            s.handle,
		Name:               "sluice",
		ReadTimeout:        10 * time.Second,
		WriteTimeout:       30 * time.Second,
		IdleTimeout:        60 * time.Second,
		MaxRequestBodySize: 1 << 20,
		NoDefaultDate:      true,
	}
	return s
}

// Listen opens the listening socket, so address errors surface at start.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return err
	}
	s.ln = ln
	return nil
}

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

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	if string(ctx.Path()) == "/api/v1/pipeline" {
		s.pipeline(ctx)
		return
	}
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set("Allow", "GET, HEAD")
		ctx.Error("method not allowed\n", fasthttp.StatusMethodNotAllowed)
		return
	}
	switch string(ctx.Path()) {
	case "/healthz":
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.WriteString("ok\n")
	case "/readyz":
		ctx.SetContentType("text/plain; charset=utf-8")
		if !s.src.Ready() {
			ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
			ctx.WriteString("not ready\n")
			return
		}
		ctx.WriteString("ready\n")
	case "/metrics":
		ctx.SetContentType("text/plain; version=0.0.4; charset=utf-8")
		b := s.src.AppendMetrics(make([]byte, 0, 16<<10))
		b = s.appendProcessMetrics(b)
		ctx.Write(b)
	case "/api/v1/exporters":
		s.json(ctx, s.src.Exporters())
	case "/api/v1/templates":
		s.json(ctx, s.src.Templates())
	default:
		ctx.Error("not found\n", fasthttp.StatusNotFound)
	}
}

// pipelineApplyWait bounds how long a PUT waits for the data plane to put
// the new pipeline in force.
const pipelineApplyWait = 10 * time.Second

// pipeline serves GET and PUT /api/v1/pipeline; both need the token.
func (s *Server) pipeline(ctx *fasthttp.RequestCtx) {
	ps, ok := s.src.(PipelineSource)
	if !ok {
		ctx.Error("not found\n", fasthttp.StatusNotFound)
		return
	}
	if !ctx.IsGet() && !ctx.IsPut() {
		ctx.Response.Header.Set("Allow", "GET, PUT")
		ctx.Error("method not allowed\n", fasthttp.StatusMethodNotAllowed)
		return
	}
	if s.cfg.Token == "" {
		ctx.Error("forbidden: no admin token is configured\n", fasthttp.StatusForbidden)
		return
	}
	auth := ctx.Request.Header.Peek("Authorization")
	want := "Bearer " + s.cfg.Token
	if subtle.ConstantTimeCompare(auth, []byte(want)) != 1 {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="sluice"`)
		ctx.Error("unauthorized\n", fasthttp.StatusUnauthorized)
		return
	}
	if ctx.IsGet() {
		v, file := ps.Pipeline()
		s.json(ctx, struct {
			Version  uint64 `json:"version"`
			Pipeline string `json:"pipeline"`
		}{v, string(file)})
		return
	}
	c, cancel := context.WithTimeout(context.Background(), pipelineApplyWait)
	defer cancel()
	v, err := ps.SetPipeline(c, append([]byte(nil), ctx.PostBody()...))
	if err != nil {
		var ie *InputError
		code := fasthttp.StatusServiceUnavailable
		if errors.As(err, &ie) {
			code = fasthttp.StatusBadRequest
		}
		ctx.SetStatusCode(code)
		s.json(ctx, struct {
			Error string `json:"error"`
		}{err.Error()})
		return
	}
	s.log.Info("pipeline replaced through the admin API", "version", v, "remote", ctx.RemoteAddr().String())
	s.json(ctx, struct {
		Version uint64 `json:"version"`
	}{v})
}

func (s *Server) json(ctx *fasthttp.RequestCtx, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		ctx.Error("internal error\n", fasthttp.StatusInternalServerError)
		s.log.Error("admin: encoding response", "path", string(ctx.Path()), "err", err)
		return
	}
	ctx.SetContentType("application/json")
	ctx.Write(b)
	ctx.WriteString("\n")
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
