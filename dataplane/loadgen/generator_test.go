package loadgen

import (
	"context"
	"testing"
	"time"
)

// TestSequences runs the generator on a fake clock into a sink and checks
// that every exporter's sequence numbers run on without a gap across
// template retransmissions and options records (IPFIX counts data records,
// v9 counts packets), and that the summary's counts and first and next
// sequence numbers match what was sent.
func TestSequences(t *testing.T) {
	f := func(cfg Config, wantTemplates uint64) {
		t.Helper()
		sum, s, _ := runFake(t, cfg, newFakeClock(), nil)
		checkSummary(t, s.msgs, sum, 0)
		if sum.TemplateMessages != wantTemplates {
			t.Errorf("%+v: %d template messages, want %d", cfg, sum.TemplateMessages, wantTemplates)
		}
		if sum.Messages == 0 || sum.SendErrors != 0 {
			t.Errorf("%+v: %d messages, %d send errors", cfg, sum.Messages, sum.SendErrors)
		}
		if sum.Seconds < cfg.Duration.Seconds() || sum.Seconds > cfg.Duration.Seconds()+0.1 {
			t.Errorf("%+v: ran %v s on the fake clock", cfg, sum.Seconds)
		}
	}
	paced := Rate{PerSecond: 6000} // 200 messages/s of 30 records
	five := 5 * time.Second
	// Templates go at 0 s and then every second: 5 times per exporter.
	f(Config{Rate: paced, Duration: five, Exporters: 3}, 15)
	f(Config{Rate: paced, Duration: five, Exporters: 3, Protocol: NetFlowV9}, 15)
	f(Config{Rate: paced, Duration: five, Exporters: 2, Templates: []Template{FiveTuple, Options}}, 10)
	f(Config{Rate: paced, Duration: five, Exporters: 2, Templates: []Template{Options, IPv6, VarLen}, Protocol: NetFlowV9}, 10)
	f(Config{Rate: paced, Duration: five, Exporters: 2, TemplateInterval: 500 * time.Millisecond, Records: 3}, 20)
	// Over TCP they go once.
	f(Config{Rate: paced, Duration: five, Exporters: 3, TCP: true, Templates: []Template{VarLen, Options}}, 3)
	// Sequence numbers wrap at 2^32 like any exporter's.
	g, err := newGenerator(Config{Count: 40, Records: 1000}, newFakeClock())
	if err != nil {
		t.Fatal(err)
	}
	g.exps[0].seq, g.exps[0].firstSeq = 1<<32-5000, 1<<32-5000
	s := attachSink(g)
	sum := g.Run(context.Background())
	checkSummary(t, s.msgs, sum, 0)
	if next := sum.Exporters[0].NextSequence; next != 40*1000-5000 {
		t.Errorf("next sequence after the wrap %d, want %d", next, 40*1000-5000)
	}
}

// TestSendFailures: messages that did not go used up their sequence
// numbers, are counted as send errors, and are not counted as sent.
func TestSendFailures(t *testing.T) {
	for _, p := range []Protocol{IPFIX, NetFlowV9} {
		calls := map[uint32]int{}
		fail := func(e *exporter, n int) int {
			calls[e.domain]++
			if e.domain == 2 && calls[e.domain]%3 == 0 {
				return n / 2
			}
			return n
		}
		cfg := Config{Protocol: p, Count: 500, Exporters: 3, Batch: 7, Templates: []Template{FiveTuple, Options}}
		sum, s, _ := runFake(t, cfg, newFakeClock(), fail)
		checkSummary(t, s.msgs, sum, 0)
		lost := 0
		for _, m := range s.msgs[2] {
			if m.lost {
				lost++
			}
		}
		if lost == 0 || sum.SendErrors == 0 {
			t.Fatalf("%v: %d messages lost, %d send errors: the test lost nothing", p, lost, sum.SendErrors)
		}
		if sum.Messages != 500+3-uint64(lost) {
			t.Errorf("%v: %d messages counted, want 500 data + 3 options - %d lost", p, sum.Messages, lost)
		}
	}
}

// TestCount: Count data messages in all, shared among the exporters in
// rounds of at most a batch each.
func TestCount(t *testing.T) {
	f := func(cfg Config, want map[uint32][]int) {
		t.Helper()
		sum, s, _ := runFake(t, cfg, newFakeClock(), nil)
		checkSummary(t, s.msgs, sum, 0)
		if sum.Messages != uint64(cfg.Count) {
			t.Errorf("%+v: %d messages, want %d", cfg, sum.Messages, cfg.Count)
		}
		for dom, w := range want {
			if got := s.flushes[dom]; !equalInts(got, w) {
				t.Errorf("%+v: exporter %d sent batches %v, want %v", cfg, dom, got, w)
			}
		}
	}
	f(Config{Count: 10, Exporters: 4, Batch: 3}, map[uint32][]int{1: {3}, 2: {3}, 3: {3}, 4: {1}})
	f(Config{Count: 10, Exporters: 2, Batch: 3}, map[uint32][]int{1: {3, 3}, 2: {3, 1}})
	f(Config{Count: 1, Exporters: 3}, map[uint32][]int{1: {1}, 2: nil, 3: nil})
	f(Config{Count: 200, Exporters: 1}, map[uint32][]int{1: {64, 64, 64, 8}})
	// Paced: bursts of a millisecond's worth, 100k messages/s over 4
	// exporters is 25 each.
	f(Config{Count: 230, Exporters: 4, Rate: Rate{PerSecond: 1e5, Packets: true}},
		map[uint32][]int{1: {25, 25, 25}, 2: {25, 25, 5}, 3: {25, 25}, 4: {25, 25}})
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestDataFirst: with DataFirst the first data messages go before any
// template; the templates follow in the next round.
func TestDataFirst(t *testing.T) {
	for _, tcp := range []bool{false, true} {
		cfg := Config{DataFirst: true, TCP: tcp, Count: 20, Exporters: 2, Batch: 4, Records: 5}
		sum, s, _ := runFake(t, cfg, newFakeClock(), nil)
		checkSummary(t, s.msgs, sum, 5)
		for dom, msgs := range s.msgs {
			dec := newDecoder(t)
			dec.early = 5
			var kinds []string
			for _, m := range msgs {
				d := dec.decode(m.b)
				switch {
				case len(d.templates) > 0:
					kinds = append(kinds, "tpl")
				case d.early:
					kinds = append(kinds, "early")
				default:
					kinds = append(kinds, "data")
				}
			}
			// Round 0: 4 data messages; round 1: templates, 4 data...
			want := []string{"early", "early", "early", "early", "tpl", "data", "data", "data", "data", "data", "data"}
			if len(kinds) < 6 || !equalStrings(kinds[:6], want[:6]) {
				t.Errorf("tcp %v exporter %d: sent %v, want %v...", tcp, dom, kinds, want[:6])
			}
		}
		if sum.TemplateMessages != 2 {
			t.Errorf("tcp %v: %d template messages, want 2", tcp, sum.TemplateMessages)
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestKeysCycleSent: the sent records go round the exporter's keys, and a
// cycle longer than a batch wraps in the right place.
func TestKeysCycleSent(t *testing.T) {
	cfg := Config{Keys: 100, Exporters: 2, Records: 7, Count: 42, Batch: 3}
	_, s, g := runFake(t, cfg, newFakeClock(), nil)
	for _, e := range g.exps {
		dec := newDecoder(t)
		var keys []flowKey
		for _, m := range s.msgs[e.domain] {
			keys = append(keys, dec.decode(m.b).keys...)
		}
		// 50 keys in 8 messages of 7: keys 0..49, then 0..5 to fill the
		// last message, then the cycle starts over at key 0.
		if len(keys) != 21*7 {
			t.Fatalf("exporter %d: %d records, want %d", e.domain, len(keys), 21*7)
		}
		for i, k := range keys {
			n := (i % 56) % 50
			if want := sourceKey(e.domain, n); k != want {
				t.Fatalf("exporter %d record %d: key %+v, want key %d %+v", e.domain, i, k, n, want)
			}
		}
	}
}

// sourceKey is the n-th 5-tuple of exporter domain, as appendRecord makes it.
func sourceKey(domain uint32, n int) flowKey {
	b := appendRecord(nil, FiveTuple, int(domain), n, 0)
	return flowKey{src: addr4(b[0:4]), dst: addr4(b[4:8]), sport: uint16(b[8])<<8 | uint16(b[9])}
}

// TestCanceled: a done context ends the run after the first templates.
func TestCanceled(t *testing.T) {
	g, err := newGenerator(Config{Exporters: 2}, newFakeClock())
	if err != nil {
		t.Fatal(err)
	}
	s := attachSink(g)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	sum := g.Run(ctx)
	checkSummary(t, s.msgs, sum, 0)
	if sum.Messages != 0 || sum.TemplateMessages != 2 {
		t.Errorf("canceled run sent %d messages, %d template messages; want 0, 2", sum.Messages, sum.TemplateMessages)
	}
}

// TestPorts: each exporter sends from Ports sockets that share its address
// and observation domain.
func TestPorts(t *testing.T) {
	g, err := newGenerator(Config{Exporters: 3, Ports: 4}, &wallClock{})
	if err != nil {
		t.Fatal(err)
	}
	per := map[uint32]int{}
	for _, e := range g.exps {
		per[e.domain]++
	}
	if len(g.exps) != 12 || per[1] != 4 || per[2] != 4 || per[3] != 4 {
		t.Errorf("%d sockets, by domain %v; want 12, 4 for each of domains 1..3", len(g.exps), per)
	}
}
