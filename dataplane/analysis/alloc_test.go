package analysis

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/filter"
)

// TestNoAllocs: once a job has seen a template and its keys, decoding a
// message and taking its records allocates nothing, filter included.
func TestNoAllocs(t *testing.T) {
	g := genSpec{records: 300, sources: 10, base: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	p := filepath.Join(t.TempDir(), "a.ipfix")
	g.write(t, p, 0, g.records, true)
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	msgs := messages(raw)
	five, _ := parseKey("by", fiveTuple)
	one, _ := parseKey("by", []string{"sourceIPv4Address"})
	ts, _ := (&TimeseriesParams{}).compile()
	split, _ := (&TimeseriesParams{SplitBy: []string{"protocolIdentifier"}}).compile()
	sinks := map[string]func(s *scan) sink{
		"topn":  func(*scan) sink { return newKeyCounter[[8]byte](&one, DefaultMaxKeys) },
		"topn5": func(*scan) sink { return newKeyCounter[[16]byte](&five, DefaultMaxKeys) },
		"timeseries": func(s *scan) sink {
			return &totalSink{s: s, tl: newTimeline(&ts, 1)}
		},
		"timeseries split": func(s *scan) sink {
			return &splitSink[[8]byte]{s: s, key: &split.key, idx: map[[8]byte]int{{1, 6}: 0}, other: 1, tl: newTimeline(&split, 2)}
		},
		"graph":   func(*scan) sink { return newGraphSink(DefaultMaxKeys) },
		"records": func(*scan) sink { return &recordsSink{offset: 1 << 40, limit: 10} },
	}
	for name, mk := range sinks {
		for _, expr := range []string{"", "protocolIdentifier == 6 and sourceIPv4Address in 10.0.0.0/16"} {
			var c compiled
			if expr != "" {
				c.expr = filter.MustParse(expr)
			}
			s := memScan(c, nil)
			s.sink = mk(s)
			s.feed(msgs) // templates, plans, keys
			// The first message after the template holds data only.
			data := msgs[1:]
			i := 0
			n := testing.AllocsPerRun(200, func() {
				s.feed(data[i%len(data) : i%len(data)+1])
				i++
			})
			if n != 0 {
				t.Errorf("%s with filter %q: %v allocations per message", name, expr, n)
			}
			if s.sum.Matched == 0 {
				t.Errorf("%s with filter %q: nothing matched", name, expr)
			}
		}
	}
}
