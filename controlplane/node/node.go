// Package node runs one Sluice node: the collector's event loops, the
// mediator with its pipeline and outputs, the optional shared template store
// in Redis and the admin API, started, reloaded and drained in the right
// order. `sluice run` is a Node; the split pod's processes reuse its parts.
package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-flow/sluice/controlplane/admin"
	"github.com/sluice-flow/sluice/dataplane/collector"
	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/mediator"
	"github.com/sluice-flow/sluice/dataplane/pipeline"
	"github.com/sluice-flow/sluice/dataplane/template/redistier"
)

// Node is an all-in-one Sluice process. Run drives it; Reload and the
// accessors are safe for concurrent use.
type Node struct {
	cfg   Config
	log   *slog.Logger
	col   *collector.Collector
	med   *mediator.Mediator
	outs  *pipeline.OutputSet
	token string

	redis    *redistier.Store // nil without a shared template store
	adm      *admin.Server    // nil with Admin "off"
	ready    atomic.Bool
	stopping atomic.Bool
	booted   chan struct{}
	applyMu  sync.Mutex
}

// New checks cfg, compiles the pipeline (or the outputs) and builds the
// collector and the mediator; nothing listens until Run. stdout is the
// stream of the jsonl:- output; log is the process's one logger.
func New(cfg Config, stdout io.Writer, log *slog.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	n := &Node{cfg: cfg, log: log, booted: make(chan struct{})}
	switch {
	case cfg.AdminTokenFile != "":
		b, err := os.ReadFile(cfg.AdminTokenFile)
		if err != nil {
			return nil, fmt.Errorf("admin token file: %w", err)
		}
		n.token = strings.TrimSpace(string(b))
		if n.token == "" {
			return nil, fmt.Errorf("admin token file %s is empty", cfg.AdminTokenFile)
		}
	default:
		n.token = cfg.AdminToken
	}
	col, err := collector.New(cfg.Collector, log)
	if err != nil {
		return nil, err
	}
	n.col = col
	n.outs = pipeline.NewOutputSet(func(spec string) (export.Output, error) { return export.Parse(spec, stdout) })
	var first *pipeline.Snapshot
	if cfg.Pipeline != "" {
		file, err := os.ReadFile(cfg.Pipeline)
		if err != nil {
			return nil, fmt.Errorf("pipeline: %w", err)
		}
		if first, err = CompilePipeline(file, n.outs); err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.Pipeline, err)
		}
		log.Info("pipeline loaded", "file", cfg.Pipeline, "outputs", len(first.Outputs()))
	} else {
		if first, err = pipeline.Compile(pipeline.Default(cfg.Outputs), n.outs); err != nil {
			return nil, err
		}
		first.Source = DefaultPipelineFile(cfg.Outputs)
	}
	n.med = mediator.NewPipelineConfig(col.Rings(), first, cfg.Mediator, log)
	return n, nil
}

// CompilePipeline compiles a pipeline file into a snapshot whose outputs
// come from outs.
func CompilePipeline(file []byte, outs *pipeline.OutputSet) (*pipeline.Snapshot, error) {
	return compilePipeline(file, outs, nil)
}

// compilePipeline is CompilePipeline; with a rule, the files the pipeline
// names must keep to it (a pipeline from the API).
func compilePipeline(file []byte, outs *pipeline.OutputSet, rule *pipeline.FileRule) (*pipeline.Snapshot, error) {
	cfg, err := pipeline.Parse(file)
	if err != nil {
		return nil, err
	}
	if rule != nil {
		if err := cfg.CheckFiles(*rule); err != nil {
			return nil, err
		}
	}
	snap, err := pipeline.Compile(cfg, outs)
	if err != nil {
		return nil, err
	}
	snap.Source = file
	return snap, nil
}

// DefaultPipelineFile is the pipeline file equal to outputs alone, so GET
// /api/v1/pipeline shows a file that can be edited and put back.
func DefaultPipelineFile(outputs []string) []byte {
	b := []byte("pipelines:\n  - name: default\n    outputs: [")
	for i, o := range outputs {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = strconv.AppendQuote(b, o)
	}
	return append(b, "]\n"...)
}

// Booted is closed once the listeners are open and the node is ready.
func (n *Node) Booted() <-chan struct{} { return n.booted }

// AdminAddr returns the admin API's bound address ("" when it is off or
// not yet listening).
func (n *Node) AdminAddr() string {
	if n.adm == nil {
		return ""
	}
	return n.adm.Addr()
}

// ReloadTLS reads the tls:// listeners' certificate files again if they
// changed (SIGHUP); see collector.Collector.ReloadTLS.
func (n *Node) ReloadTLS() error { return n.col.ReloadTLS() }

// Reload re-reads the pipeline file and puts it in force; a file that does
// not compile leaves the running pipeline alone. Without a pipeline file it
// is an error.
func (n *Node) Reload(ctx context.Context) (uint64, error) {
	if n.cfg.Pipeline == "" {
		return 0, errors.New("no pipeline file to reload")
	}
	file, err := os.ReadFile(n.cfg.Pipeline)
	if err != nil {
		return 0, err
	}
	return n.setPipeline(ctx, file, nil)
}

// Run opens the listeners and the admin API, runs until ctx is done, then
// drains: stop reading, let the loops finish, drain the rings into the
// outputs, close them. Nothing accepted is lost within ShutdownTimeout.
func (n *Node) Run(ctx context.Context) error {
	cfg, log := n.cfg, n.log
	if cfg.Pprof != "" {
		if err := servePprof(cfg.Pprof, log); err != nil {
			return err
		}
	}
	if len(cfg.Redis.Addrs) > 0 {
		store, err := n.startRedis()
		if err != nil {
			return err
		}
		defer store.Close() // after the collector stopped: queued writes go out
		n.redis = store
	}
	if cfg.Admin != "off" {
		n.adm = admin.New(admin.Config{Addr: cfg.Admin, Token: n.token,
			TLSCertFile: cfg.AdminTLS.CertFile, TLSKeyFile: cfg.AdminTLS.KeyFile}, (*adminSource)(n), log)
		if err := n.adm.Listen(); err != nil {
			return fmt.Errorf("admin API: %w", err)
		}
		go func() {
			if err := n.adm.Serve(); err != nil {
				log.Error("admin API stopped", "err", err)
			}
		}()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = n.adm.Shutdown(sctx)
			cancel()
		}()
		log.Info("admin API", "addr", n.adm.Addr())
	}

	medCtx, stopMed := context.WithCancel(context.Background())
	defer stopMed()
	medDone := make(chan struct{})
	go func() {
		n.med.Run(medCtx)
		close(medDone)
	}()
	if cfg.Redis.Pipeline != "" {
		n.pullPipeline()
	}
	colErr := make(chan error, 1)
	go func() { colErr <- n.col.Run(context.Background()) }()

	select {
	case <-n.col.Booted():
		n.ready.Store(true)
		close(n.booted)
	case err := <-colErr:
		stopMed()
		<-medDone
		return fmt.Errorf("collector: %w", err)
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "reason", context.Cause(ctx).Error())
	case err := <-colErr:
		runErr = err
		colErr <- err
	}
	// Stop reading, let the loops finish, then drain the rings into the
	// outputs: nothing accepted is lost. The loops get half the shutdown
	// time, the mediator's drain the other half.
	n.stopping.Store(true)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout/2)
	defer cancel()
	if err := n.col.Stop(sctx); err != nil {
		log.Warn("stopping listeners", "err", err)
	}
	select {
	case err := <-colErr:
		if err != nil && runErr == nil && !errors.Is(err, context.Canceled) {
			runErr = err
		}
	case <-sctx.Done():
		log.Warn("event loops did not stop in time")
		n.col.ConsumersGone()
	}
	stopMed()
	drain := time.NewTimer(cfg.ShutdownTimeout / 2)
	defer drain.Stop()
	select {
	case <-medDone:
		// Close only once the mediator has stopped writing to the outputs.
		if err := n.med.Close(); err != nil {
			log.Warn("closing outputs", "err", err)
		}
	case <-drain.C:
		log.Warn("mediator did not drain in time; records still in the rings are lost", "records_so_far", n.med.Records())
	}
	log.Info("stopped", "records", n.med.Records())
	return runErr
}

// startRedis plugs the shared template store in behind the collector's
// tiers. It waits for Redis (and warms the tiers from it) for at most
// StartWait, then lets the listeners open whatever Redis does: the
// collector works on its local tiers until Redis answers.
func (n *Node) startRedis() (*redistier.Store, error) {
	cfg, log := n.cfg, n.log
	r := cfg.Redis.Config
	cc := cfg.Collector
	r.Lifetime, r.FetchWait, r.ScopeByPort = cc.TemplateLifetime, cc.Held.MaxAge, cc.ScopeByPort
	store, err := redistier.New(r, n.col.Templates(), n.col.TemplateArrived, log)
	if err != nil {
		return nil, err
	}
	n.col.SetRemote(store)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Redis.StartWait)
	defer cancel()
	if len(cfg.Redis.WarmUp) > 0 {
		got, err := store.WarmUp(ctx, cfg.Redis.WarmUp)
		if err != nil {
			log.Warn("template warm-up incomplete; starting anyway", "loaded", got, "err", err)
		} else {
			log.Info("templates warmed up from redis", "templates", got)
		}
		return store, nil
	}
	select {
	case <-store.Ready():
	case <-ctx.Done():
		log.Warn("redis not reachable yet; starting on local templates", "addrs", r.Addrs)
	}
	return store, nil
}

// servePprof serves the runtime profiles on their own listener, apart from
// the admin API, so they are off unless asked for.
func servePprof(addr string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("pprof: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() {
		if err := srv.Serve(ln); err != nil {
			log.Error("pprof server stopped", "err", err)
		}
	}()
	log.Info("pprof", "addr", ln.Addr().String())
	return nil
}
