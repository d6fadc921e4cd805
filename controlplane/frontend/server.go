package frontend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-flow/sluice/controlplane/fleet"
	"github.com/sluice-flow/sluice/controlplane/frontend/dispatch"
	"github.com/sluice-flow/sluice/dataplane/promtext"
	"github.com/sluice-flow/sluice/dataplane/ratelog"
)

// Server is one replica of the Web API with its job broker and, when
// configured, its worker processes.
type Server struct {
	cfg    Config
	log    *slog.Logger
	logs   ratelog.Limiter
	an     Analyzer
	types  []string // job types accepted
	tokens atomic.Pointer[tokenTable]

	st      *store
	fleet   *fleet.Fleet
	redisUp atomic.Bool
	broker  *dispatch.Broker
	pool    *dispatch.Pool
	run     *runner
	m       metrics
	logMu   sync.Mutex // CompletionLog

	srv *fasthttp.Server
	ln  net.Listener
}

// New checks cfg, reads the tokens file and opens the listening socket;
// Run serves. an may be nil (then only "echo", if enabled, runs).
func New(cfg Config, an Analyzer) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Log, an: an}
	s.logs.Every = 10 * time.Second
	if an != nil {
		s.types = append(s.types, an.Types()...)
	}
	if cfg.EchoJobs {
		s.types = append(s.types, echoType)
	}
	t, err := loadTokens(cfg.TokensFile)
	if err != nil {
		return nil, err
	}
	s.tokens.Store(t)
	s.st, err = newStore(cfg.Redis)
	if err != nil {
		return nil, err
	}
	s.redisUp.Store(s.st.ping(context.Background()) == nil)
	fc := cfg.Fleet
	fc.Log = cfg.Log
	s.fleet = fleet.New(fc, cfg.Collectors, s.st.c)
	s.run = newRunner(s)
	s.broker = dispatch.NewBroker(dispatch.BrokerConfig{Endpoint: cfg.Broker, Heartbeat: cfg.Heartbeat,
		Liveness: cfg.Liveness, MaxAttempts: maxAttempts, MaxMessageBytes: cfg.MaxResultBytes + 1<<20, Log: cfg.Log}, s.run.event)
	if cfg.Workers > 0 {
		s.pool = dispatch.NewPool(dispatch.PoolConfig{Size: cfg.Workers, Log: cfg.Log,
			Command: func() *exec.Cmd { return cfg.WorkerCommand(cfg.Broker) }})
	}
	s.srv = &fasthttp.Server{
		Handler:            s.handle,
		Name:               "sluice-api",
		ReadTimeout:        5 * time.Minute, // uploads
		WriteTimeout:       5 * time.Minute,
		IdleTimeout:        60 * time.Second,
		MaxRequestBodySize: maxJSONBody, // larger bodies are streamed
		StreamRequestBody:  true,
		NoDefaultDate:      true,
	}
	s.ln, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		s.st.close()
		return nil, fmt.Errorf("frontend: %w", err)
	}
	return s, nil
}

// maxJSONBody bounds JSON request bodies.
const maxJSONBody = 1 << 20

// Addr is the HTTP listen address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Broker is the broker's endpoint.
func (s *Server) Broker() string { return s.cfg.Broker }

// Workers returns the workers connected to this replica's broker.
func (s *Server) Workers() []dispatch.WorkerInfo { return s.broker.Workers() }

// WorkerPids returns the pids of the worker processes this replica runs.
func (s *Server) WorkerPids() []int {
	if s.pool == nil {
		return nil
	}
	return s.pool.Pids()
}

// Fleet is the collector pods this replica manages.
func (s *Server) Fleet() *fleet.Fleet { return s.fleet }

// Reload reads the tokens file again; on error the old tokens stay.
func (s *Server) Reload() error {
	t, err := loadTokens(s.cfg.TokensFile)
	if err != nil {
		return err
	}
	s.tokens.Store(t)
	s.log.Info("frontend: tokens reloaded", "tokens", len(t.hashes))
	return nil
}

// Run serves until ctx ends, then stops the HTTP server, the broker and
// the workers. Jobs running here are requeued by the other replicas (or
// this one, restarted) once their lease lapses.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.broker.Run(ctx); err != nil {
			errc <- err
			cancel()
		}
	}()
	if err := s.broker.BindErr(); err != nil {
		wg.Wait()
		s.st.close()
		return err
	}
	if s.pool != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.pool.Run(ctx) }()
	}
	for _, f := range []func(context.Context){s.run.feed, s.run.commit, s.run.sync, s.janitor, s.fleet.Run} {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	go func() {
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, net.ErrClosed) {
			errc <- err
		}
		cancel()
	}()
	<-ctx.Done()
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	_ = s.srv.ShutdownWithContext(sctx)
	scancel()
	wg.Wait()
	s.st.close()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// tenantLabel is tenant's bounded metric label.
func (s *Server) tenantLabel(tenant string) string { return s.tokens.Load().label(tenant) }

func (s *Server) filePath(tenant, id string) string {
	return filepath.Join(s.cfg.DataDir, "files", tenant, id)
}

func (s *Server) resultPath(tenant, id, format string) string {
	return filepath.Join(s.cfg.DataDir, "results", tenant, id+"."+format)
}

// newID returns 128 random bits in hex.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func validID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// appendMetrics writes the replica's metrics.
func (s *Server) appendMetrics(dst []byte) []byte {
	w := promtext.NewWriter(dst)
	s.m.requests.write(&w, mRequests, "route", "code")
	s.m.posted.write(&w, mJobsPosted, "tenant")
	s.m.rejected.write(&w, mJobsRejected, "reason")
	s.m.finished.write(&w, mJobsFinished, "tenant", "state")
	s.m.retried.write(&w, mJobsRetried)
	s.m.uploads.write(&w, mUploads, "tenant")
	s.m.uploadBytes.write(&w, mUploadBytes, "tenant")
	w.Uint(mWorkers, uint64(len(s.broker.Workers())))
	s.m.lost.write(&w, mWorkersLost)
	var restarts uint64
	if s.pool != nil {
		restarts = s.pool.Restarts()
	}
	w.Uint(mRestarts, restarts)
	w.Uint(mOwned, uint64(s.run.owned()))
	up := uint64(0)
	if s.redisUp.Load() {
		up = 1
	}
	w.Uint(mRedisUp, up)
	return w.Bytes()
}

// apiError is the body of every error answer.
type apiError struct {
	Error   string   `json:"error"`
	Message string   `json:"message,omitempty"`
	Param   string   `json:"param,omitempty"`
	Column  int      `json:"column,omitempty"`
	Line    int      `json:"line,omitempty"`
	State   string   `json:"state,omitempty"`
	Allowed []string `json:"allowed,omitempty"`
}

func writeJSON(c *fasthttp.RequestCtx, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic("BUG: frontend: view does not marshal: " + err.Error())
	}
	c.SetStatusCode(code)
	c.SetContentType("application/json")
	c.Write(append(b, '\n'))
}

func fail(c *fasthttp.RequestCtx, code int, e apiError) { writeJSON(c, code, e) }

// storeError answers a Redis error: 404 for errNotFound, 503 otherwise.
func (s *Server) storeError(c *fasthttp.RequestCtx, err error) {
	if errors.Is(err, errNotFound) {
		fail(c, fasthttp.StatusNotFound, apiError{Error: "not_found"})
		return
	}
	s.logs.Warn(s.log, "frontend: redis", "err", err)
	fail(c, fasthttp.StatusServiceUnavailable, apiError{Error: "unavailable", Message: "the job store is unreachable"})
}

func itoa(n int) string { return strconv.Itoa(n) }

func sortedTypes(types []string) []string {
	out := slices.Clone(types)
	slices.Sort(out)
	return out
}
