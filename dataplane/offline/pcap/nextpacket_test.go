package pcap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"
)

// TestNextPacket: every packet comes back undecoded with its link type,
// time and lengths, from classic pcap and from pcapng (two interfaces of
// different link types, an enhanced, an obsolete and a simple packet
// block); an ARP frame and a raw IPv6 packet included.
func TestNextPacket(t *testing.T) {
	ts := time.Date(2024, 7, 2, 12, 0, 0, 123456000, time.UTC)
	arp := eth(0x0806, make([]byte, 28))
	v6 := ip6(t, "[2001:db8::1]:1", "[2001:db8::2]:2", []byte("x"))

	var cl bytes.Buffer
	w, _ := NewWriter(&cl, LinkTypeEthernet)
	w.WritePacket(ts, arp)
	w.WritePacket(ts.Add(time.Second), arp[:20])

	ng := &ngWriter{o: binary.LittleEndian}
	ng.shb()
	ng.idb(LinkTypeEthernet, 0)
	ng.idb(LinkTypeRaw, 0)
	us := uint64(ts.UnixMicro())
	ng.epb(1, us, v6)
	ng.pb(0, us+1, arp)
	ng.spb(arp)

	type want struct {
		link uint32
		t    time.Time
		data []byte
	}
	f := func(name string, capture []byte, wants []want) {
		t.Helper()
		r, err := NewReader(bytes.NewReader(capture))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var p Packet
		for i, w := range wants {
			if err := r.NextPacket(&p); err != nil {
				t.Fatalf("%s: packet %d: %v", name, i, err)
			}
			if p.LinkType != w.link || !p.Time.Equal(w.t) || !bytes.Equal(p.Data, w.data) || p.OrigLen < uint32(len(w.data)) || r.LinkType() != w.link {
				t.Errorf("%s: packet %d: link %d time %v len %d/%d", name, i, p.LinkType, p.Time, len(p.Data), p.OrigLen)
			}
		}
		if err := r.NextPacket(&p); !errors.Is(err, io.EOF) {
			t.Errorf("%s: after the last packet: %v", name, err)
		}
		if r.Stats().Packets != uint64(len(wants)) {
			t.Errorf("%s: %d packets counted", name, r.Stats().Packets)
		}
	}
	f("pcap", cl.Bytes(), []want{{LinkTypeEthernet, ts, arp}, {LinkTypeEthernet, ts.Add(time.Second), arp[:20]}})
	f("pcapng", ng.b, []want{{LinkTypeRaw, ts, v6}, {LinkTypeEthernet, ts.Add(time.Microsecond), arp}, {LinkTypeEthernet, time.Time{}, arp}})
}
