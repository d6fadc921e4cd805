package analysis

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

var fiveTuple = []string{"sourceIPv4Address", "destinationIPv4Address", "protocolIdentifier", "sourceTransportPort", "destinationTransportPort"}

func TestTopNMatchesDecode(t *testing.T) {
	keys := [][]string{
		{"sourceIPv4Address"},
		fiveTuple,
		{"destinationTransportPort", "protocolIdentifier"},
		{"sourceIPv6Address", "destinationIPv6Address"},
	}
	for _, name := range refCaptures {
		recs, _ := decodeRef(t, capture(name))
		for _, by := range keys {
			want := refTopN(recs, by)
			res, err := TopN(context.Background(), Input{Files: []string{capture(name)}}, TopNParams{By: by, N: MaxTopN})
			if err != nil {
				t.Fatalf("%s by %v: %v", name, by, err)
			}
			if len(res.Rows) != len(want) || res.Keys != len(want) {
				t.Fatalf("%s by %v: %d rows, %d keys; want %d", name, by, len(res.Rows), res.Keys, len(want))
			}
			var total [3]uint64
			for i, row := range res.Rows {
				got := [3]uint64{row.Octets, row.Packets, row.Flows}
				if w, ok := want[rowKey(row.Key)]; !ok || w != got {
					t.Fatalf("%s by %v: row %s = %v, want %v (present %v)", name, by, rowKey(row.Key), got, w, ok)
				}
				if i > 0 && res.Rows[i-1].Octets < row.Octets {
					t.Fatalf("%s by %v: row %d not sorted by octets", name, by, i)
				}
				for j := range total {
					total[j] += got[j]
				}
			}
			if tt := res.Total; [3]uint64{tt.Octets, tt.Packets, tt.Flows} != total || res.Overflow.Records != 0 {
				t.Fatalf("%s: total %+v, rows sum to %v, overflow %+v", name, tt, total, res.Overflow)
			}
		}
		// The top 5 by packets are the reference's 5 largest packet counts.
		by := []string{"sourceIPv4Address", "destinationIPv4Address"}
		res, err := TopN(context.Background(), Input{Files: []string{capture(name)}}, TopNParams{By: by, N: 5, Metric: "packets"})
		if err != nil {
			t.Fatal(err)
		}
		var pk []uint64
		for _, c := range refTopN(recs, by) {
			pk = append(pk, c[1])
		}
		slices.Sort(pk)
		slices.Reverse(pk)
		pk = pk[:min(5, len(pk))]
		var got []uint64
		for _, row := range res.Rows {
			got = append(got, row.Packets)
		}
		if !slices.Equal(got, pk) {
			t.Fatalf("%s: top 5 packets %v, want %v", name, got, pk)
		}
	}
}

// The tie break is deterministic: two runs give the same rows.
func TestTopNDeterministic(t *testing.T) {
	p := TopNParams{By: []string{"protocolIdentifier", "destinationTransportPort"}, N: 7, Metric: "flows"}
	in := Input{Files: []string{capture("softflowd-v5.pcap")}}
	a, err := TopN(context.Background(), in, p)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := TopN(context.Background(), in, p)
	if !bytes.Equal(a.AppendJSON(nil), b.AppendJSON(nil)) {
		t.Fatal("two runs differ")
	}
}

func TestTimeseriesMatchesDecode(t *testing.T) {
	for _, name := range refCaptures {
		recs, _ := decodeRef(t, capture(name))
		for _, step := range []time.Duration{time.Second, 7 * time.Second, 250 * time.Millisecond} {
			res, err := Timeseries(context.Background(), Input{Files: []string{capture(name)}}, TimeseriesParams{Step: Duration(step)})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			ref, untimed := refSeries(t, recs, int64(step), func(refRecord) string { return "total" })
			if len(res.Series) != 1 || res.Series[0].Name != "total" {
				t.Fatalf("%s: series %+v", name, res.Series)
			}
			if res.Untimed != untimed {
				t.Fatalf("%s: untimed %d, want %d", name, res.Untimed, untimed)
			}
			checkSeries(t, res, &res.Series[0], ref["total"])
		}
		// Split by protocol, top 2: the reference ranks the keys by octets
		// and sums the rest as "other".
		by := []string{"protocolIdentifier"}
		res, err := Timeseries(context.Background(), Input{Files: []string{capture(name)}},
			TimeseriesParams{Step: Duration(2 * time.Second), SplitBy: by, Top: 2})
		if err != nil {
			t.Fatal(err)
		}
		sums := refTopN(recs, by)
		var keys []string
		for k := range sums {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b string) int { return int(int64(sums[b][0]) - int64(sums[a][0])) })
		top := keys[:min(2, len(keys))]
		ref, _ := refSeries(t, recs, int64(2*time.Second), func(m refRecord) string {
			if k := m.keyOf(by); slices.Contains(top, k) {
				return k
			}
			return "other"
		})
		wantSeries := len(top)
		if len(keys) > len(top) {
			wantSeries++
		}
		if len(res.Series) != wantSeries {
			t.Fatalf("%s: %d series, want %d", name, len(res.Series), wantSeries)
		}
		for i := range res.Series {
			s := &res.Series[i]
			k := "other"
			if s.Key != nil {
				k = rowKey(s.Key)
				if k != top[i] {
					t.Fatalf("%s: series %d is %s, want %s", name, i, k, top[i])
				}
			}
			checkSeries(t, res, s, ref[k])
		}
	}
}

func TestGraphMatchesDecode(t *testing.T) {
	for _, name := range refCaptures {
		recs, _ := decodeRef(t, capture(name))
		type acc struct{ c [3]uint64 }
		edges := map[string][3]uint64{}
		nodes := map[string][6]uint64{} // out then in
		for _, m := range recs {
			if m.options() {
				continue
			}
			src, ok1 := m["sourceIPv4Address"].(string)
			dst, ok2 := m["destinationIPv4Address"].(string)
			if !ok1 || !ok2 {
				src, ok1 = m["sourceIPv6Address"].(string)
				dst, ok2 = m["destinationIPv6Address"].(string)
			}
			if !ok1 || !ok2 {
				continue
			}
			fwd, rev := m.refCounts()
			add := func(a, b string, c [3]uint64) {
				e := edges[a+">"+b]
				na, nb := nodes[a], nodes[b]
				for j := range c {
					e[j] += c[j]
					na[j] += c[j]
					nb[3+j] += c[j]
				}
				edges[a+">"+b] = e
				nodes[a] = na
				nodes[b] = nb
			}
			add(src, dst, fwd)
			if rev[0] != 0 || rev[1] != 0 {
				add(dst, src, rev)
			}
		}
		res, err := Graph(context.Background(), Input{Files: []string{capture(name)}}, GraphParams{MaxEdges: MaxGraphEdges})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Edges) != len(edges) || len(res.Nodes) != len(nodes) || res.EdgesOmitted != 0 {
			t.Fatalf("%s: %d edges, %d nodes; want %d, %d", name, len(res.Edges), len(res.Nodes), len(edges), len(nodes))
		}
		for _, e := range res.Edges {
			k := e.Src.String() + ">" + e.Dst.String()
			if got := [3]uint64{e.Octets, e.Packets, e.Flows}; got != edges[k] {
				t.Fatalf("%s: edge %s = %v, want %v", name, k, got, edges[k])
			}
		}
		for _, n := range res.Nodes {
			got := [6]uint64{n.OctetsOut, n.PacketsOut, n.FlowsOut, n.OctetsIn, n.PacketsIn, n.FlowsIn}
			if got != nodes[n.Addr.String()] {
				t.Fatalf("%s: node %s = %v, want %v", name, n.Addr, got, nodes[n.Addr.String()])
			}
		}
	}
}

func TestRecordsMatchDecode(t *testing.T) {
	for _, name := range refCaptures {
		recs, lines := decodeRef(t, capture(name))
		var data [][]byte
		for i, m := range recs {
			if !m.options() {
				data = append(data, lines[i])
			}
		}
		f := func(p RecordsParams, want [][]byte) {
			t.Helper()
			res, err := Records(context.Background(), Input{Files: []string{capture(name)}}, p)
			if err != nil {
				t.Fatal(err)
			}
			from := min(int(p.Offset), len(want))
			page := want[from:min(from+p.limit(), len(want))]
			if res.Total != uint64(len(want)) || res.Count != len(page) || !bytes.Equal(res.Lines, bytes.Join(page, nil)) {
				t.Fatalf("%s %+v: total %d count %d, want %d %d\n%s", name, p, res.Total, res.Count, len(want), len(page), res.Lines)
			}
			var obj struct {
				Records []json.RawMessage `json:"records"`
			}
			if err := json.Unmarshal(res.AppendJSON(nil), &obj); err != nil || len(obj.Records) != len(page) {
				t.Fatalf("%s: json form: %v, %d records", name, err, len(obj.Records))
			}
		}
		f(RecordsParams{}, lines)
		f(RecordsParams{Offset: 7, Limit: 13}, lines)
		f(RecordsParams{Offset: int64(len(lines) - 3), Limit: 10}, lines)
		f(RecordsParams{Offset: 100000}, lines)
		f(RecordsParams{Offset: 1, Limit: MaxRecordsLimit, SkipOptions: true}, data)
	}
}

// Templates are kept across the files of a job: a capture's data decodes
// after a file that only taught the template, and the job's records are
// those of both files.
func TestTemplatesAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	g := genSpec{records: 1000, sources: 10, base: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	a, b := dir+"/a.ipfix", dir+"/b.ipfix"
	g.write(t, a, 0, 400, true)
	g.write(t, b, 400, 1000, false)
	res, err := TopN(context.Background(), Input{Files: []string{a, b}}, TopNParams{By: []string{"sourceIPv4Address"}, N: 100})
	if err != nil {
		t.Fatal(err)
	}
	if res.Total.Records != 1000 || res.Keys != 10 {
		t.Fatalf("total %+v, keys %d", res.Total, res.Keys)
	}
	// Alone, the second file's data has no template.
	res, err = TopN(context.Background(), Input{Files: []string{b}}, TopNParams{By: []string{"sourceIPv4Address"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Total.Records != 0 || res.Summary.DecodeErrors["unknown_template"] == 0 {
		t.Fatalf("second file alone: %+v %+v", res.Total, res.Summary)
	}
}

func TestFilter(t *testing.T) {
	for _, name := range []string{"softflowd-ipfix.pcap", "softflowd-v5.pcap", "nfdump-nfreplay-v9.pcap"} {
		recs, _ := decodeRef(t, capture(name))
		var kept []refRecord
		for _, m := range recs {
			p, _ := m.num("protocolIdentifier")
			port, _ := m.num("destinationTransportPort")
			if p == 6 && port != 80 {
				kept = append(kept, m)
			}
		}
		by := []string{"destinationTransportPort"}
		want := refTopN(kept, by)
		res, err := TopN(context.Background(), Input{Files: []string{capture(name)}},
			TopNParams{Common: Common{Filter: "protocolIdentifier == 6 and not destinationTransportPort == 80"}, By: by, N: MaxTopN})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Rows) != len(want) || res.Summary.Matched != uint64(len(kept)) {
			t.Fatalf("%s: %d rows, %d matched; want %d, %d", name, len(res.Rows), res.Summary.Matched, len(want), len(kept))
		}
		for _, row := range res.Rows {
			if got := [3]uint64{row.Octets, row.Packets, row.Flows}; got != want[rowKey(row.Key)] {
				t.Fatalf("%s: %s = %v, want %v", name, rowKey(row.Key), got, want[rowKey(row.Key)])
			}
		}
		// A filter on a field no template has keeps nothing.
		res, err = TopN(context.Background(), Input{Files: []string{capture(name)}},
			TopNParams{Common: Common{Filter: "mplsTopLabelTTL == 3"}, By: by})
		if err != nil || res.Total.Records != 0 {
			t.Fatalf("%s: absent field: %v, %+v", name, err, res.Total)
		}
	}
}

func TestResultFormats(t *testing.T) {
	in := Input{Files: []string{capture("softflowd-ipfix.pcap")}}
	for _, job := range []struct{ typ, params string }{
		{JobRecords, `{"limit": 3}`},
		{JobTopN, `{"by": ["sourceIPv6Address"], "n": 3}`},
		{JobTimeseries, `{"step": "5s", "split_by": ["protocolIdentifier"], "width": 320, "height": 240}`},
		{JobGraph, `{"max_edges": 4}`},
	} {
		res, err := Run(context.Background(), job.typ, in, []byte(job.params))
		if err != nil {
			t.Fatalf("%s: %v", job.typ, err)
		}
		for _, f := range res.Formats() {
			var buf bytes.Buffer
			if err := res.Write(&buf, f); err != nil || buf.Len() == 0 {
				t.Fatalf("%s %s: %v, %d bytes", job.typ, f, err, buf.Len())
			}
			if f == "json" && !json.Valid(buf.Bytes()) {
				t.Fatalf("%s: invalid JSON:\n%s", job.typ, buf.Bytes())
			}
			if ContentType(f) == "application/octet-stream" {
				t.Fatalf("%s: no content type for %s", job.typ, f)
			}
		}
		if err := res.Write(&bytes.Buffer{}, "xlsx"); err == nil || !strings.Contains(err.Error(), "unknown result format") {
			t.Fatalf("%s: format xlsx: %v", job.typ, err)
		}
	}
}
