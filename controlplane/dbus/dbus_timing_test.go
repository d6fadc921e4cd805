package dbus

import (
	"context"
	"slices"
	"testing"
	"time"
)

// BenchmarkRoundTrip times method calls through the daemon: the client
// calls Collector1.Status (an a{sv} of nine entries) and waits for the
// reply, one call at a time. It reports the median and the 99th
// percentile of the round trip.
func BenchmarkRoundTrip(b *testing.B) {
	p := startPod(b)
	ctx := context.Background()
	cc := p.client.Collector()
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := cc.Status(ctx); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}
