package pcap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2024, 7, 2, 12, 34, 56, 123456789, time.UTC)

func TestIsCapture(t *testing.T) {
	for _, tc := range []struct {
		b    []byte
		want bool
	}{
		{[]byte{0xa1, 0xb2, 0xc3, 0xd4}, true},
		{[]byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0}, true},
		{[]byte{0xa1, 0xb2, 0x3c, 0x4d}, true},
		{[]byte{0x4d, 0x3c, 0xb2, 0xa1}, true},
		{[]byte{0x0a, 0x0d, 0x0d, 0x0a}, true},
		{[]byte{0x0a, 0x0d, 0x0d}, false},
		{[]byte{0, 10, 0, 0}, false}, // IPFIX message
		{nil, false},
	} {
		if got := IsCapture(tc.b); got != tc.want {
			t.Errorf("IsCapture(% x) = %v, want %v", tc.b, got, tc.want)
		}
	}
}

// TestPcapRoundTrip writes datagrams with Writer in every header variant
// and link type and reads them back.
func TestPcapRoundTrip(t *testing.T) {
	links := []uint32{LinkTypeEthernet, LinkTypeRaw, LinkTypeNull, LinkTypeLoop,
		LinkTypeLinuxSLL, LinkTypeSLL2, LinkTypeIPv4, LinkTypeIPv6}
	for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		for _, nano := range []bool{false, true} {
			for _, link := range links {
				name := fmt.Sprintf("%v/nano=%v/link=%d", order, nano, link)
				t.Run(name, func(t *testing.T) {
					var buf bytes.Buffer
					w, err := NewWriterConfig(&buf, WriterConfig{LinkType: link, Nanosecond: nano, ByteOrder: order})
					if err != nil {
						t.Fatal(err)
					}
					var wants []want
					for i, size := range []int{0, 5, 17, 100, 1400, 9000} {
						payload := strings.Repeat(string(rune('a'+i)), size)
						src, dst := "192.0.2.1:50000", "198.51.100.7:4739"
						if link == LinkTypeIPv6 || (link != LinkTypeIPv4 && i%2 == 1) {
							src, dst = "[2001:db8::1]:50001", "[2001:db8:ffff::2]:2055"
						}
						ts := t0.Add(time.Duration(i) * 1001 * time.Millisecond)
						if err := w.WriteUDP(ts, netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst), []byte(payload)); err != nil {
							t.Fatal(err)
						}
						if !nano {
							ts = ts.Truncate(time.Microsecond)
						}
						wants = append(wants, want{ts, src, dst, payload})
					}
					got, st := readAll(t, buf.Bytes())
					check(t, got, wants)
					if st != (Stats{Packets: 6, Datagrams: 6}) {
						t.Errorf("stats %+v", st)
					}
				})
			}
		}
	}
}

func TestWriterChecksums(t *testing.T) {
	for _, pkt := range [][]byte{
		ip4(t, "10.1.2.3:1234", "10.9.8.7:4739", []byte("odd length payload")),
		ip6(t, "[fe80::1]:1234", "[2001:db8::9]:4739", []byte("odd length payload")),
	} {
		var pseudo []byte
		var udp []byte
		if pkt[0]>>4 == 4 {
			if s := sum16(0, pkt[:20]); s != 0xffff {
				t.Errorf("IPv4 header checksum does not verify: %#x", s)
			}
			udp = pkt[20:]
			pseudo = append(append(append([]byte{}, pkt[12:20]...), 0, protoUDP), pkt[24:26]...)
		} else {
			udp = pkt[40:]
			pseudo = append(append([]byte{}, pkt[8:40]...), 0, 0)
			pseudo = append(pseudo, pkt[4:6]...)
			pseudo = append(pseudo, 0, 0, 0, protoUDP)
		}
		if s := sum16(sum16(0, pseudo), udp); s != 0xffff {
			t.Errorf("UDP checksum does not verify: %#x", s)
		}
	}
}

func TestWriterErrors(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	v4 := netip.MustParseAddrPort("192.0.2.1:1")
	v6 := netip.MustParseAddrPort("[2001:db8::1]:1")
	if err := w.WriteUDP(t0, v4, v6, nil); !errors.Is(err, ErrWriter) {
		t.Errorf("mixed families: %v", err)
	}
	if err := w.WriteUDP(time.Unix(-1, 0), v4, v4, nil); !errors.Is(err, ErrWriter) {
		t.Errorf("negative time: %v", err)
	}
	if err := w.WriteUDP(t0, v4, v4, make([]byte, 70000)); !errors.Is(err, ErrWriter) {
		t.Errorf("huge payload: %v", err)
	}
	w4, _ := NewWriter(io.Discard, LinkTypeIPv4)
	if err := w4.WriteUDP(t0, v6, v6, nil); !errors.Is(err, ErrWriter) {
		t.Errorf("IPv6 on LINKTYPE_IPV4: %v", err)
	}
	wx, _ := NewWriter(io.Discard, 105)
	if err := wx.WriteUDP(t0, v4, v4, nil); !errors.Is(err, ErrWriter) {
		t.Errorf("unsupported link type: %v", err)
	}
	// IPv4-mapped addresses are written as IPv4.
	if err := w.WriteUDP(t0, netip.MustParseAddrPort("[::ffff:192.0.2.1]:5"), v4, []byte("x")); err != nil {
		t.Fatal(err)
	}
	got, _ := readAll(t, buf.Bytes())
	check(t, got, []want{{t0.Truncate(time.Microsecond), "192.0.2.1:5", "192.0.2.1:1", "x"}})
}

// TestPcapSkips covers the packets that are skipped, and the stats.
func TestPcapSkips(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	good := ip4(t, "192.0.2.1:1000", "192.0.2.2:2000", []byte("complete datagram"))
	big := ip4(t, "192.0.2.1:1000", "192.0.2.2:2000", bytes.Repeat([]byte("z"), 200))
	tcp := append([]byte{}, good...)
	tcp[9] = 6
	badIHL := append([]byte{}, good...)
	badIHL[0] = 0x44
	ulenBeyondIP := append([]byte{}, good...)
	binary.BigEndian.PutUint16(ulenBeyondIP[24:26], 200)
	atomic6 := withExt(ip6(t, "[2001:db8::1]:1", "[2001:db8::2]:2", []byte("atomic")), protoFragment, frag6(0, false))
	// A first fragment holding the whole datagram (the UDP length fits).
	wholeFirst := frag4(good, len(good)-20, 0, true)
	packets := []struct {
		frame []byte
		ok    bool
	}{
		{eth(etherTypeIPv4, good), true},
		{eth(0x0806, make([]byte, 28)), false},                                 // ARP: non-IP
		{eth(etherTypeIPv4, tcp), false},                                       // non-UDP
		{eth(etherTypeIPv4, frag4(big, 48, 0, true)), false},                   // first fragment: fragment
		{eth(etherTypeIPv4, frag4(big, 48, 6, false)), false},                  // last fragment: fragment
		{eth(etherTypeIPv4, wholeFirst), true},                                 // first fragment, whole datagram
		{eth(etherTypeIPv4, badIHL), false},                                    // malformed
		{eth(etherTypeIPv4, ulenBeyondIP), false},                              // malformed
		{eth(etherTypeIPv6, atomic6), true},                                    // atomic fragment
		{eth(etherTypeIPv4, good)[:14+30], false},                              // truncated by snaplen
		{eth(etherTypeIPv4, good)[:10], false},                                 // truncated Ethernet header
		{eth(etherTypeIPv4, good, etherTypeQinQ, etherTypeVLAN, 0x9100), true}, // stacked tags
		{eth(0x0027, make([]byte, 60)), false},                                 // 802.3 length: non-IP
		{eth(etherTypeMPLS, append([]byte{0, 1, 0, 64, 0, 2, 1, 64}, good...)), true},
	}
	n := 0
	for _, p := range packets {
		if err := w.WritePacket(t0, p.frame); err != nil {
			t.Fatal(err)
		}
		if p.ok {
			n++
		}
	}
	got, st := readAll(t, buf.Bytes())
	if len(got) != n {
		t.Errorf("got %d datagrams, want %d", len(got), n)
	}
	for _, d := range got {
		if p := string(d.Payload); p != "complete datagram" && p != "atomic" {
			t.Errorf("payload %q", p)
		}
	}
	wantStats := Stats{Packets: uint64(len(packets)), Datagrams: uint64(n),
		NonIP: 2, NonUDP: 1, Fragment: 2, Truncated: 2, Malformed: 2}
	if st != wantStats {
		t.Errorf("stats %+v\nwant  %+v", st, wantStats)
	}
	if st.Packets != st.Datagrams+st.Skipped() {
		t.Errorf("packets %d != datagrams %d + skipped %d", st.Packets, st.Datagrams, st.Skipped())
	}
}

func TestUnsupportedLinkType(t *testing.T) {
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, 105) // IEEE 802.11
	w.WritePacket(t0, make([]byte, 40))
	got, st := readAll(t, buf.Bytes())
	if len(got) != 0 || st.UnsupportedLink != 1 || st.Packets != 1 {
		t.Errorf("got %d datagrams, stats %+v", len(got), st)
	}
}

// TestLoopbackOrders checks both byte orders of the address family on the
// NULL and LOOP link types, and DLT 12 both as raw IP and as OpenBSD
// loopback.
func TestLoopbackOrders(t *testing.T) {
	v4 := ip4(t, "192.0.2.1:1", "192.0.2.2:2", []byte("v4"))
	v6 := ip6(t, "[2001:db8::1]:1", "[2001:db8::2]:2", []byte("v6"))
	for _, link := range []uint32{LinkTypeNull, LinkTypeLoop, LinkTypeRawBSD} {
		var buf bytes.Buffer
		w, _ := NewWriter(&buf, link)
		for _, af := range []uint32{2, 30, 28, 24, 10, 23} {
			pkt := v6
			if af == 2 {
				pkt = v4
			}
			for _, o := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
				var h [4]byte
				o.PutUint32(h[:], af)
				w.WritePacket(t0, append(h[:], pkt...))
			}
		}
		w.WritePacket(t0, append([]byte{0, 0, 0, 99}, v4...)) // unknown family
		if link == LinkTypeRawBSD {
			w.WritePacket(t0, v4)
			w.WritePacket(t0, v6)
		}
		got, st := readAll(t, buf.Bytes())
		want := 12
		if link == LinkTypeRawBSD {
			want += 2
		}
		if len(got) != want || st.NonIP != 1 {
			t.Errorf("link %d: got %d datagrams, want %d; stats %+v", link, len(got), want, st)
		}
	}
}

// TestPcapng reads hand-built pcapng files: two sections of different byte
// orders, several interfaces and link types, every timestamp resolution
// kind, all packet block types, and blocks to skip.
func TestPcapng(t *testing.T) {
	file, wants, wantStats := buildPcapng(t)
	got, st := readAll(t, file)
	check(t, got, wants)
	if st != wantStats {
		t.Errorf("stats %+v\nwant  %+v", st, wantStats)
	}
}

// buildPcapng returns the capture of TestPcapng, the datagrams in it and
// the stats of reading it.
func buildPcapng(t testing.TB) ([]byte, []want, Stats) {
	v4 := ip4(t, "192.0.2.1:4000", "192.0.2.99:4739", []byte("ipfix v4"))
	v6 := ip6(t, "[2001:db8::1]:4001", "[2001:db8::99]:4739", []byte("ipfix v6"))
	v6hbh := withExt(withExt(v6, protoDestOpts, make([]byte, 14)), protoHopByHop, make([]byte, 6))
	v6rt := withExt(withExt(v6, protoRouting, make([]byte, 22)), protoAH, make([]byte, 14))
	// A first fragment that holds only the start of the UDP datagram.
	v6frag := withExt(ip6(t, "[2001:db8::1]:4001", "[2001:db8::99]:4739", make([]byte, 100)), protoFragment, frag6(0, true))
	v6frag = v6frag[:len(v6frag)-52]
	binary.BigEndian.PutUint16(v6frag[4:6], uint16(len(v6frag)-40))
	v6frag2 := withExt(v6, protoFragment, frag6(4, false))
	micro := uint64(t0.UnixMicro())
	tMicro := time.UnixMicro(int64(micro))
	tNano := t0

	var wants []want
	le := &ngWriter{o: binary.LittleEndian}
	le.shb(ngOpt{4, []byte("sluice test")}) // shb_userappl
	le.idb(LinkTypeEthernet, 65535)         // interface 0, default microseconds
	le.idb(LinkTypeLinuxSLL, 0, ngOpt{2, []byte("any")}, ngOpt{optTSResol, []byte{9}})
	le.block(4, make([]byte, 8)) // Name Resolution Block, skipped
	le.epb(0, micro, eth(etherTypeIPv4, v4), ngOpt{1, []byte("comment")})
	wants = append(wants, want{tMicro, "192.0.2.1:4000", "192.0.2.99:4739", "ipfix v4"})
	le.epb(1, uint64(t0.UnixNano()), sll(etherTypeIPv6, v6hbh))
	wants = append(wants, want{tNano, "[2001:db8::1]:4001", "[2001:db8::99]:4739", "ipfix v6"})
	le.epb(0, micro, eth(etherTypeIPv6, v6rt, etherTypeQinQ, etherTypeVLAN))
	wants = append(wants, want{tMicro, "[2001:db8::1]:4001", "[2001:db8::99]:4739", "ipfix v6"})
	le.epb(0, micro, eth(etherTypeIPv6, v6frag))  // first fragment: skipped
	le.epb(1, micro, sll(etherTypeIPv6, v6frag2)) // later fragment: skipped
	le.block(5, make([]byte, 12))                 // Interface Statistics Block, skipped
	le.block(0x40000bad, make([]byte, 9))         // custom block, skipped
	le.spb(eth(etherTypeIPv4, v4))                // simple packet: no time
	wants = append(wants, want{time.Time{}, "192.0.2.1:4000", "192.0.2.99:4739", "ipfix v4"})
	le.pb(0, micro, eth(etherTypeIPv4, v4, etherTypeVLAN)) // obsolete packet block
	wants = append(wants, want{tMicro, "192.0.2.1:4000", "192.0.2.99:4739", "ipfix v4"})

	be := &ngWriter{o: binary.BigEndian}
	be.shb()
	be.idb(LinkTypeRaw, 0, ngOpt{optTSResol, []byte{0x80 | 20}}, ngOpt{optTSOffset, binary.BigEndian.AppendUint64(nil, 100)})
	be.idb(LinkTypeSLL2, 0, ngOpt{optTSResol, []byte{3}})
	be.idb(LinkTypeIPv4, 0)
	be.idb(LinkTypeIPv6, 0)
	be.epb(0, 1<<20*1000+1<<19, v4) // 1000.5 s since the epoch, plus 100 s offset
	wants = append(wants, want{time.Unix(1100, 5e8), "192.0.2.1:4000", "192.0.2.99:4739", "ipfix v4"})
	be.epb(1, 1719923696123, sll2(etherTypeIPv4, v4))
	wants = append(wants, want{time.UnixMilli(1719923696123), "192.0.2.1:4000", "192.0.2.99:4739", "ipfix v4"})
	be.epb(2, micro, v4)
	wants = append(wants, want{tMicro, "192.0.2.1:4000", "192.0.2.99:4739", "ipfix v4"})
	be.epb(3, micro, v6)
	wants = append(wants, want{tMicro, "[2001:db8::1]:4001", "[2001:db8::99]:4739", "ipfix v6"})
	be.epb(2, micro, v6) // IPv6 on LINKTYPE_IPV4: decoded all the same
	wants = append(wants, want{tMicro, "[2001:db8::1]:4001", "[2001:db8::99]:4739", "ipfix v6"})
	be.epb(0, micro, append([]byte{0x50}, v4[1:]...)) // IP version 5: not IP

	// A third section goes back to little-endian with a fresh interface list.
	le2 := &ngWriter{o: binary.LittleEndian}
	le2.shb()
	le2.idb(LinkTypeSLL2, 0)
	le2.epb(0, micro, sll2(etherTypeIPv6, v6))
	wants = append(wants, want{tMicro, "[2001:db8::1]:4001", "[2001:db8::99]:4739", "ipfix v6"})

	file := append(append(append([]byte{}, le.b...), be.b...), le2.b...)
	return file, wants, Stats{Packets: 14, Datagrams: 11, Fragment: 2, NonIP: 1}
}

func TestTimestampResolution(t *testing.T) {
	for _, tc := range []struct {
		res  uint8
		ts   uint64
		want time.Time
	}{
		{6, 1_500_000, time.Unix(1, 5e8)},
		{0, 1234, time.Unix(1234, 0)},
		{3, 2500, time.Unix(2, 5e8)},
		{9, 1_000_000_001, time.Unix(1, 1)},
		{12, 3_000_000_000_123_456, time.Unix(3000, 123)},
		{19, 1e19 + 5e10, time.Unix(1, 5)},
		{20, math.MaxUint64, time.Unix(0, int64(uint64(math.MaxUint64)/1e11))},
		{127, math.MaxUint64, time.Unix(0, 0)},
		{0x80, 77, time.Unix(77, 0)},
		{0x80 | 1, 3, time.Unix(1, 5e8)},
		{0x80 | 10, 1024*5 + 256, time.Unix(5, 25e7)},
		{0x80 | 30, 1 << 29, time.Unix(0, 5e8)},
		{0x80 | 63, 1 << 62, time.Unix(0, 5e8)},
		{0x80 | 64, 1 << 63, time.Unix(0, 5e8)},
		{0x80 | 127, math.MaxUint64, time.Unix(0, 0)},
	} {
		f := iface{tsresol: tc.res}
		if got := f.time(tc.ts); !got.Equal(tc.want) {
			t.Errorf("tsresol %#x ts %d: %v, want %v", tc.res, tc.ts, got.UTC(), tc.want.UTC())
		}
	}
}

func pcapHeader(order binary.ByteOrder, snaplen, link uint32) []byte {
	var b bytes.Buffer
	NewWriterConfig(&b, WriterConfig{LinkType: link, ByteOrder: order, Snaplen: snaplen})
	return b.Bytes()
}

func pcapRecord(caplen uint32, data []byte) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint32(b[8:12], caplen)
	binary.LittleEndian.PutUint32(b[12:16], caplen)
	return append(b, data...)
}

func TestErrors(t *testing.T) {
	hdr := pcapHeader(binary.LittleEndian, 65535, LinkTypeEthernet)
	ng := &ngWriter{o: binary.LittleEndian}
	ng.shb()
	ng.idb(LinkTypeEthernet, 0)
	ngHead := ng.b
	le32 := func(vs ...uint32) []byte {
		var b []byte
		for _, v := range vs {
			b = binary.LittleEndian.AppendUint32(b, v)
		}
		return b
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	for _, tc := range []struct {
		name    string
		in      []byte
		newErr  error // from NewReader
		nextErr error // from Next
	}{
		{"empty", nil, ErrNotCapture, nil},
		{"short", []byte{0xd4, 0xc3}, ErrNotCapture, nil},
		{"ipfix", []byte{0, 10, 0, 100, 1, 2, 3, 4}, ErrNotCapture, nil},
		{"truncated header", hdr[:10], io.ErrUnexpectedEOF, nil},
		{"bad version", cat(hdr[:4], []byte{3, 0}, hdr[6:]), ErrUnsupportedVersion, nil},
		{"empty pcap", hdr, nil, io.EOF},
		{"truncated record header", cat(hdr, make([]byte, 7)), nil, io.ErrUnexpectedEOF},
		{"truncated record", cat(hdr, pcapRecord(100, make([]byte, 50))), nil, io.ErrUnexpectedEOF},
		{"huge record", cat(pcapHeader(binary.LittleEndian, 0, 1), pcapRecord(MaxPacketSize+1, nil)), nil, ErrBlockTooLarge},
		{"record far beyond snaplen", cat(hdr, pcapRecord(65535+65537, nil)), nil, ErrBlockTooLarge},
		{"max record", cat(pcapHeader(binary.LittleEndian, 0, 1), pcapRecord(MaxPacketSize, make([]byte, MaxPacketSize))), nil, io.EOF},
		{"empty pcapng", ngHead, nil, io.EOF},
		{"truncated SHB", ngHead[:10], io.ErrUnexpectedEOF, nil},
		{"bad byte-order magic", cat(ngHead[:8], le32(0x1a2b3c4e), ngHead[12:]), ErrMalformed, nil},
		{"SHB version 2", cat(ngHead[:12], []byte{2, 0}, ngHead[14:]), ErrUnsupportedVersion, nil},
		{"SHB too short", cat(le32(blockSHB, 24, byteOrderMagic, 1, 24)), ErrMalformed, nil},
		{"SHB trailer mismatch", cat(le32(blockSHB, 28, byteOrderMagic, 1, 0, 0, 32)), ErrMalformed, nil},
		{"SHB truncated body", cat(le32(blockSHB, 28000, byteOrderMagic, 1, 0, 0)), io.ErrUnexpectedEOF, nil},
		{"block length not aligned", cat(ngHead, le32(5, 14, 0, 14)), nil, ErrMalformed},
		{"block length too small", cat(ngHead, le32(5, 8)), nil, ErrMalformed},
		{"EPB too small", cat(ngHead, le32(blockEPB, 28, 0, 0, 0, 0, 28)), nil, ErrMalformed},
		{"block trailer mismatch", cat(ngHead, le32(5, 16, 0, 20)), nil, ErrMalformed},
		{"EPB trailer mismatch", cat(ngHead, le32(blockEPB, 32, 0, 0, 0, 0, 0, 36)), nil, ErrMalformed},
		{"EPB too large", cat(ngHead, le32(blockEPB, 1<<31)), nil, ErrBlockTooLarge},
		{"IDB too large", cat(ngHead, le32(blockIDB, MaxBlockSize+4)), nil, ErrBlockTooLarge},
		{"EPB caplen beyond block", cat(ngHead, le32(blockEPB, 32, 0, 0, 0, 1, 1, 32)), nil, ErrMalformed},
		{"EPB unknown interface", cat(ngHead, le32(blockEPB, 32, 1, 0, 0, 0, 0, 32)), nil, ErrMalformed},
		{"SPB without interface", cat(ngHead[:28], le32(blockSPB, 16, 0, 16)), nil, ErrMalformed},
		{"truncated block header", cat(ngHead, le32(6)), nil, io.ErrUnexpectedEOF},
		{"truncated block", cat(ngHead, le32(6, 100, 0)), nil, io.ErrUnexpectedEOF},
		{"truncated skipped block", cat(ngHead, le32(0x40000bad, 1<<30, 0)), nil, io.ErrUnexpectedEOF},
		{"second SHB bad", cat(ngHead, le32(blockSHB, 28, 0x01020304, 1)), nil, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(tc.in))
			if tc.newErr != nil {
				if !errors.Is(err, tc.newErr) {
					t.Fatalf("NewReader: %v, want %v", err, tc.newErr)
				}
				checkErrString(t, err)
				return
			}
			if err != nil {
				t.Fatalf("NewReader: %v", err)
			}
			var d Datagram
			for err == nil {
				err = r.Next(&d)
			}
			if !errors.Is(err, tc.nextErr) {
				t.Fatalf("Next: %v, want %v", err, tc.nextErr)
			}
			if err != io.EOF {
				checkErrString(t, err)
			}
			if err2 := r.Next(&d); err2 != err {
				t.Errorf("error not sticky: %v then %v", err, err2)
			}
		})
	}
}

func checkErrString(t *testing.T, err error) {
	t.Helper()
	s := err.Error()
	if rest, ok := strings.CutPrefix(s, "pcap: "); !ok || rest == "" || strings.ToLower(rest[:1]) != rest[:1] {
		t.Errorf("error string %q: want a lower-case message with prefix \"pcap: \"", s)
	}
}

// TestZeroAllocs checks that reading allocates nothing per packet once the
// buffer has grown.
func TestZeroAllocs(t *testing.T) {
	const n = 300
	payload := bytes.Repeat([]byte{0xab}, 1200)
	var classic bytes.Buffer
	w, _ := NewWriter(&classic, LinkTypeEthernet)
	ng := &ngWriter{o: binary.BigEndian}
	ng.shb()
	ng.idb(LinkTypeEthernet, 0, ngOpt{optTSResol, []byte{9}})
	src := netip.MustParseAddrPort("192.0.2.1:1")
	dst := netip.MustParseAddrPort("[2001:db8::1]:2")
	for i := range n {
		pl := payload[:i*37%len(payload)]
		if i == 0 {
			pl = payload // the largest first
		}
		if err := w.WriteUDP(t0, src, src, pl); err != nil {
			t.Fatal(err)
		}
		ng.epb(0, uint64(i), eth(etherTypeIPv6, ip6(t, dst.String(), dst.String(), pl), etherTypeVLAN))
		ng.block(5, make([]byte, 12)) // skipped in between
	}
	for name, file := range map[string][]byte{"pcap": classic.Bytes(), "pcapng": ng.b} {
		t.Run(name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(file))
			if err != nil {
				t.Fatal(err)
			}
			var d Datagram
			// Grow the buffer to its largest size first.
			for range n / 2 {
				if err := r.Next(&d); err != nil {
					t.Fatal(err)
				}
			}
			allocs := testing.AllocsPerRun(n/2-10, func() {
				if err := r.Next(&d); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("%v allocations per packet, want 0", allocs)
			}
		})
	}
}

func BenchmarkReader(b *testing.B) {
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, LinkTypeEthernet)
	src := netip.MustParseAddrPort("192.0.2.1:1")
	for range 1000 {
		w.WriteUDP(t0, src, src, make([]byte, 1400))
	}
	file := buf.Bytes()
	b.SetBytes(int64(len(file)))
	b.ReportAllocs()
	for b.Loop() {
		r, _ := NewReader(bytes.NewReader(file))
		var d Datagram
		for r.Next(&d) == nil {
		}
	}
}
