package anon

import (
	"bufio"
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-flow/sluice/internal/testenv"
)

// vectorsPath is the shared reference file, outside the repository.
const vectorsPath = "../../../shared/data/cryptopan/vectors.txt"

type vector struct {
	line     int
	v6       bool
	in, want netip.Addr
}

// readVectors parses the reference file: '#' comments (one of which holds
// the key as 32 decimal bytes), "orig anon" IPv4 pairs and "v6 orig anon"
// IPv6 pairs.
func readVectors(t *testing.T) ([KeySize]byte, []vector) {
	t.Helper()
	f, err := os.Open(vectorsPath)
	if os.IsNotExist(err) {
		testenv.SkipOrFail(t, "Crypto-PAn reference vectors not found at %s (relative to dataplane/anon); they live outside the repository in /work/shared/data/cryptopan", vectorsPath)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		key    [KeySize]byte
		gotKey bool
		vs     []vector
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "#") {
			if k, ok := decimalKey(strings.TrimPrefix(line, "#")); ok {
				if gotKey {
					t.Fatalf("line %d: second key line", n)
				}
				key, gotKey = k, true
			}
			continue
		}
		fs := strings.Fields(line)
		v := vector{line: n}
		if len(fs) == 3 && fs[0] == "v6" {
			v.v6 = true
			fs = fs[1:]
		}
		if len(fs) != 2 {
			t.Fatalf("line %d: want \"orig anon\" or \"v6 orig anon\", got %q", n, line)
		}
		if v.in, err = netip.ParseAddr(fs[0]); err != nil {
			t.Fatalf("line %d: %v", n, err)
		}
		if v.want, err = netip.ParseAddr(fs[1]); err != nil {
			t.Fatalf("line %d: %v", n, err)
		}
		if v.in.Is6() != v.v6 || v.want.Is6() != v.v6 {
			t.Fatalf("line %d: address family does not match the v6 marker", n)
		}
		vs = append(vs, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !gotKey {
		t.Fatal("no key line (32 decimal bytes in a comment) in the vectors file")
	}
	return key, vs
}

func decimalKey(s string) ([KeySize]byte, bool) {
	var k [KeySize]byte
	fs := strings.Fields(s)
	if len(fs) != KeySize {
		return k, false
	}
	for i, f := range fs {
		n, err := strconv.ParseUint(f, 10, 8)
		if err != nil {
			return k, false
		}
		k[i] = byte(n)
	}
	return k, true
}

func TestVectors(t *testing.T) {
	key, vs := readVectors(t)
	c, err := NewCryptoPAn(key)
	if err != nil {
		t.Fatal(err)
	}
	pre, err := NewCryptoPAn(key)
	if err != nil {
		t.Fatal(err)
	}
	pre.Precompute4()
	var n4, n6 int
	for _, v := range vs {
		if !v.v6 {
			if got := netip.AddrFrom4(pre.Anonymize4(v.in.As4())); got != v.want {
				t.Errorf("line %d (Precompute4): %s -> %s, want %s", v.line, v.in, got, v.want)
			}
		}
		var got netip.Addr
		if v.v6 {
			got = netip.AddrFrom16(c.Anonymize6(v.in.As16()))
			n6++
		} else {
			got = netip.AddrFrom4(c.Anonymize4(v.in.As4()))
			n4++
		}
		if got != v.want {
			t.Errorf("line %d: %s -> %s, want %s", v.line, v.in, got, v.want)
		}
		if g := c.Anonymize(v.in); g != v.want {
			t.Errorf("line %d: Anonymize(%s) = %s, want %s", v.line, v.in, g, v.want)
		}
	}
	if n4 == 0 || n6 == 0 {
		t.Errorf("vectors: %d IPv4 and %d IPv6; want some of each", n4, n6)
	}
	t.Logf("%d IPv4 and %d IPv6 vectors checked", n4, n6)
}

func testKey(seed uint64) [KeySize]byte {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	var k [KeySize]byte
	for i := range k {
		k[i] = byte(r.Uint32())
	}
	return k
}

func newTest(t testing.TB, seed uint64) *CryptoPAn {
	t.Helper()
	c, err := NewCryptoPAn(testKey(seed))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func cpl4(a, b [4]byte) int {
	return bits.LeadingZeros32(binary.BigEndian.Uint32(a[:]) ^ binary.BigEndian.Uint32(b[:]))
}

func cpl6(a, b [16]byte) int {
	if n := bits.LeadingZeros64(binary.BigEndian.Uint64(a[0:8]) ^ binary.BigEndian.Uint64(b[0:8])); n < 64 {
		return n
	}
	return 64 + bits.LeadingZeros64(binary.BigEndian.Uint64(a[8:16])^binary.BigEndian.Uint64(b[8:16]))
}

func rand4(r *rand.Rand) (a [4]byte) {
	binary.BigEndian.PutUint32(a[:], r.Uint32())
	return
}

func rand6(r *rand.Rand) (a [16]byte) {
	binary.BigEndian.PutUint64(a[0:8], r.Uint64())
	binary.BigEndian.PutUint64(a[8:16], r.Uint64())
	return
}

// pair4 returns a random pair with a common prefix of length k (k == 32:
// equal addresses).
func pair4(r *rand.Rand, k int) (a, b [4]byte) {
	a, b = rand4(r), rand4(r)
	x := binary.BigEndian.Uint32(a[:])
	y := binary.BigEndian.Uint32(b[:])
	keep := mask32(k)
	y = x&keep | y&^keep
	if k < 32 {
		bit := uint32(1) << (31 - k)
		y = y&^bit | ^x&bit
	}
	binary.BigEndian.PutUint32(b[:], y)
	return
}

func pair6(r *rand.Rand, k int) (a, b [16]byte) {
	a, b = rand6(r), rand6(r)
	for i := 0; i < 128; i++ {
		byt, bit := i/8, byte(0x80)>>(i%8)
		switch {
		case i < k:
			b[byt] = b[byt]&^bit | a[byt]&bit
		case i == k:
			b[byt] = b[byt]&^bit | ^a[byt]&bit
		}
	}
	return
}

func TestPrefixPreservation4(t *testing.T) {
	c := newTest(t, 1)
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 20000; n++ {
		var a, b [4]byte
		if n%2 == 0 {
			a, b = rand4(r), rand4(r) // mostly short common prefixes
		} else {
			a, b = pair4(r, r.IntN(33)) // every length, equally often
		}
		want := cpl4(a, b)
		if got := cpl4(c.Anonymize4(a), c.Anonymize4(b)); got != want {
			t.Fatalf("%v, %v: common prefix %d, anonymised %d", netip.AddrFrom4(a), netip.AddrFrom4(b), want, got)
		}
	}
}

func TestPrefixPreservation6(t *testing.T) {
	c := newTest(t, 2)
	r := rand.New(rand.NewPCG(3, 4))
	for n := 0; n < 10000; n++ {
		var a, b [16]byte
		if n%2 == 0 {
			a, b = rand6(r), rand6(r)
		} else {
			a, b = pair6(r, r.IntN(129))
		}
		want := cpl6(a, b)
		if got := cpl6(c.Anonymize6(a), c.Anonymize6(b)); got != want {
			t.Fatalf("%v, %v: common prefix %d, anonymised %d", netip.AddrFrom16(a), netip.AddrFrom16(b), want, got)
		}
	}
}

func TestBijection4(t *testing.T) {
	c := newTest(t, 3)
	r := rand.New(rand.NewPCG(5, 6))
	const n = 100000
	seen := make(map[[4]byte]bool, n)
	out := make(map[[4]byte][4]byte, n)
	for len(seen) < n {
		a := rand4(r)
		if seen[a] {
			continue
		}
		seen[a] = true
		o := c.Anonymize4(a)
		if prev, dup := out[o]; dup {
			t.Fatalf("collision: %v and %v both map to %v", netip.AddrFrom4(prev), netip.AddrFrom4(a), netip.AddrFrom4(o))
		}
		out[o] = a
	}
	// A whole /16 is mapped onto a whole /16: a permutation of 65536.
	base := [4]byte{10, 20, 0, 0}
	img := make(map[[4]byte]bool, 1<<16)
	for i := 0; i < 1<<16; i++ {
		a := base
		a[2], a[3] = byte(i>>8), byte(i)
		img[c.Anonymize4(a)] = true
	}
	if len(img) != 1<<16 {
		t.Fatalf("a /16 maps onto %d addresses, want 65536", len(img))
	}
}

func TestBijection6(t *testing.T) {
	c := newTest(t, 4)
	r := rand.New(rand.NewPCG(7, 8))
	n := 100000
	if testing.Short() {
		n = 10000
	}
	out := make(map[[16]byte][16]byte, n)
	for i := 0; i < n; i++ {
		// Random host parts under a few /64s, so prefixes are shared a lot.
		var a [16]byte
		if i%2 == 0 {
			a = rand6(r)
		} else {
			a, _ = pair6(r, 64)
			binary.BigEndian.PutUint64(a[0:8], 0x20010db8_00000000|uint64(r.IntN(4)))
		}
		o := c.Anonymize6(a)
		if prev, dup := out[o]; dup && prev != a {
			t.Fatalf("collision: %v and %v both map to %v", netip.AddrFrom16(prev), netip.AddrFrom16(a), netip.AddrFrom16(o))
		}
		out[o] = a
	}
}

func TestPrecompute4(t *testing.T) {
	c := newTest(t, 17)
	p := c.Clone()
	p.Precompute4()
	p.Precompute4() // idempotent
	q := p.Clone()
	if q.tab4 != p.tab4 || c.tab4 != nil {
		t.Fatal("clones after Precompute4 should share the table, earlier ones not have it")
	}
	r := rand.New(rand.NewPCG(13, 14))
	for i := 0; i < 1<<16+20000; i++ {
		a := rand4(r)
		if i < 1<<16 {
			a[0], a[1] = byte(i>>8), byte(i) // every table entry at least once
		}
		if w, g := c.Anonymize4(a), q.Anonymize4(a); w != g {
			t.Fatalf("%v: %v without table, %v with", netip.AddrFrom4(a), netip.AddrFrom4(w), netip.AddrFrom4(g))
		}
	}
	a := [4]byte{192, 0, 2, 1}
	if n := testing.AllocsPerRun(100, func() { a = q.Anonymize4(a) }); n != 0 {
		t.Errorf("Anonymize4 with table: %v allocations per call", n)
	}
}

func TestDifferentKeys(t *testing.T) {
	c1, c2 := newTest(t, 10), newTest(t, 11)
	r := rand.New(rand.NewPCG(9, 10))
	const n = 1000
	same4, same6 := 0, 0
	for i := 0; i < n; i++ {
		a := rand4(r)
		if c1.Anonymize4(a) == c2.Anonymize4(a) {
			same4++
		}
		b := rand6(r)
		if c1.Anonymize6(b) == c2.Anonymize6(b) {
			same6++
		}
	}
	// Two independent random permutations agree on an address with
	// probability about 2^-32 (IPv4) or 2^-128 (IPv6).
	if same4 > 0 || same6 > 0 {
		t.Fatalf("different keys agree on %d/%d IPv4 and %d/%d IPv6 addresses", same4, n, same6, n)
	}
	// A one-bit change in either half of the key changes the mapping.
	for _, bit := range []int{0, 127, 128, 255} {
		k := testKey(10)
		k[bit/8] ^= 0x80 >> (bit % 8)
		c3, err := NewCryptoPAn(k)
		if err != nil {
			t.Fatal(err)
		}
		diff := 0
		for i := 0; i < 100; i++ {
			a := rand4(r)
			if c1.Anonymize4(a) != c3.Anonymize4(a) {
				diff++
			}
		}
		if diff < 90 {
			t.Errorf("flipping key bit %d changes only %d/100 outputs", bit, diff)
		}
	}
}

func TestDeterministicAndClone(t *testing.T) {
	c := newTest(t, 12)
	r := rand.New(rand.NewPCG(11, 12))
	addrs := make([]netip.Addr, 200)
	want := make([]netip.Addr, len(addrs))
	for i := range addrs {
		if i%2 == 0 {
			addrs[i] = netip.AddrFrom4(rand4(r))
		} else {
			addrs[i] = netip.AddrFrom16(rand6(r))
		}
		want[i] = c.Anonymize(addrs[i])
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		d := c.Clone()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, a := range addrs {
				if got := d.Anonymize(a); got != want[i] {
					t.Errorf("clone: %v -> %v, want %v", a, got, want[i])
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestAnonymizeAddr(t *testing.T) {
	c := newTest(t, 13)
	if got := c.Anonymize(netip.Addr{}); got != (netip.Addr{}) {
		t.Errorf("zero Addr -> %v", got)
	}
	v4 := netip.MustParseAddr("192.0.2.1")
	if got := c.Anonymize(v4); got != netip.AddrFrom4(c.Anonymize4(v4.As4())) || !got.Is4() {
		t.Errorf("IPv4: %v", got)
	}
	mapped := netip.AddrFrom16(v4.As16()) // ::ffff:192.0.2.1 stays IPv6
	if got := c.Anonymize(mapped); got != netip.AddrFrom16(c.Anonymize6(mapped.As16())) || got.Is4() {
		t.Errorf("IPv4-mapped: %v", got)
	}
	z := netip.MustParseAddr("fe80::1%eth0")
	got := c.Anonymize(z)
	if got.Zone() != "eth0" || got.WithZone("") != netip.AddrFrom16(c.Anonymize6(z.As16())) {
		t.Errorf("zoned: %v", got)
	}
}

func TestAllocs(t *testing.T) {
	c := newTest(t, 14)
	a4 := [4]byte{192, 0, 2, 1}
	a6 := netip.MustParseAddr("2001:db8::1").As16()
	p4 := netip.MustParseAddr("198.51.100.7")
	p6 := netip.MustParseAddr("fe80::1%eth0")
	var s4 [4]byte
	var s6 [16]byte
	var sa netip.Addr
	for name, f := range map[string]func(){
		"Anonymize4":        func() { s4 = c.Anonymize4(a4) },
		"Anonymize6":        func() { s6 = c.Anonymize6(a6) },
		"Anonymize(v4)":     func() { sa = c.Anonymize(p4) },
		"Anonymize(v6zone)": func() { sa = c.Anonymize(p6) },
		"Truncate(v4)":      func() { sa = Truncate(p4, 24, 48) },
		"Truncate(v6zone)":  func() { sa = Truncate(p6, 24, 48) },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", name, n)
		}
	}
	_, _, _ = s4, s6, sa
}

func BenchmarkAnonymize4(b *testing.B) {
	c := newTest(b, 15)
	a := [4]byte{192, 0, 2, 1}
	b.ReportAllocs()
	for b.Loop() {
		a = c.Anonymize4(a) // feed back so every call differs
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "addrs/s")
}

func BenchmarkAnonymize4Precomputed(b *testing.B) {
	c := newTest(b, 15)
	c.Precompute4()
	a := [4]byte{192, 0, 2, 1}
	b.ReportAllocs()
	for b.Loop() {
		a = c.Anonymize4(a)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "addrs/s")
}

func BenchmarkPrecompute4(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		c := newTest(b, 15)
		c.Precompute4()
	}
}

func BenchmarkAnonymize6(b *testing.B) {
	c := newTest(b, 16)
	a := netip.MustParseAddr("2001:db8::1").As16()
	b.ReportAllocs()
	for b.Loop() {
		a = c.Anonymize6(a)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "addrs/s")
}

func BenchmarkTruncate(b *testing.B) {
	a := netip.MustParseAddr("2001:db8::1")
	b.ReportAllocs()
	for b.Loop() {
		a = Truncate(a, 24, 48)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "addrs/s")
}
