package analysis

import (
	"context"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/offline/decode"
)

// benchSpec: a million records, 5000 sources.
var benchSpec = genSpec{records: 1_000_000, sources: 5000, base: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}

func benchInput(b *testing.B) Input {
	b.Helper()
	p := filepath.Join(b.TempDir(), "bench.ipfix")
	benchSpec.write(b, p, 0, benchSpec.records, true)
	return Input{Files: []string{p}}
}

// benchJob runs a whole job (reading the file from the page cache
// included) and reports records/s per core.
func benchJob(b *testing.B, run func(in Input) error) {
	in := benchInput(b)
	if err := run(in); err != nil { // warm the page cache
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(fileSize(b, in.Files[0]))
	b.ResetTimer()
	start, cpu := time.Now(), cpuTime()
	for range b.N {
		if err := run(in); err != nil {
			b.Fatal(err)
		}
	}
	report(b, start, cpu)
}

// report gives records per wall second and per CPU second of the
// process: on a loaded machine the second is the per-core rate.
func report(b *testing.B, start time.Time, cpu time.Duration) {
	n := float64(benchSpec.records) * float64(b.N)
	b.ReportMetric(n/time.Since(start).Seconds(), "records/s")
	b.ReportMetric(n/(cpuTime()-cpu).Seconds(), "records/cpu-s")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func fileSize(b *testing.B, p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		b.Fatal(err)
	}
	return st.Size()
}

func BenchmarkDecodeOnly(b *testing.B) {
	benchJob(b, func(in Input) error {
		s, err := newScan(context.Background(), &in, compiled{}, 1)
		if err != nil {
			return err
		}
		return s.run(nopSink{}, false)
	})
}

type nopSink struct{}

func (nopSink) record(*decode.Record) {}

func BenchmarkTopN(b *testing.B) {
	benchJob(b, func(in Input) error {
		_, err := TopN(context.Background(), in, TopNParams{By: []string{"sourceIPv4Address"}})
		return err
	})
}

func BenchmarkTopN5Tuple(b *testing.B) {
	benchJob(b, func(in Input) error {
		_, err := TopN(context.Background(), in, TopNParams{By: fiveTuple})
		return err
	})
}

func BenchmarkTopNFiltered(b *testing.B) {
	benchJob(b, func(in Input) error {
		_, err := TopN(context.Background(), in, TopNParams{Common: Common{Filter: "protocolIdentifier == 6 and destinationTransportPort in [80, 81]"}, By: []string{"sourceIPv4Address"}})
		return err
	})
}

func BenchmarkTimeseries(b *testing.B) {
	benchJob(b, func(in Input) error {
		_, err := Timeseries(context.Background(), in, TimeseriesParams{})
		return err
	})
}

// Split: two passes over the input; records/s counts each record once.
func BenchmarkTimeseriesSplit(b *testing.B) {
	benchJob(b, func(in Input) error {
		_, err := Timeseries(context.Background(), in, TimeseriesParams{SplitBy: []string{"sourceIPv4Address"}, Top: 10})
		return err
	})
}

func BenchmarkGraph(b *testing.B) {
	benchJob(b, func(in Input) error {
		_, err := Graph(context.Background(), in, GraphParams{})
		return err
	})
}

func BenchmarkRecordsLastPage(b *testing.B) {
	benchJob(b, func(in Input) error {
		_, err := Records(context.Background(), in, RecordsParams{Offset: int64(benchSpec.records) - 100})
		return err
	})
}

// memScan is a scan over messages in memory, for the hot-loop benchmarks
// and the allocation test.
func memScan(cfg compiled, k sink) *scan {
	s := &scan{ctx: context.Background(), in: &Input{}, cfg: cfg, passes: 1}
	s.handle = s.record
	s.sink = k
	s.dec = decode.New()
	return s
}

// messages splits an IPFIX file's bytes into its messages.
func messages(b []byte) [][]byte {
	var out [][]byte
	for len(b) >= 4 {
		n := int(binary.BigEndian.Uint16(b[2:]))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

func (s *scan) feed(msgs [][]byte) {
	for _, m := range msgs {
		s.dec.Decode(netip.AddrPort{}, m, s.handle)
	}
}

// benchSink measures the decoder and a sink alone, from memory.
func benchSink(b *testing.B, mk func(s *scan) sink) {
	p := filepath.Join(b.TempDir(), "bench.ipfix")
	benchSpec.write(b, p, 0, benchSpec.records, true)
	raw, err := os.ReadFile(p)
	if err != nil {
		b.Fatal(err)
	}
	msgs := messages(raw)
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu := time.Now(), cpuTime()
	for range b.N {
		s := memScan(compiled{}, nil)
		s.sink = mk(s)
		s.feed(msgs)
	}
	report(b, start, cpu)
}

func BenchmarkSinkNop(b *testing.B) {
	benchSink(b, func(*scan) sink { return nopSink{} })
}

func BenchmarkSinkTopN(b *testing.B) {
	ks, _ := parseKey("by", []string{"sourceIPv4Address"})
	benchSink(b, func(*scan) sink { return newKeyCounter[[8]byte](&ks, DefaultMaxKeys) })
}

func BenchmarkSinkTimeseries(b *testing.B) {
	c, _ := (&TimeseriesParams{}).compile()
	benchSink(b, func(s *scan) sink { return &totalSink{s: s, tl: newTimeline(&c, 1)} })
}

func BenchmarkSinkGraph(b *testing.B) {
	benchSink(b, func(*scan) sink { return newGraphSink(DefaultMaxKeys) })
}
