package collector

import (
	"testing"
)

// BenchmarkHandleMessage measures the per-message path from a socket buffer
// to the ring: header, sets, template lookup, record count, ring copy. The
// consumer drains in the same goroutine so the ring never fills.
func BenchmarkHandleMessage(b *testing.B) {
	_, l := testCollector(b, Config{RingSize: 16 << 20})
	g := newGen(1)
	l.handle(g.templates(256, tuple), udpFrom(exporterA))
	const perMsg = 30
	msg := g.data(256, 0, perMsg)
	cons := l.ring.Consumer()
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		l.handle(msg, udpFrom(exporterA))
		for cons.Next() != nil {
			cons.Release()
		}
	}
	if l.stats.records.Load() < uint64(b.N*perMsg) {
		b.Fatalf("only %d records reached the ring", l.stats.records.Load())
	}
	perRecord := float64(b.Elapsed().Nanoseconds()) / float64(b.N*perMsg)
	b.ReportMetric(1e9/perRecord, "records/s")
}

func TestHandleMessageNoAllocs(t *testing.T) {
	_, l := testCollector(t, Config{RingSize: 16 << 20})
	g := newGen(1)
	l.handle(g.templates(256, tuple), udpFrom(exporterA))
	msg := g.data(256, 0, 30)
	cons := l.ring.Consumer()
	l.handle(msg, udpFrom(exporterA)) // announce the template first
	allocs := testing.AllocsPerRun(200, func() {
		l.handle(msg, udpFrom(exporterA))
		for cons.Next() != nil {
			cons.Release()
		}
	})
	if allocs != 0 {
		t.Fatalf("handling a data message allocates %v times", allocs)
	}
}
