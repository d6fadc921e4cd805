package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluice-flow/sluice/controlplane/admin"
	"github.com/sluice-flow/sluice/dataplane/collector"
	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/mediator"
	"github.com/sluice-flow/sluice/dataplane/pipeline"
	"github.com/sluice-flow/sluice/dataplane/template/redistier"
)

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// runAll is `sluice run`: collector, mediator and admin API in one process.
func runAll(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var listens, outputs stringList
	configPath := fs.String("config", "", "YAML config file; flags override it")
	fs.Var(&listens, "listen", "listener URL, repeatable: udp://:4739, tcp://[::]:4739 (default udp://:4739 and tcp://:4739)")
	adminAddr := fs.String("admin", "", "admin API address (default 127.0.0.1:8080; \"off\" disables it)")
	fs.Var(&outputs, "output", "output, repeatable: jsonl:- (stdout, default), jsonl:PATH, discard, ipfix+tcp://HOST:PORT, ipfix+udp://HOST:PORT, ipfix-file:PATH")
	pipelinePath := fs.String("pipeline", "", "pipeline file (YAML): stages and outputs; SIGHUP reloads it")
	tokenFile := fs.String("admin-token-file", "", "file holding the admin API token that PUT /api/v1/pipeline needs (or set SLUICE_ADMIN_TOKEN)")
	logLevel := fs.String("log-level", "", "debug, info, warn or error (default info)")
	loops := fs.Int("loops", -1, "event loops (default: one per CPU)")
	scopePort := fs.Bool("scope-port", false, "scope templates by exporter address and port")
	lifetime := fs.Duration("template-lifetime", 0, "lifetime of UDP templates not retransmitted (default 30m)")
	redisAddrs := fs.String("redis", "", "share templates through Redis: host:port[,host:port...] (one node, or cluster nodes)")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this address, e.g. 127.0.0.1:6060 (off by default)")
	stockUDP := fs.Bool("stock-udp-read", false, "read one UDP datagram per wake-up as stock gnet does (no recvmmsg batches; for measurements)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: sluice run [flags]\n\nRuns the all-in-one collector: listeners, mediator and admin API.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("run: unexpected argument %q", fs.Arg(0))
	}
	rc := defaultRunConfig()
	if *configPath != "" {
		if err := loadConfigFile(*configPath, &rc); err != nil {
			return err
		}
	}
	if len(listens) > 0 {
		rc.Collector.Listen = listens
	}
	if *adminAddr != "" {
		rc.Admin = *adminAddr
	}
	if len(outputs) > 0 {
		for _, o := range outputs {
			if err := checkOutput(o); err != nil {
				return fmt.Errorf("--output: %v", err)
			}
		}
		rc.Outputs = outputs
	}
	if *logLevel != "" {
		rc.LogLevel = *logLevel
	}
	if *pipelinePath != "" {
		rc.Pipeline = *pipelinePath
	}
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("--admin-token-file: %v", err)
		}
		rc.AdminToken = strings.TrimSpace(string(b))
	}
	if t := os.Getenv("SLUICE_ADMIN_TOKEN"); t != "" && rc.AdminToken == "" {
		rc.AdminToken = t
	}
	if rc.Pipeline != "" && len(outputs) > 0 {
		return errors.New("run: --output and --pipeline both given; name the outputs in the pipeline file")
	}
	if *loops >= 0 {
		rc.Collector.Loops = *loops
	}
	if *scopePort {
		rc.Collector.ScopeByPort = true
	}
	if *stockUDP {
		rc.Collector.StockUDPRead = true
	}
	if *lifetime != 0 {
		rc.Collector.TemplateLifetime = *lifetime
	}
	if *redisAddrs != "" {
		addrs, err := parseRedisAddrs(*redisAddrs)
		if err != nil {
			return fmt.Errorf("--redis: %v", err)
		}
		rc.Redis.Addrs = addrs
	}
	if rc.Redis.Password == "" {
		rc.Redis.Password = os.Getenv("SLUICE_REDIS_PASSWORD")
	}
	if *pprofAddr != "" {
		if err := servePprof(*pprofAddr, stderr); err != nil {
			return err
		}
	}
	return serve(rc, stdout, stderr)
}

// servePprof serves the runtime profiles on their own listener, apart from
// the admin API, so they are off unless asked for.
func servePprof(addr string, stderr io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--pprof: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	go func() {
		if err := http.Serve(ln, mux); err != nil {
			fmt.Fprintln(stderr, "pprof server stopped:", err)
		}
	}()
	return nil
}

func newLogger(level string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// source adapts the data plane to the admin API.
type source struct {
	col      *collector.Collector
	med      *mediator.Mediator
	outs     *pipeline.OutputSet
	redis    *redistier.Store // nil without a shared template store
	ready    atomic.Bool
	stopping atomic.Bool
	applyMu  sync.Mutex
}

func (s *source) Pipeline() (uint64, []byte) {
	snap := s.med.Current()
	return snap.Version, snap.Source
}

// SetPipeline compiles a pipeline file and puts it in force; a file that
// does not compile leaves the running pipeline alone.
func (s *source) SetPipeline(ctx context.Context, file []byte) (uint64, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	snap, err := compilePipeline(file, s.outs)
	if err != nil {
		return 0, &admin.InputError{Err: err}
	}
	return s.med.Apply(ctx, snap)
}

func compilePipeline(file []byte, outs *pipeline.OutputSet) (*pipeline.Snapshot, error) {
	cfg, err := pipeline.Parse(file)
	if err != nil {
		return nil, err
	}
	snap, err := pipeline.Compile(cfg, outs)
	if err != nil {
		return nil, err
	}
	snap.Source = file
	return snap, nil
}

// defaultPipelineFile is the pipeline file equal to --output alone, so GET
// /api/v1/pipeline shows a file that can be edited and put back.
func defaultPipelineFile(outputs []string) []byte {
	b := []byte("pipelines:\n  - name: default\n    outputs: [")
	for i, o := range outputs {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = strconv.AppendQuote(b, o)
	}
	return append(b, "]\n"...)
}

// reloadPipeline re-reads the pipeline file (SIGHUP).
func (s *source) reloadPipeline(path string, log *slog.Logger) {
	file, err := os.ReadFile(path)
	if err == nil {
		var v uint64
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		v, err = s.SetPipeline(ctx, file)
		cancel()
		if err == nil {
			log.Info("pipeline reloaded", "file", path, "version", v)
			return
		}
	}
	log.Error("pipeline reload failed; the running pipeline stays", "file", path, "err", err)
}

func (s *source) Ready() bool { return s.ready.Load() && !s.stopping.Load() }
func (s *source) AppendMetrics(b []byte) []byte {
	b = s.med.AppendMetrics(s.col.AppendMetrics(b))
	if s.redis != nil {
		b = s.redis.AppendMetrics(b)
	}
	return b
}
func (s *source) Exporters() any { return s.col.Exporters() }
func (s *source) Templates() any { return s.col.TemplateList() }

// startRedis plugs the shared template store in behind the collector's
// tiers. It waits for Redis (and warms the tiers from it) for at most
// StartWait, then lets the listeners open whatever Redis does: the
// collector works on its local tiers until Redis answers.
func startRedis(rc runConfig, col *collector.Collector, log *slog.Logger) (*redistier.Store, error) {
	r := rc.Redis
	r.Lifetime, r.FetchWait, r.ScopeByPort = rc.Collector.TemplateLifetime, rc.Collector.Held.MaxAge, rc.Collector.ScopeByPort
	store, err := redistier.New(r, col.Templates(), col.TemplateArrived, log)
	if err != nil {
		return nil, err
	}
	col.SetRemote(store)
	ctx, cancel := context.WithTimeout(context.Background(), rc.RedisStartWait)
	defer cancel()
	if len(rc.RedisWarmUp) > 0 {
		n, err := store.WarmUp(ctx, rc.RedisWarmUp)
		if err != nil {
			log.Warn("template warm-up incomplete; starting anyway", "loaded", n, "err", err)
		} else {
			log.Info("templates warmed up from redis", "templates", n)
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

func serve(rc runConfig, stdout, stderr io.Writer) error {
	log, err := newLogger(rc.LogLevel, stderr)
	if err != nil {
		return err
	}
	col, err := collector.New(rc.Collector, log)
	if err != nil {
		return err
	}
	outs := pipeline.NewOutputSet(func(spec string) (export.Output, error) { return export.Parse(spec, stdout) })
	var first *pipeline.Snapshot
	if rc.Pipeline != "" {
		file, err := os.ReadFile(rc.Pipeline)
		if err != nil {
			return err
		}
		if first, err = compilePipeline(file, outs); err != nil {
			return fmt.Errorf("%s: %w", rc.Pipeline, err)
		}
		log.Info("pipeline loaded", "file", rc.Pipeline, "outputs", len(first.Outputs()))
	} else if first, err = pipeline.Compile(pipeline.Default(rc.Outputs), outs); err != nil {
		return err
	} else {
		first.Source = defaultPipelineFile(rc.Outputs)
	}
	med := mediator.NewPipeline(col.Rings(), first, log)
	src := &source{col: col, med: med, outs: outs}
	if len(rc.Redis.Addrs) > 0 {
		store, err := startRedis(rc, col, log)
		if err != nil {
			return err
		}
		defer store.Close() // after the collector stopped: queued writes go out
		src.redis = store
	}

	var adm *admin.Server
	if rc.Admin != "off" {
		adm = admin.New(admin.Config{Addr: rc.Admin, Token: rc.AdminToken}, src, log)
		if err := adm.Listen(); err != nil {
			return fmt.Errorf("admin API: %w", err)
		}
		go func() {
			if err := adm.Serve(); err != nil {
				log.Error("admin API stopped", "err", err)
			}
		}()
		log.Info("admin API", "addr", adm.Addr())
	}

	medCtx, stopMed := context.WithCancel(context.Background())
	medDone := make(chan struct{})
	go func() {
		med.Run(medCtx)
		close(medDone)
	}()
	colErr := make(chan error, 1)
	go func() { colErr <- col.Run(context.Background()) }()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)
	hupDone := make(chan struct{})
	defer close(hupDone)
	go func() {
		for {
			select {
			case <-hups:
				if rc.Pipeline == "" {
					log.Warn("SIGHUP ignored: no pipeline file")
					continue
				}
				src.reloadPipeline(rc.Pipeline, log)
			case <-hupDone:
				return
			}
		}
	}()

	select {
	case <-col.Booted():
		src.ready.Store(true)
	case err := <-colErr:
		stopMed()
		<-medDone
		return fmt.Errorf("collector: %w", err)
	}

	var runErr error
	select {
	case sig := <-sigs:
		log.Info("shutting down", "signal", sig.String())
	case err := <-colErr:
		runErr = err
		colErr <- err
	}
	// Stop reading, let the loops finish, then drain the rings into the
	// outputs: nothing accepted is lost. The loops get half the shutdown
	// time, the mediator's drain the other half.
	src.stopping.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), rc.Shutdown/2)
	defer cancel()
	if err := col.Stop(ctx); err != nil {
		log.Warn("stopping listeners", "err", err)
	}
	select {
	case err := <-colErr:
		if err != nil && runErr == nil && !errors.Is(err, context.Canceled) {
			runErr = err
		}
	case <-ctx.Done():
		log.Warn("event loops did not stop in time")
		col.ConsumersGone()
	}
	stopMed()
	select {
	case <-medDone:
		// Close only once the mediator has stopped writing to the outputs.
		if err := med.Close(); err != nil {
			log.Warn("closing outputs", "err", err)
		}
	case <-time.After(rc.Shutdown / 2):
		log.Warn("mediator did not drain in time; records still in the rings are lost", "records_so_far", med.Records())
	}
	if adm != nil {
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = adm.Shutdown(sctx)
		scancel()
	}
	log.Info("stopped", "records", med.Records())
	return runErr
}
