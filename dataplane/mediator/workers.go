package mediator

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-flow/sluice/dataplane/pipeline"
)

// Config tunes a mediator. The zero value is the default.
type Config struct {
	// Workers is how many goroutines read the rings. Ring i is read by
	// worker i mod Workers alone, so the records of one exporter and
	// domain, which the collector keeps on one ring, stay in order. 0: one
	// per ring, at most GOMAXPROCS; never more than there are rings. The
	// file-ring mediator of the split pod (NewDir) uses one.
	//
	// A pipeline whose outputs all take concurrent writers
	// (export.Laned: JSON lines to stdout or a file without rotation,
	// discard) and that does not aggregate runs on every worker at once,
	// each with its own copy of the stages (pipeline.Snapshot.Lanes);
	// any other runs on one worker at a time.
	Workers int `yaml:"workers"`
}

func (c Config) workers(rings int) int {
	n := c.Workers
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	return max(1, min(n, rings))
}

// generation is a snapshot as the workers follow it: its lanes (one per
// worker) and a count of references, one per worker on it plus one while
// it is the live one. The last reference dropped retires it.
//
// Two generations never run at once: a worker that leaves one waits
// (ready) until every worker has left it before it drives the next, so an
// output the two share (and a shared lane's stages) never has two
// goroutines in it, and one generation replaces another only once the
// one before is retired.
type generation struct {
	s     *pipeline.Snapshot
	lanes []*pipeline.Lane
	refs  atomic.Int64
	ready chan struct{} // closed once the generation before is retired
	// next is the Apply whose snapshot replaced this one (it returns once
	// this one is retired) and successor that snapshot's generation.
	// Written before the reference of being live is dropped.
	next      *pendingSnap
	successor *generation
}

// worker reads its rings and drives its lane of the generation it is on.
// Everything in it belongs to its goroutine.
type worker struct {
	m        *Mediator
	id       int
	rings    []*ringState
	g        *generation
	lane     *pipeline.Lane
	flushReq chan chan struct{}
}

func (m *Mediator) startWorkers(first *pipeline.Snapshot, n int) {
	g := &generation{s: first, lanes: first.Lanes(n), ready: make(chan struct{})}
	g.refs.Store(1)
	close(g.ready)
	m.gen.Store(g)
	m.workers = make([]*worker, n)
	for i := range m.workers {
		m.workers[i] = &worker{m: m, id: i, flushReq: make(chan chan struct{})}
	}
	for i, rs := range m.rings {
		w := m.workers[i%n]
		w.rings = append(w.rings, rs)
	}
}

// promote makes the snapshot Apply handed over the live generation; the
// workers move to it between two entries, each on its own.
func (m *Mediator) promote() {
	if m.next.Load() == nil {
		return
	}
	m.promoteMu.Lock()
	defer m.promoteMu.Unlock()
	old := m.gen.Load()
	select {
	case <-old.ready:
	default:
		return // the last change is not done: this one waits for it
	}
	p := m.next.Swap(nil)
	if p == nil {
		return
	}
	g := &generation{s: p.s, lanes: p.s.Lanes(len(m.workers)), ready: make(chan struct{})}
	g.refs.Store(1)
	old.next, old.successor = p, g
	m.gen.Store(g)
	m.live.Store(p.s)
	m.release(old)
}

// release drops a reference to g; the last one retires its snapshot
// (every worker has flushed its lane by then) and tells Apply.
func (m *Mediator) release(g *generation) {
	if g.refs.Add(-1) != 0 {
		return
	}
	g.s.Retire()
	if g.successor != nil {
		close(g.successor.ready)
	}
	if p := g.next; p != nil {
		close(p.done)
		m.log.Info("pipeline applied", "version", p.s.Version)
		m.applied.send(p.s.Version)
	}
}

// follow moves w to the live generation if it is not on it: what its lane
// of the old one holds is handed to the outputs first, so records keep
// their order across the change.
func (w *worker) follow() {
	g := w.m.gen.Load()
	if g == w.g {
		return
	}
	for !acquire(g) {
		g = w.m.gen.Load() // g was replaced and retired meanwhile
	}
	if old := w.g; old != nil {
		w.flush()
		w.m.release(old)
	}
	w.g, w.lane = g, g.lanes[w.id]
	<-g.ready // the other workers leave the old one within a round
}

// acquire takes a reference to g unless it has none left.
func acquire(g *generation) bool {
	for {
		r := g.refs.Load()
		if r == 0 {
			return false
		}
		if g.refs.CompareAndSwap(r, r+1) {
			return true
		}
	}
}

func (w *worker) flush() {
	w.lane.Enter()
	err := w.lane.Flush()
	w.lane.Leave()
	if err != nil {
		w.m.logs.Warn(w.m.log, "output failing; its records are counted as dropped", "err", err)
	}
}

func (w *worker) tick() {
	w.lane.Enter()
	w.lane.Tick(time.Now())
	w.lane.Leave()
}

// runWorkers is Run with workers: each reads its rings as Run does.
func (m *Mediator) runWorkers(ctx context.Context) {
	var wg sync.WaitGroup
	for _, w := range m.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx)
		}()
	}
	wg.Wait()
	// Drop the workers' references: generations they were the last on
	// are retired; the live one stays for Close.
	for _, w := range m.workers {
		if w.g != nil {
			m.release(w.g)
			w.g, w.lane = nil, nil
		}
	}
}

func (w *worker) run(ctx context.Context) {
	idle := 0
	for {
		w.m.promote()
		w.follow()
		n, more := w.poll(256)
		w.tick()
		if more {
			continue
		}
		select {
		case <-ctx.Done():
			for n, _ := w.poll(1 << 20); n > 0; n, _ = w.poll(1 << 20) {
			}
			w.tick()
			w.flush()
			// Let go of the generation: a worker waiting to drive the
			// next one must not wait for this one.
			w.m.release(w.g)
			w.g, w.lane = nil, nil
			return
		case done := <-w.flushReq:
			w.flush()
			close(done)
			continue
		default:
		}
		if n > 0 {
			w.flush()
			idle = 0
			time.Sleep(gather)
			continue
		}
		if idle == 0 {
			w.flush() // going idle: push out what is buffered
		}
		idle++
		time.Sleep(min(time.Duration(idle)*idleMin, idleMax))
	}
}

// poll is Mediator.poll for w's rings (in process memory: not durable). A
// shared lane is held for each ring's batch, not per record.
func (w *worker) poll(max int) (total int, more bool) {
	for _, rs := range w.rings {
		taken := 0
		w.lane.Enter()
		for taken < max {
			b := rs.c.Next()
			if b == nil {
				break
			}
			w.m.entry(rs, b, w.lane)
			rs.c.Release()
			taken++
		}
		w.lane.Leave()
		total += taken
		more = more || taken == max
	}
	if total > 0 {
		w.m.entries.Add(uint64(total))
	}
	return total, more
}
