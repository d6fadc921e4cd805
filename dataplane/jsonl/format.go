package jsonl

import (
	"math/bits"
	"slices"
)

// Integers and IPv4 addresses are written straight into the destination:
// strconv formats into a buffer of its own and copies, and netip builds
// the address octet by octet with an append each.

const digits2 = "00010203040506070809" +
	"10111213141516171819" +
	"20212223242526272829" +
	"30313233343536373839" +
	"40414243444546474849" +
	"50515253545556575859" +
	"60616263646566676869" +
	"70717273747576777879" +
	"80818283848586878889" +
	"90919293949596979899"

var pow10 = [20]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19}

// decLen returns the number of decimal digits of v.
func decLen(v uint64) int {
	t := bits.Len64(v|1) * 1233 >> 12 // about log10(2) * bits
	if v < pow10[t] {
		return t
	}
	return t + 1
}

// appendUint appends v in decimal, as strconv.AppendUint(dst, v, 10) does.
func appendUint(dst []byte, v uint64) []byte {
	if v < 10 {
		return append(dst, byte('0'+v))
	}
	n := decLen(v)
	dst = slices.Grow(dst, n)
	i := len(dst) + n
	dst = dst[:i]
	for v >= 100 {
		q := v / 100
		r := (v - q*100) * 2
		i -= 2
		dst[i], dst[i+1] = digits2[r], digits2[r+1]
		v = q
	}
	if v >= 10 {
		dst[i-2], dst[i-1] = digits2[v*2], digits2[v*2+1]
	} else {
		dst[i-1] = byte('0' + v)
	}
	return dst
}

// dec8[v] is the length of v in decimal, then its digits.
var dec8 = func() (t [256][4]byte) {
	for v := range 256 {
		switch {
		case v >= 100:
			t[v] = [4]byte{3, byte('0' + v/100), byte('0' + v/10%10), byte('0' + v%10)}
		case v >= 10:
			t[v] = [4]byte{2, byte('0' + v/10), byte('0' + v%10)}
		default:
			t[v] = [4]byte{1, byte('0' + v)}
		}
	}
	return t
}()

// appendQuotedIPv4 appends a as a quoted dotted quad.
func appendQuotedIPv4(dst []byte, a [4]byte) []byte {
	const max = len(`"255.255.255.255"`)
	dst = slices.Grow(dst, max)
	n := len(dst)
	b := dst[n : n+max]
	b[0] = '"'
	i := 1
	for k, o := range a {
		d := &dec8[o]
		// Three digits always fit; the next octet overwrites the spare ones.
		b[i], b[i+1], b[i+2] = d[1], d[2], d[3]
		i += int(d[0])
		if k < 3 {
			b[i] = '.'
			i++
		}
	}
	b[i] = '"'
	return dst[:n+i+1]
}
