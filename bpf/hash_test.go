package bpf

import (
	"encoding/binary"
	"net/netip"
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
