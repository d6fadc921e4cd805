package ring

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

var benchSizes = []int{64, 1400}

// BenchmarkRingSPSC moves b.N entries from a producer goroutine to a
// consumer goroutine through a 1 MiB ring. The producer copies a payload in,
// as the collector copies a datagram, and yields when the ring is full; the
// consumer reads both ends of each entry and sleeps in Wait when the ring is
// empty, as the mediator does.
func BenchmarkRingSPSC(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			r := New(1 << 20)
			benchSPSC(b, r.Producer(), r.Consumer(), size)
		})
	}
}

// BenchmarkRingSingle reserves, fills, commits, reads and releases one
// entry at a time on one goroutine: the cost of the operations without
// contention.
func BenchmarkRingSingle(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			r := New(1 << 20)
			p, c := r.Producer(), r.Consumer()
			payload := make([]byte, size)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			var sum uint64
			for b.Loop() {
				e := p.Reserve(size)
				payload[0] = byte(sum)
				copy(e, payload)
				p.Commit(size)
				e = c.Next()
				sum += uint64(e[0])
				c.Release()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// benchSPSC moves b.N entries of size bytes from p, on this goroutine, to c
// on another, and reports entries/s and ns/entry.
func benchSPSC(b *testing.B, p *Producer, c *Consumer, size int) {
	payload := make([]byte, size)
	n := b.N
	done := make(chan uint64)
	b.ReportAllocs()
	b.SetBytes(int64(size))
	b.ResetTimer()
	go func() {
		var sum uint64
		for range n {
			e := c.Next()
			for e == nil {
				c.Wait(time.Second, nil)
				e = c.Next()
			}
			sum += uint64(e[0]) + uint64(e[len(e)-1])
			c.Release()
		}
		done <- sum
	}()
	for i := range n {
		e := p.Reserve(size)
		for e == nil {
			runtime.Gosched()
			e = p.Reserve(size)
		}
		payload[0] = byte(i)
		copy(e, payload)
		p.Commit(size)
	}
	<-done
	b.StopTimer()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/entry")
}
