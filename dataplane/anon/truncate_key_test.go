package anon

import (
	"encoding/hex"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

// checkTruncated fails unless got has the family and zone of orig, its first
// n bits, and every later bit zero.
func checkTruncated(t *testing.T, orig, got netip.Addr, n int) {
	t.Helper()
	ob, gb := orig.AsSlice(), got.AsSlice()
	if len(ob) != len(gb) || orig.Zone() != got.Zone() {
		t.Fatalf("Truncate(%v, /%d) = %v: family or zone changed", orig, n, got)
	}
	for i := 0; i < 8*len(ob); i++ {
		bit := byte(0x80) >> (i % 8)
		o, g := ob[i/8]&bit != 0, gb[i/8]&bit != 0
		if i < n && o != g {
			t.Fatalf("Truncate(%v, /%d) = %v: prefix bit %d changed", orig, n, got, i)
		}
		if i >= n && g {
			t.Fatalf("Truncate(%v, /%d) = %v: host bit %d set", orig, n, got, i)
		}
	}
}

func TestTruncate(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for n := 0; n < 2000; n++ {
		a4 := netip.AddrFrom4(rand4(r))
		a6 := netip.AddrFrom16(rand6(r))
		if n%3 == 0 {
			a6 = a6.WithZone("eth0")
		}
		for k := -1; k <= 129; k++ {
			k4 := min(max(k, 0), 32)
			k6 := min(max(k, 0), 128)
			checkTruncated(t, a4, Truncate(a4, k, 7), k4)
			checkTruncated(t, a6, Truncate(a6, 7, k), k6)
			// Agrees with netip.Prefix.Masked where that is defined.
			if p, err := a4.Prefix(k); err == nil && Truncate(a4, k, 0) != p.Addr() {
				t.Fatalf("Truncate(%v, %d) != Prefix().Addr() %v", a4, k, p.Addr())
			}
			if p, err := a6.WithZone("").Prefix(k); err == nil && Truncate(a6, 0, k).WithZone("") != p.Addr() {
				t.Fatalf("Truncate(%v, %d) != Prefix().Addr() %v", a6, k, p.Addr())
			}
		}
	}
	for _, tc := range []struct {
		in     string
		b4, b6 int
		want   string
	}{
		{"192.0.2.255", 24, 0, "192.0.2.0"},
		{"192.0.2.255", 0, 128, "0.0.0.0"},
		{"192.0.2.255", 32, 0, "192.0.2.255"},
		{"192.0.2.255", 99, 0, "192.0.2.255"},
		{"2001:db8:1:2:3:4:5:6", 0, 48, "2001:db8:1::"},
		{"2001:db8:1:2:3:4:5:6", 0, 64, "2001:db8:1:2::"},
		{"2001:db8:1:2:3:4:5:6", 0, 65, "2001:db8:1:2::"},
		{"2001:db8:1:2:8003:4:5:6", 0, 65, "2001:db8:1:2:8000::"},
		{"::ffff:192.0.2.255", 24, 120, "::ffff:192.0.2.0"},
		{"fe80::1:2%eth0", 0, 112, "fe80::1:0%eth0"},
	} {
		if got := Truncate(netip.MustParseAddr(tc.in), tc.b4, tc.b6); got != netip.MustParseAddr(tc.want) {
			t.Errorf("Truncate(%s, %d, %d) = %v, want %s", tc.in, tc.b4, tc.b6, got, tc.want)
		}
	}
	if got := Truncate(netip.Addr{}, 8, 8); got.IsValid() {
		t.Errorf("zero Addr -> %v", got)
	}
}

// sampleKeyHex is the vectors file's key in hex, split by a space (which
// makes it invalid as it stands; tests remove the space for the valid form).
const sampleKeyHex = "1522178d33a4cf80130a5b1649907d10d8988f8379796527625 74c2d2a842202"

func TestParseKey(t *testing.T) {
	want := [KeySize]byte{21, 34, 23, 141, 51, 164, 207, 128, 19, 10, 91, 22, 73, 144, 125, 16,
		216, 152, 143, 131, 121, 121, 101, 39, 98, 87, 76, 45, 42, 132, 34, 2}
	good := strings.ReplaceAll(sampleKeyHex, " ", "")
	for _, s := range []string{good, strings.ToUpper(good), "  " + good + "\n", "\t" + good + "\r\n"} {
		k, err := ParseKey(s)
		if err != nil || k != want {
			t.Errorf("ParseKey(%q) = %x, %v", s, k, err)
		}
	}
	for _, s := range []string{
		"", "   ", good[:62], good + "00", sampleKeyHex, "0x" + good[2:],
		good[:63] + "g", "z" + good[1:], good[:10] + "-" + good[11:],
		good[:32] + "é" + good[34:],
	} {
		k, err := ParseKey(s)
		if err == nil {
			t.Errorf("ParseKey(%q) accepted", s)
			continue
		}
		if !strings.HasPrefix(err.Error(), "anon: ") {
			t.Errorf("ParseKey(%q): error %q lacks the \"anon: \" prefix", s, err)
		}
		if strings.Contains(err.Error(), good[:16]) {
			t.Errorf("ParseKey: error %q leaks key material", err)
		}
		if k != ([KeySize]byte{}) {
			t.Errorf("ParseKey(%q): non-zero key with an error", s)
		}
	}
	// A parsed key works with NewCryptoPAn.
	k, _ := ParseKey(good)
	if _, err := NewCryptoPAn(k); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseKey(f *testing.F) {
	good := strings.ReplaceAll(sampleKeyHex, " ", "")
	for _, s := range []string{good, strings.ToUpper(good), " " + good + "\n", "", good[:63], good + "0", sampleKeyHex, "0x" + good} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKey(s)
		trimmed := strings.TrimSpace(s)
		ref, refErr := hex.DecodeString(trimmed)
		refOK := refErr == nil && len(ref) == KeySize
		if err != nil {
			if !strings.HasPrefix(err.Error(), "anon: ") {
				t.Fatalf("error %q lacks the \"anon: \" prefix", err)
			}
			if refOK {
				t.Fatalf("ParseKey(%q) rejected a valid key: %v", s, err)
			}
			if len(trimmed) >= 8 && strings.Contains(err.Error(), trimmed) {
				t.Fatalf("error %q echoes the input", err)
			}
			if k != ([KeySize]byte{}) {
				t.Fatalf("non-zero key with an error")
			}
			return
		}
		if !refOK {
			t.Fatalf("ParseKey(%q) accepted what encoding/hex rejects (%v, %d bytes)", s, refErr, len(ref))
		}
		if string(ref) != string(k[:]) {
			t.Fatalf("ParseKey(%q) = %x, encoding/hex says %x", s, k, ref)
		}
		if hex.EncodeToString(k[:]) != strings.ToLower(trimmed) {
			t.Fatalf("round trip: %q -> %x", s, k)
		}
	})
}
