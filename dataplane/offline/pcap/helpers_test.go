package pcap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"testing"
	"time"
)

// ngWriter builds pcapng files block by block, for tests.
type ngWriter struct {
	o binary.ByteOrder
	b []byte
}

type ngOpt struct {
	code uint16
	val  []byte
}

func appendOpts(o binary.AppendByteOrder, b []byte, opts []ngOpt) []byte {
	if len(opts) == 0 {
		return b
	}
	for _, op := range opts {
		b = o.AppendUint16(b, op.code)
		b = o.AppendUint16(b, uint16(len(op.val)))
		b = append(b, op.val...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
	}
	return append(b, 0, 0, 0, 0) // opt_endofopt
}

func (w *ngWriter) ao() binary.AppendByteOrder { return w.o.(binary.AppendByteOrder) }

// block appends a block of the given type; body is padded to 4 bytes.
func (w *ngWriter) block(typ uint32, body []byte) {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	n := uint32(12 + len(body))
	w.b = w.ao().AppendUint32(w.b, typ)
	w.b = w.ao().AppendUint32(w.b, n)
	w.b = append(w.b, body...)
	w.b = w.ao().AppendUint32(w.b, n)
}

func (w *ngWriter) shb(opts ...ngOpt) {
	var b []byte
	b = w.ao().AppendUint32(b, byteOrderMagic)
	b = w.ao().AppendUint16(b, 1)
	b = w.ao().AppendUint16(b, 0)
	b = w.ao().AppendUint64(b, ^uint64(0)) // section length unknown
	b = appendOpts(w.ao(), b, opts)
	w.block(blockSHB, b)
}

func (w *ngWriter) idb(link uint16, snaplen uint32, opts ...ngOpt) {
	var b []byte
	b = w.ao().AppendUint16(b, link)
	b = w.ao().AppendUint16(b, 0)
	b = w.ao().AppendUint32(b, snaplen)
	b = appendOpts(w.ao(), b, opts)
	w.block(blockIDB, b)
}

func (w *ngWriter) epb(ifid uint32, ts uint64, data []byte, opts ...ngOpt) {
	var b []byte
	b = w.ao().AppendUint32(b, ifid)
	b = w.ao().AppendUint32(b, uint32(ts>>32))
	b = w.ao().AppendUint32(b, uint32(ts))
	b = w.ao().AppendUint32(b, uint32(len(data)))
	b = w.ao().AppendUint32(b, uint32(len(data)))
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	b = appendOpts(w.ao(), b, opts)
	w.block(blockEPB, b)
}

func (w *ngWriter) pb(ifid uint16, ts uint64, data []byte) {
	var b []byte
	b = w.ao().AppendUint16(b, ifid)
	b = w.ao().AppendUint16(b, 0) // drops
	b = w.ao().AppendUint32(b, uint32(ts>>32))
	b = w.ao().AppendUint32(b, uint32(ts))
	b = w.ao().AppendUint32(b, uint32(len(data)))
	b = w.ao().AppendUint32(b, uint32(len(data)))
	b = append(b, data...)
	w.block(blockPB, b)
}

func (w *ngWriter) spb(data []byte) {
	var b []byte
	b = w.ao().AppendUint32(b, uint32(len(data)))
	b = append(b, data...)
	w.block(blockSPB, b)
}

// Frame builders.

var (
	srcMAC = []byte{0x02, 0, 0, 0, 0, 0x01}
	dstMAC = []byte{0x02, 0, 0, 0, 0, 0x02}
)

// eth builds an Ethernet frame; tags are the TPIDs of VLAN tags, outermost
// first.
func eth(et uint16, payload []byte, tags ...uint16) []byte {
	b := append(append([]byte{}, dstMAC...), srcMAC...)
	for i, tpid := range tags {
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, uint16(100+i)) // VLAN ID
	}
	b = binary.BigEndian.AppendUint16(b, et)
	b = append(b, payload...)
	for len(b) < 60 {
		b = append(b, 0)
	}
	return b
}

func sll(et uint16, payload []byte) []byte {
	b := []byte{0, 0, 0, 1, 0, 6}
	b = append(b, srcMAC...)
	b = append(b, 0, 0)
	b = binary.BigEndian.AppendUint16(b, et)
	return append(b, payload...)
}

func sll2(et uint16, payload []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, et)
	b = append(b, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6)
	b = append(b, srcMAC...)
	b = append(b, 0, 0)
	return append(b, payload...)
}

func ip4(t testing.TB, src, dst string, payload []byte) []byte {
	t.Helper()
	b, err := AppendIPv4UDP(nil, 7, netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst), payload)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ip6(t testing.TB, src, dst string, payload []byte) []byte {
	t.Helper()
	b, err := AppendIPv6UDP(nil, netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst), payload)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withExt inserts an IPv6 extension header of the given type right after
// the fixed header of pkt. body is the header without its first two bytes
// (next header, length); for the generic format its length must be 6 mod 8.
func withExt(pkt []byte, typ uint8, body []byte) []byte {
	ext := []byte{pkt[6], 0}
	switch typ {
	case protoFragment:
	case protoAH:
		ext[1] = uint8((len(body)+2)/4 - 2)
	default:
		ext[1] = uint8((len(body)+2)/8 - 1)
	}
	ext = append(ext, body...)
	out := append([]byte{}, pkt[:40]...)
	out[6] = typ
	binary.BigEndian.PutUint16(out[4:6], binary.BigEndian.Uint16(pkt[4:6])+uint16(len(ext)))
	out = append(out, ext...)
	return append(out, pkt[40:]...)
}

// frag6 returns the body of an IPv6 fragment header.
func frag6(offset uint16, more bool) []byte {
	v := offset << 3
	if more {
		v |= 1
	}
	b := binary.BigEndian.AppendUint16(nil, v)
	return append(b, 0, 0, 0, 42) // identification
}

// frag4 turns an IPv4 packet into a fragment: it keeps the first keep bytes
// of the IP payload and sets the offset (in 8-byte units) and MF flag.
func frag4(pkt []byte, keep int, offset uint16, more bool) []byte {
	out := append([]byte{}, pkt[:20+keep]...)
	binary.BigEndian.PutUint16(out[2:4], uint16(len(out)))
	v := offset
	if more {
		v |= 0x2000
	}
	binary.BigEndian.PutUint16(out[6:8], v)
	out[10], out[11] = 0, 0
	binary.BigEndian.PutUint16(out[10:12], ^uint16(sum16(0, out[:20])))
	return out
}

type want struct {
	time     time.Time
	src, dst string
	payload  string
}

// readAll reads every datagram of a capture.
func readAll(t testing.TB, capture []byte) ([]Datagram, Stats) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(capture))
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	var out []Datagram
	for {
		var d Datagram
		err := r.Next(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Next after %d datagrams: %v", len(out), err)
		}
		d.Payload = append([]byte(nil), d.Payload...)
		out = append(out, d)
	}
	return out, r.Stats()
}

func check(t *testing.T, got []Datagram, wants []want) {
	t.Helper()
	if len(got) != len(wants) {
		t.Errorf("got %d datagrams, want %d", len(got), len(wants))
	}
	for i := range min(len(got), len(wants)) {
		g, w := got[i], wants[i]
		if !g.Time.Equal(w.time) {
			t.Errorf("datagram %d: time %v, want %v", i, g.Time.UTC(), w.time.UTC())
		}
		if g.Src.String() != w.src || g.Dst.String() != w.dst {
			t.Errorf("datagram %d: %v -> %v, want %v -> %v", i, g.Src, g.Dst, w.src, w.dst)
		}
		if string(g.Payload) != w.payload {
			t.Errorf("datagram %d: payload %q, want %q", i, g.Payload, w.payload)
		}
	}
}
