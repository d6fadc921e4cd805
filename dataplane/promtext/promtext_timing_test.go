package promtext_test

import (
	"strconv"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/promtext"
)

// BenchmarkExposition writes 100 labelled samples and a histogram, about
// what a collector with a few dozen exporters shows per family.
func BenchmarkExposition(b *testing.B) {
	exporters := make([]string, 100)
	for i := range exporters {
		exporters[i] = "192.0.2." + strconv.Itoa(i)
	}
	buckets := make([]uint64, 5)
	buf := make([]byte, 0, 64<<10)
	b.ReportAllocs()
	for b.Loop() {
		w := promtext.NewWriter(buf[:0])
		for i, e := range exporters {
			w.Uint(testCounter, uint64(i)<<20, "exporter", e, "domain", "1", "version", "10")
		}
		w.Histogram(testHist, buckets, 12.5)
		buf = w.Bytes()
	}
	b.SetBytes(int64(len(buf)))
	b.ReportMetric(float64(b.N)*101/b.Elapsed().Seconds(), "samples/s")
}
