package pipeline

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/filter"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
)

// OutputSet opens outputs by spec and shares them between snapshots, so a
// reload keeps connections and files that both pipelines use. Safe for
// concurrent use.
type OutputSet struct {
	mu     sync.Mutex
	open   map[string]*outRef
	opener func(spec string) (export.Output, error)
	closes sync.WaitGroup
	errMu  sync.Mutex
	errs   []error
}

type outRef struct {
	o    export.Output
	refs int
}

// NewOutputSet returns a set that opens outputs with opener (export.Parse).
func NewOutputSet(opener func(spec string) (export.Output, error)) *OutputSet {
	return &OutputSet{open: map[string]*outRef{}, opener: opener}
}

func (s *OutputSet) acquire(spec string) (export.Output, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.open[spec]; r != nil {
		r.refs++
		return r.o, nil
	}
	o, err := s.opener(spec)
	if err != nil {
		return nil, err
	}
	s.open[spec] = &outRef{o: o, refs: 1}
	return o, nil
}

// release drops one reference per spec; outputs nobody uses any more are
// flushed and closed in the background (Wait waits for them).
func (s *OutputSet) release(specs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, spec := range specs {
		r := s.open[spec]
		if r == nil {
			continue
		}
		if r.refs--; r.refs > 0 {
			continue
		}
		delete(s.open, spec)
		s.closes.Add(1)
		go func(o export.Output) {
			defer s.closes.Done()
			if err := o.Close(); err != nil {
				s.errMu.Lock()
				s.errs = append(s.errs, fmt.Errorf("%s: %w", o.Name(), err))
				s.errMu.Unlock()
			}
		}(r.o)
	}
}

// Wait waits for outputs being closed and returns the errors of closes
// since the last call.
func (s *OutputSet) Wait() error {
	s.closes.Wait()
	s.errMu.Lock()
	defer s.errMu.Unlock()
	err := errors.Join(s.errs...)
	s.errs = nil
	return err
}

// Passthrough is the snapshot without a pipeline file: every record to
// outputs unchanged. Retiring it closes them.
func Passthrough(outputs []export.Output) *Snapshot {
	set := NewOutputSet(nil)
	s := &Snapshot{set: set}
	p := &pipe{name: "default", fan: &fanout{}}
	p.head, p.optHead = p.fan, p.fan
	for i, o := range outputs {
		spec := "\x00" + strconv.Itoa(i) // a key no spec can be
		set.open[spec] = &outRef{o: o, refs: 1}
		s.specs = append(s.specs, spec)
		p.fan.outs = append(p.fan.outs, o)
		s.addOutput(o)
	}
	s.pipes = []*pipe{p}
	return s
}

// WaitClosed waits until the outputs this snapshot's retirement closed are
// closed, and returns their errors.
func (s *Snapshot) WaitClosed() error { return s.set.Wait() }

// Snapshot is a compiled pipeline configuration. One mediator goroutine
// drives it (Process, Tick, Flush), or several through its lanes (Lanes);
// the metrics may be read from any goroutine. A snapshot is replaced
// whole, never changed.
type Snapshot struct {
	// Source is the pipeline file the snapshot came from (nil for the
	// default pass-through).
	Source  []byte
	Version uint64

	pipes   []*pipe
	outputs []export.Output
	specs   []string // one per acquired output reference
	set     *OutputSet
	retired atomic.Bool

	lanesMu sync.Mutex
	lanes   []*Lane // made by Lanes; nil: the snapshot is driven as one lane
}

type pipe struct {
	name      string
	head      sink
	fan       *fanout
	dropOpts  bool
	optHead   sink // the pipeline's anonymise stages, then fan
	observers []*enrichStage
	aggs      []*aggStage
	stages    []stageInfo
	// chain and optChain are head's and optHead's stages in order (for
	// Lanes to copy).
	chain, optChain []sink
}

type stageInfo struct {
	kind string
	n    *counts
	agg  *aggStage
}

// Compile builds a snapshot: it opens table and key files and acquires
// outputs from set. On error nothing stays acquired.
func Compile(c *Config, set *OutputSet) (snap *Snapshot, err error) {
	s := &Snapshot{set: set}
	defer func() {
		if err != nil {
			set.release(s.specs)
		}
	}()
	if len(c.Pipelines) == 0 {
		return nil, errAt(0, "no pipelines")
	}
	names := map[string]bool{}
	for i := range c.Pipelines {
		pc := &c.Pipelines[i]
		p := &pipe{name: pc.Name, dropOpts: pc.DropOptions}
		if p.name == "" {
			p.name = "pipeline" + strconv.Itoa(i+1)
		}
		if !validName(p.name) {
			return nil, errAt(pc.Line, "pipeline name %q: use letters, digits, '_', '-' and '.' (at most 64)", p.name)
		}
		if names[p.name] {
			return nil, errAt(pc.Line, "pipeline name %q used twice", p.name)
		}
		names[p.name] = true
		if len(pc.Outputs) == 0 {
			return nil, errAt(pc.Line, "pipeline %s: no outputs", p.name)
		}
		p.fan = &fanout{}
		seen := map[string]bool{}
		for _, name := range pc.Outputs {
			spec, ok := c.Outputs[name]
			if !ok {
				if err := export.CheckSpec(name); err != nil {
					return nil, errAt(pc.Line, "pipeline %s: output %q is not a name under outputs; as an output spec: %v", p.name, name, err)
				}
				spec = name
			}
			if seen[spec] {
				continue
			}
			seen[spec] = true
			o, err := set.acquire(spec)
			if err != nil {
				return nil, errAt(pc.Line, "pipeline %s: %v", p.name, err)
			}
			s.specs = append(s.specs, spec)
			p.fan.outs = append(p.fan.outs, o)
			s.addOutput(o)
		}
		var next sink = p.fan
		built := make([]stageInfo, len(pc.Stages))
		p.chain = make([]sink, len(pc.Stages))
		for j := len(pc.Stages) - 1; j >= 0; j-- {
			st, info, err := buildStage(&pc.Stages[j], next)
			if err != nil {
				return nil, err
			}
			p.chain[j] = st
			if e, ok := st.(*enrichStage); ok {
				p.observers = append(p.observers, e)
			}
			if a, ok := st.(*aggStage); ok {
				p.aggs = append(p.aggs, a)
			}
			info.kind = strconv.Itoa(j+1) + ":" + info.kind
			built[j] = info
			next = st
		}
		p.stages = built
		p.head = next
		// Options records skip the stages, except anonymise: addresses
		// in them (exporters, interfaces) must not leave either.
		var opt sink = p.fan
		for j := len(pc.Stages) - 1; j >= 0; j-- {
			if a := pc.Stages[j].Anonymise; a != nil {
				st, err := newAnonymise(pc.Stages[j].Line, a)
				if err != nil {
					return nil, err
				}
				st.next = opt
				opt = st
				p.optChain = append([]sink{st}, p.optChain...)
			}
		}
		p.optHead = opt
		s.pipes = append(s.pipes, p)
	}
	return s, nil
}

// validName keeps pipeline names safe as metric label values.
func validName(n string) bool {
	if n == "" || len(n) > 64 {
		return false
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func (s *Snapshot) addOutput(o export.Output) {
	for _, x := range s.outputs {
		if x == o {
			return
		}
	}
	s.outputs = append(s.outputs, o)
}

func buildStage(sc *Stage, next sink) (sink, stageInfo, error) {
	kinds := 0
	for _, set := range []bool{sc.Select != "", sc.Project != nil, sc.Rename != nil, sc.Set != nil,
		sc.Anonymise != nil, sc.Sample != nil, sc.Enrich != nil, sc.Aggregate != nil} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		return nil, stageInfo{}, errAt(sc.Line, "a stage has exactly one kind, this one has %d", kinds)
	}
	switch {
	case sc.Select != "":
		e, err := filter.Parse(sc.Select)
		if err != nil {
			return nil, stageInfo{}, errAt(sc.Line, "select: %v", err)
		}
		st := &selectStage{expr: e, next: next}
		return st, stageInfo{kind: "select", n: &st.n}, nil
	case sc.Project != nil:
		if (len(sc.Project.Keep) == 0) == (len(sc.Project.Drop) == 0) {
			return nil, stageInfo{}, errAt(sc.Line, "project: give exactly one of keep and drop")
		}
		st, err := newProject(sc.Line, sc.Project)
		if err != nil {
			return nil, stageInfo{}, err
		}
		st.next = next
		return st, stageInfo{kind: "project", n: &st.n}, nil
	case sc.Rename != nil:
		st, err := newRename(sc.Line, sc.Rename)
		if err != nil {
			return nil, stageInfo{}, err
		}
		st.next = next
		return st, stageInfo{kind: "rename", n: &st.n}, nil
	case sc.Set != nil:
		st, err := newSet(sc.Line, sc.Set)
		if err != nil {
			return nil, stageInfo{}, err
		}
		st.next = next
		return st, stageInfo{kind: "set", n: &st.n}, nil
	case sc.Anonymise != nil:
		st, err := newAnonymise(sc.Line, sc.Anonymise)
		if err != nil {
			return nil, stageInfo{}, err
		}
		st.next = next
		return st, stageInfo{kind: "anonymise", n: &st.n}, nil
	case sc.Sample != nil:
		if sc.Sample.Rate == 0 {
			return nil, stageInfo{}, errAt(sc.Line, "sample: rate must be at least 1")
		}
		st := &sampleStage{rate: sc.Sample.Rate, random: sc.Sample.Random, rnd: uint64(time.Now().UnixNano()) | 1, next: next}
		return st, stageInfo{kind: "sample", n: &st.n}, nil
	case sc.Enrich != nil:
		st, err := newEnrich(sc.Line, sc.Enrich)
		if err != nil {
			return nil, stageInfo{}, err
		}
		st.next = next
		return st, stageInfo{kind: "enrich", n: &st.n}, nil
	}
	st, err := newAggregate(sc.Line, sc.Aggregate)
	if err != nil {
		return nil, stageInfo{}, err
	}
	st.next = next
	return st, stageInfo{kind: "aggregate", n: &st.n, agg: st}, nil
}

// Process runs one record through every pipeline. Options records skip
// the stages but anonymise (enrich stages read their sampling rates) and
// go to the outputs unless the pipeline drops them.
func (s *Snapshot) Process(m *jsonl.Meta, r *ipfix.Record) { process(s.pipes, m, r) }

func process(pipes []*pipe, m *jsonl.Meta, r *ipfix.Record) {
	l := r.Layout
	opts := l.Options && l.ScopeCount > 0
	for _, p := range pipes {
		if !opts {
			p.head.record(m, r)
			continue
		}
		for _, e := range p.observers {
			e.observeOptions(m, r)
		}
		if !p.dropOpts {
			p.optHead.record(m, r)
		}
	}
}

// Tick advances aggregation time (closing intervals, emitting what timed
// out) and publishes the counters. The mediator calls it between batches.
func (s *Snapshot) Tick(now time.Time) {
	for _, p := range s.pipes {
		for _, a := range p.aggs {
			a.tick(now, false)
		}
	}
	publish(s.pipes)
}

func publish(pipes []*pipe) {
	for _, p := range pipes {
		p.fan.n.publish()
		for _, st := range p.stages {
			st.n.publish()
			if st.agg != nil {
				st.agg.publish()
			}
		}
	}
}

// Flush pushes the outputs' buffers out; errors are the outputs' own (and
// counted by them).
func (s *Snapshot) Flush() error {
	var errs []error
	for _, o := range s.outputs {
		if err := o.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", o.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// Outputs returns the snapshot's distinct outputs.
func (s *Snapshot) Outputs() []export.Output { return s.outputs }

// Retire ends the snapshot's use: aggregates still held are emitted, the
// outputs flushed, and outputs no newer snapshot holds are closed. Call it
// from the goroutine that drove the snapshot, once; later calls do
// nothing.
func (s *Snapshot) Retire() {
	if s.retired.Swap(true) {
		return
	}
	now := time.Now()
	for _, p := range s.pipes {
		// Earlier aggregates feed later ones: flush in chain order.
		for i := len(p.aggs) - 1; i >= 0; i-- {
			p.aggs[i].tick(now, true)
		}
	}
	for _, ps := range s.metricPipes() {
		publish(ps)
	}
	_ = s.Flush()
	s.set.release(s.specs)
}

// Discard releases what Compile acquired for a snapshot that was never
// used.
func (s *Snapshot) Discard() {
	if !s.retired.Swap(true) {
		s.set.release(s.specs)
	}
}
