package mediator

import (
	"context"
	"net/netip"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/entry"
	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
	"github.com/sluice-flow/sluice/dataplane/pipeline"
	"github.com/sluice-flow/sluice/dataplane/promtext/promtexttest"
	"github.com/sluice-flow/sluice/dataplane/ring"
)

// queuedOut is an output with a queue and a name that needs escaping in a
// label value.
type queuedOut struct {
	name string
	n    uint64
}

func (o *queuedOut) Record(_ *jsonl.Meta, _ *ipfix.Record) { o.n++ }
func (o *queuedOut) Flush() error                          { return nil }
func (o *queuedOut) Close() error                          { return nil }
func (o *queuedOut) Name() string                          { return o.name }
func (o *queuedOut) Stats() export.Stats                   { return export.Stats{Sent: o.n, Dropped: 1, Errors: 2} }
func (o *queuedOut) Queued() int                           { return 3 }
func (o *queuedOut) Reconnects() uint64                    { return 4 }
func (o *queuedOut) Skipped() uint64                       { return 5 }
func (o *queuedOut) Unmapped() uint64                      { return 6 }

// TestMetricsParse runs records through two pipelines (one with a select and
// an aggregate) and reads the mediator's metrics back with the Prometheus
// parser.
func TestMetricsParse(t *testing.T) {
	r := ring.New(1 << 20)
	p := r.Producer()
	outs := map[string]*queuedOut{}
	set := pipeline.NewOutputSet(func(spec string) (export.Output, error) {
		o := &queuedOut{name: spec + " \"quoted\" back\\slash\nnewline\ttab"}
		outs[spec] = o
		return o, nil
	})
	c, err := pipeline.Parse([]byte(`pipelines:
  - name: web
    stages:
      - select: octetDeltaCount > 1
      - aggregate: {keys: [sourceIPv4Address], values: [octetDeltaCount], max_keys: 100}
    outputs: ["jsonl:/a"]
  - outputs: ["jsonl:/b"]
`))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := pipeline.Compile(c, set)
	if err != nil {
		t.Fatal(err)
	}
	m := NewPipeline([]*ring.Ring{r}, snap, nil)

	specs := []ipfix.FieldSpec{{ID: 8, Length: 4}, {ID: 1, Length: 8}}
	raw := ipfix.AppendTemplateRecord(nil, 256, specs)
	var tr ipfix.TemplateRecord
	if err := ipfix.ParseTemplateRecord(raw, false, false, &tr); err != nil {
		t.Fatal(err)
	}
	l, err := ipfix.Compile(&tr)
	if err != nil {
		t.Fatal(err)
	}
	exp := netip.MustParseAddrPort("192.0.2.1:9999")
	push(t, p, entry.Header{Kind: entry.KindTemplate, Version: 10, Domain: 1, Exporter: exp, TemplateID: 256, Fingerprint: l.Fingerprint}, raw)
	var body []byte
	for i := range 4 {
		body = ipfix.AppendAddr(body, netip.AddrFrom4([4]byte{10, 0, 0, byte(i % 2)}))
		body = ipfix.AppendUint(body, uint64(i), 8)
	}
	push(t, p, entry.Header{Kind: entry.KindData, Version: 10, Domain: 1, Exporter: exp, TemplateID: 256, Fingerprint: l.Fingerprint, Records: 4}, body)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Run drains what is queued, then returns
	m.Run(ctx)
	defer m.Close()

	fams := promtexttest.Parse(t, m.AppendMetrics(nil))
	value := func(name string, labels ...string) float64 {
		t.Helper()
		f := fams[name]
	next:
		for _, s := range f.GetMetric() {
			if len(s.GetLabel()) != len(labels)/2 {
				continue
			}
			for i, lp := range s.GetLabel() {
				if lp.GetName() != labels[2*i] || lp.GetValue() != labels[2*i+1] {
					continue next
				}
			}
			switch {
			case s.Counter != nil:
				return s.GetCounter().GetValue()
			case s.Gauge != nil:
				return s.GetGauge().GetValue()
			}
		}
		t.Fatalf("no series %s%q in %v", name, labels, f)
		return 0
	}
	const pipe = "web"
	a, b := outs["jsonl:/a"].name, outs["jsonl:/b"].name
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"sluice_records_total", nil, 4},
		{"sluice_pipeline_version", nil, 1},
		{"sluice_pipeline_stage_records_total", []string{"pipeline", pipe, "stage", "1:select", "direction", "in"}, 4},
		{"sluice_pipeline_stage_records_total", []string{"pipeline", pipe, "stage", "1:select", "direction", "out"}, 2},
		{"sluice_pipeline_stage_errors_total", []string{"pipeline", pipe, "stage", "2:aggregate"}, 0},
		{"sluice_aggregate_emitted_total", []string{"pipeline", pipe, "stage", "2:aggregate"}, 0},
		{"sluice_aggregate_keys", []string{"pipeline", pipe, "stage", "2:aggregate"}, 2},
		{"sluice_pipeline_stage_records_total", []string{"pipeline", "pipeline2", "stage", "outputs", "direction", "in"}, 4},
		{"sluice_output_records_total", []string{"output", b, "outcome", "sent"}, 4},
		{"sluice_output_records_total", []string{"output", a, "outcome", "dropped"}, 1},
		{"sluice_output_queued_records", []string{"output", a}, 3},
		{"sluice_output_reconnects_total", []string{"output", b}, 4},
		{"sluice_output_errors_total", []string{"output", b}, 2},
		{"sluice_output_records_total", []string{"output", a, "outcome", "skipped"}, 5},
		{"sluice_output_unmapped_values_total", []string{"output", b}, 6},
	} {
		if got := value(c.name, c.labels...); got != c.want {
			t.Errorf("%s%q = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}
