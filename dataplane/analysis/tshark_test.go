package analysis

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-flow/sluice/internal/testenv"
)

// tsharkFields runs tshark's cflow dissector over a capture and returns,
// per field, every occurrence in capture order.
func tsharkFields(t *testing.T, file string, port int, fields ...string) [][]string {
	t.Helper()
	if _, err := exec.LookPath("tshark"); err != nil {
		testenv.SkipOrFail(t, "tshark is not installed")
	}
	args := []string{"-r", file, "-d", "udp.port==" + strconv.Itoa(port) + ",cflow", "-T", "fields", "-E", "occurrence=a", "-E", "separator=/t"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command("tshark", args...).Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	cols := make([][]string, len(fields))
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		parts := strings.Split(line, "\t")
		if len(parts) != len(fields) {
			t.Fatalf("tshark line %q", line)
		}
		n := -1
		for i, p := range parts {
			vs := strings.Split(p, ",")
			if p == "" {
				vs = nil
			}
			if n >= 0 && len(vs) != n {
				t.Fatalf("tshark fields not aligned in %q", line)
			}
			n = len(vs)
			cols[i] = append(cols[i], vs...)
		}
	}
	return cols
}

func atou(t *testing.T, s string) uint64 {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestTshark checks topn and graph against tshark's own decoding of a
// NetFlow v5 capture (every record has both addresses, so tshark's field
// lists line up per record).
func TestTshark(t *testing.T) {
	for _, c := range []struct {
		file string
		port int
	}{{"fprobe-v5.pcap", 19131}} {
		cols := tsharkFields(t, capture(c.file), c.port, "cflow.srcaddr", "cflow.dstaddr", "cflow.octets", "cflow.packets")
		bySrc := map[string][3]uint64{}
		edges := map[string][3]uint64{}
		for i := range cols[0] {
			o, p := atou(t, cols[2][i]), atou(t, cols[3][i])
			s := bySrc[cols[0][i]]
			bySrc[cols[0][i]] = [3]uint64{s[0] + o, s[1] + p, s[2] + 1}
			k := cols[0][i] + ">" + cols[1][i]
			e := edges[k]
			edges[k] = [3]uint64{e[0] + o, e[1] + p, e[2] + 1}
		}
		if len(cols[0]) < 400 {
			t.Fatalf("%s: tshark found %d records", c.file, len(cols[0]))
		}
		in := Input{Files: []string{capture(c.file)}}
		res, err := TopN(context.Background(), in, TopNParams{By: []string{"sourceIPv4Address"}, N: MaxTopN})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Rows) != len(bySrc) || res.Total.Records != uint64(len(cols[0])) {
			t.Fatalf("%s: %d rows, %d records; tshark %d, %d", c.file, len(res.Rows), res.Total.Records, len(bySrc), len(cols[0]))
		}
		for _, row := range res.Rows {
			if got := [3]uint64{row.Octets, row.Packets, row.Flows}; got != bySrc[row.Key[0].String()] {
				t.Fatalf("%s: %s = %v, tshark %v", c.file, row.Key[0], got, bySrc[row.Key[0].String()])
			}
		}
		g, err := Graph(context.Background(), in, GraphParams{MaxEdges: MaxGraphEdges})
		if err != nil {
			t.Fatal(err)
		}
		if len(g.Edges) != len(edges) {
			t.Fatalf("%s: %d edges, tshark %d", c.file, len(g.Edges), len(edges))
		}
		for _, e := range g.Edges {
			k := e.Src.String() + ">" + e.Dst.String()
			if got := [3]uint64{e.Octets, e.Packets, e.Flows}; got != edges[k] {
				t.Fatalf("%s: edge %s = %v, tshark %v", c.file, k, got, edges[k])
			}
		}
	}
	// Totals, forward and reverse counters included, on IPFIX and a
	// biflow: the sums of all of tshark's octets and packets fields.
	for _, c := range []struct {
		file string
		port int
	}{{"pmacct-nfprobe-ipfix.pcap", 19112}, {"softflowd-ipfix-biflow.pcap", 19103}} {
		cols := tsharkFields(t, capture(c.file), c.port, "cflow.octets", "cflow.packets")
		var o, p uint64
		for _, v := range cols[0] {
			o += atou(t, v)
		}
		for _, v := range cols[1] {
			p += atou(t, v)
		}
		res, err := Timeseries(context.Background(), Input{Files: []string{capture(c.file)}}, TimeseriesParams{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Total.Octets != o || res.Total.Packets != p || !near(res.Series[0].Octets, float64(o)) || !near(res.Series[0].Packets, float64(p)) {
			t.Fatalf("%s: total %+v, series %v %v; tshark %d octets %d packets", c.file, res.Total, res.Series[0].Octets, res.Series[0].Packets, o, p)
		}
	}
}
