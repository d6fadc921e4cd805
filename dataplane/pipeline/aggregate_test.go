package pipeline_test

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// flowKey and flowAgg are the reference aggregation, with plain maps.
type flowKey struct {
	src, dst netip.Addr
	proto    uint64
}

type flowAgg struct {
	octets, packets, start, end, flows uint64
}

func (a *flowAgg) add(b flowAgg) {
	a.octets += b.octets
	a.packets += b.packets
	a.flows += b.flows
	if a.start == 0 || b.start < a.start {
		a.start = b.start
	}
	a.end = max(a.end, b.end)
}

// flowGen makes random records over nKeys keys.
type flowGen struct {
	rng  *rand.Rand
	keys []flowKey
	base uint64 // ms
}

func newFlowGen(seed uint64, nKeys int) *flowGen {
	g := &flowGen{rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), base: 1_700_000_000_000}
	seen := map[flowKey]bool{}
	for len(g.keys) < nKeys {
		k := flowKey{
			src:   netip.AddrFrom4([4]byte{10, 0, byte(g.rng.IntN(4)), byte(g.rng.IntN(256))}),
			dst:   netip.AddrFrom4([4]byte{192, 168, 0, byte(g.rng.IntN(8))}),
			proto: []uint64{1, 6, 17}[g.rng.IntN(3)],
		}
		if !seen[k] {
			seen[k] = true
			g.keys = append(g.keys, k)
		}
	}
	return g
}

var flowLayoutSpecs = []ipfix.FieldSpec{spec(idSrc4, 4), spec(idDst4, 4), spec(idProto, 1), spec(idOctets, 8), spec(idPackets, 8), spec(idStartMs, 8), spec(idEndMs, 8)}

// next returns a record's key and values and its encoding with l
// (flowLayoutSpecs).
func (g *flowGen) next(t testing.TB, l *ipfix.Layout) (flowKey, flowAgg, []byte) {
	k := g.keys[g.rng.IntN(len(g.keys))]
	start := g.base + g.rng.Uint64N(3_600_000)
	v := flowAgg{octets: 40 + g.rng.Uint64N(1<<20), packets: 1 + g.rng.Uint64N(1000), start: start, end: start + g.rng.Uint64N(60_000), flows: 1}
	return k, v, encode(t, l, k.src, k.dst, int(k.proto), v.octets, v.packets, time.UnixMilli(int64(v.start)), time.UnixMilli(int64(v.end)))
}

// emitted reads aggregates back (flowKey fields that are absent stay zero).
func emitted(t *testing.T, recs []captured) ([]flowKey, []flowAgg) {
	t.Helper()
	var ks []flowKey
	var vs []flowAgg
	for _, g := range recs {
		var k flowKey
		if v, ok := g.Fields["sourceIPv4Address"]; ok {
			k.src = v.(netip.Addr)
		}
		if v, ok := g.Fields["destinationIPv4Address"]; ok {
			k.dst = v.(netip.Addr)
		}
		if v, ok := g.Fields["protocolIdentifier"]; ok {
			k.proto = v.(uint64)
		}
		ks = append(ks, k)
		vs = append(vs, flowAgg{
			octets:  g.Fields["octetDeltaCount"].(uint64),
			packets: g.Fields["packetDeltaCount"].(uint64),
			start:   uint64(g.Fields["flowStartMilliseconds"].(int64) / 1e6),
			end:     uint64(g.Fields["flowEndMilliseconds"].(int64) / 1e6),
			flows:   g.Fields["deltaFlowCount"].(uint64),
		})
	}
	return ks, vs
}

const aggKeys3 = "keys: [sourceIPv4Address, destinationIPv4Address, protocolIdentifier]"

func TestAggregateReference(t *testing.T) {
	s, out := stages(t, "aggregate: {"+aggKeys3+", observation_domain: 42, max_keys: 5000}")
	l := mkLayout(t, 300, flowLayoutSpecs...)
	gen := newFlowGen(1, 3000)
	ref := map[flowKey]*flowAgg{}
	m := mkMeta("192.0.2.1:4739", 1)
	const n = 30000
	for range n {
		k, v, b := gen.next(t, l)
		if ref[k] == nil {
			ref[k] = &flowAgg{}
		}
		ref[k].add(v)
		s.Process(m, mkRecord(t, l, b))
	}
	if len(out.recs) != 0 {
		t.Fatalf("%d aggregates before the end", len(out.recs))
	}
	if k := metric(t, s, `sluice_aggregate_keys{pipeline="p",stage="1:aggregate"}`); k != uint64(len(ref)) {
		t.Errorf("%d keys held, want %d", k, len(ref))
	}
	s.Retire()
	if len(out.recs) != len(ref) {
		t.Fatalf("%d aggregates for %d keys", len(out.recs), len(ref))
	}
	ks, vs := emitted(t, out.recs)
	seen := map[flowKey]bool{}
	for i, k := range ks {
		if seen[k] {
			t.Fatalf("key %v emitted twice", k)
		}
		seen[k] = true
		want := ref[k]
		if want == nil {
			t.Fatalf("key %v never sent", k)
		}
		if vs[i] != *want {
			t.Errorf("%v: got %+v, want %+v", k, vs[i], *want)
		}
	}
	g := out.recs[0]
	if got := fieldOrder(g.Layout); got != "sourceIPv4Address:4 destinationIPv4Address:4 protocolIdentifier:1 octetDeltaCount:8 packetDeltaCount:8 flowStartMilliseconds:8 flowEndMilliseconds:8 deltaFlowCount:8" {
		t.Errorf("fields %s", got)
	}
	if g.Layout.ID != 4096 || g.Domain != 42 || g.Exporter.IsValid() {
		t.Errorf("template %d domain %d exporter %v", g.Layout.ID, g.Domain, g.Exporter)
	}
}

// Records without some keys aggregate under the keys they have, in
// another template.
func TestAggregateShapes(t *testing.T) {
	s, out := stages(t, "aggregate: {"+aggKeys3+", template_id: 5000, max_keys: 5000}")
	full := mkLayout(t, 300, spec(idSrc4, 4), spec(idDst4, 4), spec(idProto, 1), spec(idOctets, 8))
	noDst := mkLayout(t, 301, spec(idProto, 1), spec(idOctets, 4), spec(idSrc4, 4))
	none := mkLayout(t, 302, spec(idOctets, 8), spec(idPackets, 8))
	m := mkMeta("192.0.2.1:4739", 1)
	s.Process(m, mkRecord(t, full, encode(t, full, addr("10.0.0.1"), addr("0.0.0.0"), 6, 1)))
	s.Process(m, mkRecord(t, noDst, encode(t, noDst, 6, 2, addr("10.0.0.1"))))
	s.Process(m, mkRecord(t, noDst, encode(t, noDst, 6, 4, addr("10.0.0.1"))))
	s.Process(m, mkRecord(t, full, encode(t, full, addr("10.0.0.1"), addr("0.0.0.0"), 6, 8)))
	s.Process(m, mkRecord(t, none, encode(t, none, 16, 1)))
	s.Retire()
	if len(out.recs) != 3 {
		t.Fatalf("%d aggregates", len(out.recs))
	}
	byOrder := map[string]captured{}
	for _, g := range out.recs {
		byOrder[fieldOrder(g.Layout)] = g
	}
	const vals = "octetDeltaCount:8 packetDeltaCount:8 flowStartMilliseconds:8 flowEndMilliseconds:8 deltaFlowCount:8"
	for order, want := range map[string][2]uint64{
		"sourceIPv4Address:4 destinationIPv4Address:4 protocolIdentifier:1 " + vals: {9, 2},
		"sourceIPv4Address:4 protocolIdentifier:1 " + vals:                          {6, 2},
		vals: {16, 1},
	} {
		g, ok := byOrder[order]
		if !ok {
			t.Errorf("no aggregate with %s", order)
			continue
		}
		if got := [2]uint64{g.Fields["octetDeltaCount"].(uint64), g.Fields["deltaFlowCount"].(uint64)}; got != want {
			t.Errorf("%s: %v, want %v", order, got, want)
		}
	}
	ids := map[uint16]bool{}
	for _, g := range out.recs {
		ids[g.Layout.ID] = true
	}
	if !ids[5000] || !ids[5001] || !ids[5002] {
		t.Errorf("template IDs %v", ids)
	}
}

// Counters and keys of reduced size: 4-octet counters sum past 2^32, a
// 2-octet AS number is the same key as a 4-octet one.
func TestAggregateReducedSize(t *testing.T) {
	s, out := stages(t, "aggregate: {keys: [bgpSourceAsNumber], values: [octetDeltaCount, packetDeltaCount, ingressInterface, maximumTTL, minimumTTL], max_keys: 5000}")
	l4 := mkLayout(t, 300, spec(idSrcAS, 4), spec(idOctets, 4), spec(idPackets, 2), spec(idIngress, 4), spec(53, 1), spec(52, 1))
	l2 := mkLayout(t, 301, spec(idSrcAS, 2), spec(idOctets, 4), spec(idPackets, 1), spec(idIngress, 4))
	m := mkMeta("192.0.2.1:4739", 1)
	for i := range 10 {
		l := l4
		vals := []any{64500, 0xfffffff0, 0xffff, 0xffffffff, 60 + i, 60 - i}
		if i%2 == 1 {
			l = l2
			vals = vals[:4]
		}
		s.Process(m, mkRecord(t, l, encode(t, l, vals...)))
	}
	s.Retire()
	if len(out.recs) != 1 {
		t.Fatalf("%d aggregates", len(out.recs))
	}
	g := out.recs[0]
	want := map[string]any{
		"bgpSourceAsNumber": uint64(64500),
		"octetDeltaCount":   uint64(10 * 0xfffffff0),
		"packetDeltaCount":  uint64(5*0xffff + 5*0xff),
		"ingressInterface":  uint64(0xffffffff), // unsigned32 sum saturates
		"maximumTTL":        uint64(68),
		"minimumTTL":        uint64(52),
		"deltaFlowCount":    uint64(10),
	}
	for k, v := range want {
		if g.Fields[k] != v {
			t.Errorf("%s = %v, want %v", k, g.Fields[k], v)
		}
	}
	if got := fieldOrder(g.Layout); got != "bgpSourceAsNumber:4 octetDeltaCount:8 packetDeltaCount:8 ingressInterface:4 maximumTTL:1 minimumTTL:1 flowStartMilliseconds:8 flowEndMilliseconds:8 deltaFlowCount:8" {
		t.Errorf("fields %s", got)
	}
}

// A record's own deltaFlowCount counts its flows; a minimum no record
// carried is 0.
func TestAggregateDeltaFlowCount(t *testing.T) {
	s, out := stages(t, "aggregate: {keys: [protocolIdentifier], values: [octetDeltaCount, minimumTTL], max_keys: 5000}")
	l := mkLayout(t, 300, spec(idProto, 1), spec(idOctets, 8), spec(idDeltaFlows, 4))
	m := mkMeta("192.0.2.1:4739", 1)
	s.Process(m, mkRecord(t, l, encode(t, l, 6, 1, 5)))
	s.Process(m, mkRecord(t, l, encode(t, l, 6, 1, 7)))
	s.Retire()
	if len(out.recs) != 1 || out.recs[0].Fields["deltaFlowCount"] != uint64(12) || out.recs[0].Fields["minimumTTL"] != uint64(0) {
		t.Errorf("%+v", out.recs)
	}
}

// A full table emits aggregates early; nothing is lost.
func TestAggregateEviction(t *testing.T) {
	s, out := stages(t, "aggregate: {"+aggKeys3+", max_keys: 100}")
	l := mkLayout(t, 300, flowLayoutSpecs...)
	gen := newFlowGen(2, 1000)
	m := mkMeta("192.0.2.1:4739", 1)
	ref := map[flowKey]*flowAgg{}
	var total flowAgg
	for range 20000 {
		k, v, b := gen.next(t, l)
		if ref[k] == nil {
			ref[k] = &flowAgg{}
		}
		ref[k].add(v)
		total.add(v)
		s.Process(m, mkRecord(t, l, b))
	}
	if k := metric(t, s, `sluice_aggregate_keys{pipeline="p",stage="1:aggregate"}`); k != 100 {
		t.Errorf("%d keys held, want 100", k)
	}
	evicted := metric(t, s, `sluice_aggregate_evicted_total{pipeline="p",stage="1:aggregate"}`)
	if evicted == 0 || evicted != uint64(len(out.recs)) {
		t.Errorf("%d evicted, %d emitted", evicted, len(out.recs))
	}
	s.Retire()
	if len(out.recs) != int(evicted)+100 {
		t.Errorf("%d emitted, want %d", len(out.recs), evicted+100)
	}
	ks, vs := emitted(t, out.recs)
	got := map[flowKey]*flowAgg{}
	var sum flowAgg
	for i, k := range ks {
		if got[k] == nil {
			got[k] = &flowAgg{}
		}
		got[k].add(vs[i])
		sum.add(vs[i])
	}
	if sum != total {
		t.Errorf("emitted %+v, sent %+v", sum, total)
	}
	if len(got) != len(ref) {
		t.Errorf("%d keys emitted, %d sent", len(got), len(ref))
	}
	for k, want := range ref {
		if g := got[k]; g == nil || *g != *want {
			t.Errorf("%v: %+v, want %+v", k, g, *want)
		}
	}
}

func TestAggregateIdleTimeout(t *testing.T) {
	s, out := stages(t, "aggregate: {keys: [sourceTransportPort], idle_timeout: 10s, max_keys: 5000}")
	l := mkLayout(t, 300, spec(idSrcPort, 2), spec(idOctets, 8))
	m := mkMeta("192.0.2.1:4739", 1)
	t0 := time.Unix(1_000_000, 0)
	rec := func(port int) { s.Process(m, mkRecord(t, l, encode(t, l, port, 1))) }
	ports := func() []uint64 {
		var p []uint64
		for _, g := range out.recs {
			p = append(p, g.Fields["sourceTransportPort"].(uint64))
		}
		out.recs = nil
		return p
	}
	s.Tick(t0)
	rec(1)
	s.Tick(t0.Add(5 * time.Second))
	rec(2)
	rec(1) // refreshed at 5 s
	s.Tick(t0.Add(9 * time.Second))
	if p := ports(); len(p) != 0 {
		t.Errorf("at 9 s: %v", p)
	}
	s.Tick(t0.Add(14 * time.Second))
	rec(2) // 2 refreshed at 14 s
	s.Tick(t0.Add(15 * time.Second))
	if p := ports(); !reflect.DeepEqual(p, []uint64{1}) {
		t.Errorf("at 15 s: %v", p)
	}
	s.Tick(t0.Add(23 * time.Second))
	if p := ports(); len(p) != 0 {
		t.Errorf("at 23 s: %v", p)
	}
	s.Tick(t0.Add(24 * time.Second))
	if p := ports(); !reflect.DeepEqual(p, []uint64{2}) {
		t.Errorf("at 24 s: %v", p)
	}
	// Without flow times, the aggregate spans its records' processing times.
	s.Tick(t0.Add(30 * time.Second))
	rec(3)
	s.Tick(t0.Add(32 * time.Second))
	rec(3)
	s.Tick(t0.Add(60 * time.Second))
	if len(out.recs) != 1 || out.recs[0].Fields["flowStartMilliseconds"] != t0.Add(30*time.Second).UnixNano() ||
		out.recs[0].Fields["flowEndMilliseconds"] != t0.Add(32*time.Second).UnixNano() || out.recs[0].Fields["octetDeltaCount"] != uint64(2) {
		t.Errorf("%+v", out.recs)
	}
	if n := metric(t, s, `sluice_aggregate_emitted_total{pipeline="p",stage="1:aggregate"}`); n != 3 {
		t.Errorf("emitted %d", n)
	}
}

// The active timeout emits an aggregate that keeps being updated.
func TestAggregateActiveTimeout(t *testing.T) {
	for _, stage := range []string{
		"aggregate: {keys: [sourceTransportPort], max_keys: 5000}", // default 60 s
		"aggregate: {keys: [sourceTransportPort], active_timeout: 60s, idle_timeout: 1h, max_keys: 5000}",
	} {
		s, out := stages(t, stage)
		l := mkLayout(t, 300, spec(idSrcPort, 2), spec(idOctets, 8))
		m := mkMeta("192.0.2.1:4739", 1)
		t0 := time.Unix(2_000_000, 0)
		for i := range 13 {
			s.Tick(t0.Add(time.Duration(i) * 5 * time.Second))
			if i == 12 {
				break
			}
			s.Process(m, mkRecord(t, l, encode(t, l, 7, 1)))
		}
		if len(out.recs) != 1 || out.recs[0].Fields["octetDeltaCount"] != uint64(12) {
			t.Errorf("%s: %+v", stage, out.recs)
		}
	}
}

func TestAggregateInterval(t *testing.T) {
	s, out := stages(t, "aggregate: {keys: [sourceTransportPort], interval: 1m, max_keys: 5000}")
	l := mkLayout(t, 300, spec(idSrcPort, 2), spec(idOctets, 8))
	m := mkMeta("192.0.2.1:4739", 1)
	t0 := time.Unix(60*30_000, 0) // on a minute
	s.Tick(t0.Add(10 * time.Second))
	for p := range 50 {
		s.Process(m, mkRecord(t, l, encode(t, l, p, 1)))
	}
	s.Tick(t0.Add(59 * time.Second))
	s.Process(m, mkRecord(t, l, encode(t, l, 1, 1)))
	s.Tick(t0.Add(59*time.Second + 999*time.Millisecond))
	if len(out.recs) != 0 {
		t.Fatalf("%d aggregates inside the interval", len(out.recs))
	}
	s.Tick(t0.Add(60 * time.Second))
	if len(out.recs) != 50 {
		t.Fatalf("%d aggregates at the end of the interval", len(out.recs))
	}
	for _, g := range out.recs {
		want := uint64(1)
		if g.Fields["sourceTransportPort"] == uint64(1) {
			want = 2
		}
		if g.Fields["octetDeltaCount"] != want {
			t.Errorf("%v", g.Fields)
		}
	}
	out.recs = nil
	s.Process(m, mkRecord(t, l, encode(t, l, 1, 1)))
	s.Tick(t0.Add(100 * time.Second))
	if len(out.recs) != 0 {
		t.Errorf("%d aggregates inside the second interval", len(out.recs))
	}
	s.Tick(t0.Add(240 * time.Second))
	if len(out.recs) != 1 {
		t.Errorf("%d aggregates after the second interval", len(out.recs))
	}
}

// Many timeouts at once on a crowded table: every expired aggregate is
// emitted once, the others stay.
func TestAggregateExpireCrowded(t *testing.T) {
	s, out := stages(t, "aggregate: {keys: [sourceTransportPort], idle_timeout: 10s, max_keys: 1000}")
	l := mkLayout(t, 300, spec(idSrcPort, 2), spec(idOctets, 8))
	m := mkMeta("192.0.2.1:4739", 1)
	t0 := time.Unix(3_000_000, 0)
	s.Tick(t0)
	for p := range 1000 {
		s.Process(m, mkRecord(t, l, encode(t, l, p, 1)))
	}
	s.Tick(t0.Add(5 * time.Second))
	for p := 0; p < 1000; p += 3 {
		s.Process(m, mkRecord(t, l, encode(t, l, p, 1)))
	}
	s.Tick(t0.Add(12 * time.Second))
	seen := map[uint64]bool{}
	for _, g := range out.recs {
		p := g.Fields["sourceTransportPort"].(uint64)
		if p%3 == 0 || seen[p] || g.Fields["octetDeltaCount"] != uint64(1) {
			t.Errorf("port %d emitted: %v", p, g.Fields)
		}
		seen[p] = true
	}
	if len(seen) != 666 {
		t.Errorf("%d expired, want 666", len(seen))
	}
	out.recs = nil
	s.Retire()
	for _, g := range out.recs {
		p := g.Fields["sourceTransportPort"].(uint64)
		if p%3 != 0 || seen[p] || g.Fields["octetDeltaCount"] != uint64(2) {
			t.Errorf("port %d at the end: %v", p, g.Fields)
		}
		seen[p] = true
	}
	if len(seen) != 1000 {
		t.Errorf("%d emitted in all", len(seen))
	}
}

// A record with an end time but no start time spans just its end.
func TestAggregateEndOnly(t *testing.T) {
	s, out := stages(t, "aggregate: {keys: [protocolIdentifier], max_keys: 5000}")
	l := mkLayout(t, 300, spec(idProto, 1), spec(idEndMs, 8))
	end := time.Unix(1_000_000, 0)
	s.Tick(end.Add(time.Hour))
	s.Process(mkMeta("192.0.2.1:4739", 1), mkRecord(t, l, encode(t, l, 6, end)))
	s.Retire()
	if len(out.recs) != 1 || out.recs[0].Fields["flowStartMilliseconds"] != end.UnixNano() || out.recs[0].Fields["flowEndMilliseconds"] != end.UnixNano() {
		t.Errorf("%+v", out.recs)
	}
}

// An aggregate feeds a later one; Retire flushes them in chain order.
func TestAggregateChained(t *testing.T) {
	s, out := stages(t, "aggregate: {"+aggKeys3+", max_keys: 5000}", "aggregate: {keys: [protocolIdentifier], max_keys: 5000}")
	l := mkLayout(t, 300, flowLayoutSpecs...)
	gen := newFlowGen(3, 500)
	m := mkMeta("192.0.2.1:4739", 1)
	ref := map[uint64]*flowAgg{}
	for range 5000 {
		k, v, b := gen.next(t, l)
		if ref[k.proto] == nil {
			ref[k.proto] = &flowAgg{}
		}
		ref[k.proto].add(v)
		s.Process(m, mkRecord(t, l, b))
	}
	s.Retire()
	if len(out.recs) != len(ref) {
		t.Fatalf("%d aggregates, want %d", len(out.recs), len(ref))
	}
	ks, vs := emitted(t, out.recs)
	for i, k := range ks {
		want := *ref[k.proto]
		// The second stage counts the first one's aggregates as flows,
		// which carry their own deltaFlowCount.
		if vs[i] != want {
			t.Errorf("proto %d: %+v, want %+v", k.proto, vs[i], want)
		}
	}
}

func TestAggregateMetrics(t *testing.T) {
	s, _ := stages(t, "aggregate: {keys: [protocolIdentifier], max_keys: 1000}")
	small := metric(t, s, `sluice_aggregate_table_bytes{pipeline="p",stage="1:aggregate"}`)
	if small < 1000*(24+8+3*8) {
		t.Errorf("%d table bytes for 1000 keys", small)
	}
	// The default bound does not cost its memory up front: the table grows.
	def, _ := stages(t, "aggregate: {keys: [protocolIdentifier]}")
	if b := metric(t, def, `sluice_aggregate_table_bytes{pipeline="p",stage="1:aggregate"}`); b > 1<<20 {
		t.Errorf("%d table bytes by default before any record", b)
	}
	for _, name := range []string{"sluice_pipeline_version", `sluice_aggregate_dropped_total{pipeline="p",stage="1:aggregate"}`} {
		metric(t, s, name)
	}
}

// Keys of every canonical width (1, 2, 4, 6, 8 and 16 octets) lie across
// the table's 8-octet words; keys that differ in one octet, any octet,
// aggregate apart. Checked against a map, with room for every key and
// with evictions.
func TestAggregateKeyWidths(t *testing.T) {
	const idFlowID = 148 // unsigned64
	for _, maxKeys := range []string{"5000", "40"} {
		s, out := stages(t, "aggregate: {keys: [protocolIdentifier, sourceMacAddress, sourceIPv6Address, sourceTransportPort, sourceIPv4Address, flowId], max_keys: "+maxKeys+"}")
		l := mkLayout(t, 300, spec(idProto, 1), spec(idSrcMAC, 6), spec(idSrc6, 16), spec(idSrcPort, 2), spec(idSrc4, 4), spec(idFlowID, 8), spec(idOctets, 8))
		base := encode(t, l, 6, []byte{2, 0, 0, 0xaa, 0xbb, 0xcc}, addr("2001:db8::1"), 443, addr("10.1.2.3"), uint64(0x1122334455667788), 0)
		const keyLen = 1 + 6 + 16 + 2 + 4 + 8
		rng := rand.New(rand.NewPCG(7, 8))
		m := mkMeta("192.0.2.1:4739", 1)
		ref := map[string]uint64{}
		for range 6000 {
			b := append([]byte(nil), base...)
			if rng.IntN(8) > 0 {
				b[rng.IntN(keyLen)] ^= byte(1 + rng.IntN(3))
			}
			octets := 1 + rng.Uint64N(1000)
			binary.BigEndian.PutUint64(b[keyLen:], octets)
			ref[string(b[:keyLen])] += octets
			s.Process(m, mkRecord(t, l, b))
		}
		s.Retire()
		got := map[string]uint64{}
		for _, g := range out.recs {
			f := g.Fields
			mac := f["sourceMacAddress"].([6]byte)
			src6, src4 := f["sourceIPv6Address"].(netip.Addr).As16(), f["sourceIPv4Address"].(netip.Addr).As4()
			k := []byte{byte(f["protocolIdentifier"].(uint64))}
			k = append(k, mac[:]...)
			k = append(k, src6[:]...)
			k = binary.BigEndian.AppendUint16(k, uint16(f["sourceTransportPort"].(uint64)))
			k = append(k, src4[:]...)
			k = binary.BigEndian.AppendUint64(k, f["flowId"].(uint64))
			got[string(k)] += f["octetDeltaCount"].(uint64)
		}
		if !reflect.DeepEqual(got, ref) {
			t.Errorf("max_keys %s: %d keys emitted, %d sent, sums differ", maxKeys, len(got), len(ref))
		}
		if maxKeys == "5000" && len(out.recs) != len(ref) {
			t.Errorf("%d aggregates for %d keys", len(out.recs), len(ref))
		}
	}
}
