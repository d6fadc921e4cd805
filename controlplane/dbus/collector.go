package dbus

import (
	"context"
	"encoding/json"
	"net/netip"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/sluice-flow/sluice/dataplane/collector"
)

// Collector is what io.sluice.Collector1 calls in the collector process.
// Its methods are called from the bus connection's goroutines, one per
// call, and must be safe for concurrent use; none may wait on the event
// loops for long (Drain excepted, bounded by its context).
type Collector interface {
	Status() CollectorStatus
	Exporters() []collector.ExporterStatus
	Templates() []collector.TemplateStatus
	// AddListener opens a listener ("udp://:2055"); RemoveListener closes
	// one. A URL that does not parse, or names no open listener, is an
	// *admin.InputError.
	AddListener(ctx context.Context, url string) error
	RemoveListener(ctx context.Context, url string) error
	// Drain stops reading UDP, pauses TCP sessions and reports not ready;
	// it returns once the collector has handed everything it read to the
	// rings, or when ctx ends.
	Drain(ctx context.Context) error
	Ready() bool
	Listeners() []string
	// AppendMetrics appends the process's data-plane metrics (not the
	// process_* ones: the controller adds its own).
	AppendMetrics(dst []byte) []byte
}

// CollectorStatus is Collector1.Status's a{sv}: ready (b), draining (b),
// listeners (as), exporters (u), templates (u), messages (t), records (t),
// started_unix_ns (x), version (s).
type CollectorStatus struct {
	Ready     bool
	Draining  bool
	Listeners []string
	Exporters uint32
	Templates uint32
	Messages  uint64
	Records   uint64
	Started   time.Time
	// Version is the build; the object fills it in.
	Version string
}

func (s CollectorStatus) vardict() map[string]godbus.Variant {
	ls := s.Listeners
	if ls == nil {
		ls = []string{}
	}
	return map[string]godbus.Variant{
		"ready":           godbus.MakeVariant(s.Ready),
		"draining":        godbus.MakeVariant(s.Draining),
		"listeners":       godbus.MakeVariant(ls),
		"exporters":       godbus.MakeVariant(s.Exporters),
		"templates":       godbus.MakeVariant(s.Templates),
		"messages":        godbus.MakeVariant(s.Messages),
		"records":         godbus.MakeVariant(s.Records),
		"started_unix_ns": godbus.MakeVariant(unixNano(s.Started)),
		"version":         godbus.MakeVariant(s.Version),
	}
}

func parseCollectorStatus(m map[string]godbus.Variant) CollectorStatus {
	var s CollectorStatus
	get(m, "ready", &s.Ready)
	get(m, "draining", &s.Draining)
	get(m, "listeners", &s.Listeners)
	get(m, "exporters", &s.Exporters)
	get(m, "templates", &s.Templates)
	get(m, "messages", &s.Messages)
	get(m, "records", &s.Records)
	var ns int64
	if get(m, "started_unix_ns", &ns) && ns != 0 {
		s.Started = time.Unix(0, ns).UTC()
	}
	get(m, "version", &s.Version)
	return s
}

// get stores m[key] in dst when it holds dst's type.
func get[T any](m map[string]godbus.Variant, key string, dst *T) bool {
	v, ok := m[key].Value().(T)
	if ok {
		*dst = v
	}
	return ok
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// CollectorObject is /io/sluice/Collector1. Hand it to a Service; the
// collector calls TemplateLearned, ExporterSeen and Draining from anywhere,
// its event loops included: they queue without blocking.
type CollectorObject struct {
	impl    Collector
	version string
	sig     *emitter
}

// NewCollectorObject returns the object for impl.
func NewCollectorObject(impl Collector) *CollectorObject {
	return &CollectorObject{impl: impl, version: buildVersion(), sig: newEmitter(CollectorPath, CollectorInterface)}
}

// TemplateLearned queues the TemplateLearned signal. exporter's port is 0
// unless templates are scoped by port. It never blocks.
func (o *CollectorObject) TemplateLearned(exporter netip.AddrPort, domain uint32, id uint16) {
	o.sig.queue(sig{kind: sigTemplateLearned, exporter: exporter, domain: domain, id: id})
}

// ExporterSeen queues the ExporterSeen signal for a new exporter. It never
// blocks.
func (o *CollectorObject) ExporterSeen(exporter netip.AddrPort) {
	o.sig.queue(sig{kind: sigExporterSeen, exporter: exporter})
}

// Draining queues the Draining signal (Drain queues it itself; call it for
// a drain started otherwise, such as SIGTERM).
func (o *CollectorObject) Draining() { o.sig.queue(sig{kind: sigDraining}) }

func (o *CollectorObject) spec() objectSpec {
	return objectSpec{
		path:    CollectorPath,
		iface:   CollectorInterface,
		methods: collectorMethods{o},
		xml:     collectorXML,
		emitter: o.sig,
		props: map[string]prop{
			"Ready":     {get: func() any { return o.impl.Ready() }},
			"Listeners": {get: func() any { return nonNil(o.impl.Listeners()) }},
			"Version":   {get: func() any { return o.version }},
			"SignalIntervalMs": {
				get: func() any { return uint32(time.Duration(o.sig.interval.Load()) / time.Millisecond) },
				set: o.sig.setInterval,
			},
		},
	}
}

// collectorMethods holds the exported methods alone, so that the
// object's Go API (TemplateLearned...) is not exported on the bus.
type collectorMethods struct{ o *CollectorObject }

func (m collectorMethods) Status() (map[string]godbus.Variant, *godbus.Error) {
	s := m.o.impl.Status()
	s.Version = m.o.version
	return s.vardict(), nil
}

func (m collectorMethods) Exporters() (string, *godbus.Error) {
	v := m.o.impl.Exporters()
	if v == nil {
		v = []collector.ExporterStatus{}
	}
	return jsonString(v)
}

func (m collectorMethods) Templates() (string, *godbus.Error) {
	v := m.o.impl.Templates()
	if v == nil {
		v = []collector.TemplateStatus{}
	}
	return jsonString(v)
}

func (m collectorMethods) Metrics() (string, *godbus.Error) {
	return string(m.o.impl.AppendMetrics(nil)), nil
}

func (m collectorMethods) AddListener(url string) *godbus.Error {
	ctx, cancel := context.WithTimeout(context.Background(), callWait)
	defer cancel()
	return replyError(m.o.impl.AddListener(ctx, url))
}

func (m collectorMethods) RemoveListener(url string) *godbus.Error {
	ctx, cancel := context.WithTimeout(context.Background(), callWait)
	defer cancel()
	return replyError(m.o.impl.RemoveListener(ctx, url))
}

// maxDrain bounds Drain's timeout_ms.
const maxDrain = 10 * time.Minute

func (m collectorMethods) Drain(timeoutMS uint32) *godbus.Error {
	m.o.Draining()
	ctx, cancel := context.WithTimeout(context.Background(), min(time.Duration(timeoutMS)*time.Millisecond, maxDrain))
	defer cancel()
	return replyError(m.o.impl.Drain(ctx))
}

// callWait bounds a method's wait on the data plane.
const callWait = 10 * time.Second

func jsonString(v any) (string, *godbus.Error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", godbus.NewError(ErrFailed, []any{"encoding: " + err.Error()})
	}
	return string(b), nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
