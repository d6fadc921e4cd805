package redistier_test

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/sluice-flow/sluice/dataplane/promtext/promtexttest"
)

// TestMetricsParse lets one pod learn templates and another fetch them, then
// reads each pod's /metrics text (collector, mediator and store, concatenated
// as the admin server does) with the Prometheus parser.
func TestMetricsParse(t *testing.T) {
	r := sharedRedis(t)
	flushAll(t, r)
	a := startPod(t, podConfig{redis: []string{r.Addr()}})
	b := startPod(t, podConfig{redis: []string{r.Addr()}})
	ex := newExporter(t)
	s := ipfixTraffic(41, 6, 5)
	ex.send(t, a, s.tpl)
	waitFor(t, 5*time.Second, "templates written", func() bool {
		return a.metric(t, `sluice_template_shared_writes_total{result="written"}`) == 3
	})
	ex.send(t, b, s.data...)
	waitRecords(t, s.count(0, 6), b)

	for _, p := range []*pod{a, b} {
		fams := promtexttest.Parse(t, []byte(p.metrics()))
		for _, name := range []string{"sluice_collected_records_total", "sluice_records_total", "sluice_output_records_total", "sluice_template_shared_up"} {
			if fams[name] == nil {
				t.Errorf("pod :%d: no %s", p.port, name)
			}
		}
		if up := fams["sluice_template_shared_up"].GetMetric()[0].GetGauge().GetValue(); up != 1 {
			t.Errorf("pod :%d: sluice_template_shared_up %v", p.port, up)
		}
	}

	fams := promtexttest.Parse(t, []byte(b.metrics()))
	hits := fams["sluice_template_shared_hits_total"].GetMetric()[0].GetCounter().GetValue()
	f := fams["sluice_template_shared_learn_to_use_seconds"]
	if f.GetType() != dto.MetricType_HISTOGRAM || len(f.GetMetric()) != 1 {
		t.Fatalf("learn-to-use read back as %v", f)
	}
	h := f.GetMetric()[0].GetHistogram()
	if hits != 3 || float64(h.GetSampleCount()) != hits || h.GetSampleSum() <= 0 {
		t.Errorf("learn-to-use: %d samples summing to %v, want one per fetch (%v)", h.GetSampleCount(), h.GetSampleSum(), hits)
	}
	var prev uint64
	for _, bk := range h.GetBucket() {
		if bk.GetCumulativeCount() < prev {
			t.Errorf("buckets not cumulative: %v", h.GetBucket())
		}
		prev = bk.GetCumulativeCount()
	}
	if n := len(h.GetBucket()); n == 0 || prev != h.GetSampleCount() {
		t.Errorf("%d buckets, the last holding %d of %d samples", n, prev, h.GetSampleCount())
	}
}
