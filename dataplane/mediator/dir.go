package mediator

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-flow/sluice/dataplane/pipeline"
	"github.com/sluice-flow/sluice/dataplane/ring"
)

// scanEvery is how often Run looks at the ring directory for new files.
const scanEvery = 100 * time.Millisecond

// ringDir is the mediator's view of a collector's ring directory. Run's
// goroutine owns it; the counters are read by others.
type ringDir struct {
	path       string
	superseded int               // rings in m.rings that a newer generation replaced
	lastErr    map[string]string // per file: the last attach error logged
	gen        atomic.Uint64     // the newest generation attached
	attached   atomic.Int64      // rings attached now
	attachErrs atomic.Uint64
	errMu      sync.Mutex
	errText    string // the last attach error, for Status
}

// NewDir returns a mediator over the file rings a collector keeps in dir
// (collector.Config.RingDir), running snapshot first. Run waits for the
// files to appear (dir may not exist yet), attaches to each with
// ring.Open, and every 100 ms looks for changes: when a collector restart
// puts files of a new generation in place, Run drains the rings of the old
// one (their mappings stay valid after the files are replaced), drops them,
// then follows the new ones. Rings a restarted collector kept because they
// held unread entries (ring.RetainedName) are drained the same way, oldest
// generation first, then removed; sequence numbers UDP exporters skipped
// between generations are counted (Status.RestartLost). A file that cannot be attached (wrong size,
// magic or version) is refused, logged with the reason and counted; the
// other rings go on.
//
// The consumer's position lives in the files, so a mediator that restarts,
// even after SIGKILL, resumes where the last one released; entries the
// last one had taken for the pipeline but not released (at most one round
// of 256 entries per ring: releases follow each flush of the outputs) are
// read again and counted in Status.Replayed and
// sluice_mediator_replayed_records_total. The count is an upper bound on
// the repeats: the checkpoint covers a batch before its first entry is
// handed on, so entries of the last batch that never reached the outputs
// count too.
func NewDir(dir string, first *pipeline.Snapshot, log *slog.Logger) *Mediator {
	m := NewPipeline(nil, first, log)
	m.durable = true
	m.dir = &ringDir{path: dir, lastErr: map[string]string{}}
	m.gaps.logs.Every = 10 * time.Second
	return m
}

// scan attaches new ring files and retires drained superseded rings.
func (m *Mediator) scan() {
	d := m.dir
	m.gaps.commit(time.Now(), false)
	// Retire superseded rings that are empty: a newer generation exists
	// only once the collector that wrote them has stopped or died (it held
	// the directory's lock), so nothing more comes into them.
	kept := m.rings[:0]
	for _, rs := range m.rings {
		if rs.superseded && rs.c.Next() == nil {
			m.log.Info("ring drained; following the new generation", "file", rs.file.Path(), "generation", rs.gen)
			dropState(rs)
			// A collector that started while the ring held unread
			// entries renamed it; drained, it has served.
			os.Remove(filepath.Join(d.path, ring.RetainedName(rs.file.Meta().Index, rs.gen)))
			rs.file.Close()
			d.superseded--
			continue
		}
		kept = append(kept, rs)
	}
	clear(m.rings[len(kept):])
	m.rings = kept

	ents, err := os.ReadDir(d.path)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			m.logs.Warn(m.log, "cannot read the ring directory", "dir", d.path, "err", err)
		}
		return
	}
	present := map[string]bool{}
	for _, e := range ents {
		if i, gen, ok := ring.ParseRetainedName(e.Name()); ok {
			m.attachRetained(filepath.Join(d.path, e.Name()), i, gen)
			continue
		}
		if _, ok := ring.ParseFileName(e.Name()); !ok {
			continue
		}
		path := filepath.Join(d.path, e.Name())
		present[path] = true
		meta, err := ring.ReadMeta(path)
		if err != nil {
			m.attachFailed(path, err)
			continue
		}
		var held *ringState
		for _, rs := range m.rings {
			if !rs.superseded && rs.file.Path() == path {
				held = rs
			}
		}
		if held != nil && held.gen == meta.Generation {
			continue
		}
		f, err := ring.Open(path)
		if err != nil {
			m.attachFailed(path, err)
			continue
		}
		delete(d.lastErr, path)
		if held != nil {
			held.superseded = true
			d.superseded++
			m.log.Info("collector restarted: draining the old ring first", "file", path,
				"old_generation", held.gen, "generation", f.Meta().Generation)
		}
		rs := newRingState(f.Ring)
		rs.file, rs.gen = f, f.Meta().Generation
		if err := m.loadState(rs); err != nil {
			m.logs.Warn(m.log, "templates will not survive a restart", "file", path, "err", err)
		}
		m.rings = append(m.rings, rs)
		d.gen.Store(max(d.gen.Load(), rs.gen))
		m.log.Info("ring attached", "file", path, "generation", rs.gen, "bytes", f.Cap(),
			"queued", f.Len(), "replay_until", rs.replayEnd)
	}
	for _, rs := range m.rings {
		if !rs.superseded && !present[rs.file.Path()] {
			rs.superseded = true // removed: a collector with fewer loops
			d.superseded++
		}
	}
	n := 0
	for _, rs := range m.rings {
		if !rs.superseded {
			n++
		}
	}
	d.attached.Store(int64(n))
}

// attachRetained attaches a ring a collector kept because it held unread
// entries when the collector started again (ring.RetainedName): it is an
// older generation, so it is drained before the rings in use. One this
// mediator maps already (it was renamed under it) is not attached twice.
func (m *Mediator) attachRetained(path string, index int, gen uint64) {
	d := m.dir
	for _, rs := range m.rings {
		if rs.gen == gen && rs.file.Meta().Index == index {
			return
		}
	}
	f, err := ring.Open(path)
	if err != nil {
		m.attachFailed(path, err)
		return
	}
	delete(d.lastErr, path)
	rs := newRingState(f.Ring)
	rs.file, rs.gen, rs.superseded = f, f.Meta().Generation, true
	d.superseded++
	if err := m.loadState(rs); err != nil {
		m.logs.Warn(m.log, "templates will not survive a restart", "file", path, "err", err)
	}
	m.rings = append(m.rings, rs)
	m.log.Info("unread ring of an earlier collector attached: draining it first", "file", path,
		"generation", rs.gen, "queued", f.Len(), "replay_until", rs.replayEnd)
}

// oldestSuperseded returns the oldest generation among the superseded
// rings: generations are drained one after the other, oldest first.
func (m *Mediator) oldestSuperseded() uint64 {
	oldest := uint64(math.MaxUint64)
	for _, rs := range m.rings {
		if rs.superseded {
			oldest = min(oldest, rs.gen)
		}
	}
	return oldest
}

// attachFailed counts a refused file and logs it once per distinct error.
func (m *Mediator) attachFailed(path string, err error) {
	d := m.dir
	d.attachErrs.Add(1)
	d.errMu.Lock()
	d.errText = err.Error()
	d.errMu.Unlock()
	if d.lastErr[path] != err.Error() {
		d.lastErr[path] = err.Error()
		m.log.Error("refusing ring file", "file", path, "err", err)
	}
}

// Status is a summary of the mediator for a control plane (the split
// pod's D-Bus object): cheap to take, safe for concurrent use.
type Status struct {
	// Ready is true once rings are attached: at least one file ring with
	// NewDir, always with in-process rings.
	Ready bool `json:"ready"`
	// RingDir, Rings and Generation describe the file rings (NewDir):
	// the directory, the rings attached and their generation.
	RingDir    string `json:"ring_dir,omitempty"`
	Rings      int    `json:"rings"`
	Generation uint64 `json:"generation,omitempty"`
	// AttachErrors counts ring files refused; LastAttachError says why
	// the last one was.
	AttachErrors    uint64 `json:"attach_errors"`
	LastAttachError string `json:"last_attach_error,omitempty"`
	Entries         uint64 `json:"entries"`
	Records         uint64 `json:"records"`
	// Replayed counts records read again after a restart: handed to the
	// pipeline by the previous mediator, not yet released when it died.
	Replayed uint64 `json:"replayed"`
	// RestartLost counts the sequence numbers UDP exporters skipped
	// across collector restarts (records; messages for NetFlow v9).
	RestartLost     uint64 `json:"restart_lost"`
	PipelineVersion uint64 `json:"pipeline_version"`
}

// Status returns the mediator's summary. Safe for concurrent use.
func (m *Mediator) Status() Status {
	s := Status{Ready: true, Entries: m.entries.Load(), Records: m.records.Load(),
		Replayed: m.replayed.Load(), PipelineVersion: m.live.Load().Version}
	if d := m.dir; d == nil {
		s.Rings = len(m.rings) // fixed after New
	} else {
		s.RingDir, s.Rings, s.Generation = d.path, int(d.attached.Load()), d.gen.Load()
		s.Ready = s.Rings > 0
		s.AttachErrors = d.attachErrs.Load()
		s.RestartLost = m.gaps.records.Load() + m.gaps.messages.Load()
		d.errMu.Lock()
		s.LastAttachError = d.errText
		d.errMu.Unlock()
	}
	return s
}

// Replayed returns the number of records read again after a restart.
func (m *Mediator) Replayed() uint64 { return m.replayed.Load() }

// Flush has Run flush the outputs (and, with file rings, release what they
// took) and returns once it has, or with ctx's error if Run does not get
// to it (it is not running). Safe for concurrent use.
func (m *Mediator) Flush(ctx context.Context) error {
	if m.workers != nil {
		for _, w := range m.workers {
			if err := request(ctx, w.flushReq); err != nil {
				return err
			}
		}
		return nil
	}
	return request(ctx, m.flushReq)
}

// request hands a flush request to a goroutine reading ch and waits for it.
func request(ctx context.Context, ch chan chan struct{}) error {
	done := make(chan struct{})
	select {
	case ch <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// OnApplied installs a hook called with the version of each pipeline
// snapshot once it is in force (after Apply, whoever called it). It runs on
// a goroutine of its own, in order, never on Run's; if it falls 64 calls
// behind, later ones are dropped. Safe for concurrent use; nil removes it.
func (m *Mediator) OnApplied(f func(version uint64)) {
	a := &m.applied
	a.once.Do(func() {
		a.ch = make(chan uint64, 64)
		go func() {
			for v := range a.ch {
				if f := a.f.Load(); f != nil {
					(*f)(v)
				}
			}
		}()
	})
	if f == nil {
		a.f.Store(nil)
		return
	}
	a.f.Store(&f)
}

type appliedHooks struct {
	once sync.Once
	ch   chan uint64
	f    atomic.Pointer[func(uint64)]
}

func (a *appliedHooks) send(v uint64) {
	if a.f.Load() == nil {
		return
	}
	select {
	case a.ch <- v:
	default:
	}
}
