// Package mediator is the consumer side of the collector's rings: it turns
// entries back into records and runs them through the pipeline snapshot in
// force, which feeds the outputs. A new snapshot replaces the old one
// between two entries, so every record goes through exactly one.
package mediator

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-flow/sluice/dataplane/entry"
	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
	"github.com/sluice-flow/sluice/dataplane/pipeline"
	"github.com/sluice-flow/sluice/dataplane/promtext"
	"github.com/sluice-flow/sluice/dataplane/ratelog"
	"github.com/sluice-flow/sluice/dataplane/ring"
)

// Mediator reads the rings, from one goroutine or from several workers
// (Config.Workers) that each own some of them, and feeds the pipeline
// snapshot in force.
type Mediator struct {
	log   *slog.Logger
	logs  ratelog.Limiter
	rings []*ringState
	// cur is the snapshot Run drives (one goroutine) and curLane its one
	// lane; live mirrors it for other goroutines; next is one waiting to
	// be adopted.
	cur     *pipeline.Snapshot
	curLane *pipeline.Lane
	live    atomic.Pointer[pipeline.Snapshot]
	next    atomic.Pointer[pendingSnap]
	applyMu sync.Mutex
	version uint64

	records    atomic.Uint64 // data records decoded
	optRecords atomic.Uint64 // of which options records
	entries    atomic.Uint64
	unknownFP  atomic.Uint64 // data entries whose template never came
	badEntries atomic.Uint64
	replayed   atomic.Uint64 // records read again after a restart

	// durable: the rings outlive this process (file rings), so entries
	// are released only once the outputs have flushed what came of them.
	durable  bool
	dir      *ringDir // set by NewDir; owned by Run's goroutine
	gaps     restartGaps
	flushReq chan chan struct{}
	applied  appliedHooks

	// With more than one worker (workers.go): the generation they follow.
	workers   []*worker
	gen       atomic.Pointer[generation]
	promoteMu sync.Mutex
}

type tplKey struct {
	exporter netip.AddrPort
	session  uint64 // TCP session (0: UDP): its templates are its own
	domain   uint32
	version  uint16
	id       uint16
}

// ringState is the decoding state of one ring: layouts by fingerprint and
// by template key (for sub-template lists).
type ringState struct {
	c    *ring.Consumer
	file *ring.File // nil for a ring in process memory
	gen  uint64
	// replayEnd is the checkpoint a former consumer left: entries ending
	// at or before it were handed on before and are counted as replayed.
	replayEnd  uint64
	replaying  bool // the entry being decoded is one of those
	batch      []batched
	superseded bool     // a newer generation holds the path: drain, then drop
	state      *os.File // the templates read, for a successor (file rings)
	stateBuf   []byte
	byFP       map[uint64]*ipfix.Layout
	byKey      map[tplKey]*ipfix.Layout
	hdr        entry.Header
	msg        ipfix.Message
	rec        ipfix.Record
	meta       jsonl.Meta
	scope      resolver
	tr         ipfix.TemplateRecord
}

type resolver struct {
	rs  *ringState
	key tplKey
}

// Resolve finds a sibling template: scoped by the exporter's address and
// port, or by its address alone (the collector's default scope).
func (r *resolver) Resolve(id uint16) *ipfix.Layout {
	k := r.key
	k.id = id
	if l := r.rs.byKey[k]; l != nil {
		return l
	}
	k.exporter = netip.AddrPortFrom(k.exporter.Addr(), 0)
	return r.rs.byKey[k]
}

type pendingSnap struct {
	s    *pipeline.Snapshot
	done chan struct{}
	err  error // set before done closes: ErrSuperseded
}

// New returns a mediator that passes every record unchanged to outputs
// (and closes them in Close); each ring must have no other consumer.
func New(rings []*ring.Ring, outputs []export.Output, log *slog.Logger) *Mediator {
	return NewPipeline(rings, pipeline.Passthrough(outputs), log)
}

// NewPipeline returns a mediator running snapshot first until Apply
// replaces it, reading every ring from one goroutine.
func NewPipeline(rings []*ring.Ring, first *pipeline.Snapshot, log *slog.Logger) *Mediator {
	return NewPipelineConfig(rings, first, Config{Workers: 1}, log)
}

// NewPipelineConfig is NewPipeline with the workers cfg asks for.
func NewPipelineConfig(rings []*ring.Ring, first *pipeline.Snapshot, cfg Config, log *slog.Logger) *Mediator {
	if log == nil {
		log = slog.Default()
	}
	m := &Mediator{log: log, logs: ratelog.Limiter{Every: 10 * time.Second}, cur: first, version: 1,
		flushReq: make(chan chan struct{})}
	first.Version = 1
	m.live.Store(first)
	for _, r := range rings {
		m.rings = append(m.rings, newRingState(r))
	}
	if n := cfg.workers(len(rings)); n > 1 {
		m.startWorkers(first, n)
	} else {
		m.curLane = first.Lanes(1)[0]
	}
	return m
}

func newRingState(r *ring.Ring) *ringState {
	rs := &ringState{c: r.Consumer(), byFP: map[uint64]*ipfix.Layout{}, byKey: map[tplKey]*ipfix.Layout{}}
	rs.byFP[ipfix.V5Layout().Fingerprint] = ipfix.V5Layout()
	rs.scope.rs = rs
	if cp, tail := r.Checkpointed(), rs.c.Pos(); cp > tail {
		rs.replayEnd = cp
	}
	return rs
}

// ErrNotApplied is returned by Apply when the mediator did not take the
// snapshot in time (it is not running); it is still adopted when Run
// resumes unless another Apply replaces it.
var ErrNotApplied = errors.New("mediator: snapshot not applied in time")

// ErrSuperseded is returned by Apply when a later Apply replaced the
// snapshot before the mediator took it.
var ErrSuperseded = errors.New("mediator: snapshot replaced by a newer one before it ran")

// Apply hands the mediator a new snapshot and waits until it runs: from
// then on records go through it, and the old one has been retired (its
// aggregates emitted, its outputs flushed, outputs only it used closed). It
// returns the snapshot's version.
func (m *Mediator) Apply(ctx context.Context, s *pipeline.Snapshot) (uint64, error) {
	m.applyMu.Lock()
	m.version++
	s.Version = m.version
	p := &pendingSnap{s: s, done: make(chan struct{})}
	if old := m.next.Swap(p); old != nil {
		old.s.Discard() // never ran
		old.err = ErrSuperseded
		close(old.done)
	}
	m.applyMu.Unlock()
	select {
	case <-p.done:
		return s.Version, p.err
	case <-ctx.Done():
		return s.Version, ErrNotApplied
	}
}

// Current returns the snapshot in force (for the API and metrics).
func (m *Mediator) Current() *pipeline.Snapshot { return m.live.Load() }

// adopt switches to a pending snapshot, between two entries.
func (m *Mediator) adopt() {
	p := m.next.Load()
	if p == nil || !m.next.CompareAndSwap(p, nil) {
		return
	}
	old := m.cur
	m.cur, m.curLane = p.s, p.s.Lanes(1)[0]
	m.live.Store(p.s)
	old.Retire()
	close(p.done)
	m.log.Info("pipeline applied", "version", p.s.Version)
	m.applied.send(p.s.Version)
}

// Pauses of Run between rounds. A round that leaves a ring with more is
// followed at once. One that caught up with entries still coming is
// followed by gather, so the next finds a batch: waking once per entry or
// two cost the split pod's mediator, a process of its own, about as much
// CPU as decoding (a ring holds tens of milliseconds of traffic at full
// rate, so gather costs latency, not loss). An empty round backs off from
// idleMin to idleMax.
const (
	gather  = 500 * time.Microsecond
	idleMin = 50 * time.Microsecond
	idleMax = 2 * time.Millisecond
)

// Run consumes until ctx ends, then drains what the rings still hold (call
// it after the collector has stopped for a lossless shutdown), flushes the
// outputs and returns.
func (m *Mediator) Run(ctx context.Context) {
	if m.workers != nil {
		m.runWorkers(ctx)
		return
	}
	idle := 0
	var lastScan time.Time
	for {
		m.adopt()
		if m.dir != nil {
			if now := time.Now(); now.Sub(lastScan) >= scanEvery {
				m.scan()
				lastScan = now
			}
		}
		n, more := m.poll(256)
		m.cur.Tick(time.Now())
		if more {
			continue
		}
		select {
		case <-ctx.Done():
			for n, _ := m.poll(1 << 20); n > 0; n, _ = m.poll(1 << 20) {
			}
			m.gaps.commit(time.Time{}, true)
			m.cur.Tick(time.Now())
			m.flush()
			return
		case done := <-m.flushReq:
			m.flush()
			close(done)
			continue
		default:
		}
		if n > 0 {
			if !m.durable {
				m.flush() // durable rounds flushed already
			}
			idle = 0
			time.Sleep(gather)
			continue
		}
		if idle == 0 {
			m.flush() // going idle: push out what is buffered
		}
		idle++
		time.Sleep(min(time.Duration(idle)*idleMin, idleMax))
	}
}

func (m *Mediator) flush() {
	if err := m.cur.Flush(); err != nil {
		m.logs.Warn(m.log, "output failing; its records are counted as dropped", "err", err)
	}
}

// Close retires the snapshot in force (emitting held aggregates) and
// closes its outputs; call it after Run returned.
func (m *Mediator) Close() error {
	if p := m.next.Swap(nil); p != nil {
		p.s.Discard()
		p.err = ErrNotApplied
		close(p.done)
	}
	if g := m.gen.Load(); g != nil {
		m.cur = g.s
	}
	m.cur.Retire()
	return m.cur.WaitClosed()
}

// poll takes up to max entries from each ring and returns how many it took
// and whether a ring had max to give (it may hold more).
// While a collector restart leaves superseded rings, only those are read:
// the old generation is drained before the new one is followed.
//
// With durable rings the entries are taken in batches (pollDurable) and
// released only after the outputs have flushed at the end of the round: a
// mediator killed meanwhile leaves at most one round (max entries per ring)
// to be read again, and its successor counts those records as replayed.
func (m *Mediator) poll(max int) (total int, more bool) {
	onlyOld := m.dir != nil && m.dir.superseded > 0
	var oldest uint64
	if onlyOld {
		oldest = m.oldestSuperseded()
	}
	for _, rs := range m.rings {
		if onlyOld && (!rs.superseded || rs.gen != oldest) {
			continue
		}
		if m.durable {
			taken := 0
			for taken < max {
				k := m.pollDurable(rs, min(max-taken, batchMax))
				if k == 0 {
					break
				}
				taken += k
			}
			total += taken
			more = more || taken == max
			continue
		}
		taken := 0
		for taken < max {
			b := rs.c.Next()
			if b == nil {
				break
			}
			m.entry(rs, b, m.curLane)
			rs.c.Release()
			taken++
		}
		total += taken
		more = more || taken == max
	}
	if total > 0 {
		m.entries.Add(uint64(total))
		if m.durable {
			m.flush()
			for _, rs := range m.rings {
				rs.c.Publish()
			}
		}
	}
	return total, more
}

// batchMax bounds a durable batch (the views pollDurable keeps).
const batchMax = 256

// batched is an entry moved past but not yet handed on: its view and the
// read position after it.
type batched struct {
	b   []byte
	end uint64
}

// pollDurable takes up to max entries from a durable ring: it moves past
// them (Skip keeps their views valid until Publish), records one
// checkpoint that covers them all, and only then decodes them, so a
// successor reading any of them again counts it as replayed (possibly one
// the killed mediator had not handed on yet: the count is an upper bound).
// A reset entry ends the batch: handling it releases everything up to it.
func (m *Mediator) pollDurable(rs *ringState, max int) int {
	if rs.batch == nil {
		rs.batch = make([]batched, 0, batchMax)
	}
	batch := rs.batch[:0]
	for len(batch) < max {
		b := rs.c.Next()
		if b == nil {
			break
		}
		rs.c.Skip()
		batch = append(batch, batched{b, rs.c.Pos()})
		if len(b) > 0 && entry.Kind(b[0]) == entry.KindReset {
			break
		}
	}
	if len(batch) == 0 {
		return 0
	}
	rs.c.Checkpoint()
	for _, e := range batch {
		rs.replaying = rs.replayEnd != 0 && e.end <= rs.replayEnd
		m.entry(rs, e.b, m.curLane)
	}
	clear(batch) // the views end with the mapping
	rs.batch = batch[:0]
	return len(batch)
}

// entry handles one ring entry; data records go through lane.
func (m *Mediator) entry(rs *ringState, b []byte, lane *pipeline.Lane) {
	h := &rs.hdr
	body, err := entry.Parse(b, h)
	if err != nil {
		m.badEntries.Add(1)
		return
	}
	key := tplKey{h.Exporter, h.Session, h.Domain, h.Version, h.TemplateID}
	switch h.Kind {
	case entry.KindTemplate:
		if err := ipfix.ParseTemplateRecord(body, h.Flags&entry.FlagOptions != 0, h.Flags&entry.FlagV9 != 0, &rs.tr); err != nil {
			m.badEntries.Add(1)
			return
		}
		l, err := ipfix.Compile(&rs.tr)
		if err != nil {
			m.badEntries.Add(1)
			return
		}
		// Bounded by the producer, which sends KindReset before it
		// has announced more than it allows.
		rs.byFP[h.Fingerprint] = l
		rs.byKey[key] = l
		if rs.state != nil {
			m.keepTemplate(rs, b)
		}
	case entry.KindReset:
		clear(rs.byFP)
		clear(rs.byKey)
		rs.byFP[ipfix.V5Layout().Fingerprint] = ipfix.V5Layout()
		if rs.state != nil {
			m.forgetTemplates(rs)
		}
	case entry.KindWithdrawal:
		// Keep layouts: entries queued before the withdrawal may still
		// need them, and the fingerprint names the content anyway.
	case entry.KindData:
		if m.dir != nil {
			m.gaps.observe(rs.gen, h, m.log)
		}
		l := rs.byFP[h.Fingerprint]
		if l == nil {
			m.unknownFP.Add(uint64(h.Records))
			return
		}
		if l.ID != h.TemplateID {
			// Another template has the same content (the fingerprint
			// ignores IDs): use the set's own, so records name it.
			rs.scope.key = key
			if own := rs.scope.Resolve(h.TemplateID); own != nil && own.Fingerprint == h.Fingerprint {
				l = own
			}
		}
		m.data(rs, l, key, body, lane)
	default:
		m.badEntries.Add(1)
	}
}

func (m *Mediator) data(rs *ringState, l *ipfix.Layout, key tplKey, body []byte, lane *pipeline.Lane) {
	h := &rs.hdr
	rs.msg = ipfix.Message{Version: h.Version, DomainID: h.Domain, ExportTime: h.ExportTime,
		Sequence: h.Sequence, SysUptime: h.SysUptime, ExportNanos: h.ExportNanos}
	rs.scope.key = key
	// Set fields one by one: the Meta keeps formatting caches across sets.
	rs.meta.Exporter, rs.meta.Msg, rs.meta.Resolve, rs.meta.Received = h.Exporter, &rs.msg, &rs.scope, h.Received
	n := 0
	if it, ok := l.FixedIter(body); ok {
		for it.Next(&rs.rec) { // inlined: no call per record but Process
			lane.Process(&rs.meta, &rs.rec)
			n++
		}
	} else {
		it := ipfix.NewDataIter(l, body)
		for it.Next(&rs.rec) {
			lane.Process(&rs.meta, &rs.rec)
			n++
		}
	}
	m.records.Add(uint64(n))
	if rs.replaying {
		m.replayed.Add(uint64(n))
	}
	if l.Options {
		m.optRecords.Add(uint64(n))
	}
}

// The mediator's and the outputs' metric families.
var (
	recordsTotal         = promtext.Counter("sluice_records_total", "Data records decoded (options records included).")
	optionsRecordsTotal  = promtext.Counter("sluice_options_records_total", "Options data records decoded.")
	unknownTemplateTotal = promtext.Counter("sluice_mediator_unknown_template_records_total", "Records whose template definition never reached the mediator.")
	outputRecordsTotal   = promtext.Counter("sluice_output_records_total", "Records per output and outcome (sent, dropped, and skipped: records the output's format cannot carry).")
	outputUnmapped       = promtext.Counter("sluice_output_unmapped_values_total", "Element values an output left out because its format has no field for them.")
	outputQueued         = promtext.Gauge("sluice_output_queued_records", "Records waiting in an output's queue.")
	outputReconnects     = promtext.Counter("sluice_output_reconnects_total", "Reconnections of an output.")
	outputErrorsTotal    = promtext.Counter("sluice_output_errors_total", "Write or connection errors of an output.")
	replayedTotal        = promtext.Counter("sluice_mediator_replayed_records_total", "Records read again from file rings after a mediator restart: handed to the pipeline before, not yet released (they may repeat in the outputs).")
	ringsAttached        = promtext.Gauge("sluice_mediator_rings", "File rings attached (split pod).")
	ringGeneration       = promtext.Gauge("sluice_mediator_ring_generation", "Generation of the newest collector rings attached (split pod).")
	ringAttachErrors     = promtext.Counter("sluice_mediator_ring_attach_errors_total", "Ring files refused: wrong size, magic or version (split pod).")
)

// AppendMetrics appends the mediator's, the pipelines' and the outputs'
// metrics.
func (m *Mediator) AppendMetrics(dst []byte) []byte {
	snap := m.live.Load()
	outputs := snap.Outputs()
	w := promtext.NewWriter(dst)
	w.Uint(recordsTotal, m.records.Load())
	w.Uint(optionsRecordsTotal, m.optRecords.Load())
	w.Uint(unknownTemplateTotal, m.unknownFP.Load())
	if d := m.dir; d != nil {
		w.Uint(replayedTotal, m.replayed.Load())
		w.Int(ringsAttached, d.attached.Load())
		w.Int(ringGeneration, int64(d.gen.Load()))
		w.Uint(ringAttachErrors, d.attachErrs.Load())
		m.gaps.appendMetrics(&w)
	}
	w = promtext.NewWriter(snap.AppendMetrics(w.Bytes()))
	w.Head(outputRecordsTotal)
	for _, o := range outputs {
		s := o.Stats()
		w.Uint(outputRecordsTotal, s.Sent, "output", o.Name(), "outcome", "sent")
		w.Uint(outputRecordsTotal, s.Dropped, "output", o.Name(), "outcome", "dropped")
		if k, ok := o.(export.SkipStats); ok {
			w.Uint(outputRecordsTotal, k.Skipped(), "output", o.Name(), "outcome", "skipped")
		}
	}
	w.Head(outputQueued)
	for _, o := range outputs {
		if q, ok := o.(export.QueueStats); ok {
			w.Int(outputQueued, int64(q.Queued()), "output", o.Name())
		}
	}
	w.Head(outputReconnects)
	for _, o := range outputs {
		if q, ok := o.(export.QueueStats); ok {
			w.Uint(outputReconnects, q.Reconnects(), "output", o.Name())
		}
	}
	w.Head(outputErrorsTotal)
	for _, o := range outputs {
		w.Uint(outputErrorsTotal, o.Stats().Errors, "output", o.Name())
	}
	for _, o := range outputs {
		if u, ok := o.(export.UnmappedStats); ok {
			w.Uint(outputUnmapped, u.Unmapped(), "output", o.Name())
		}
	}
	return w.Bytes()
}

// Records returns the number of data records decoded so far.
func (m *Mediator) Records() uint64 { return m.records.Load() }
