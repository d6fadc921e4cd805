package pipeline

import (
	"strconv"
	"sync/atomic"
)

// aggPub mirrors an aggregate stage's gauges for other goroutines.
type aggPub struct {
	keys, evicted, expired, shapeErrs atomic.Uint64
	bytes                             atomic.Uint64
}

func (s *aggStage) publish() {
	s.pub.keys.Store(uint64(s.count))
	s.pub.evicted.Store(s.evicted)
	s.pub.expired.Store(s.expired)
	s.pub.shapeErrs.Store(s.shapeErrs)
	s.pub.bytes.Store(uint64(len(s.arena)))
}

// AppendMetrics appends the pipelines' counters in the Prometheus text
// format. Safe from any goroutine; values are as of the last Tick.
func (s *Snapshot) AppendMetrics(dst []byte) []byte {
	dst = append(dst, "# HELP sluice_pipeline_version Version of the pipeline snapshot running.\n# TYPE sluice_pipeline_version gauge\nsluice_pipeline_version "...)
	dst = strconv.AppendUint(dst, s.Version, 10)
	dst = append(dst, "\n# HELP sluice_pipeline_stage_records_total Records into and out of each stage (out of an aggregate: records absorbed).\n# TYPE sluice_pipeline_stage_records_total counter\n"...)
	for _, p := range s.pipes {
		for _, st := range p.stages {
			dst = appendStage(dst, "sluice_pipeline_stage_records_total", p.name, st.kind, "in", st.n.pubIn.Load())
			dst = appendStage(dst, "sluice_pipeline_stage_records_total", p.name, st.kind, "out", st.n.pubOut.Load())
		}
		dst = appendStage(dst, "sluice_pipeline_stage_records_total", p.name, "outputs", "in", p.fan.n.pubIn.Load())
	}
	dst = append(dst, "# HELP sluice_pipeline_stage_errors_total Records dropped because the stage could not apply to their template (e.g. a filter comparing a field of another type).\n# TYPE sluice_pipeline_stage_errors_total counter\n"...)
	for _, p := range s.pipes {
		for _, st := range p.stages {
			dst = appendStage(dst, "sluice_pipeline_stage_errors_total", p.name, st.kind, "", st.n.pubErrs.Load())
		}
	}
	dst = append(dst, "# HELP sluice_aggregate_keys Aggregates held.\n# TYPE sluice_aggregate_keys gauge\n"...)
	dst = s.appendAgg(dst, "sluice_aggregate_keys", func(a *aggStage) uint64 { return a.pub.keys.Load() })
	dst = append(dst, "# HELP sluice_aggregate_table_bytes Memory of the aggregate table (it doubles as keys come, up to its bound).\n# TYPE sluice_aggregate_table_bytes gauge\n"...)
	dst = s.appendAgg(dst, "sluice_aggregate_table_bytes", func(a *aggStage) uint64 { return a.pub.bytes.Load() })
	dst = append(dst, "# HELP sluice_aggregate_emitted_total Aggregates emitted at the end of an interval or a timeout.\n# TYPE sluice_aggregate_emitted_total counter\n"...)
	dst = s.appendAgg(dst, "sluice_aggregate_emitted_total", func(a *aggStage) uint64 { return a.pub.expired.Load() })
	dst = append(dst, "# HELP sluice_aggregate_evicted_total Aggregates emitted early because the table was full.\n# TYPE sluice_aggregate_evicted_total counter\n"...)
	dst = s.appendAgg(dst, "sluice_aggregate_evicted_total", func(a *aggStage) uint64 { return a.pub.evicted.Load() })
	dst = append(dst, "# HELP sluice_aggregate_dropped_total Aggregates dropped: more than 64 combinations of present keys.\n# TYPE sluice_aggregate_dropped_total counter\n"...)
	dst = s.appendAgg(dst, "sluice_aggregate_dropped_total", func(a *aggStage) uint64 { return a.pub.shapeErrs.Load() })
	return dst
}

func (s *Snapshot) appendAgg(dst []byte, metric string, v func(*aggStage) uint64) []byte {
	for _, p := range s.pipes {
		for _, st := range p.stages {
			if st.agg != nil {
				dst = appendStage(dst, metric, p.name, st.kind, "", v(st.agg))
			}
		}
	}
	return dst
}

func appendStage(dst []byte, metric, pipeline, stage, dir string, v uint64) []byte {
	dst = append(dst, metric...)
	dst = append(dst, "{pipeline="...)
	dst = strconv.AppendQuote(dst, pipeline)
	dst = append(dst, ",stage="...)
	dst = strconv.AppendQuote(dst, stage)
	if dir != "" {
		dst = append(dst, ",direction=\""...)
		dst = append(dst, dir...)
		dst = append(dst, '"')
	}
	dst = append(dst, "} "...)
	dst = strconv.AppendUint(dst, v, 10)
	return append(dst, '\n')
}
