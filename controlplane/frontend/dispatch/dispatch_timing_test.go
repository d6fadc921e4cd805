package dispatch

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"
)

// BenchmarkDispatchEmptyJob measures a job's round trip through ZeroMQ:
// Submit to the DONE event, for a job whose handler returns at once, with
// one worker on ipc:// (a goroutine of this process; the path through the
// sockets is the one separate processes take).
func BenchmarkDispatchEmptyJob(b *testing.B) {
	done := make(chan time.Time, 1)
	br := startBroker(b, BrokerConfig{Endpoint: ipc(b)}, func(e Event) {
		if e.Kind == EventDone {
			done <- time.Now()
		}
	})
	empty := func(context.Context, Job, func(float64)) ([]Output, error) { return nil, nil }
	startWorker(b, WorkerConfig{Broker: br.cfg.Endpoint}, empty)
	for len(br.Workers()) == 0 {
		time.Sleep(time.Millisecond)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		br.Submit(Job{ID: strconv.Itoa(i), Type: "echo"})
		lat = append(lat, (<-done).Sub(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
