package promtext_test

import (
	"math"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/sluice-flow/sluice/dataplane/promtext"
	"github.com/sluice-flow/sluice/dataplane/promtext/promtexttest"
)

var (
	testCounter = promtext.Counter("test_events_total", "Events, by kind.")
	testGauge   = promtext.Gauge("test_level", `A gauge whose help has a backslash \ and a
newline.`)
	testHist = promtext.Histogram("test_latency_seconds", "Latency.", []float64{0.0005, 0.01, 1, 300})
)

func TestExposition(t *testing.T) {
	w := promtext.NewWriter([]byte("# preceding text\n"))
	w.Uint(testCounter, 3, "kind", "a")
	w.Uint(testCounter, math.MaxUint64, "kind", "b", "scope", "x")
	w.Head(promtext.Counter("test_empty_total", "No samples now."))
	w.Int(testGauge, -7)
	w.Histogram(testHist, []uint64{1, 0, 2, 0, 4}, 1234.5, "pod", "p1")
	w.Histogram(testHist, []uint64{0, 0, 0, 0, 0}, 0, "pod", "p2")
	want := `# preceding text
# HELP test_events_total Events, by kind.
# TYPE test_events_total counter
test_events_total{kind="a"} 3
test_events_total{kind="b",scope="x"} 18446744073709551615
# HELP test_empty_total No samples now.
# TYPE test_empty_total counter
# HELP test_level A gauge whose help has a backslash \\ and a\nnewline.
# TYPE test_level gauge
test_level -7
# HELP test_latency_seconds Latency.
# TYPE test_latency_seconds histogram
test_latency_seconds_bucket{pod="p1",le="0.0005"} 1
test_latency_seconds_bucket{pod="p1",le="0.01"} 1
test_latency_seconds_bucket{pod="p1",le="1"} 3
test_latency_seconds_bucket{pod="p1",le="300"} 3
test_latency_seconds_bucket{pod="p1",le="+Inf"} 7
test_latency_seconds_sum{pod="p1"} 1234.5
test_latency_seconds_count{pod="p1"} 7
test_latency_seconds_bucket{pod="p2",le="0.0005"} 0
test_latency_seconds_bucket{pod="p2",le="0.01"} 0
test_latency_seconds_bucket{pod="p2",le="1"} 0
test_latency_seconds_bucket{pod="p2",le="300"} 0
test_latency_seconds_bucket{pod="p2",le="+Inf"} 0
test_latency_seconds_sum{pod="p2"} 0
test_latency_seconds_count{pod="p2"} 0
`
	got := w.Bytes()
	if string(got) != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}

	fams := promtexttest.Parse(t, got)
	if h := fams["test_level"].GetHelp(); h != "A gauge whose help has a backslash \\ and a\nnewline." {
		t.Errorf("help read back as %q", h)
	}
	if fams["test_events_total"].GetType() != dto.MetricType_COUNTER || len(fams["test_events_total"].GetMetric()) != 2 {
		t.Errorf("test_events_total read back as %v", fams["test_events_total"])
	}
	h := fams["test_latency_seconds"]
	if h.GetType() != dto.MetricType_HISTOGRAM || len(h.GetMetric()) != 2 {
		t.Fatalf("histogram read back as %v", h)
	}
	p1 := h.GetMetric()[0].GetHistogram()
	if p1.GetSampleCount() != 7 || p1.GetSampleSum() != 1234.5 || len(p1.GetBucket()) != 5 ||
		p1.GetBucket()[2].GetUpperBound() != 1 || p1.GetBucket()[2].GetCumulativeCount() != 3 {
		t.Errorf("histogram p1 read back as %v", p1)
	}
}

// TestLabelValues writes label values through the escaping and checks the
// Prometheus parser gives each back exactly.
func TestLabelValues(t *testing.T) {
	f := func(value, want string) {
		t.Helper()
		w := promtext.NewWriter(nil)
		w.Uint(testCounter, 1, "kind", value, "other", "plain")
		fams := promtexttest.Parse(t, w.Bytes())
		labels := fams["test_events_total"].GetMetric()[0].GetLabel()
		if got := labels[0].GetValue(); got != want {
			t.Errorf("%q written as %s read back as %q, want %q", value, w.Bytes(), got, want)
		}
		if got := labels[1].GetValue(); got != "plain" {
			t.Errorf("label after %q read back as %q", value, got)
		}
	}
	f("", "")
	f("udp", "udp")
	f(`back\slash`, `back\slash`)
	f(`"quoted"`, `"quoted"`)
	f("new\nline", "new\nline")
	f("all \\ \" \n three", "all \\ \" \n three")
	f(`\n literally`, `\n literally`)
	f(`trailing\`, `trailing\`)
	f("ipfix+tcp://[2001:db8::1]:4739?queue=8", "ipfix+tcp://[2001:db8::1]:4739?queue=8")
	f("tab\tand {braces}, comma=", "tab\tand {braces}, comma=")
	f("caf\u00e9 \u65e5\u672c", "caf\u00e9 \u65e5\u672c")
	f("bad \xff utf-8 \xc3", "bad \ufffd utf-8 \ufffd")
}

// TestLabelEscapingExact checks the bytes written against the format's rules:
// only backslash, double quote and newline are escaped.
func TestLabelEscapingExact(t *testing.T) {
	w := promtext.NewWriter(nil)
	w.Uint(testCounter, 1, "kind", "a\\b\"c\nd\te\u00e9")
	want := "test_events_total{kind=\"a\\\\b\\\"c\\nd\te\u00e9\"} 1\n"
	if got := string(w.Bytes()); !strings.HasSuffix(got, want) {
		t.Errorf("got %q, want suffix %q", got, want)
	}
}

func TestFloats(t *testing.T) {
	f := func(v float64, want string) {
		t.Helper()
		w := promtext.NewWriter(nil)
		w.Float(testGauge, v)
		line := string(w.Bytes())
		line = line[strings.LastIndexByte(line[:len(line)-1], '\n')+1:]
		if line != "test_level "+want+"\n" {
			t.Errorf("%v written as %q, want %q", v, line, want)
		}
		fams := promtexttest.Parse(t, w.Bytes())
		got := fams["test_level"].GetMetric()[0].GetGauge().GetValue()
		if got != v && !(math.IsNaN(got) && math.IsNaN(v)) {
			t.Errorf("%v read back as %v", v, got)
		}
	}
	f(0, "0")
	f(1.5, "1.5")
	f(-2.25, "-2.25")
	f(1e-9, "1e-09")
	f(1715000000.123, "1.715000000123e+09")
	f(math.MaxFloat64, "1.7976931348623157e+308")
	f(math.NaN(), "NaN")
	f(math.Inf(1), "+Inf")
	f(math.Inf(-1), "-Inf")
}

// TestHeadOnce: a header is written once for consecutive samples, and again
// only for a different family.
func TestHeadOnce(t *testing.T) {
	w := promtext.NewWriter(nil)
	w.Head(testCounter)
	w.Head(testCounter)
	for i := range 3 {
		w.Uint(testCounter, uint64(i), "kind", string(rune('a'+i)))
	}
	w.Head(testCounter)
	w.Int(testGauge, 1)
	if n := strings.Count(string(w.Bytes()), "# TYPE test_events_total "); n != 1 {
		t.Errorf("%d TYPE lines for test_events_total:\n%s", n, w.Bytes())
	}
	promtexttest.Parse(t, w.Bytes())
}

func TestNoAllocs(t *testing.T) {
	buf := make([]byte, 0, 64<<10)
	kinds := []string{"udp", "tcp"}
	buckets := make([]uint64, 5)
	var w promtext.Writer
	n := testing.AllocsPerRun(100, func() {
		w = promtext.NewWriter(buf[:0])
		for _, k := range kinds {
			w.Uint(testCounter, 42, "kind", k, "scope", "a \"quoted\"\nvalue\\")
		}
		w.Int(testGauge, -1)
		w.Float(testGauge, math.NaN())
		w.Histogram(testHist, buckets, 0.5, "pod", "p1")
	})
	if n != 0 {
		t.Errorf("%v allocations per exposition", n)
	}
	if len(w.Bytes()) == 0 || &w.Bytes()[0] != &buf[:1][0] {
		t.Error("the writer did not append into the caller's buffer")
	}
}

func TestBadDeclarations(t *testing.T) {
	f := func(name string, declare func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", name)
			}
		}()
		declare()
	}
	f("empty name", func() { promtext.Counter("", "x") })
	f("name with dash", func() { promtext.Counter("a-b", "x") })
	f("name with leading digit", func() { promtext.Gauge("1a", "x") })
	f("help not UTF-8", func() { promtext.Gauge("a", "\xff") })
	f("bounds not increasing", func() { promtext.Histogram("h", "x", []float64{1, 1}) })
	f("infinite bound", func() { promtext.Histogram("h", "x", []float64{math.Inf(1)}) })
	f("odd labels", func() { w := promtext.NewWriter(nil); w.Uint(testCounter, 1, "kind") })
	f("sample of a histogram", func() { w := promtext.NewWriter(nil); w.Uint(testHist, 1) })
	f("histogram of a counter", func() { w := promtext.NewWriter(nil); w.Histogram(testCounter, nil, 0) })
	f("wrong bucket count", func() { w := promtext.NewWriter(nil); w.Histogram(testHist, make([]uint64, 4), 0) })
}
