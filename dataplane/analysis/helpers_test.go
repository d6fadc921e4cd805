package analysis

import (
	"bytes"
	"encoding/json"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/offline/decode"
)

// capturesDir holds the exporters' captures (testdata/exporters/README.md).
const capturesDir = "../../testdata/captures"

func capture(name string) string { return filepath.Join(capturesDir, name) }

// refCaptures are the captures the differential tests run on: IPFIX with
// sysUpTime times and options, NetFlow v9 with sysUpTime and with
// milliseconds (IPv6 too), a biflow, v5, and an RFC 5655 file.
var refCaptures = []string{
	"softflowd-ipfix.pcap",
	"softflowd-v9.pcap",
	"pmacct-nfprobe-ipfix.pcap",
	"nfdump-nfreplay-v9.pcap",
	"softflowd-ipfix-biflow.pcap",
	"softflowd-v5.pcap",
	"softflowd-ipfix-tcp.ipfix",
}

// refRecord is one record as `sluice decode` prints it, in plain Go
// values.
type refRecord map[string]any

// decodeRef decodes files with `sluice decode`'s library (decode.Files)
// into maps: the independent path the jobs are checked against.
func decodeRef(t testing.TB, files ...string) (data []refRecord, lines [][]byte) {
	t.Helper()
	var buf bytes.Buffer
	f := decode.NewFiles(&buf, false)
	for _, name := range files {
		if err := f.File(name); err != nil {
			t.Fatalf("decode %s: %v", name, err)
		}
	}
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.SplitAfter(buf.Bytes(), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		var m refRecord
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("sluice decode output %q: %v", line, err)
		}
		lines = append(lines, line)
		data = append(data, m)
	}
	return data, lines
}

func (m refRecord) options() bool { return m["options"] == true }

func (m refRecord) num(name string) (uint64, bool) {
	v, ok := m[name].(json.Number)
	if !ok {
		return 0, false
	}
	u, err := strconvUint(string(v))
	return u, err == nil
}

func strconvUint(s string) (uint64, error) {
	var u uint64
	err := json.Unmarshal([]byte(s), &u)
	return u, err
}

func (m refRecord) first(names ...string) (uint64, bool) {
	for _, n := range names {
		if v, ok := m.num(n); ok {
			return v, true
		}
	}
	return 0, false
}

// refCounts are a record's counters by the package's documented rules,
// forward and reverse apart.
func (m refRecord) refCounts() (fwd, rev [3]uint64) {
	fwd[0], _ = m.first("octetDeltaCount", "octetTotalCount")
	fwd[1], _ = m.first("packetDeltaCount", "packetTotalCount")
	fwd[2] = 1
	if f, ok := m.num("deltaFlowCount"); ok {
		fwd[2] = f
	}
	rev[0], _ = m.first("reverseOctetDeltaCount", "reverseOctetTotalCount")
	rev[1], _ = m.first("reversePacketDeltaCount", "reversePacketTotalCount")
	return fwd, rev
}

func (m refRecord) total() [3]uint64 {
	f, r := m.refCounts()
	return [3]uint64{f[0] + r[0], f[1] + r[1], f[2]}
}

// keyOf renders a key as JSON values joined by "|", null for absent ones.
func (m refRecord) keyOf(by []string) string {
	parts := make([]string, len(by))
	for i, n := range by {
		v, ok := m[n]
		if !ok {
			parts[i] = "null"
			continue
		}
		b, _ := json.Marshal(v)
		parts[i] = string(b)
	}
	return strings.Join(parts, "|")
}

func rowKey(vs []Value) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = string(v.AppendJSON(nil))
	}
	return strings.Join(parts, "|")
}

// refTopN sums the counters per key.
func refTopN(recs []refRecord, by []string) map[string][3]uint64 {
	out := map[string][3]uint64{}
	for _, m := range recs {
		if m.options() {
			continue
		}
		c := m.total()
		s := out[m.keyOf(by)]
		for i := range s {
			s[i] += c[i]
		}
		out[m.keyOf(by)] = s
	}
	return out
}

// refSpan places a record in time by the documented rules, from the
// strings and numbers `sluice decode` printed. inits holds the
// systemInitTimeMilliseconds of options records seen so far, per
// exporter address and domain.
func refSpan(t testing.TB, m refRecord, inits map[string]int64) (start, end int64, timed bool) {
	exp := m["exporter"].(string)
	if ap, err := netip.ParseAddrPort(exp); err == nil {
		exp = ap.Addr().String()
	}
	scope := exp + "/" + string(m["observation_domain"].(json.Number))
	if m.options() {
		if s, ok := m["systemInitTimeMilliseconds"].(string); ok {
			inits[scope] = parseTime(t, s)
		}
		return 0, 0, false
	}
	at := func(names ...string) (int64, bool) {
		for _, n := range names {
			switch v := m[n].(type) {
			case string:
				return parseTime(t, v), true
			case json.Number: // IPFIX sysUpTime: milliseconds since init
				init, ok := inits[scope]
				ms, _ := strconvUint(string(v))
				return init + int64(ms)*1e6, ok
			}
		}
		return 0, false
	}
	start, hasS := at("flowStartMilliseconds", "flowStartSeconds", "flowStartMicroseconds", "flowStartNanoseconds", "flowStartSysUpTime")
	end, hasE := at("flowEndMilliseconds", "flowEndSeconds", "flowEndMicroseconds", "flowEndNanoseconds", "flowEndSysUpTime")
	switch {
	case hasS && hasE:
	case hasS:
		end = start
		if d, ok := m.num("flowDurationMilliseconds"); ok {
			end = start + int64(d)*1e6
		}
	case hasE:
		start = end
	default:
		e := parseTime(t, m["export_time"].(string))
		return e, e, false
	}
	return min(start, end), end, true
}

func parseTime(t testing.TB, s string) int64 {
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("time %q: %v", s, err)
	}
	return tm.UnixNano()
}

// refSeries spreads each record over the steps it covers, step by step:
// the slow, obviously right way. Keys are step indices; values octets,
// packets and flows per step (not per second). keyOf picks the series.
func refSeries(t testing.TB, recs []refRecord, step int64, keyOf func(refRecord) string) (map[string]map[int64][3]float64, uint64) {
	out := map[string]map[int64][3]float64{}
	inits := map[string]int64{}
	floor := func(a int64) int64 {
		q := a / step
		if a%step < 0 {
			q--
		}
		return q
	}
	var untimed uint64
	for _, m := range recs {
		start, end, timed := refSpan(t, m, inits)
		if m.options() {
			continue
		}
		if !timed {
			untimed++
		}
		c := m.total()
		k := keyOf(m)
		if out[k] == nil {
			out[k] = map[int64][3]float64{}
		}
		s := out[k]
		if end == start {
			i := floor(start)
			v := s[i]
			for j := range v {
				v[j] += float64(c[j])
			}
			s[i] = v
			continue
		}
		for i := floor(start); i*step < end; i++ {
			lo, hi := max(start, i*step), min(end, (i+1)*step)
			if hi <= lo {
				continue
			}
			f := float64(hi-lo) / float64(end-start)
			v := s[i]
			for j := range v {
				v[j] += float64(c[j]) * f
			}
			s[i] = v
		}
	}
	return out, untimed
}

func near(a, b float64) bool {
	return math.Abs(a-b) <= 1e-6*max(1, math.Abs(b))
}

// checkSeries compares a result series with a reference one.
func checkSeries(t testing.TB, res *TimeseriesResult, s *Series, ref map[int64][3]float64) {
	t.Helper()
	step := int64(res.Step)
	first := res.Start.UnixNano() / step
	perS := res.Step.Seconds()
	seen := 0
	for p := range res.Points {
		want := ref[first+int64(p)]
		if _, ok := ref[first+int64(p)]; ok {
			seen++
		}
		got := [3]float64{s.OctetsPerS[p] * perS, s.PacketsPerS[p] * perS, s.FlowsPerS[p] * perS}
		for j := range got {
			if !near(got[j], want[j]) {
				t.Fatalf("series %s point %d (%s) metric %d: got %v, want %v", s.Name, p,
					res.Start.Add(time.Duration(p)*res.Step).Format(time.RFC3339Nano), j, got[j], want[j])
			}
		}
	}
	if seen != len(ref) {
		t.Fatalf("series %s: %d reference steps, %d inside the result's %d points from %s", s.Name, len(ref), seen, res.Points, res.Start)
	}
}

// genSpec describes a generated IPFIX file: record i has source
// 10.0.x.y with j = i % sources, destination 192.168.0.(i%7), protocol 17
// when i%3 == 0 else 6, octets 40 + i%1500, packets 1 + i%10, start
// base + i ms, end start + i%5000 ms.
type genSpec struct {
	records, sources int
	base             time.Time
}

var genFields = []ipfix.FieldSpec{
	{ID: ieSourceIPv4Address, Length: 4},
	{ID: ieDestinationIPv4Address, Length: 4},
	{ID: ieSourceTransportPort, Length: 2},
	{ID: ieDestinationTransportPort, Length: 2},
	{ID: ieProtocolIdentifier, Length: 1},
	{ID: ieOctetDeltaCount, Length: 8},
	{ID: iePacketDeltaCount, Length: 8},
	{ID: ieFlowStartMilliseconds, Length: 8},
	{ID: ieFlowEndMilliseconds, Length: 8},
}

type genRec struct {
	src, dst       netip.Addr
	sport, dport   uint16
	proto          uint8
	octets, pkts   uint64
	startMs, endMs int64
}

func (g *genSpec) rec(i int) genRec {
	j := i % g.sources
	proto := uint8(6)
	if i%3 == 0 {
		proto = 17
	}
	start := g.base.UnixMilli() + int64(i)
	return genRec{
		src:   netip.AddrFrom4([4]byte{10, 0, byte(j >> 8), byte(j)}),
		dst:   netip.AddrFrom4([4]byte{192, 168, 0, byte(i % 7)}),
		sport: uint16(1024 + i%50000), dport: uint16(80 + i%4), proto: proto,
		octets: uint64(40 + i%1500), pkts: uint64(1 + i%10),
		startMs: start, endMs: start + int64(i%5000),
	}
}

// write writes records [from, to) to path as an RFC 5655 file, 30 per
// message, with the template first when withTemplate.
func (g *genSpec) write(t testing.TB, path string, from, to int, withTemplate bool) {
	t.Helper()
	var out []byte
	w := ipfix.MessageWriter{DomainID: 1}
	exp := uint32(g.base.Unix())
	if withTemplate {
		out = w.Begin(out, exp)
		out = w.BeginSet(out, ipfix.TemplateSetID)
		out = ipfix.AppendTemplateRecord(out, 256, genFields)
		out = w.EndSet(out)
		var err error
		if out, err = w.Finish(out); err != nil {
			t.Fatal(err)
		}
	}
	for i := from; i < to; {
		out = w.Begin(out, exp)
		out = w.BeginSet(out, 256)
		n := 0
		for ; n < 30 && i < to; n, i = n+1, i+1 {
			r := g.rec(i)
			out = ipfix.AppendAddr(out, r.src)
			out = ipfix.AppendAddr(out, r.dst)
			out = ipfix.AppendUint(out, uint64(r.sport), 2)
			out = ipfix.AppendUint(out, uint64(r.dport), 2)
			out = ipfix.AppendUint(out, uint64(r.proto), 1)
			out = ipfix.AppendUint(out, r.octets, 8)
			out = ipfix.AppendUint(out, r.pkts, 8)
			out = ipfix.AppendUint(out, uint64(r.startMs), 8)
			out = ipfix.AppendUint(out, uint64(r.endMs), 8)
		}
		out = w.EndSet(out)
		w.AddRecords(n)
		var err error
		if out, err = w.Finish(out); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}
