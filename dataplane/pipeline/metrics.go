package pipeline

import (
	"sync/atomic"

	"github.com/sluice-flow/sluice/dataplane/promtext"
)

// aggPub mirrors an aggregate stage's gauges for other goroutines.
type aggPub struct {
	keys, evicted, expired, shapeErrs atomic.Uint64
	bytes                             atomic.Uint64
	huge                              atomic.Bool
}

func (s *aggStage) publish() {
	s.pub.keys.Store(uint64(s.tab.count))
	s.pub.evicted.Store(s.evicted)
	s.pub.expired.Store(s.expired)
	s.pub.shapeErrs.Store(s.shapeErrs)
	s.pub.bytes.Store(uint64(s.tab.bytes()))
	s.pub.huge.Store(s.tab.mem.huge)
}

// The pipelines' metric families.
var (
	pipelineVersion     = promtext.Gauge("sluice_pipeline_version", "Version of the pipeline snapshot running.")
	stageRecordsTotal   = promtext.Counter("sluice_pipeline_stage_records_total", "Records into and out of each stage (out of an aggregate: records absorbed).")
	stageErrorsTotal    = promtext.Counter("sluice_pipeline_stage_errors_total", "Records dropped because the stage could not apply to their template (e.g. a filter comparing a field of another type).")
	aggregateKeys       = promtext.Gauge("sluice_aggregate_keys", "Aggregates held.")
	aggregateTableBytes = promtext.Gauge("sluice_aggregate_table_bytes", "Memory of the aggregate table (it doubles as keys come, up to its bound).")
	aggregateEmitted    = promtext.Counter("sluice_aggregate_emitted_total", "Aggregates emitted at the end of an interval or a timeout.")
	aggregateHugePages  = promtext.Gauge("sluice_aggregate_table_huge_pages", "1 if the aggregate table is memory of its own advised for transparent huge pages (Linux, tables of 8 MiB or more), 0 if it is on 4 KiB pages.")
	aggregateEvicted    = promtext.Counter("sluice_aggregate_evicted_total", "Aggregates emitted early because the table was full.")
	aggregateShapeDrops = promtext.Counter("sluice_aggregate_dropped_total", "Aggregates dropped: more than 64 combinations of present keys.")
)

// AppendMetrics appends the pipelines' counters in the Prometheus text
// format. Safe from any goroutine; values are as of the last Tick.
func (s *Snapshot) AppendMetrics(dst []byte) []byte {
	w := promtext.NewWriter(dst)
	w.Uint(pipelineVersion, s.Version)
	lanes := s.metricPipes()
	// sum adds up one counter over the lanes (each has its own copy of
	// every stage, in the same places).
	sum := func(i, j int, c func(*counts) *atomic.Uint64) uint64 {
		t := uint64(0)
		for _, ps := range lanes {
			n := &ps[i].fan.n
			if j >= 0 {
				n = ps[i].stages[j].n
			}
			t += c(n).Load()
		}
		return t
	}
	in := func(c *counts) *atomic.Uint64 { return &c.pubIn }
	out := func(c *counts) *atomic.Uint64 { return &c.pubOut }
	errs := func(c *counts) *atomic.Uint64 { return &c.pubErrs }
	w.Head(stageRecordsTotal)
	for i, p := range s.pipes {
		for j, st := range p.stages {
			w.Uint(stageRecordsTotal, sum(i, j, in), "pipeline", p.name, "stage", st.kind, "direction", "in")
			w.Uint(stageRecordsTotal, sum(i, j, out), "pipeline", p.name, "stage", st.kind, "direction", "out")
		}
		w.Uint(stageRecordsTotal, sum(i, -1, in), "pipeline", p.name, "stage", "outputs", "direction", "in")
	}
	w.Head(stageErrorsTotal)
	for i, p := range s.pipes {
		for j, st := range p.stages {
			w.Uint(stageErrorsTotal, sum(i, j, errs), "pipeline", p.name, "stage", st.kind)
		}
	}
	s.appendAgg(&w, aggregateKeys, func(a *aggStage) uint64 { return a.pub.keys.Load() })
	s.appendAgg(&w, aggregateTableBytes, func(a *aggStage) uint64 { return a.pub.bytes.Load() })
	s.appendAgg(&w, aggregateHugePages, func(a *aggStage) uint64 {
		if a.pub.huge.Load() {
			return 1
		}
		return 0
	})
	s.appendAgg(&w, aggregateEmitted, func(a *aggStage) uint64 { return a.pub.expired.Load() })
	s.appendAgg(&w, aggregateEvicted, func(a *aggStage) uint64 { return a.pub.evicted.Load() })
	s.appendAgg(&w, aggregateShapeDrops, func(a *aggStage) uint64 { return a.pub.shapeErrs.Load() })
	return w.Bytes()
}

func (s *Snapshot) appendAgg(w *promtext.Writer, f *promtext.Family, v func(*aggStage) uint64) {
	w.Head(f)
	for _, p := range s.pipes {
		for _, st := range p.stages {
			if st.agg != nil {
				w.Uint(f, v(st.agg), "pipeline", p.name, "stage", st.kind)
			}
		}
	}
}
