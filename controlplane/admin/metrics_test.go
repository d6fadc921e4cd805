package admin

import (
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/promtext/promtexttest"
)

// The process metrics read back with the Prometheus parser, after a source's
// metrics as /metrics serves them.
func TestProcessMetricsParse(t *testing.T) {
	s := &Server{start: time.Unix(1_700_000_000, 0)}
	src := []byte("# HELP sluice_records_total Records.\n# TYPE sluice_records_total counter\nsluice_records_total 42\n")
	fams := promtexttest.Parse(t, s.appendProcessMetrics(src))
	if v := fams["process_start_time_seconds"].GetMetric()[0].GetGauge().GetValue(); v != 1_700_000_000 {
		t.Errorf("process_start_time_seconds %v", v)
	}
	if v := fams["go_goroutines"].GetMetric()[0].GetGauge().GetValue(); v < 1 {
		t.Errorf("go_goroutines %v", v)
	}
	if v := fams["process_cpu_seconds_total"].GetMetric()[0].GetCounter().GetValue(); v <= 0 {
		t.Errorf("process_cpu_seconds_total %v", v)
	}
	if v := fams["process_resident_memory_bytes"].GetMetric()[0].GetGauge().GetValue(); v <= 0 {
		t.Errorf("process_resident_memory_bytes %v", v)
	}
}
