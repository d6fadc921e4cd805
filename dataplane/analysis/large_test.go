package analysis

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// bigSpec is the generated file of the large tests: a million records
// over about 17 minutes, in two files (the second without the template).
var bigSpec = genSpec{records: 1_000_000, sources: 5000, base: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}

// writeBig writes the large input into dir.
func writeBig(t testing.TB, dir string) []string {
	a, b := filepath.Join(dir, "big-1.ipfix"), filepath.Join(dir, "big-2.ipfix")
	bigSpec.write(t, a, 0, bigSpec.records/2, true)
	bigSpec.write(t, b, bigSpec.records/2, bigSpec.records, false)
	return []string{a, b}
}

// TestLargeFile checks every job on a million generated records against
// sums computed from the generator's own values.
func TestLargeFile(t *testing.T) {
	files := writeBig(t, t.TempDir())
	g := &bigSpec
	type sums struct{ o, p, f uint64 }
	bySrc := map[netip.Addr]sums{}
	edges := map[uint32]sums{} // source index << 8 | destination's last octet
	var total sums
	protoOctets := map[uint8]uint64{}
	for i := range g.records {
		r := g.rec(i)
		s := bySrc[r.src]
		s.o, s.p, s.f = s.o+r.octets, s.p+r.pkts, s.f+1
		bySrc[r.src] = s
		ek := uint32(i%g.sources)<<8 | uint32(i%7)
		e := edges[ek]
		e.o, e.p, e.f = e.o+r.octets, e.p+r.pkts, e.f+1
		edges[ek] = e
		total.o, total.p, total.f = total.o+r.octets, total.p+r.pkts, total.f+1
		protoOctets[r.proto] += r.octets
	}
	ctx := context.Background()
	in := Input{Files: files}

	t.Run("topn", func(t *testing.T) {
		res, err := TopN(ctx, in, TopNParams{By: []string{"sourceIPv4Address"}, N: MaxTopN})
		if err != nil {
			t.Fatal(err)
		}
		if res.Keys != g.sources || len(res.Rows) != g.sources || res.Total.Records != uint64(g.records) {
			t.Fatalf("keys %d rows %d total %+v", res.Keys, len(res.Rows), res.Total)
		}
		for _, row := range res.Rows {
			a := netip.AddrFrom4([4]byte(row.Key[0].Bytes))
			if w := bySrc[a]; w != (sums{row.Octets, row.Packets, row.Flows}) {
				t.Fatalf("%s: %d %d %d, want %+v", a, row.Octets, row.Packets, row.Flows, w)
			}
		}
	})
	t.Run("topn overflow", func(t *testing.T) {
		// Room for 100 keys: the first 100 sources seen (j < 100) are
		// counted, the records of every other source overflow.
		in := in
		in.MaxKeys = 100
		res, err := TopN(ctx, in, TopNParams{By: []string{"sourceIPv4Address"}, N: 1000})
		if err != nil {
			t.Fatal(err)
		}
		var over sums
		var overN uint64
		for i := range g.records {
			if i%g.sources >= 100 {
				r := g.rec(i)
				over.o, over.p, over.f = over.o+r.octets, over.p+r.pkts, over.f+1
				overN++
			}
		}
		o := res.Overflow
		if res.Keys != 100 || len(res.Rows) != 100 || o.Records != overN || (sums{o.Octets, o.Packets, o.Flows}) != over {
			t.Fatalf("keys %d rows %d overflow %+v, want %d records %+v", res.Keys, len(res.Rows), o, overN, over)
		}
		if res.Total.Records != uint64(g.records) {
			t.Fatalf("total %+v", res.Total)
		}
	})
	t.Run("timeseries", func(t *testing.T) {
		step := 10 * time.Second
		res, err := Timeseries(ctx, in, TimeseriesParams{Step: Duration(step), SplitBy: []string{"protocolIdentifier"}, Top: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Series) != 2 || res.Series[0].Name != "6" || res.Series[1].Name != "other" {
			t.Fatalf("series %q %q", res.Series[0].Name, res.Series[len(res.Series)-1].Name)
		}
		// The slow reference, per generated record.
		ref := map[string]map[int64][3]float64{"6": {}, "other": {}}
		st := int64(step)
		for i := range g.records {
			r := g.rec(i)
			k := "other"
			if r.proto == 6 {
				k = "6"
			}
			start, end := r.startMs*1e6, r.endMs*1e6
			v := [3]float64{float64(r.octets), float64(r.pkts), 1}
			if end == start {
				x := ref[k][start/st]
				for j := range x {
					x[j] += v[j]
				}
				ref[k][start/st] = x
				continue
			}
			for s := start / st; s*st < end; s++ {
				f := float64(min(end, (s+1)*st)-max(start, s*st)) / float64(end-start)
				x := ref[k][s]
				for j := range x {
					x[j] += v[j] * f
				}
				ref[k][s] = x
			}
		}
		for i := range res.Series {
			checkSeries(t, res, &res.Series[i], ref[res.Series[i].Name])
		}
		if !near(res.Series[0].Octets, float64(protoOctets[6])) || !near(res.Series[1].Octets, float64(protoOctets[17])) {
			t.Fatalf("series octets %v %v, want %d %d", res.Series[0].Octets, res.Series[1].Octets, protoOctets[6], protoOctets[17])
		}
	})
	t.Run("graph", func(t *testing.T) {
		res, err := Graph(ctx, in, GraphParams{MaxEdges: MaxGraphEdges})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Edges) != len(edges) || res.Hosts != g.sources+7 {
			t.Fatalf("%d edges, %d hosts; want %d, %d", len(res.Edges), res.Hosts, len(edges), g.sources+7)
		}
		for _, e := range res.Edges {
			s, d := e.Src.As4(), e.Dst.As4()
			if w := edges[uint32(s[2])<<16|uint32(s[3])<<8|uint32(d[3])]; w != (sums{e.Octets, e.Packets, e.Flows}) {
				t.Fatalf("%s>%s: %d %d %d, want %+v", e.Src, e.Dst, e.Octets, e.Packets, e.Flows, w)
			}
			if !slices.Equal(e.Protocols, []uint8{6, 17}) && !slices.Equal(e.Protocols, []uint8{6}) && !slices.Equal(e.Protocols, []uint8{17}) {
				t.Fatalf("protocols %v", e.Protocols)
			}
		}
	})
	t.Run("graph overflow", func(t *testing.T) {
		in := in
		in.MaxKeys = 1000
		res, err := Graph(ctx, in, GraphParams{MaxEdges: MaxGraphEdges})
		if err != nil {
			t.Fatal(err)
		}
		var sum uint64
		for _, e := range res.Edges {
			sum += e.Octets
		}
		if res.Hosts > 1000 || res.Conversations > 1000 || res.Overflow.Records == 0 ||
			sum+res.Overflow.Octets != total.o || res.Total.Octets != total.o {
			t.Fatalf("hosts %d conversations %d, edges %d + overflow %+v octets, total %+v (want %d)",
				res.Hosts, res.Conversations, sum, res.Overflow, res.Total, total.o)
		}
	})
	t.Run("progress and cancel", func(t *testing.T) { testProgressAndCancel(t, files) })
	t.Run("records", func(t *testing.T) {
		res, err := Records(ctx, in, RecordsParams{Offset: int64(g.records) - 2, Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		if res.Total != uint64(g.records) || res.Count != 2 {
			t.Fatalf("total %d count %d", res.Total, res.Count)
		}
	})
}

// testProgressAndCancel: progress rises to 1; a job cancelled from its
// progress callback stops with the context's error.
func testProgressAndCancel(t *testing.T, files []string) {
	var seen []float64
	in := Input{Files: files, Progress: func(f float64) { seen = append(seen, f) }}
	if _, err := Timeseries(context.Background(), in, TimeseriesParams{SplitBy: []string{"destinationIPv4Address"}}); err != nil {
		t.Fatal(err)
	}
	if len(seen) < 10 || seen[len(seen)-1] != 1 || !slices.IsSorted(seen) || seen[0] <= 0 {
		t.Fatalf("progress %v", seen)
	}
	ctx, cancel := context.WithCancel(context.Background())
	seen = nil
	in.Progress = func(f float64) {
		seen = append(seen, f)
		if f > 0.3 {
			cancel()
		}
	}
	start := time.Now()
	_, err := TopN(ctx, in, TopNParams{By: []string{"sourceIPv4Address"}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled job: %v", err)
	}
	if last := seen[len(seen)-1]; last > 0.5 {
		t.Fatalf("cancelled at %v but read on to %v", 0.3, last)
	}
	t.Logf("cancelled after %v", time.Since(start))
	// Cancelled before it starts.
	if _, err := Graph(ctx, Input{Files: files}, GraphParams{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("job on a cancelled context: %v", err)
	}
}
