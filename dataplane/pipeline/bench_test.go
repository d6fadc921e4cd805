package pipeline

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
)

// benchLayout is a 5-tuple template with counters and times.
func benchLayout(tb testing.TB) *ipfix.Layout {
	l, err := buildLayout(256, []ipfix.FieldSpec{{ID: 8, Length: 4}, {ID: 12, Length: 4}, {ID: 7, Length: 2}, {ID: 11, Length: 2},
		{ID: 4, Length: 1}, {ID: 1, Length: 8}, {ID: 2, Length: 8}, {ID: 152, Length: 8}, {ID: 153, Length: 8}})
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// benchSet encodes n records whose source address and port take keys
// distinct values (cycling).
func benchSet(n, keys int) []byte {
	var b []byte
	for i := range n {
		k := i % keys
		b = append(b, 10, byte(k>>16), byte(k>>8), byte(k))
		b = append(b, 192, 0, 2, byte(i))
		b = binary.BigEndian.AppendUint16(b, uint16(1024+k%50000))
		b = binary.BigEndian.AppendUint16(b, []uint16{80, 443, 53}[i%3])
		b = append(b, []byte{6, 6, 17}[i%3])
		b = binary.BigEndian.AppendUint64(b, uint64(100+i))
		b = binary.BigEndian.AppendUint64(b, uint64(1+i%10))
		b = binary.BigEndian.AppendUint64(b, uint64(1_764_000_000_000+i))
		b = binary.BigEndian.AppendUint64(b, uint64(1_764_000_001_000+i))
	}
	return b
}

func benchSnapshot(tb testing.TB, yml string, out export.Output) *Snapshot {
	cfg, err := Parse([]byte(yml))
	if err != nil {
		tb.Fatal(err)
	}
	set := NewOutputSet(func(string) (export.Output, error) { return out, nil })
	s, err := Compile(cfg, set)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// runBench feeds the set's records through the snapshot b.N times over
// and reports records/s.
func runBench(b *testing.B, s *Snapshot, l *ipfix.Layout, set []byte, n int) {
	meta := &jsonl.Meta{Exporter: netip.MustParseAddrPort("127.0.0.1:4739"), Msg: &ipfix.Message{Version: 10, DomainID: 1}}
	var r ipfix.Record
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		it := ipfix.NewDataIter(l, set)
		for it.Next(&r) {
			s.Process(meta, &r)
		}
	}
	b.StopTimer()
	s.Flush()
	b.ReportMetric(float64(b.N)*float64(n)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/record")
}

const benchSelectProject = `
outputs: {out: discard}
pipelines:
  - stages:
      - select: protocolIdentifier == 6 or destinationTransportPort == 53
      - project: {keep: [sourceIPv4Address, destinationIPv4Address, destinationTransportPort, octetDeltaCount, packetDeltaCount]}
    outputs: [out]
`

// BenchmarkSelectProject: select and project into a discard output.
func BenchmarkSelectProject(b *testing.B) {
	l := benchLayout(b)
	const n = 1000
	set := benchSet(n, 1000)
	runBench(b, benchSnapshot(b, benchSelectProject, &export.Discard{}), l, set, n)
}

// BenchmarkSelectProjectTCP: select and project, re-exported as IPFIX
// over TCP to a local receiver that reads and discards.
func BenchmarkSelectProjectTCP(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	out, err := export.Parse("ipfix+tcp://"+ln.Addr().String(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	l := benchLayout(b)
	const n = 1000
	set := benchSet(n, 1000)
	runBench(b, benchSnapshot(b, benchSelectProject, out), l, set, n)
	if st := out.Stats(); st.Dropped != 0 {
		b.Logf("dropped %d of %d (queue full: the receiver is slower)", st.Dropped, st.Sent+st.Dropped)
	}
}

// BenchmarkStages: one benchmark per stage kind, discard output.
func BenchmarkStages(b *testing.B) {
	for _, c := range []struct{ name, stage string }{
		{"select", `select: protocolIdentifier == 6`},
		{"project", `project: {keep: [sourceIPv4Address, octetDeltaCount]}`},
		{"rename", `rename: {octetDeltaCount: postOctetDeltaCount}`},
		{"set", `set: {observationPointId: 7}`},
		{"anonymise-truncate", `anonymise: {method: truncate}`},
		{"anonymise-cryptopan", `anonymise: {method: cryptopan, key: 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f}`},
		{"sample", `sample: {rate: 10}`},
		{"enrich-exporter", `enrich: {exporter: true}`},
	} {
		b.Run(c.name, func(b *testing.B) {
			l := benchLayout(b)
			const n = 1000
			set := benchSet(n, 1000)
			yml := "outputs: {out: discard}\npipelines:\n  - stages:\n      - " + c.stage + "\n    outputs: [out]\n"
			runBench(b, benchSnapshot(b, yml, &export.Discard{}), l, set, n)
		})
	}
}

// BenchmarkAggregate1M aggregates over 1,048,576 distinct keys (source
// address and port; a 16-octet table key) and reports memory per key. The
// table is filled before the timer starts, so what is measured is the
// steady state at a million keys, not the table's growth.
func BenchmarkAggregate1M(b *testing.B) {
	benchAggregate1M(b, "[sourceIPv4Address, sourceTransportPort, destinationTransportPort, protocolIdentifier]")
}

// BenchmarkAggregate1M5Tuple is the pipeline of perf/pipeline.sh's
// aggregate-1m: the 5-tuple, a 24-octet table key.
func BenchmarkAggregate1M5Tuple(b *testing.B) {
	benchAggregate1M(b, "[sourceIPv4Address, destinationIPv4Address, sourceTransportPort, destinationTransportPort, protocolIdentifier]")
}

func benchAggregate1M(b *testing.B, keyList string) {
	const keys = 1 << 20
	const n = 1 << 16
	l := benchLayout(b)
	yml := `
outputs: {out: discard}
pipelines:
  - stages:
      - aggregate: {keys: ` + keyList + `, interval: 1h, max_keys: 1100000}
    outputs: [out]
`
	s := benchSnapshot(b, yml, &export.Discard{})
	// Sets covering every key once, then the benchmark cycles through them.
	sets := make([][]byte, keys/n)
	for i := range sets {
		var buf []byte
		for j := range n {
			k := i*n + j
			buf = append(buf, 10, byte(k>>16), byte(k>>8), byte(k))
			buf = append(buf, 192, 0, 2, 1)
			buf = binary.BigEndian.AppendUint16(buf, uint16(k))
			buf = binary.BigEndian.AppendUint16(buf, 443)
			buf = append(buf, 6)
			buf = binary.BigEndian.AppendUint64(buf, 1000)
			buf = binary.BigEndian.AppendUint64(buf, 2)
			buf = binary.BigEndian.AppendUint64(buf, uint64(1_764_000_000_000+k))
			buf = binary.BigEndian.AppendUint64(buf, uint64(1_764_000_001_000+k))
		}
		sets[i] = buf
	}
	meta := &jsonl.Meta{Exporter: netip.MustParseAddrPort("127.0.0.1:4739"), Msg: &ipfix.Message{Version: 10, DomainID: 1}}
	var r ipfix.Record
	agg := s.pipes[0].aggs[0]
	pass := func(set []byte) {
		it := ipfix.NewDataIter(l, set)
		for it.Next(&r) {
			s.Process(meta, &r)
		}
	}
	for _, set := range sets {
		pass(set)
	}
	agg.drain()
	if agg.tab.count != keys {
		b.Fatalf("table holds %d keys after the fill, want %d", agg.tab.count, keys)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := range b.N {
		pass(sets[i%len(sets)])
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)*n/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/record")
	if cpu := cpuTime() - cpu0; cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/n, "cpu-ns/record")
	}
	b.ReportMetric(agg.BytesPerKey(), "table-bytes/key")
	agg.drain()
	if agg.tab.count != keys {
		b.Fatalf("table holds %d keys, want %d", agg.tab.count, keys)
	}
	s.Retire() // the table's memory back before the next benchmark
}
