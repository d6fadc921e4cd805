package controller

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-flow/sluice/controlplane/admin"
	"github.com/sluice-flow/sluice/controlplane/buildinfo"
	"github.com/sluice-flow/sluice/controlplane/dbus"
	"github.com/sluice-flow/sluice/dataplane/collector"
	"github.com/sluice-flow/sluice/dataplane/promtext"
)

// Config configures the controller. The zero value is the default.
type Config struct {
	// BusDir holds the bus socket and its configuration. Default:
	// /run/sluice (the bus is then unix:path=/run/sluice/bus, the
	// default of the other two processes).
	BusDir string
	// BusAddress, when set, is a bus someone else runs: no daemon is
	// started.
	BusAddress string
	// DaemonBinary is the dbus-daemon to run. Default: from $PATH.
	DaemonBinary string
	// API is the HTTP listen address. Default: :8080.
	API string
	// TLSCertFile and TLSKeyFile, when set, serve the API over TLS (both
	// or neither; the files are reloaded when they change). Default: HTTP.
	TLSCertFile, TLSKeyFile string
	// Token guards the mutations, the pipeline and the bus bridge.
	Token string
	// Store keeps the pipeline in force. Default: a FileStore at
	// StateDir/pipeline.json.
	Store PipelineStore
	// StateDir is the controller's volume. Default: /var/lib/sluice.
	StateDir string
	// Allow lists the names the bus bridge reaches. Default: DefaultAllow.
	Allow []string
	// ShutdownTimeout bounds the drain on shutdown. Default: 30 s.
	ShutdownTimeout time.Duration
	// Link tunes the controller's bus connection (backoffs); its Address
	// is set by the controller.
	Link dbus.LinkConfig
	// Service, when set, gets a port for each listener added at run time
	// (kept when a pod removes its listener: every pod shares it). nil: off.
	Service *ServicePorts
}

func (c Config) withDefaults() Config {
	if c.BusDir == "" {
		c.BusDir = "/run/sluice"
	}
	if c.API == "" {
		c.API = ":8080"
	}
	if c.StateDir == "" {
		c.StateDir = "/var/lib/sluice"
	}
	if c.Store == nil {
		c.Store = FileStore{Path: filepath.Join(c.StateDir, "pipeline.json")}
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	return c
}

// Controller runs the pod's bus and HTTP API. Run drives it; the rest is
// safe for concurrent use.
type Controller struct {
	cfg    Config
	log    *slog.Logger
	daemon *dbus.Daemon // nil with BusAddress
	client *dbus.Client
	bridge *Bridge
	api    *admin.Server
	start  time.Time

	applyMu  sync.Mutex // serialises pipeline changes and re-applies
	draining atomic.Bool
	drainMu  sync.Mutex // serialises drains; drained is set under it
	drained  bool
	started  chan struct{}

	reapplied, reapplyFailures, storeFailures atomic.Uint64
	scrapeFailures                            [2]atomic.Uint64 // collector, mediator
}

// New builds a controller; nothing runs until Run.
func New(cfg Config, log *slog.Logger) (*Controller, error) {
	cfg = cfg.withDefaults()
	c := &Controller{cfg: cfg, log: log, start: time.Now(), started: make(chan struct{})}
	addr := cfg.BusAddress
	if addr == "" {
		d, err := dbus.NewDaemon(dbus.DaemonConfig{Dir: cfg.BusDir, Binary: cfg.DaemonBinary}, log)
		if err != nil {
			return nil, err
		}
		c.daemon, addr = d, d.Address()
	}
	lc := cfg.Link
	lc.Address, lc.Component = addr, "controller"
	c.client = dbus.NewClient(lc, log)
	c.client.WatchOwners(c.ownerChanged)
	c.bridge = NewBridge(c.client, cfg.Allow, log)
	c.api = admin.New(admin.Config{Addr: cfg.API, Token: cfg.Token,
		TLSCertFile: cfg.TLSCertFile, TLSKeyFile: cfg.TLSKeyFile, Mounts: []admin.Mount{c.bridge.Mount()}}, (*source)(c), log)
	return c, nil
}

// BusAddress is the pod's bus.
func (c *Controller) BusAddress() string {
	if c.daemon != nil {
		return c.daemon.Address()
	}
	return c.cfg.BusAddress
}

// Daemon is the bus daemon the controller runs (nil with BusAddress).
func (c *Controller) Daemon() *dbus.Daemon { return c.daemon }

// Client is the controller's bus client.
func (c *Controller) Client() *dbus.Client { return c.client }

// APIAddr is the HTTP API's bound address, once Started.
func (c *Controller) APIAddr() string { return c.api.Addr() }

// Started is closed once the bus and the API are up.
func (c *Controller) Started() <-chan struct{} { return c.started }

// Run starts the bus daemon, connects, serves the API until ctx ends, then
// drains the pod (collector, then mediator) within ShutdownTimeout and
// stops.
func (c *Controller) Run(ctx context.Context) error {
	busCtx, stopBus := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait() // after stopBus
	defer stopBus()
	if c.daemon != nil {
		if err := c.daemon.Start(ctx); err != nil {
			return err
		}
		wg.Add(1)
		go func() { defer wg.Done(); c.daemon.Run(busCtx) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); c.client.Run(busCtx) }()
	if err := c.api.Listen(); err != nil {
		return fmt.Errorf("controller: API: %w", err)
	}
	apiDone := make(chan error, 1)
	go func() { apiDone <- c.api.Serve() }()
	c.log.Info("controller API", "addr", c.api.Addr(), "tls", c.api.TLS(), "bus", c.BusAddress())
	close(c.started)

	var runErr error
	select {
	case <-ctx.Done():
		c.log.Info("controller shutting down: draining the pod", "reason", context.Cause(ctx).Error())
		dctx, cancel := context.WithTimeout(context.Background(), c.cfg.ShutdownTimeout)
		if err := (*source)(c).Drain(dctx); err != nil {
			c.log.Warn("drain on shutdown", "err", err)
		}
		cancel()
	case runErr = <-apiDone:
	}
	c.bridge.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = c.api.Shutdown(sctx)
	cancel()
	return runErr
}

// ownerChanged puts the stored pipeline back when the mediator (re)appears
// on the bus.
func (c *Controller) ownerChanged(name, _, newOwner string) {
	if name != dbus.MediatorName || newOwner == "" {
		return
	}
	go c.reapply(newOwner)
}

// reapply gives the mediator the stored pipeline unless it runs it already.
func (c *Controller) reapply(owner string) {
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	file, err := c.cfg.Store.Load(ctx)
	if err != nil {
		c.reapplyFailures.Add(1)
		c.log.Warn("loading the stored pipeline", "err", err)
		return
	}
	if file == nil {
		return
	}
	med := c.client.Mediator()
	if _, cur, err := med.Pipeline(ctx); err == nil && bytes.Equal(cur, file) {
		return
	}
	v, err := med.ApplyPipeline(ctx, file)
	if err != nil {
		c.reapplyFailures.Add(1)
		c.log.Warn("re-applying the stored pipeline to the mediator", "owner", owner, "err", err)
		return
	}
	c.reapplied.Add(1)
	c.log.Info("stored pipeline re-applied to the mediator", "owner", owner, "version", v)
}

// source is the Controller as the admin API sees it: every view and
// operation is a D-Bus call to the collector or the mediator.
type source Controller

var (
	_ admin.PipelineSource = (*source)(nil)
	_ admin.ViewSource     = (*source)(nil)
	_ admin.StatusSource   = (*source)(nil)
	_ admin.ListenerSource = (*source)(nil)
	_ admin.DrainSource    = (*source)(nil)
)

// readWait bounds the calls behind /readyz and /metrics.
const readWait = 2 * time.Second

func (s *source) Ready() bool {
	if s.draining.Load() {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), readWait)
	defer cancel()
	cr, err := s.client.Collector().Ready(ctx)
	if err != nil || !cr {
		return false
	}
	mr, err := s.client.Mediator().Ready(ctx)
	return err == nil && mr
}

var (
	daemonRestarts  = promtext.Counter("sluice_dbus_daemon_restarts_total", "Restarts of the pod's bus daemon after it died.")
	reapplied       = promtext.Counter("sluice_controller_pipeline_reapplied_total", "Stored pipelines put back when the mediator (re)started.")
	reapplyFailures = promtext.Counter("sluice_controller_pipeline_reapply_errors_total", "Failures to put the stored pipeline back.")
	storeFailures   = promtext.Counter("sluice_controller_pipeline_store_errors_total", "Pipelines put in force but not stored.")
	scrapeErrors    = promtext.Counter("sluice_controller_scrape_errors_total", "Processes whose metrics could not be read over the bus, by component.")
)

// AppendMetrics appends the controller's own metrics, then the
// collector's and the mediator's, read over the bus and merged so that
// each family appears once and no series twice.
func (s *source) AppendMetrics(b []byte) []byte {
	w := promtext.NewWriter(nil)
	if s.daemon != nil {
		w.Uint(daemonRestarts, s.daemon.Restarts())
	}
	w.Uint(reapplied, s.reapplied.Load())
	w.Uint(reapplyFailures, s.reapplyFailures.Load())
	w.Uint(storeFailures, s.storeFailures.Load())
	own := s.client.AppendMetrics(w.Bytes())
	own = s.bridge.AppendMetrics(own)

	ctx, cancel := context.WithTimeout(context.Background(), readWait)
	defer cancel()
	col, cerr := s.client.Collector().Metrics(ctx)
	if cerr != nil {
		s.scrapeFailures[0].Add(1)
	}
	med, merr := s.client.Mediator().Metrics(ctx)
	if merr != nil {
		s.scrapeFailures[1].Add(1)
	}
	w = promtext.NewWriter(own)
	w.Uint(scrapeErrors, s.scrapeFailures[0].Load(), "component", "collector")
	w.Uint(scrapeErrors, s.scrapeFailures[1].Load(), "component", "mediator")
	return MergeExpositions(b, w.Bytes(), []byte(col), []byte(med))
}

func (s *source) Exporters() []collector.ExporterStatus {
	ctx, cancel := context.WithTimeout(context.Background(), readWait)
	defer cancel()
	v, err := s.ExportersView(ctx)
	if err != nil {
		return []collector.ExporterStatus{}
	}
	return v
}

func (s *source) Templates() []collector.TemplateStatus {
	ctx, cancel := context.WithTimeout(context.Background(), readWait)
	defer cancel()
	v, err := s.TemplatesView(ctx)
	if err != nil {
		return []collector.TemplateStatus{}
	}
	return v
}

func (s *source) ExportersView(ctx context.Context) ([]collector.ExporterStatus, error) {
	return s.client.Collector().Exporters(ctx)
}

func (s *source) TemplatesView(ctx context.Context) ([]collector.TemplateStatus, error) {
	return s.client.Collector().Templates(ctx)
}

func (s *source) Status(ctx context.Context) (admin.Status, error) {
	st := admin.Status{Version: buildinfo.Read().Version, Started: s.start.UTC(), Listeners: []string{}, Draining: s.draining.Load()}
	busUp := false
	if _, err := s.client.Conn(); err == nil {
		busUp = true
	}
	st.Components = append(st.Components, admin.Component{Name: "bus", Up: busUp, Ready: busUp})
	col := admin.Component{Name: "collector"}
	if cs, err := s.client.Collector().Status(ctx); err != nil {
		col.Error = err.Error()
	} else {
		col.Up, col.Ready = true, cs.Ready
		col.Owner, _ = s.client.NameOwner(ctx, dbus.CollectorName)
		st.Listeners = append(st.Listeners, cs.Listeners...)
		st.Exporters, st.Templates = int(cs.Exporters), int(cs.Templates)
		st.Draining = st.Draining || cs.Draining
	}
	med := admin.Component{Name: "mediator"}
	if ms, err := s.client.Mediator().Status(ctx); err != nil {
		med.Error = err.Error()
	} else {
		med.Up, med.Ready = true, ms.Ready
		med.Owner, _ = s.client.NameOwner(ctx, dbus.MediatorName)
		st.Pipeline = ms.PipelineVersion
	}
	st.Components = append(st.Components, col, med)
	st.Ready = col.Ready && med.Ready && !st.Draining
	return st, nil
}

func (s *source) Pipeline() (uint64, []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), readWait)
	defer cancel()
	v, file, err := s.client.Mediator().Pipeline(ctx)
	if err == nil {
		return v, file
	}
	// The mediator is away: show what it will get back.
	file, _ = s.cfg.Store.Load(ctx)
	return 0, file
}

// SetPipeline puts file in force in the mediator, then stores it; a file
// the mediator refuses is an *admin.InputError and is not stored.
func (s *source) SetPipeline(ctx context.Context, file []byte) (uint64, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	v, err := s.client.Mediator().ApplyPipeline(ctx, file)
	if err != nil {
		return 0, err
	}
	if err := s.cfg.Store.Save(ctx, file, v); err != nil {
		s.storeFailures.Add(1)
		s.log.Error("pipeline in force but not stored: a mediator restart will lose it", "version", v, "err", err)
		return v, fmt.Errorf("controller: pipeline %d in force but not stored: %w", v, err)
	}
	return v, nil
}

func (s *source) AddListener(ctx context.Context, url string) error {
	if err := s.client.Collector().AddListener(ctx, url); err != nil {
		return err
	}
	if s.cfg.Service != nil {
		if err := s.cfg.Service.Add(ctx, url); err != nil {
			s.log.Error("listener open but the Service not patched: exporters outside the pod cannot reach it", "url", url, "err", err)
			return fmt.Errorf("controller: listener %s open, Service not patched: %w", url, err)
		}
	}
	return nil
}

func (s *source) RemoveListener(ctx context.Context, url string) error {
	// The Service keeps the port: every pod shares it, and the others may
	// still listen there.
	return s.client.Collector().RemoveListener(ctx, url)
}

// Drain drains the pod: the collector stops reading and hands what it
// read to the rings, then the mediator empties the rings into the outputs
// and flushes.
//
// Drains are serialised and a drain after one that succeeded returns at
// once: the deployment's preStop hooks (one per container, run at the same
// time) and the shutdown on SIGTERM all ask for it, and the collector stops
// once drained, so a second call would find it gone mid-call.
func (s *source) Drain(ctx context.Context) error {
	s.draining.Store(true)
	s.drainMu.Lock()
	defer s.drainMu.Unlock()
	if s.drained {
		return nil
	}
	var errs []error
	if err := s.client.Collector().Drain(ctx); err != nil && !errors.Is(err, dbus.ErrNotRunning) {
		errs = append(errs, fmt.Errorf("collector: %w", err))
	}
	if err := s.client.Mediator().Flush(ctx); err != nil && !errors.Is(err, dbus.ErrNotRunning) {
		errs = append(errs, fmt.Errorf("mediator: %w", err))
	}
	s.drained = len(errs) == 0
	return errors.Join(errs...)
}
