package pipeline_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/pipeline"
)

func compileWith(t *testing.T, set *pipeline.OutputSet, src string) *pipeline.Snapshot {
	t.Helper()
	c, err := pipeline.Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	s, err := pipeline.Compile(c, set)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func hasOutput(s *pipeline.Snapshot, o export.Output) bool {
	for _, x := range s.Outputs() {
		if x == o {
			return true
		}
	}
	return false
}

func TestSnapshotSharedOutputs(t *testing.T) {
	o := newOutputs()
	set := pipeline.NewOutputSet(o.open)
	s1 := compileWith(t, set, "outputs: {shared: \"jsonl:/shared\"}\npipelines:\n  - outputs: [shared, \"jsonl:/old\"]\n")
	shared, old := o.get(t, "jsonl:/shared"), o.get(t, "jsonl:/old")
	s2 := compileWith(t, set, "outputs: {up: \"jsonl:/shared\"}\npipelines:\n  - outputs: [up]\n  - outputs: [\"jsonl:/new\", \"jsonl:/shared\"]\n")
	renewed := o.get(t, "jsonl:/new")
	if o.get(t, "jsonl:/shared") != shared || len(o.all) != 3 {
		t.Fatalf("the shared output was opened again: %d opened", len(o.all))
	}
	if !hasOutput(s1, shared) || !hasOutput(s2, shared) || len(s2.Outputs()) != 2 || len(s1.Outputs()) != 2 {
		t.Errorf("outputs %v %v", s1.Outputs(), s2.Outputs())
	}
	// s2 sends each record to shared twice: two pipelines.
	l := mkLayout(t, 300, spec(idOctets, 8))
	s2.Process(mkMeta("192.0.2.1:4739", 1), mkRecord(t, l, encode(t, l, 1)))
	if len(shared.recs) != 2 || len(renewed.recs) != 1 {
		t.Errorf("shared %d, new %d", len(shared.recs), len(renewed.recs))
	}

	s1.Retire()
	if err := set.Wait(); err != nil {
		t.Fatal(err)
	}
	if old.closed.Load() != 1 || shared.closed.Load() != 0 || renewed.closed.Load() != 0 {
		t.Errorf("after the old snapshot: closed old %d shared %d new %d", old.closed.Load(), shared.closed.Load(), renewed.closed.Load())
	}
	if old.flushes == 0 || shared.flushes == 0 {
		t.Error("Retire did not flush")
	}
	s1.Retire() // again: nothing
	set.Wait()
	if old.closed.Load() != 1 {
		t.Error("closed twice")
	}

	// A third snapshot opens the spec s1 closed anew.
	s3 := compileWith(t, set, "pipelines:\n  - outputs: [\"jsonl:/old\"]\n")
	if o.get(t, "jsonl:/old") == old {
		t.Error("a closed output came back")
	}
	s2.Retire()
	set.Wait()
	if shared.closed.Load() != 1 || renewed.closed.Load() != 1 {
		t.Errorf("after the new snapshot: shared %d new %d", shared.closed.Load(), renewed.closed.Load())
	}
	s3.Discard()
	s3.Retire() // after Discard: nothing
	if err := s3.WaitClosed(); err != nil {
		t.Fatal(err)
	}
	if n := o.openCount(); n != 0 {
		t.Errorf("%d outputs open", n)
	}
}

// One output named twice in a pipeline gets each record once.
func TestSnapshotSameOutputTwice(t *testing.T) {
	s, o := compileSrc(t, "outputs: {a: \"jsonl:/x\", b: \"jsonl:/x\"}\npipelines:\n  - outputs: [a, b, \"jsonl:/x\"]\n")
	l := mkLayout(t, 300, spec(idOctets, 8))
	s.Process(mkMeta("192.0.2.1:4739", 1), mkRecord(t, l, encode(t, l, 1)))
	x := o.get(t, "jsonl:/x")
	if len(x.recs) != 1 || len(o.all) != 1 || len(s.Outputs()) != 1 {
		t.Errorf("%d records, %d opened", len(x.recs), len(o.all))
	}
	s.Retire()
	s.WaitClosed()
	if x.closed.Load() != 1 {
		t.Errorf("closed %d times", x.closed.Load())
	}
}

// Retire emits the aggregates held; Discard drops them.
func TestSnapshotRetireEmits(t *testing.T) {
	for _, discard := range []bool{false, true} {
		s, out := stages(t, "aggregate: {keys: [protocolIdentifier], max_keys: 10}")
		l := mkLayout(t, 300, spec(idProto, 1), spec(idOctets, 8))
		s.Process(mkMeta("192.0.2.1:4739", 1), mkRecord(t, l, encode(t, l, 6, 1)))
		if discard {
			s.Discard()
		} else {
			s.Retire()
		}
		s.WaitClosed()
		if (len(out.recs) == 1) == discard || out.closed.Load() != 1 {
			t.Errorf("discard %v: %d records, closed %d", discard, len(out.recs), out.closed.Load())
		}
	}
}

func TestSnapshotFlushErrors(t *testing.T) {
	o := newOutputs()
	set := pipeline.NewOutputSet(func(spec string) (export.Output, error) {
		c, _ := o.open(spec)
		if strings.Contains(spec, "bad") {
			return &failing{capture: c.(*capture)}, nil
		}
		return c, nil
	})
	s := compileWith(t, set, "pipelines:\n  - outputs: [\"jsonl:/bad\", \"jsonl:/good\"]\n")
	err := s.Flush()
	if err == nil || !strings.Contains(err.Error(), "jsonl:/bad: disk full") || strings.Contains(err.Error(), "good") {
		t.Errorf("flush: %v", err)
	}
	s.Retire()
	err = s.WaitClosed()
	if err == nil || !strings.Contains(err.Error(), "jsonl:/bad: no close") {
		t.Errorf("close: %v", err)
	}
	if err := s.WaitClosed(); err != nil {
		t.Errorf("errors reported twice: %v", err)
	}
}

type failing struct{ *capture }

func (f *failing) Flush() error { return errors.New("disk full") }
func (f *failing) Close() error {
	f.capture.Close()
	return errors.New("no close")
}

func TestPassthrough(t *testing.T) {
	a, b := &capture{spec: "a"}, &capture{spec: "b"}
	s := pipeline.Passthrough([]export.Output{a, b})
	l := mkLayout(t, 300, spec(idOctets, 8))
	ol := mkOptionsLayout(t, 400, 1, spec(idSamplerID, 1), spec(idSamplingInt, 4))
	r := mkRecord(t, l, encode(t, l, 1))
	or := mkRecord(t, ol, encode(t, ol, 1, 10))
	s.Process(mkMeta("192.0.2.1:4739", 1), r)
	s.Process(mkMeta("192.0.2.1:4739", 1), or)
	for _, c := range []*capture{a, b} {
		if len(c.recs) != 2 || c.recs[0].RawPtr != &r.Raw()[0] || c.recs[1].RawPtr != &or.Raw()[0] {
			t.Errorf("%s: %+v", c.spec, c.recs)
		}
	}
	if len(s.Outputs()) != 2 {
		t.Errorf("%d outputs", len(s.Outputs()))
	}
	s.Retire()
	s.WaitClosed()
	if a.closed.Load() != 1 || b.closed.Load() != 1 {
		t.Error("not closed")
	}
}

// Metrics are read on other goroutines while the snapshot runs.
func TestSnapshotMetricsConcurrent(t *testing.T) {
	s, _ := stages(t, "select: octetDeltaCount > 1", "aggregate: {keys: [protocolIdentifier], max_keys: 10, idle_timeout: 1s}")
	s.Version = 7
	l := mkLayout(t, 300, spec(idProto, 1), spec(idOctets, 8))
	r := mkRecord(t, l, encode(t, l, 6, 5))
	m := mkMeta("192.0.2.1:4739", 1)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				if b := s.AppendMetrics(nil); !strings.Contains(string(b), "sluice_pipeline_version 7\n") {
					t.Error("no version")
					return
				}
			}
		}
	}()
	now := time.Unix(1_000_000, 0)
	s.Tick(now)
	for i := range 2000 {
		s.Process(m, r)
		if i%100 == 0 {
			now = now.Add(2 * time.Second)
			s.Tick(now)
		}
	}
	close(stop)
	wg.Wait()
	if n := stageMetric(t, s, "1:select", "in"); n != 2000 {
		t.Errorf("select in %d", n)
	}
	// One aggregate per synthetic tick, and the last one at the real
	// time metric ticks with.
	if n := metric(t, s, `sluice_aggregate_emitted_total{pipeline="p",stage="2:aggregate"}`); n != 21 {
		t.Errorf("emitted %d", n)
	}
	s.Retire()
}

type bufCloser struct{ *bytes.Buffer }

func (bufCloser) Close() error { return nil }

// End to end: stages into JSON lines.
func TestJSONLEnd(t *testing.T) {
	var buf bytes.Buffer
	c, err := pipeline.Parse([]byte("pipelines:\n  - outputs: [\"jsonl:-\"]\n    stages:\n" +
		"      - select: protocolIdentifier == 17\n" +
		"      - set: {vlanId: 9, interfaceName: uplink}\n" +
		"      - anonymise: {method: truncate, ipv4_prefix: 16}\n" +
		"      - enrich: {exporter: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := pipeline.Compile(c, pipeline.NewOutputSet(func(spec string) (export.Output, error) {
		return export.NewJSONL(spec, bufCloser{&buf}), nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	l := mkLayout(t, 300, spec(idSrc4, 4), spec(idProto, 1), spec(idOctets, 8))
	m := mkMeta("192.0.2.1:4739", 3)
	s.Process(m, mkRecord(t, l, encode(t, l, addr("10.20.30.40"), 17, 1000)))
	s.Process(m, mkRecord(t, l, encode(t, l, addr("10.20.30.41"), 6, 1000)))
	s.Retire()
	if err := s.WaitClosed(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d lines: %s", len(lines), buf.String())
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"exporter": "192.0.2.1:4739", "observation_domain": 3.0, "template_id": 300.0,
		"sourceIPv4Address": "10.20.0.0", "protocolIdentifier": 17.0, "octetDeltaCount": 1000.0,
		"vlanId": 9.0, "interfaceName": "uplink", "originalExporterIPv4Address": "192.0.2.1", "originalObservationDomainId": 3.0,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}
