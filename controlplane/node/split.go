package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
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

// The split pod runs `sluice collector` and `sluice mediator` as two
// processes over file rings in a shared tmpfs, beside `sluice controller`
// (the pod's D-Bus and HTTP API). CollectorProcess and MediatorProcess are
// their lifecycles, and the Go API the D-Bus objects io.sluice.Collector1
// and io.sluice.Mediator1 call: every exported method is safe for
// concurrent use and never blocks the data path.

// Split pod defaults.
const (
	DefaultRingDir = "/run/sluice/rings"
	DefaultBus     = "unix:path=/run/sluice/bus"
)

// SplitConfig configures a process of the split pod: Config as `sluice
// run` reads it (flags and YAML), plus where the rings and the bus are.
type SplitConfig struct {
	Config
	// RingDir holds the file rings (a tmpfs shared by the two data
	// processes). Default DefaultRingDir.
	RingDir string
	// Bus is the pod's D-Bus address, for the D-Bus side (RegisterBus).
	// Default DefaultBus.
	Bus string
}

func (c SplitConfig) withDefaults() SplitConfig {
	if c.RingDir == "" {
		c.RingDir = DefaultRingDir
	}
	if c.Bus == "" {
		c.Bus = DefaultBus
	}
	if c.Admin == "" {
		c.Admin = "off" // the controller serves the pod's API
	}
	c.Config = c.Config.withDefaults()
	c.Collector.RingDir = c.RingDir
	return c
}

// Bus is the D-Bus side of the split pod's data processes: it exports a
// process's object on the bus at address and keeps it there (reconnecting
// with backoff when the bus goes) until ctx ends. It lives in
// controlplane/dbus, which registers it with RegisterBus, so that node
// does not depend on a D-Bus library. Without one the processes run
// without a bus.
type Bus interface {
	ServeCollector(ctx context.Context, address string, p *CollectorProcess) error
	ServeMediator(ctx context.Context, address string, p *MediatorProcess) error
}

var (
	busMu sync.Mutex
	bus   Bus
)

// RegisterBus installs the D-Bus side (call it from an init function or
// before the process starts).
func RegisterBus(b Bus) {
	busMu.Lock()
	bus = b
	busMu.Unlock()
}

func registeredBus() Bus {
	busMu.Lock()
	defer busMu.Unlock()
	return bus
}

// serveBus runs the registered Bus's serve function, logging its end.
func serveBus(ctx context.Context, log *slog.Logger, address string, serve func(Bus) error) {
	b := registeredBus()
	if b == nil {
		log.Info("no D-Bus side built in; running without a bus", "bus", address)
		return
	}
	go func() {
		if err := serve(b); err != nil && ctx.Err() == nil {
			log.Error("D-Bus side stopped; the data path goes on", "bus", address, "err", err)
		}
	}()
}

// CollectorProcess is `sluice collector`: ingest alone, into file rings.
type CollectorProcess struct {
	cfg   SplitConfig
	log   *slog.Logger
	col   *collector.Collector
	redis *redistier.Store
	bus   busMetrics
}

// busMetrics holds the D-Bus side's metrics, so that a process's own
// /metrics shows a bus outage too.
type busMetrics struct {
	f atomic.Pointer[func([]byte) []byte]
}

func (m *busMetrics) set(f func([]byte) []byte) { m.f.Store(&f) }

func (m *busMetrics) append(b []byte) []byte {
	if f := m.f.Load(); f != nil && *f != nil {
		return (*f)(b)
	}
	return b
}

// NewCollectorProcess checks cfg and builds the collector; it takes the
// ring directory (a second collector on it is refused) and makes the ring
// files, with a new generation, at once. Nothing listens until Run.
func NewCollectorProcess(cfg SplitConfig, log *slog.Logger) (*CollectorProcess, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	col, err := collector.New(cfg.Collector, log)
	if err != nil {
		return nil, err
	}
	return &CollectorProcess{cfg: cfg, log: log, col: col}, nil
}

// Run serves until ctx ends, then drains (Drain with half the shutdown
// timeout) and returns. A Drain from the control plane stops the
// listeners but not Run: the process stays up, not ready, until ctx ends.
func (p *CollectorProcess) Run(ctx context.Context) error {
	cfg, log := p.cfg, p.log
	defer p.col.Close()
	if cfg.Pprof != "" {
		if err := servePprof(cfg.Pprof, log); err != nil {
			return err
		}
	}
	if len(cfg.Redis.Addrs) > 0 {
		n := &Node{cfg: cfg.Config, log: log, col: p.col}
		store, err := n.startRedis()
		if err != nil {
			return err
		}
		defer store.Close()
		p.redis = store
	}
	colErr := make(chan error, 1)
	go func() { colErr <- p.col.Run(context.Background()) }()
	select {
	case <-p.col.Booted():
	case err := <-colErr:
		return fmt.Errorf("collector: %w", err)
	}
	select {
	case err := <-colErr:
		if err != nil {
			return fmt.Errorf("collector: %w", err)
		}
		colErr <- nil
	default:
	}
	stopAdmin, err := serveAdmin(cfg.Config, "", (*collectorSource)(p), log)
	if err != nil {
		p.col.Drain(time.Second)
		return err
	}
	defer stopAdmin()
	busCtx, stopBus := context.WithCancel(context.Background())
	defer stopBus()
	serveBus(busCtx, log, cfg.Bus, func(b Bus) error { return b.ServeCollector(busCtx, cfg.Bus, p) })

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "reason", context.Cause(ctx).Error())
	case runErr = <-colErr:
		colErr <- runErr
		if runErr == nil {
			// The loops ended cleanly before ctx: drained through the bus.
			// Stay up, not ready, until told to exit, as documented above;
			// exiting here would race the Drain call's reply.
			log.Info("drained; waiting for the signal to exit")
			<-ctx.Done()
		}
	}
	if err := p.col.Drain(cfg.ShutdownTimeout / 2); err != nil {
		log.Warn("draining", "err", err)
	}
	select {
	case err := <-colErr:
		if runErr == nil && err != nil && !errors.Is(err, context.Canceled) {
			runErr = err
		}
	case <-time.After(cfg.ShutdownTimeout / 2):
		log.Warn("event loops did not stop in time")
	}
	st := p.col.Status()
	log.Info("stopped", "records", st.Records, "ring_bytes_left", st.RingBytes)
	return runErr
}

// Collector returns the collector, for what the methods below do not
// cover (metrics: AppendMetrics).
func (p *CollectorProcess) Collector() *collector.Collector { return p.col }

// Log returns the process's logger.
func (p *CollectorProcess) Log() *slog.Logger { return p.log }

// SetBusMetrics installs the D-Bus side's metrics appender: AppendMetrics
// (and so the process's /metrics) includes what it appends.
func (p *CollectorProcess) SetBusMetrics(f func([]byte) []byte) { p.bus.set(f) }

// AppendMetrics appends the process's metrics: the collector's, the
// template tier's and the bus's.
func (p *CollectorProcess) AppendMetrics(b []byte) []byte {
	b = p.col.AppendMetrics(b)
	if p.redis != nil {
		b = p.redis.AppendMetrics(b)
	}
	return p.bus.append(b)
}

// Config returns the process's configuration (defaults filled in).
func (p *CollectorProcess) Config() SplitConfig { return p.cfg }

// Status returns the collector's summary (Collector1.Status).
func (p *CollectorProcess) Status() collector.Status { return p.col.Status() }

// Exporters returns the exporters view (Collector1.Exporters, as JSON).
func (p *CollectorProcess) Exporters() []collector.ExporterStatus { return p.col.Exporters() }

// Templates returns the templates view (Collector1.Templates, as JSON).
func (p *CollectorProcess) Templates() []collector.TemplateStatus { return p.col.TemplateList() }

// AddListener opens a listener at run time (collector.AddListener).
func (p *CollectorProcess) AddListener(url string) error { return p.col.AddListener(url) }

// RemoveListener closes a listener added at run time
// (collector.RemoveListener; listeners given at start are refused).
func (p *CollectorProcess) RemoveListener(url string) error { return p.col.RemoveListener(url) }

// Listeners returns the listener URLs open now (property Listeners).
func (p *CollectorProcess) Listeners() []string { return p.col.Listeners() }

// Ready reports whether the collector serves (property Ready).
func (p *CollectorProcess) Ready() bool { return p.col.Ready() }

// Drain stops reading, puts everything accepted into the rings, marks
// them closed and returns once the loops have stopped (Collector1.Drain);
// the process then stays up, not ready, until it is told to exit.
func (p *CollectorProcess) Drain(timeout time.Duration) error { return p.col.Drain(timeout) }

// SetHooks installs the event hooks (signals TemplateLearned and
// ExporterSeen): see collector.Hooks for their guarantees.
func (p *CollectorProcess) SetHooks(h collector.Hooks) { p.col.SetHooks(h) }

// collectorSource is the collector process as the admin API sees it.
type collectorSource CollectorProcess

func (s *collectorSource) Ready() bool { return s.col.Ready() }
func (s *collectorSource) AppendMetrics(b []byte) []byte {
	return (*CollectorProcess)(s).AppendMetrics(b)
}
func (s *collectorSource) Exporters() []collector.ExporterStatus { return s.col.Exporters() }
func (s *collectorSource) Templates() []collector.TemplateStatus { return s.col.TemplateList() }

// MediatorProcess is `sluice mediator`: pipelines and outputs over the
// file rings of a collector process.
type MediatorProcess struct {
	cfg     SplitConfig
	log     *slog.Logger
	med     *mediator.Mediator
	outs    *pipeline.OutputSet
	token   string
	applyMu sync.Mutex
	bus     busMetrics
}

// NewMediatorProcess checks cfg and compiles the pipeline (or the
// outputs); stdout is the stream of the jsonl:- output. The rings are
// attached by Run, as they appear.
func NewMediatorProcess(cfg SplitConfig, stdout io.Writer, log *slog.Logger) (*MediatorProcess, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	p := &MediatorProcess{cfg: cfg, log: log, token: cfg.AdminToken}
	if cfg.AdminTokenFile != "" {
		b, err := os.ReadFile(cfg.AdminTokenFile)
		if err != nil {
			return nil, fmt.Errorf("admin token file: %w", err)
		}
		p.token = string(trimSpace(b))
	}
	p.outs = pipeline.NewOutputSet(func(spec string) (export.Output, error) { return export.Parse(spec, stdout) })
	var first *pipeline.Snapshot
	var err error
	if cfg.Pipeline != "" {
		file, err := os.ReadFile(cfg.Pipeline)
		if err != nil {
			return nil, fmt.Errorf("pipeline: %w", err)
		}
		if first, err = CompilePipeline(file, p.outs); err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.Pipeline, err)
		}
	} else {
		if first, err = pipeline.Compile(pipeline.Default(cfg.Outputs), p.outs); err != nil {
			return nil, err
		}
		first.Source = DefaultPipelineFile(cfg.Outputs)
	}
	p.med = mediator.NewDir(cfg.RingDir, first, log)
	return p, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ' || b[len(b)-1] == '\r' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// Run attaches to the rings as they appear and feeds the pipeline until
// ctx ends, then takes what the rings hold (within half the shutdown
// timeout), flushes and closes the outputs. What it does not take stays
// in the rings for the next mediator.
func (p *MediatorProcess) Run(ctx context.Context) error {
	cfg, log := p.cfg, p.log
	if cfg.Pprof != "" {
		if err := servePprof(cfg.Pprof, log); err != nil {
			return err
		}
	}
	log.Info("waiting for rings", "dir", cfg.RingDir)
	medCtx, stopMed := context.WithCancel(context.Background())
	defer stopMed()
	done := make(chan struct{})
	go func() { p.med.Run(medCtx); close(done) }()
	stopAdmin, err := serveAdmin(cfg.Config, p.token, (*mediatorSource)(p), log)
	if err != nil {
		stopMed()
		<-done
		return err
	}
	defer stopAdmin()
	busCtx, stopBus := context.WithCancel(context.Background())
	defer stopBus()
	serveBus(busCtx, log, cfg.Bus, func(b Bus) error { return b.ServeMediator(busCtx, cfg.Bus, p) })

	<-ctx.Done()
	log.Info("shutting down", "reason", context.Cause(ctx).Error())
	stopMed()
	select {
	case <-done:
		if err := p.med.Close(); err != nil {
			log.Warn("closing outputs", "err", err)
		}
	case <-time.After(cfg.ShutdownTimeout / 2):
		log.Warn("mediator did not drain in time; what is left stays in the rings")
	}
	st := p.med.Status()
	log.Info("stopped", "records", st.Records, "replayed", st.Replayed)
	return nil
}

// Mediator returns the mediator (metrics: AppendMetrics).
func (p *MediatorProcess) Mediator() *mediator.Mediator { return p.med }

// Config returns the process's configuration (defaults filled in).
func (p *MediatorProcess) Config() SplitConfig { return p.cfg }

// ApplyPipeline compiles a pipeline file and puts it in force, returning
// its version (Mediator1.ApplyPipeline). A file that does not compile is
// an *admin.InputError whose message names the line and the reason, and
// the pipeline in force stays.
func (p *MediatorProcess) ApplyPipeline(ctx context.Context, yaml []byte) (uint64, error) {
	rule := p.cfg.apiFiles()
	return p.applyPipeline(ctx, yaml, &rule)
}

// applyPipeline is ApplyPipeline with the file rule given (nil: none, for
// the operator's own --pipeline file).
func (p *MediatorProcess) applyPipeline(ctx context.Context, yaml []byte, rule *pipeline.FileRule) (uint64, error) {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	snap, err := compilePipeline(yaml, p.outs, rule)
	if err != nil {
		return 0, &admin.InputError{Err: err}
	}
	return p.med.Apply(ctx, snap)
}

// Pipeline returns the version and file of the pipeline in force
// (Mediator1.Pipeline).
func (p *MediatorProcess) Pipeline() (uint64, []byte) {
	s := p.med.Current()
	return s.Version, s.Source
}

// Reload re-reads the --pipeline file and applies it (SIGHUP).
func (p *MediatorProcess) Reload(ctx context.Context) (uint64, error) {
	if p.cfg.Pipeline == "" {
		return 0, errors.New("no pipeline file to reload")
	}
	file, err := os.ReadFile(p.cfg.Pipeline)
	if err != nil {
		return 0, err
	}
	return p.applyPipeline(ctx, file, nil)
}

// Status returns the mediator's summary (Mediator1.Status).
func (p *MediatorProcess) Status() mediator.Status { return p.med.Status() }

// Ready reports whether rings are attached.
func (p *MediatorProcess) Ready() bool { return p.med.Status().Ready }

// Flush flushes the outputs and releases what they took from the rings
// (Mediator1.Flush).
func (p *MediatorProcess) Flush(ctx context.Context) error { return p.med.Flush(ctx) }

// Log returns the process's logger.
func (p *MediatorProcess) Log() *slog.Logger { return p.log }

// SetBusMetrics installs the D-Bus side's metrics appender: AppendMetrics
// (and so the process's /metrics) includes what it appends.
func (p *MediatorProcess) SetBusMetrics(f func([]byte) []byte) { p.bus.set(f) }

// AppendMetrics appends the process's metrics: the mediator's, its
// pipelines' and outputs', and the bus's.
func (p *MediatorProcess) AppendMetrics(b []byte) []byte { return p.bus.append(p.med.AppendMetrics(b)) }

// OnPipelineApplied installs the hook for signal PipelineApplied: see
// mediator.OnApplied.
func (p *MediatorProcess) OnPipelineApplied(f func(version uint64)) { p.med.OnApplied(f) }

// mediatorSource is the mediator process as the admin API sees it.
type mediatorSource MediatorProcess

func (s *mediatorSource) Ready() bool { return s.med.Status().Ready }
func (s *mediatorSource) AppendMetrics(b []byte) []byte {
	return (*MediatorProcess)(s).AppendMetrics(b)
}
func (s *mediatorSource) Exporters() []collector.ExporterStatus { return []collector.ExporterStatus{} }
func (s *mediatorSource) Templates() []collector.TemplateStatus { return []collector.TemplateStatus{} }
func (s *mediatorSource) Pipeline() (uint64, []byte)            { return (*MediatorProcess)(s).Pipeline() }
func (s *mediatorSource) SetPipeline(ctx context.Context, file []byte) (uint64, error) {
	return (*MediatorProcess)(s).ApplyPipeline(ctx, file)
}

// serveAdmin serves the admin API for a split process when cfg.Admin is
// not "off", and returns its stop function.
func serveAdmin(cfg Config, token string, src admin.Source, log *slog.Logger) (func(), error) {
	if cfg.Admin == "off" {
		return func() {}, nil
	}
	adm := admin.New(admin.Config{Addr: cfg.Admin, Token: token,
		TLSCertFile: cfg.AdminTLS.CertFile, TLSKeyFile: cfg.AdminTLS.KeyFile}, src, log)
	if err := adm.Listen(); err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	go func() {
		if err := adm.Serve(); err != nil {
			log.Error("admin API stopped", "err", err)
		}
	}()
	log.Info("admin API", "addr", adm.Addr())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = adm.Shutdown(ctx)
		cancel()
	}, nil
}
