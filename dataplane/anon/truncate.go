package anon

import (
	"encoding/binary"
	"net/netip"
)

// Truncate keeps the first bitsV4 bits of an IPv4 address, or the first
// bitsV6 bits of an IPv6 address, and zeroes the rest. Prefix lengths are
// clamped to the address size: a negative length zeroes the whole address and
// a length of at least 32 (IPv4) or 128 (IPv6) keeps it whole. An
// IPv4-mapped IPv6 address is an IPv6 address here and uses bitsV6. The zone
// of an IPv6 address is kept; the zero Addr is returned unchanged. Truncate
// does not allocate.
func Truncate(a netip.Addr, bitsV4, bitsV6 int) netip.Addr {
	switch {
	case a.Is4():
		b := a.As4()
		v := binary.BigEndian.Uint32(b[:]) & mask32(bitsV4)
		binary.BigEndian.PutUint32(b[:], v)
		return netip.AddrFrom4(b)
	case a.Is6():
		b := a.As16()
		hi := binary.BigEndian.Uint64(b[0:8])
		lo := binary.BigEndian.Uint64(b[8:16])
		hi &= mask64(bitsV6)
		lo &= mask64(bitsV6 - 64)
		binary.BigEndian.PutUint64(b[0:8], hi)
		binary.BigEndian.PutUint64(b[8:16], lo)
		r := netip.AddrFrom16(b)
		if z := a.Zone(); z != "" {
			r = r.WithZone(z)
		}
		return r
	default:
		return a
	}
}

// mask32 has the top n bits set, n clamped to [0, 32].
func mask32(n int) uint32 {
	switch {
	case n <= 0:
		return 0
	case n >= 32:
		return ^uint32(0)
	}
	return ^(^uint32(0) >> n)
}

// mask64 has the top n bits set, n clamped to [0, 64].
func mask64(n int) uint64 {
	switch {
	case n <= 0:
		return 0
	case n >= 64:
		return ^uint64(0)
	}
	return ^(^uint64(0) >> n)
}
