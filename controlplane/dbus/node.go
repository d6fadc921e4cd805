package dbus

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sluice-flow/sluice/controlplane/admin"
	"github.com/sluice-flow/sluice/controlplane/node"
	"github.com/sluice-flow/sluice/dataplane/collector"
)

// NodeBus is the D-Bus side of `sluice collector` and `sluice mediator`
// (node.Bus): it publishes a process's object on the pod's bus and keeps
// it there until ctx ends. Register it with node.RegisterBus.
type NodeBus struct {
	// Log is the logger of the D-Bus side. Default: the process's.
	Log *slog.Logger
	// Link tunes the reconnection (backoffs); Address and Component are
	// set per process.
	Link LinkConfig
}

var _ node.Bus = NodeBus{}

func (b NodeBus) logger(process *slog.Logger) *slog.Logger {
	if b.Log != nil {
		return b.Log
	}
	if process != nil {
		return process
	}
	return slog.Default()
}

// ServeCollector publishes io.sluice.Collector1 for p, with the
// collector's hooks sending TemplateLearned and ExporterSeen.
func (b NodeBus) ServeCollector(ctx context.Context, address string, p *node.CollectorProcess) error {
	ad := &collectorAdapter{p: p, started: time.Now()}
	obj := NewCollectorObject(ad)
	lc := b.Link
	lc.Address, lc.Component = address, "collector"
	ad.svc = NewService(lc, CollectorName, b.logger(p.Log()), obj)
	p.SetBusMetrics(ad.svc.AppendMetrics)
	p.SetHooks(collector.Hooks{
		TemplateLearned: func(e collector.TemplateEvent) { obj.TemplateLearned(e.Exporter, e.Domain, e.ID) },
		ExporterSeen:    func(e collector.ExporterEvent) { obj.ExporterSeen(e.Exporter) },
	})
	ad.svc.Run(ctx)
	return nil
}

// ServeMediator publishes io.sluice.Mediator1 for p, with PipelineApplied
// sent for every pipeline put in force (SIGHUP reloads too).
func (b NodeBus) ServeMediator(ctx context.Context, address string, p *node.MediatorProcess) error {
	ad := &mediatorAdapter{p: p, started: time.Now()}
	obj := NewMediatorObject(ad)
	lc := b.Link
	lc.Address, lc.Component = address, "mediator"
	ad.svc = NewService(lc, MediatorName, b.logger(p.Log()), obj)
	p.SetBusMetrics(ad.svc.AppendMetrics)
	p.OnPipelineApplied(obj.PipelineApplied)
	ad.svc.Run(ctx)
	return nil
}

// collectorAdapter is a node.CollectorProcess as a Collector.
type collectorAdapter struct {
	p       *node.CollectorProcess
	svc     *Service
	started time.Time
}

func (a *collectorAdapter) Status() CollectorStatus {
	st := a.p.Status()
	return CollectorStatus{
		Ready: st.Ready, Draining: st.Draining, Listeners: st.Listeners,
		Exporters: uint32(len(a.p.Exporters())), Templates: uint32(st.Templates),
		Messages: st.Packets, Records: st.Records, Started: a.started,
	}
}

func (a *collectorAdapter) Exporters() []collector.ExporterStatus { return a.p.Exporters() }
func (a *collectorAdapter) Templates() []collector.TemplateStatus { return a.p.Templates() }
func (a *collectorAdapter) Ready() bool                           { return a.p.Ready() }
func (a *collectorAdapter) Listeners() []string                   { return a.p.Listeners() }

// AddListener checks the URL first, so that a malformed one is the
// caller's error (InvalidInput), not the collector's.
func (a *collectorAdapter) AddListener(_ context.Context, url string) error {
	if _, err := collector.ParseListeners([]string{url}); err != nil {
		return &admin.InputError{Err: err}
	}
	return listenerError(a.p.AddListener(url))
}

func (a *collectorAdapter) RemoveListener(_ context.Context, url string) error {
	return listenerError(a.p.RemoveListener(url))
}

func listenerError(err error) error {
	if errors.Is(err, collector.ErrListenerExists) || errors.Is(err, collector.ErrNoListener) || errors.Is(err, collector.ErrStartListener) {
		return &admin.InputError{Err: err}
	}
	return err
}

func (a *collectorAdapter) Drain(ctx context.Context) error {
	wait := 30 * time.Second
	if d, ok := ctx.Deadline(); ok {
		wait = time.Until(d)
	}
	return a.p.Drain(wait)
}

// AppendMetrics appends the process's metrics, the bus's included (the
// controller adds the process_* families of its own).
func (a *collectorAdapter) AppendMetrics(b []byte) []byte { return a.p.AppendMetrics(b) }

// mediatorAdapter is a node.MediatorProcess as a Mediator.
type mediatorAdapter struct {
	p       *node.MediatorProcess
	svc     *Service
	started time.Time
}

func (a *mediatorAdapter) ApplyPipeline(ctx context.Context, file []byte) (uint64, error) {
	return a.p.ApplyPipeline(ctx, file)
}
func (a *mediatorAdapter) Pipeline() (uint64, []byte)      { return a.p.Pipeline() }
func (a *mediatorAdapter) Flush(ctx context.Context) error { return a.p.Flush(ctx) }
func (a *mediatorAdapter) Ready() bool                     { return a.p.Ready() }

func (a *mediatorAdapter) Status() MediatorStatus {
	st := a.p.Status()
	return MediatorStatus{
		Ready: st.Ready, PipelineVersion: st.PipelineVersion, Rings: uint32(st.Rings),
		RingsAttached: uint32(st.Rings), Records: st.Records, Started: a.started,
	}
}

func (a *mediatorAdapter) AppendMetrics(b []byte) []byte { return a.p.AppendMetrics(b) }
