package bpf

import (
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func TestDomain(t *testing.T) {
	f := func(name string, payload []byte, want uint32, wantOK bool) {
		t.Helper()
		got, ok := Domain(payload)
		if got != want || ok != wantOK {
			t.Errorf("%s: Domain = %d, %v; want %d, %v", name, got, ok, want, wantOK)
		}
	}
	f("empty", nil, 0, false)
	f("one byte", []byte{0}, 0, false)
	f("ipfix", ipfixHeader(0x01020304), 0x01020304, true)
	f("ipfix cut in the domain", ipfixHeader(7)[:15], 0, false)
	f("ipfix header only to the domain", ipfixHeader(7)[:16], 7, true)
	f("v9", v9Header(0xa0b0c0d0), 0xa0b0c0d0, true)
	f("v9 cut", v9Header(5)[:19], 0, false)
	f("v5", v5Header(), 0, false)
	f("garbage", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 0, false)
	// Real exporters: every v9 and IPFIX capture carries its domain.
	kinds := map[uint16]int{}
	for _, p := range seedFiles(t) {
		v := binary.BigEndian.Uint16(p)
		if _, ok := Domain(p); ok != (v == 9 || v == 10) {
			t.Errorf("version %d payload of %d bytes: domain found %v", v, len(p), ok)
		}
		kinds[v]++
	}
	if kinds[5] == 0 || kinds[9] == 0 || kinds[10] == 0 {
		t.Errorf("captures by version %v; want v5, v9 and IPFIX", kinds)
	}
}

func TestHashAddressAlone(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.7")
	if Hash(a, v5Header()) != Hash(a, nil) || Hash(a, []byte{1, 2, 3}) != Hash(a, nil) {
		t.Error("v5 and short payloads must hash by address alone")
	}
	if Hash(a, ipfixHeader(1)) == Hash(a, ipfixHeader(2)) {
		t.Error("two domains of one exporter hash alike")
	}
	if Hash(a, ipfixHeader(3)) != Hash(a, v9Header(3)) {
		t.Error("IPFIX domain 3 and v9 source ID 3 must hash alike: both are the exporter's domain")
	}
	if Hash(a, nil) != Hash(netip.AddrFrom16(a.As16()), nil) {
		t.Error("an IPv4 address and its IPv4-mapped form must hash alike")
	}
}

// jumpFloat is the published jump hash, in floating point: the integer
// version must agree with it except where rounding decides.
func jumpFloat(key uint64, n int) int {
	b, j := int64(-1), int64(0)
	for j < int64(n) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int(b)
}

func TestJump(t *testing.T) {
	const keys = 20000
	differ := 0
	for i := range keys {
		k := fnv1a(fnvOffset, binary.BigEndian.AppendUint32(nil, uint32(i)))
		for _, n := range []int{1, 2, 3, 4, 7, 64, 1024} {
			got := Jump(k, n)
			if got < 0 || got >= n {
				t.Fatalf("Jump(%#x, %d) = %d", k, n, got)
			}
			if got != jumpFloat(k, n) {
				differ++
			}
		}
		// Growing the buckets by one moves a key only to the new one.
		for n := 1; n < 16; n++ {
			if a, b := Jump(k, n), Jump(k, n+1); a != b && b != n {
				t.Fatalf("key %#x moved from %d to %d going from %d to %d buckets", k, a, b, n, n+1)
			}
		}
	}
	if differ > keys/1000 {
		t.Errorf("integer jump hash differs from the float one for %d choices", differ)
	}
	for _, c := range []struct{ from, to int }{{2, 4}, {4, 8}, {3, 4}} {
		moved := 0
		perBucket := make([]int, c.to)
		for i := range keys {
			k := fnv1a(fnvOffset, binary.BigEndian.AppendUint32(nil, uint32(i)))
			b := Jump(k, c.to)
			perBucket[b]++
			if Jump(k, c.from) != b {
				moved++
			}
		}
		want := float64(c.to-c.from) / float64(c.to) // the share the new buckets take
		got := float64(moved) / keys
		if got < want-0.02 || got > want+0.02 {
			t.Errorf("%d -> %d buckets moved %.3f of the keys, want about %.3f", c.from, c.to, got, want)
		}
		for b, n := range perBucket {
			if share := float64(n) / keys; share < 0.9/float64(c.to) || share > 1.1/float64(c.to) {
				t.Errorf("%d buckets: bucket %d holds %.3f of the keys", c.to, b, share)
			}
		}
	}
}

func ipfixHeader(domain uint32) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint16(b, 10)
	binary.BigEndian.PutUint16(b[2:], 16)
	binary.BigEndian.PutUint32(b[4:], 1700000000)
	binary.BigEndian.PutUint32(b[12:], domain)
	return b
}

func v9Header(sourceID uint32) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b, 9)
	binary.BigEndian.PutUint32(b[8:], 1700000000)
	binary.BigEndian.PutUint32(b[16:], sourceID)
	return b
}

func v5Header() []byte {
	b := make([]byte, 24)
	binary.BigEndian.PutUint16(b, 5)
	// An engine type and ID where a v9 source ID would be: ignored.
	b[20], b[21] = 1, 2
	return b
}

// FuzzDomain checks Domain against the header layouts, seeded with real
// IPFIX, NetFlow v9 and v5 exports from testdata/ and the crafted headers.
func FuzzDomain(f *testing.F) {
	for _, seed := range [][]byte{nil, {10}, ipfixHeader(9), v9Header(3), v5Header(), ipfixHeader(1)[:15]} {
		f.Add(seed)
	}
	for _, p := range seedFiles(f) {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, ok := Domain(b)
		want, wantOK := uint32(0), false
		if len(b) >= 16 && b[0] == 0 && b[1] == 10 {
			want, wantOK = binary.BigEndian.Uint32(b[12:]), true
		}
		if len(b) >= 20 && b[0] == 0 && b[1] == 9 {
			want, wantOK = binary.BigEndian.Uint32(b[16:]), true
		}
		if d != want || ok != wantOK {
			t.Fatalf("Domain(%x) = %d, %v; want %d, %v", b, d, ok, want, wantOK)
		}
		a := netip.AddrFrom4([4]byte{192, 0, 2, 1})
		if n := Pick(a, b, 3); n < 0 || n >= 3 {
			t.Fatalf("Pick = %d", n)
		}
	})
}

// seedFiles returns the UDP payloads of the captures in testdata/captures
// (little-endian pcap, Ethernet, IPv4 or IPv6): real exporters' headers.
func seedFiles(tb testing.TB) [][]byte {
	files, err := filepath.Glob("../testdata/captures/*.pcap")
	if err != nil || len(files) == 0 {
		tb.Fatalf("no captures in ../testdata/captures (%v)", err)
	}
	var out [][]byte
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			tb.Fatal(err)
		}
		if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(b[20:]) != 1 {
			continue
		}
		for p := b[24:]; len(p) >= 16; {
			n := int(binary.LittleEndian.Uint32(p[8:]))
			if len(p) < 16+n {
				break
			}
			if payload, ok := udpPayload(p[16 : 16+n]); ok {
				out = append(out, payload)
			}
			p = p[16+n:]
		}
	}
	if len(out) == 0 {
		tb.Fatal("no UDP payloads in the captures")
	}
	return out
}

func udpPayload(frame []byte) ([]byte, bool) {
	if len(frame) < 14 {
		return nil, false
	}
	ip := frame[14:]
	switch binary.BigEndian.Uint16(frame[12:]) {
	case 0x0800:
		if len(ip) < 20 || ip[9] != 17 || len(ip) < int(ip[0]&0xf)*4+8 {
			return nil, false
		}
		return ip[int(ip[0]&0xf)*4+8:], true
	case 0x86dd:
		if len(ip) < 48 || ip[6] != 17 {
			return nil, false
		}
		return ip[48:], true
	}
	return nil, false
}
