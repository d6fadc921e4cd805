package meter

import (
	"os"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/offline/pcap"
)

// FuzzPacket feeds arbitrary frames to the packet parser and the meter
// (biflow, DPI, a small table and fragment table). Seeds are the packets
// of the generator's capture and hand-made frames of every link type the
// parser knows. The meter must not panic and must account for every
// packet: metered or skipped under one reason.
func FuzzPacket(f *testing.F) {
	path := traffic(f, 3, 20)
	fh, err := os.Open(path)
	if err != nil {
		f.Fatal(err)
	}
	r, err := pcap.NewReader(fh)
	if err != nil {
		f.Fatal(err)
	}
	var p pcap.Packet
	for r.NextPacket(&p) == nil {
		f.Add(uint16(p.LinkType), append([]byte(nil), p.Data...))
	}
	fh.Close()
	v4 := ip4("192.0.2.1", "192.0.2.2", protoTCP, 61, 1, 0x2000, tcpHdr(1000, 443, tcpSYN, []byte{0x16, 3, 1, 0, 40, 1, 0, 0, 36}))
	f.Add(uint16(pcap.LinkTypeEthernet), eth(v4, etherTypeQinQ, 20, etherTypeVLAN, 10))
	f.Add(uint16(pcap.LinkTypeEthernet), eth(v4, etherTypeMPLS, 7))
	f.Add(uint16(pcap.LinkTypeLinuxSLL), append([]byte{0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0}, v4...))
	f.Add(uint16(pcap.LinkTypeNull), append([]byte{2, 0, 0, 0}, v4...))
	f.Add(uint16(pcap.LinkTypeRaw), ip6("2001:db8::1", "2001:db8::2", protoUDP, []uint8{protoHopByHop, protoFragment},
		[][]byte{make([]byte, 7), {0, 0, 1, 0, 0, 0, 9}}, udpHdr(1, 53, dnsQuery(1, "a.example", 1))))
	m, err := New(Config{Biflow: true, DPI: true, MaxFlows: 64, MaxFragments: 4, IdleTimeout: 1e6}, discardSink{})
	if err != nil {
		f.Fatal(err)
	}
	ts := int64(1e18)
	f.Fuzz(func(t *testing.T, link uint16, b []byte) {
		var pk packet
		parse(uint32(link), b, &pk)
		before := m.Stats()
		ts += 1e5
		m.Packet(ts, uint32(link), b)
		after := m.Stats()
		if after.Packets-before.Packets != (after.Metered-before.Metered)+(after.SkippedTotal()-before.SkippedTotal()) {
			t.Fatalf("packet neither metered nor skipped once: %+v -> %+v", before, after)
		}
	})
}
