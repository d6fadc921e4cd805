package pipeline

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
)

// Lane is one goroutine's way into a snapshot (see Snapshot.Lanes). A lane
// that is not shared belongs to one goroutine; a shared one is held by
// whoever drives it (Enter, Leave).
type Lane struct {
	s      *Snapshot
	pipes  []*pipe
	outs   []export.Output // what Flush flushes
	shared bool
	mu     sync.Mutex
}

// laneStage is a stage Lanes can copy: the copy shares what is read-only
// (expressions, keys, tables) and has its own state and counters.
type laneStage interface {
	sink
	clone(next sink, lane int) sink
	counts() *counts
}

// Lanes returns n ways into s for n goroutines (n >= 1); call it before
// any of them drives s, instead of Process, Tick and Flush (a second call
// returns the same lanes). It may run while the outputs are busy with
// another snapshot: it writes nothing.
//
// When no pipeline aggregates and every output is export.Laned, the lanes
// are independent: each has its own copy of every stage and its own lane
// of every output, runs without locks, and keeps its records in order
// within each output (a JSON lines file gets whole batches from each
// lane). Otherwise every lane is the same one, shared: one goroutine at a
// time holds it. A retiring snapshot's lanes must each be flushed by their
// goroutine before Retire.
func (s *Snapshot) Lanes(n int) []*Lane {
	s.lanesMu.Lock()
	defer s.lanesMu.Unlock()
	if s.lanes != nil {
		if len(s.lanes) == n {
			return s.lanes
		}
		panic("BUG: pipeline: Lanes called again with another count")
	}
	lanes := make([]*Lane, n)
	if n > 1 && s.laneable() {
		for i := range lanes {
			lanes[i] = s.newLane(i)
		}
		s.lanes = lanes
		return lanes
	}
	one := &Lane{s: s, pipes: s.pipes, outs: s.outputs, shared: n > 1}
	for i := range lanes {
		lanes[i] = one
	}
	return lanes
}

// laneable reports whether s can run as independent lanes.
func (s *Snapshot) laneable() bool {
	for _, p := range s.pipes {
		if len(p.aggs) > 0 {
			return false
		}
		for _, st := range append(p.chain[:len(p.chain):len(p.chain)], p.optChain...) {
			if _, ok := st.(laneStage); !ok {
				return false
			}
		}
	}
	for _, o := range s.outputs {
		lo, ok := o.(export.Laned)
		if !ok {
			return false
		}
		// A lane holds nothing until it gets a record: the probe is
		// dropped, never flushed (the output may be busy with the
		// generation before this one).
		if lo.Lane() == nil {
			return false
		}
	}
	return true
}

func (s *Snapshot) newLane(i int) *Lane {
	l := &Lane{s: s}
	outs := map[export.Output]export.Output{}
	for _, o := range s.outputs {
		lo := o.(export.Laned).Lane()
		outs[o] = lo
		l.outs = append(l.outs, lo)
	}
	for _, p := range s.pipes {
		q := &pipe{name: p.name, dropOpts: p.dropOpts, fan: &fanout{}}
		for _, o := range p.fan.outs {
			q.fan.outs = append(q.fan.outs, outs[o])
		}
		var next sink = q.fan
		q.chain = make([]sink, len(p.chain))
		q.stages = make([]stageInfo, len(p.chain))
		for j := len(p.chain) - 1; j >= 0; j-- {
			st := p.chain[j].(laneStage).clone(next, i)
			if e, ok := st.(*enrichStage); ok {
				q.observers = append(q.observers, e)
			}
			q.chain[j] = st
			q.stages[j] = stageInfo{kind: p.stages[j].kind, n: st.(laneStage).counts()}
			next = st
		}
		q.head = next
		next = q.fan
		for j := len(p.optChain) - 1; j >= 0; j-- {
			next = p.optChain[j].(laneStage).clone(next, i)
		}
		q.optHead = next
		l.pipes = append(l.pipes, q)
	}
	return l
}

// Shared reports whether the lane is every lane of its snapshot: hold it
// (Enter, Leave) while driving it.
func (l *Lane) Shared() bool { return l.shared }

// Enter takes a shared lane; it does nothing for one that is not.
func (l *Lane) Enter() {
	if l.shared {
		l.mu.Lock()
	}
}

// Leave gives a shared lane back.
func (l *Lane) Leave() {
	if l.shared {
		l.mu.Unlock()
	}
}

// Snapshot returns the snapshot l belongs to.
func (l *Lane) Snapshot() *Snapshot { return l.s }

// Process is Snapshot.Process for this lane.
func (l *Lane) Process(m *jsonl.Meta, r *ipfix.Record) { process(l.pipes, m, r) }

// Tick is Snapshot.Tick for this lane.
func (l *Lane) Tick(now time.Time) {
	for _, p := range l.pipes {
		for _, a := range p.aggs {
			a.tick(now, false)
		}
	}
	publish(l.pipes)
}

// Flush pushes out what the lane holds, through the outputs.
func (l *Lane) Flush() error {
	var errs []error
	for _, o := range l.outs {
		if err := o.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", o.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// metricPipes returns the pipes whose counters the metrics add up: every
// independent lane's, or the snapshot's own.
func (s *Snapshot) metricPipes() [][]*pipe {
	s.lanesMu.Lock()
	defer s.lanesMu.Unlock()
	if s.lanes == nil {
		return [][]*pipe{s.pipes}
	}
	ps := make([][]*pipe, len(s.lanes))
	for i, l := range s.lanes {
		ps[i] = l.pipes
	}
	return ps
}

func (s *selectStage) clone(next sink, _ int) sink { return &selectStage{expr: s.expr, next: next} }
func (s *selectStage) counts() *counts             { return &s.n }

func (s *rewriteStage) clone(next sink, _ int) sink { return &rewriteStage{build: s.build, next: next} }
func (s *rewriteStage) counts() *counts             { return &s.n }

func (s *renameStage) clone(next sink, _ int) sink {
	return &renameStage{renames: s.renames, next: next}
}
func (s *renameStage) counts() *counts { return &s.n }

func (s *anonStage) clone(next sink, _ int) sink {
	c := &anonStage{cp: s.cp, bits4: s.bits4, bits6: s.bits6, fields: s.fields, next: next}
	if s.cp != nil {
		c.cp = s.cp.Clone() // its scratch blocks are its own
		c.cache4 = new([1 << 14]anonCacheEntry)
	}
	return c
}
func (s *anonStage) counts() *counts { return &s.n }

func (s *sampleStage) clone(next sink, lane int) sink {
	return &sampleStage{rate: s.rate, random: s.random, rnd: (s.rnd + uint64(lane)*0x9E3779B97F4A7C15) | 1, next: next}
}
func (s *sampleStage) counts() *counts { return &s.n }

func (s *enrichStage) clone(next sink, _ int) sink {
	c := &enrichStage{exporter: s.exporter, sampling: s.sampling, nets: s.nets,
		dyn: make([][]byte, len(s.dyn)), next: next}
	c.rates.m = make(map[samplingKey]uint32)
	return c
}
func (s *enrichStage) counts() *counts { return &s.n }
