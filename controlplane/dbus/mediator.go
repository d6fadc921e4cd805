package dbus

import (
	"context"
	"errors"
	"strconv"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/sluice-flow/sluice/controlplane/admin"
)

// Mediator is what io.sluice.Mediator1 calls in the mediator process. Its
// methods are called from the bus connection's goroutines, one per call,
// and must be safe for concurrent use.
type Mediator interface {
	// ApplyPipeline compiles file and puts it in force between two ring
	// entries, returning its version; a file that does not compile is an
	// *admin.InputError naming the line and the reason, and the running
	// pipeline stays.
	ApplyPipeline(ctx context.Context, file []byte) (uint64, error)
	// Pipeline returns the version and file of the pipeline in force.
	Pipeline() (version uint64, file []byte)
	Status() MediatorStatus
	// Flush emits the aggregates held and flushes the outputs.
	Flush(ctx context.Context) error
	// Ready reports whether the rings are attached and the pipeline runs.
	Ready() bool
	// AppendMetrics appends the process's data-plane metrics.
	AppendMetrics(dst []byte) []byte
}

// MediatorStatus is Mediator1.Status's a{sv}: ready (b), pipeline_version
// (t), rings (u), rings_attached (u), records (t), started_unix_ns (x),
// version (s).
type MediatorStatus struct {
	Ready           bool
	PipelineVersion uint64
	Rings           uint32
	RingsAttached   uint32
	Records         uint64
	Started         time.Time
	// Version is the build; the object fills it in.
	Version string
}

func (s MediatorStatus) vardict() map[string]godbus.Variant {
	return map[string]godbus.Variant{
		"ready":            godbus.MakeVariant(s.Ready),
		"pipeline_version": godbus.MakeVariant(s.PipelineVersion),
		"rings":            godbus.MakeVariant(s.Rings),
		"rings_attached":   godbus.MakeVariant(s.RingsAttached),
		"records":          godbus.MakeVariant(s.Records),
		"started_unix_ns":  godbus.MakeVariant(unixNano(s.Started)),
		"version":          godbus.MakeVariant(s.Version),
	}
}

func parseMediatorStatus(m map[string]godbus.Variant) MediatorStatus {
	var s MediatorStatus
	get(m, "ready", &s.Ready)
	get(m, "pipeline_version", &s.PipelineVersion)
	get(m, "rings", &s.Rings)
	get(m, "rings_attached", &s.RingsAttached)
	get(m, "records", &s.Records)
	var ns int64
	if get(m, "started_unix_ns", &ns) && ns != 0 {
		s.Started = time.Unix(0, ns).UTC()
	}
	get(m, "version", &s.Version)
	return s
}

// MediatorObject is /io/sluice/Mediator1. The mediator calls
// PipelineApplied from anywhere; it queues without blocking.
type MediatorObject struct {
	impl    Mediator
	version string
	sig     *emitter
}

// NewMediatorObject returns the object for impl.
func NewMediatorObject(impl Mediator) *MediatorObject {
	return &MediatorObject{impl: impl, version: buildVersion(), sig: newEmitter(MediatorPath, MediatorInterface)}
}

// PipelineApplied queues the PipelineApplied signal. ApplyPipeline queues
// it itself; call it for a pipeline put in force otherwise (SIGHUP).
func (o *MediatorObject) PipelineApplied(version uint64) {
	o.sig.queue(sig{kind: sigPipelineApplied, version: version})
}

func (o *MediatorObject) spec() objectSpec {
	return objectSpec{
		path:    MediatorPath,
		iface:   MediatorInterface,
		methods: mediatorMethods{o},
		xml:     mediatorXML,
		emitter: o.sig,
		props: map[string]prop{
			"Ready":           {get: func() any { return o.impl.Ready() }},
			"PipelineVersion": {get: func() any { v, _ := o.impl.Pipeline(); return v }},
			"Version":         {get: func() any { return o.version }},
			"SignalIntervalMs": {
				get: func() any { return uint32(time.Duration(o.sig.interval.Load()) / time.Millisecond) },
				set: o.sig.setInterval,
			},
		},
	}
}

type mediatorMethods struct{ o *MediatorObject }

func (m mediatorMethods) ApplyPipeline(yaml string) (uint64, *godbus.Error) {
	if len(yaml) > MaxPipelineSize {
		return 0, godbus.NewError(ErrTooLarge, []any{"pipeline of " + strconv.Itoa(len(yaml)) + " bytes; at most " + strconv.Itoa(MaxPipelineSize)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), callWait)
	defer cancel()
	v, err := m.o.impl.ApplyPipeline(ctx, []byte(yaml))
	if err != nil {
		var ie *admin.InputError
		if errors.As(err, &ie) {
			return 0, godbus.NewError(ErrInvalidPipeline, []any{err.Error()})
		}
		return 0, replyError(err)
	}
	m.o.PipelineApplied(v)
	return v, nil
}

func (m mediatorMethods) Pipeline() (uint64, string, *godbus.Error) {
	v, file := m.o.impl.Pipeline()
	return v, string(file), nil
}

func (m mediatorMethods) Status() (map[string]godbus.Variant, *godbus.Error) {
	s := m.o.impl.Status()
	s.Version = m.o.version
	return s.vardict(), nil
}

func (m mediatorMethods) Flush() *godbus.Error {
	ctx, cancel := context.WithTimeout(context.Background(), callWait)
	defer cancel()
	return replyError(m.o.impl.Flush(ctx))
}

func (m mediatorMethods) Metrics() (string, *godbus.Error) {
	return string(m.o.impl.AppendMetrics(nil)), nil
}
