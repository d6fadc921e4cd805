package ipfix

import (
	"math"
	"math/bits"
	"net/netip"
)

// The fast path for fixed-length layouts. DataIter.Next and the general
// accessors each keep a call for the other widths and types, and a call
// alone takes 57 of the 80 units of Go's inlining budget, so none of them
// inlines. A consumer that looks at a Layout once (RecordLen, each field's
// Length and type) can choose FixedIter and the width-specific accessors
// below instead: they have no fallback call, inline, and panic when asked
// for a field of another width (a bug in that choice, not bad input: the
// widths come from the compiled template, not from the record).

// FixedIter walks the records of a data set of a fixed-length layout; see
// Layout.FixedIter. It stops at the padding that may end a set.
type FixedIter struct {
	l   *Layout
	b   []byte
	n   int
	pos []fieldPos
}

// FixedIter returns an iterator over the records in b (as for NewDataIter)
// and true if l's records all have one length, or false (use NewDataIter).
func (l *Layout) FixedIter(b []byte) (FixedIter, bool) {
	if l.RecordLen <= 0 {
		return FixedIter{}, false
	}
	return FixedIter{l: l, b: b, n: l.RecordLen, pos: l.pos}, true
}

// Next decodes the next record into r; it returns false at the end of the
// set (fewer octets left than a record).
func (it *FixedIter) Next(r *Record) bool {
	if n := it.n; n <= len(it.b) && n > 0 {
		r.Layout, r.data, r.pos = it.l, it.b[:n], it.pos
		it.b = it.b[n:]
		return true
	}
	return false
}

// Remaining returns the undecoded bytes (the padding, after the last record).
func (it *FixedIter) Remaining() []byte { return it.b }

// Addr4 returns field i, which must be 4 octets long, as an IPv4 address.
func (r *Record) Addr4(i int) netip.Addr {
	p := r.pos[i]
	if p.end-p.off != 4 {
		panic("BUG: ipfix: Addr4 of a field that is not 4 octets")
	}
	return netip.AddrFrom4(*(*[4]byte)(r.ptr(p)))
}

// UnixNanoMillis returns field i, which must be an 8-octet
// dateTimeMilliseconds, as UnixNano does.
func (r *Record) UnixNanoMillis(i int) int64 {
	p := r.pos[i]
	if p.end-p.off != 8 || p.typ != TypeDateTimeMilliseconds {
		panic("BUG: ipfix: UnixNanoMillis of a field that is not an 8-octet dateTimeMilliseconds")
	}
	if ms := bits.ReverseBytes64(*(*uint64)(r.ptr(p))); ms < math.MaxInt64/1_000_000 {
		return int64(ms) * 1e6
	}
	return math.MaxInt64
}
