package meter

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/offline/pcap"
)

// Packet builders (checksums are left zero: the meter does not read them).

func tcpHdr(sport, dport uint16, flags uint8, payload []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, sport)
	b = binary.BigEndian.AppendUint16(b, dport)
	b = append(b, 0, 0, 0, 1, 0, 0, 0, 0, 5<<4, flags, 0xff, 0xff, 0, 0, 0, 0)
	return append(b, payload...)
}

func udpHdr(sport, dport uint16, payload []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, sport)
	b = binary.BigEndian.AppendUint16(b, dport)
	b = binary.BigEndian.AppendUint16(b, uint16(8+len(payload)))
	b = append(b, 0, 0)
	return append(b, payload...)
}

func icmpHdr(typ, code uint8) []byte { return []byte{typ, code, 0, 0, 0, 1, 0, 1} }

// ip4 builds an IPv4 packet; frag is the flags and offset field.
func ip4(src, dst string, proto, ttl uint8, id, frag uint16, l4 []byte) []byte {
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	b := []byte{0x45, 0}
	b = binary.BigEndian.AppendUint16(b, uint16(20+len(l4)))
	b = binary.BigEndian.AppendUint16(b, id)
	b = binary.BigEndian.AppendUint16(b, frag)
	b = append(b, ttl, proto, 0, 0)
	b = append(b, s[:]...)
	b = append(b, d[:]...)
	return append(b, l4...)
}

// ip6 builds an IPv6 packet with the given extension headers (each a
// next-header-less body; their types are in exts).
func ip6(src, dst string, proto uint8, exts []uint8, bodies [][]byte, l4 []byte) []byte {
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	var ext []byte
	for i, body := range bodies {
		next := proto
		if i+1 < len(exts) {
			next = exts[i+1]
		}
		ext = append(ext, next)
		ext = append(ext, body...)
	}
	first := proto
	if len(exts) > 0 {
		first = exts[0]
	}
	b := []byte{0x60, 0, 0, 0}
	b = binary.BigEndian.AppendUint16(b, uint16(len(ext)+len(l4)))
	b = append(b, first, 64)
	b = append(b, s[:]...)
	b = append(b, d[:]...)
	b = append(b, ext...)
	return append(b, l4...)
}

// eth wraps an IP packet in Ethernet with optional tags: each tag is an
// EtherType followed by a VLAN ID, or 0x8847 with an MPLS label.
func eth(ip []byte, tags ...uint32) []byte {
	b := make([]byte, 12)
	inner := uint16(etherTypeIPv4)
	if ip[0]>>4 == 6 {
		inner = etherTypeIPv6
	}
	for i := 0; i < len(tags); i += 2 {
		b = binary.BigEndian.AppendUint16(b, uint16(tags[i]))
		if tags[i] == etherTypeMPLS {
			b = binary.BigEndian.AppendUint32(b, tags[i+1]<<12|1<<8|64) // bottom of stack
			return append(b, ip...)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(tags[i+1]))
	}
	b = binary.BigEndian.AppendUint16(b, inner)
	return append(b, ip...)
}

func TestMeterParse(t *testing.T) {
	v4 := ip4("192.0.2.1", "192.0.2.2", protoTCP, 61, 1, 0, tcpHdr(1000, 80, tcpSYN, nil))
	v6 := ip6("2001:db8::1", "2001:db8::2", protoUDP, []uint8{protoHopByHop, protoRouting, protoDestOpts},
		[][]byte{make([]byte, 7), make([]byte, 7), make([]byte, 7)}, udpHdr(5353, 53, []byte("q")))
	f := func(name string, link uint32, b []byte, want Reason, check func(p *packet) bool) {
		t.Helper()
		var p packet
		if got := parse(link, b, &p); got != want {
			t.Errorf("%s: reason %v, want %v", name, got, want)
			return
		}
		if check != nil && !check(&p) {
			t.Errorf("%s: wrong fields: %+v", name, p)
		}
	}
	tcp := func(p *packet) bool {
		return p.Proto == protoTCP && p.sport == 1000 && p.dport == 80 && p.tcpFlags == tcpSYN && p.TTL == 61 && p.IPLen == 40 &&
			netip.AddrFrom4([4]byte(p.Src[:4])) == netip.MustParseAddr("192.0.2.1")
	}
	f("ethernet", pcap.LinkTypeEthernet, eth(v4), reasonNone, tcp)
	f("802.1Q", pcap.LinkTypeEthernet, eth(v4, etherTypeVLAN, 10), reasonNone, func(p *packet) bool { return tcp(p) && p.VLAN == 10 })
	f("QinQ", pcap.LinkTypeEthernet, eth(v4, etherTypeQinQ, 20, etherTypeVLAN, 10), reasonNone, func(p *packet) bool { return tcp(p) && p.VLAN == 20 })
	f("MPLS", pcap.LinkTypeEthernet, eth(v4, etherTypeMPLS, 1234), reasonNone, func(p *packet) bool { return tcp(p) && p.HasMPLS && p.MPLS>>4 == 1234 })
	f("VLAN+MPLS", pcap.LinkTypeEthernet, eth(v4, etherTypeVLAN, 7, etherTypeMPLS, 99), reasonNone, func(p *packet) bool { return tcp(p) && p.VLAN == 7 && p.MPLS>>4 == 99 })
	sll := append([]byte{0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0}, v4...)
	f("SLL", pcap.LinkTypeLinuxSLL, sll, reasonNone, tcp)
	sll2 := append([]byte{0x08, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0}, v4...)
	f("SLL2", pcap.LinkTypeSLL2, sll2, reasonNone, tcp)
	f("raw", pcap.LinkTypeRaw, v4, reasonNone, tcp)
	f("null", pcap.LinkTypeNull, append([]byte{2, 0, 0, 0}, v4...), reasonNone, tcp)
	f("IPv6 extension headers", pcap.LinkTypeRaw, v6, reasonNone, func(p *packet) bool {
		return p.V6 && p.Proto == protoUDP && p.sport == 5353 && p.dport == 53 && string(p.payload) == "q" && p.IPLen == len(v6)
	})
	f("ICMP", pcap.LinkTypeRaw, ip4("192.0.2.1", "192.0.2.2", protoICMP, 64, 1, 0, icmpHdr(8, 0)), reasonNone, func(p *packet) bool { return p.icmp == 8<<8 })
	f("ARP", pcap.LinkTypeEthernet, append(make([]byte, 12), 0x08, 0x06, 0, 1), ReasonNonIP, nil)
	f("unknown link", 147, v4, ReasonLinkType, nil)
	f("cut IP header", pcap.LinkTypeRaw, v4[:19], ReasonTruncated, nil)
	f("cut TCP header", pcap.LinkTypeRaw, v4[:30], ReasonTruncated, nil)
	f("cut payload counts", pcap.LinkTypeRaw, ip4("192.0.2.1", "192.0.2.2", protoUDP, 64, 1, 0, udpHdr(1, 2, make([]byte, 1000)))[:60], reasonNone,
		func(p *packet) bool { return p.IPLen == 1028 })
	bad := bytes.Clone(v4)
	bad[0] = 0x43
	f("bad IHL", pcap.LinkTypeRaw, bad, ReasonMalformed, nil)
	f("later fragment", pcap.LinkTypeRaw, ip4("192.0.2.1", "192.0.2.2", protoUDP, 64, 7, 100, make([]byte, 40)), reasonNone,
		func(p *packet) bool { return p.Frag && !p.l4 && p.FragOff == 800 && p.FragID == 7 })
	f("IPv6 later fragment", pcap.LinkTypeRaw, ip6("2001:db8::1", "2001:db8::2", protoUDP, []uint8{protoFragment},
		[][]byte{{0, 0x03, 0x20, 0, 0, 0, 9}}, make([]byte, 16)), reasonNone,
		func(p *packet) bool { return p.Frag && p.Proto == protoUDP && !p.l4 && p.FragID == 9 })
}

// feed meters packets of raw IP (ts in ms from a fixed start) and returns the records.
type pkt struct {
	ms int64
	b  []byte
}

var t0 = time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC).UnixNano()

func feed(t *testing.T, cfg Config, pkts []pkt) ([]rec, Stats) {
	t.Helper()
	sink := &collectSink{t: t, c: newCollector()}
	m, err := New(cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		m.Packet(t0+p.ms*1e6, pcap.LinkTypeRaw, p.b)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if !sink.closed {
		t.Error("sink not closed")
	}
	return sink.c.recs, m.Stats()
}

func TestMeterTimeoutsAndEnds(t *testing.T) {
	a, b := "192.0.2.1", "192.0.2.2"
	syn := ip4(a, b, protoTCP, 64, 0, 0, tcpHdr(1000, 80, tcpSYN, nil))
	synack := ip4(b, a, protoTCP, 60, 0, 0, tcpHdr(80, 1000, tcpSYN|tcpACK, nil))
	ack := ip4(a, b, protoTCP, 64, 0, 0, tcpHdr(1000, 80, tcpACK, []byte("GET")))
	fin := ip4(a, b, protoTCP, 64, 0, 0, tcpHdr(1000, 80, tcpFIN|tcpACK, nil))
	finR := ip4(b, a, protoTCP, 60, 0, 0, tcpHdr(80, 1000, tcpFIN|tcpACK, nil))
	rst := ip4(a, b, protoTCP, 64, 0, 0, tcpHdr(1000, 80, tcpRST, nil))
	udp := ip4(a, b, protoUDP, 64, 0, 0, udpHdr(5000, 53, nil))

	// Idle: a 20 s gap splits the UDP flow; the last ends at the end (forced).
	recs, _ := feed(t, Config{}, []pkt{{0, udp}, {1000, udp}, {21000, udp}})
	if len(recs) != 2 || recs[0].packets != 2 || recs[0].reason != EndIdle || recs[1].reason != EndForced {
		t.Errorf("idle: %v", recs)
	}
	if recs[0].start != t0/1e6 || recs[0].end != t0/1e6+1000 {
		t.Errorf("idle: times %d..%d", recs[0].start-t0/1e6, recs[0].end-t0/1e6)
	}
	// Idle expiry by the sweep, without another packet of the flow.
	other := ip4(a, b, protoUDP, 64, 0, 0, udpHdr(5001, 53, nil))
	recs, _ = feed(t, Config{}, []pkt{{0, udp}, {17000, other}})
	if len(recs) != 2 || recs[0].reason != EndIdle || recs[0].sport != 5000 {
		t.Errorf("idle sweep: %v", recs)
	}
	// Active: packets every 10 s for 50 s with a 30 s active timeout.
	var ps []pkt
	for i := int64(0); i <= 5; i++ {
		ps = append(ps, pkt{i * 10000, udp})
	}
	recs, _ = feed(t, Config{ActiveTimeout: 30 * time.Second}, ps)
	if len(recs) != 2 || recs[0].packets != 3 || recs[0].reason != EndActive || recs[1].packets != 3 {
		t.Errorf("active: %v", recs)
	}
	// RST ends at once; FIN ends after the last ACK.
	recs, _ = feed(t, Config{}, []pkt{{0, syn}, {1, ack}, {2, rst}, {3, ack}})
	if len(recs) != 2 || recs[0].packets != 3 || recs[0].reason != EndOfFlow || recs[0].flags != tcpSYN|tcpACK|tcpRST {
		t.Errorf("rst: %v", recs)
	}
	recs, _ = feed(t, Config{}, []pkt{{0, syn}, {1, ack}, {2, fin}, {3, ack}, {5000, udp}})
	if len(recs) != 2 || recs[0].packets != 4 || recs[0].reason != EndOfFlow {
		t.Errorf("fin: %v", recs)
	}
	// Biflow: one record, reverse counters, initial flags, FIN both ways.
	recs, _ = feed(t, Config{Biflow: true}, []pkt{{0, syn}, {1, synack}, {2, ack}, {3, fin}, {4, finR}, {5, ack}, {5000, udp}})
	if len(recs) != 2 {
		t.Fatalf("biflow: %v", recs)
	}
	r := recs[0]
	if r.packets != 4 || r.rpackets != 2 || r.reason != EndOfFlow || r.initFlags != tcpSYN || r.sport != 1000 || r.octets != 2*40+2*43 {
		t.Errorf("biflow: %v %+v", r, r)
	}
	// ICMP echo request and reply make one biflow, keyed by the request.
	req := ip4(a, b, protoICMP, 64, 0, 0, icmpHdr(8, 0))
	rep := ip4(b, a, protoICMP, 64, 0, 0, icmpHdr(0, 0))
	recs, _ = feed(t, Config{Biflow: true}, []pkt{{0, req}, {1, rep}})
	if len(recs) != 1 || recs[0].icmp != 8<<8 || recs[0].rpackets != 1 {
		t.Errorf("icmp biflow: %v", recs)
	}
	recs, _ = feed(t, Config{}, []pkt{{0, req}, {1, rep}})
	if len(recs) != 2 || recs[1].icmp != 0 {
		t.Errorf("icmp: %v", recs)
	}
}

func TestMeterMaxFlows(t *testing.T) {
	var ps []pkt
	for i := 0; i < 10; i++ {
		ps = append(ps, pkt{int64(i), ip4("192.0.2.1", "192.0.2.2", protoUDP, 64, 0, 0, udpHdr(uint16(1000+i), 53, nil))})
	}
	ps = append(ps, pkt{20, ps[9].b}) // flow 9 is the most recent; 6 the least at the end
	recs, st := feed(t, Config{MaxFlows: 4}, ps)
	if st.EarlyExports != 6 || len(recs) != 10 || st.Metered != 11 {
		t.Fatalf("early %d, records %d, metered %d", st.EarlyExports, len(recs), st.Metered)
	}
	for i, r := range recs[:6] {
		if r.reason != EndResources || r.sport != uint16(1000+i) {
			t.Errorf("record %d: %v reason %d", i, r, r.reason)
		}
	}
}

func TestMeterFragments(t *testing.T) {
	a, b := "192.0.2.1", "192.0.2.2"
	l4 := udpHdr(4000, 4739, make([]byte, 2000))
	first := ip4(a, b, protoUDP, 64, 42, 0x2000, l4[:1480])
	mid := ip4(a, b, protoUDP, 64, 42, 0x2000|1480/8, l4[1480:1600])
	last := ip4(a, b, protoUDP, 64, 42, 1600/8, l4[1600:])
	orphan := ip4(a, b, protoUDP, 64, 43, 1480/8, l4[1480:])
	recs, st := feed(t, Config{}, []pkt{{0, first}, {1, mid}, {2, last}, {3, orphan}})
	if len(recs) != 1 || recs[0].packets != 3 || recs[0].octets != uint64(len(first)+len(mid)+len(last)) || recs[0].dport != 4739 {
		t.Errorf("fragments: %v", recs)
	}
	if st.Fragments != 2 || st.Skipped[ReasonFragment] != 1 || st.Packets != st.Metered+st.SkippedTotal() {
		t.Errorf("stats: %+v", st)
	}
	// The table is bounded: with room for one, the second datagram's
	// later fragment is skipped.
	first2 := ip4(a, b, protoUDP, 64, 44, 0x2000, l4[:1480])
	last2 := ip4(a, b, protoUDP, 64, 44, 1480/8, l4[1480:])
	_, st = feed(t, Config{MaxFragments: 1}, []pkt{{0, first}, {1, first2}, {2, last2}, {3, last}})
	if st.FragmentTableFull != 1 || st.Skipped[ReasonFragment] != 1 || st.Metered != 3 {
		t.Errorf("bounded: %+v", st)
	}
}

// TestMeterDeterministic: capture time, not the wall clock, so two runs
// give the same bytes; export times follow the capture, sequence numbers
// count data records.
func TestMeterDeterministic(t *testing.T) {
	path := traffic(t, 2, 300)
	c1, _, b1 := meterRun(t, Config{Biflow: true}, path)
	_, _, b2 := meterRun(t, Config{Biflow: true}, path)
	if !bytes.Equal(b1, b2) {
		t.Error("two runs over one capture differ")
	}
	if c1.seqErrs != 0 {
		t.Errorf("%d sequence errors", c1.seqErrs)
	}
	start := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC).Unix()
	for i, et := range c1.times {
		if int64(et) < start || int64(et) > start+120 || (i > 0 && et < c1.times[i-1]) {
			t.Fatalf("export time %d of message %d not capture time", et, i)
		}
	}
	for _, r := range c1.recs {
		if r.end/1000 > int64(c1.times[len(c1.times)-1]) {
			t.Fatalf("record ends after its export: %v", r)
		}
	}
}

// TestMeterBadCaptures: damaged captures give counted skips, never a
// crash; what came before the damage is metered.
func TestMeterBadCaptures(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	w, _ := pcap.NewWriter(&buf, pcap.LinkTypeRaw)
	for i := 0; i < 3; i++ {
		w.WritePacket(time.Unix(1700000000+int64(i), 0), ip4("192.0.2.1", "192.0.2.2", protoUDP, 64, 0, 0, udpHdr(1, 2, []byte("x"))))
	}
	good := buf.Bytes()
	cut := filepath.Join(dir, "cut.pcap")
	os.WriteFile(cut, good[:len(good)-5], 0o644)
	var wrong bytes.Buffer
	w, _ = pcap.NewWriter(&wrong, 147) // a link type the meter does not know
	w.WritePacket(time.Unix(1700000000, 0), []byte{1, 2, 3})
	wrongLink := filepath.Join(dir, "link.pcap")
	os.WriteFile(wrongLink, wrong.Bytes(), 0o644)
	notCap := filepath.Join(dir, "not.pcap")
	os.WriteFile(notCap, []byte("hello, this is not a capture"), 0o644)

	sink := &collectSink{t: t, c: newCollector()}
	m, _ := New(Config{}, sink)
	if err := m.ReadFile(context.Background(), cut); !errors.Is(err, ErrDamaged) {
		t.Errorf("cut: %v", err)
	}
	if err := m.ReadFile(context.Background(), wrongLink); err != nil {
		t.Errorf("link: %v", err)
	}
	if err := m.ReadFile(context.Background(), notCap); !errors.Is(err, pcap.ErrNotCapture) {
		t.Errorf("not a capture: %v", err)
	}
	m.Close()
	st := m.Stats()
	if st.Metered != 2 || st.Skipped[ReasonCapture] != 1 || st.Skipped[ReasonLinkType] != 1 || len(sink.c.recs) != 1 {
		t.Errorf("stats %+v, records %v", st, sink.c.recs)
	}
}

// TestMeterNoAllocs: metering a packet allocates nothing once the table has
// its working size, new flows and expiries included.
func TestMeterNoAllocs(t *testing.T) {
	var pkts [][]byte
	for i := 0; i < 512; i++ {
		pkts = append(pkts, eth(ip4("192.0.2.1", "198.51.100.2", protoTCP, 64, 0, 0, tcpHdr(uint16(1024+i), 443, tcpACK, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))), etherTypeVLAN, 5))
		pkts = append(pkts, eth(ip6("2001:db8::1", "2001:db8::2", protoUDP, nil, nil, udpHdr(uint16(2000+i), 53, make([]byte, 30)))))
	}
	for _, cfg := range []Config{{}, {Biflow: true, DPI: true, IdleTimeout: time.Second}} {
		m, _ := New(cfg, &collectSink{t: t, c: newCollector()})
		ts := t0
		i := 0
		step := func() {
			ts += int64(time.Millisecond) * 3
			m.Packet(ts, pcap.LinkTypeEthernet, pkts[i%len(pkts)])
			i++
		}
		for j := 0; j < 20000; j++ {
			step()
		}
		m.sink = discardSink{}
		if n := testing.AllocsPerRun(20000, step); n != 0 {
			t.Errorf("%+v: %v allocations per packet", cfg, n)
		}
	}
}

type discardSink struct{}

func (discardSink) Message([]byte) error { return nil }
func (discardSink) Close() error         { return nil }

// TestMeterIndex checks the open-addressing index against a map under
// random inserts, removals and lookups (keys drawn from a small set, so
// probe runs collide and removals shift entries back).
func TestMeterIndex(t *testing.T) {
	var tb table = newTable(4)
	ref := map[flowKey]int32{}
	keys := make([]flowKey, 3000)
	for i := range keys {
		keys[i].src[0], keys[i].src[1] = byte(i), byte(i>>8)
		keys[i].sport = uint16(i % 7)
	}
	rng := uint64(1)
	for step := 0; step < 200000; step++ {
		rng = rng*6364136223846793005 + 1442695040888963407
		k := keys[(rng>>33)%uint64(len(keys))]
		i, ok := tb.lookup(&k)
		j, want := ref[k]
		if ok != want || (ok && i != j) {
			t.Fatalf("step %d: lookup %v %v, map %v %v", step, i, ok, j, want)
		}
		switch {
		case ok && rng>>62 == 0:
			tb.remove(i)
			delete(ref, k)
		case !ok:
			ref[k] = tb.insert(k)
		}
		if tb.len() != len(ref) {
			t.Fatalf("step %d: %d entries, map %d", step, tb.len(), len(ref))
		}
	}
}
