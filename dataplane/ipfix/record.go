package ipfix

import (
	"encoding/binary"
	"math"
	"math/bits"
	"net/netip"
	"time"
	"unsafe"
)

// Record is a view of one data record. Its bytes and every value returned by
// its accessors point into the message buffer: they are valid until that
// buffer is reused. A Record is reused across DataIter.Next calls and owns a
// small offsets buffer for variable-length layouts, so keep one per
// goroutine. The zero Record has no fields.
type Record struct {
	Layout *Layout
	data   []byte
	pos    []fieldPos
	own    []fieldPos
}

// Raw returns the record's encoded bytes (capacity clipped, so appending
// to it cannot overwrite the next record).
func (r *Record) Raw() []byte { return r.data[:len(r.data):len(r.data)] }

// Records returns an iterator over the data records of set s decoded with l.
func (s *Set) Records(l *Layout) DataIter { return NewDataIter(l, s.Body) }

// NewDataIter iterates the records in b (a data set body, a subTemplateList
// content or a v5 message body) with layout l. Field positions are 16-bit,
// as nothing inside one message can be further: b must not be longer than
// MaxMessageLen.
func NewDataIter(l *Layout, b []byte) DataIter {
	return DataIter{l: l, b: b, n: l.RecordLen, pos: l.pos}
}

// DataIter walks the data records of a set. It stops at the padding that may
// end a set: fewer octets than the shortest possible record.
type DataIter struct {
	l   *Layout
	b   []byte
	err error
	// Copied from the layout so the fixed-length path of Next stays small
	// enough to inline.
	n   int
	pos []fieldPos
}

// Err returns the error that stopped the iteration, if any.
func (it *DataIter) Err() error { return it.err }

// Remaining returns the undecoded bytes (the padding, after the last record).
func (it *DataIter) Remaining() []byte { return it.b }

// Next decodes the next record into r.
func (it *DataIter) Next(r *Record) bool {
	// Small enough to inline: fixed-length records are the common case.
	if n := it.n; n > 0 && n <= len(it.b) {
		r.Layout, r.data, r.pos = it.l, it.b[:n], it.pos
		it.b = it.b[n:]
		return true
	}
	return it.nextVarlen(r)
}

func (it *DataIter) nextVarlen(r *Record) bool {
	l := it.l
	if l.RecordLen > 0 || len(it.b) < l.MinLen {
		return false
	}
	if cap(r.own) < len(l.Fields) {
		r.own = make([]fieldPos, len(l.Fields))
	}
	pos := r.own[:len(l.Fields)]
	b := it.b
	off := 0
	for i := range l.Fields {
		n := int(l.Fields[i].Length)
		if n == VarLen {
			if off >= len(b) {
				return it.fail(ErrShortRecord)
			}
			n = int(b[off])
			off++
			if n == 255 {
				if off+2 > len(b) {
					return it.fail(ErrShortRecord)
				}
				n = int(binary.BigEndian.Uint16(b[off:]))
				off += 2
			}
			if off+n > len(b) {
				return it.fail(ErrVarlenLength)
			}
		} else if off+n > len(b) {
			return it.fail(ErrShortRecord)
		}
		pos[i] = fieldPos{uint16(off), uint16(off + n), l.Fields[i].IE.Type}
		off += n
	}
	r.Layout, r.data, r.pos = l, b[:off:off], pos
	it.b = b[off:]
	return true
}

func (it *DataIter) fail(err error) bool {
	it.err = err
	it.b = nil
	return false
}

// value returns the bytes at p. The bounds check stays: it is cheap, and
// keeps the accessors small enough to inline.
func (r *Record) value(p fieldPos) []byte {
	return r.data[p.off:p.end]
}

// ptr points at a field that is not empty. DataIter.Next sets data and pos
// together, only with positions inside data, and both are unexported, so
// the fixed-width fast paths may load through it without a bounds check.
func (r *Record) ptr(p fieldPos) unsafe.Pointer {
	return unsafe.Add(unsafe.Pointer(unsafe.SliceData(r.data)), p.off)
}

// NumFields returns the number of fields in the record.
func (r *Record) NumFields() int { return len(r.pos) }

// Bytes returns field i's encoded value (a view, see Record).
func (r *Record) Bytes(i int) []byte {
	return r.value(r.pos[i])
}

// Offset returns where field i's value starts within Raw() (after the
// length prefix of a variable-length field).
func (r *Record) Offset(i int) int { return int(r.pos[i].off) }

// Uint returns field i as an unsigned integer of any encoded width.
func (r *Record) Uint(i int) uint64 { return Uint(r.Bytes(i)) }

// Int returns field i as a signed integer of any encoded width.
func (r *Record) Int(i int) int64 { return Int(r.Bytes(i)) }

// Float returns field i as a float32 or float64 value.
func (r *Record) Float(i int) float64 { return Float(r.Bytes(i)) }

// Bool returns field i as an IPFIX boolean (1 is true, 2 is false).
func (r *Record) Bool(i int) bool { return Bool(r.Bytes(i)) }

// Addr returns field i as an IPv4 or IPv6 address.
func (r *Record) Addr(i int) netip.Addr {
	if p := r.pos[i]; p.end-p.off == 4 {
		return netip.AddrFrom4(*(*[4]byte)(r.ptr(p)))
	}
	return addrSlow(r.Bytes(i))
}

func addrSlow(b []byte) netip.Addr {
	if len(b) == 16 {
		return netip.AddrFrom16([16]byte(b))
	}
	return netip.Addr{}
}

// MAC returns field i as a MAC address.
func (r *Record) MAC(i int) [6]byte { return MAC(r.Bytes(i)) }

// String returns field i as a string sharing the record's memory; see
// String for its lifetime.
func (r *Record) String(i int) string { return String(r.Bytes(i)) }

// Time returns field i as a time according to its element's dateTime type.
// Other types are read as seconds since the epoch.
func (r *Record) Time(i int) time.Time {
	p := r.pos[i]
	b := r.value(p)
	switch p.typ {
	case TypeDateTimeMilliseconds:
		return DateTimeMilliseconds(b)
	case TypeDateTimeMicroseconds:
		return DateTimeMicroseconds(b)
	case TypeDateTimeNanoseconds:
		return DateTimeNanoseconds(b)
	}
	return DateTimeSeconds(b)
}

// UnixNano returns field i, a dateTime of any of the four types, as
// nanoseconds since the UNIX epoch without building a time.Time. Other types
// are read as seconds. Times outside the years 1678 to 2262 saturate; an
// NTP field that is not 8 octets long reads as 0.
func (r *Record) UnixNano(i int) int64 {
	p := r.pos[i]
	// Inlined fast path for the common 8-octet milliseconds.
	if p.typ == TypeDateTimeMilliseconds && p.end-p.off == 8 {
		if ms := bits.ReverseBytes64(*(*uint64)(r.ptr(p))); ms < math.MaxInt64/1_000_000 {
			return int64(ms) * 1e6
		}
	}
	return r.unixNano(p)
}

func (r *Record) unixNano(p fieldPos) int64 {
	b := r.value(p)
	switch p.typ {
	case TypeDateTimeMilliseconds:
		if ms := Uint(b); ms < math.MaxInt64/1_000_000 {
			return int64(ms) * 1e6
		}
		return math.MaxInt64
	case TypeDateTimeMicroseconds, TypeDateTimeNanoseconds:
		if len(b) != 8 {
			return 0
		}
		sec := int64(binary.BigEndian.Uint32(b)) - ntpEpochOffset
		frac := binary.BigEndian.Uint32(b[4:])
		if p.typ == TypeDateTimeMicroseconds {
			frac &^= 0x7ff
		}
		return sec*1e9 + int64((uint64(frac)*1e9+1<<31)>>32)
	}
	if sec := Uint(b); sec <= math.MaxInt64/1_000_000_000 {
		return int64(sec) * 1e9
	}
	return math.MaxInt64
}

// Uint decodes a big-endian unsigned integer of 0 to 8 octets (reduced-size
// encoding included). Longer inputs keep their last 8 octets.
func Uint(b []byte) uint64 {
	switch len(b) {
	case 1:
		return uint64(b[0])
	case 2:
		return uint64(binary.BigEndian.Uint16(b))
	case 4:
		return uint64(binary.BigEndian.Uint32(b))
	case 8:
		return binary.BigEndian.Uint64(b)
	}
	return uintSlow(b)
}

func uintSlow(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// Int decodes a big-endian two's complement integer of 1 to 8 octets, sign
// extended from its encoded width.
func Int(b []byte) int64 {
	n := len(b)
	if n == 0 {
		return 0
	}
	if n > 8 {
		b, n = b[n-8:], 8
	}
	shift := 64 - 8*uint(n)
	return int64(Uint(b)<<shift) >> shift
}

// Float decodes a float32 (4 octets) or float64 (8 octets); other widths
// yield NaN.
func Float(b []byte) float64 {
	switch len(b) {
	case 4:
		return float64(math.Float32frombits(binary.BigEndian.Uint32(b)))
	case 8:
		return math.Float64frombits(binary.BigEndian.Uint64(b))
	}
	return math.NaN()
}

// Bool decodes an IPFIX boolean: 1 is true, 2 (and anything else) false.
func Bool(b []byte) bool { return len(b) == 1 && b[0] == 1 }

// Addr decodes a 4-octet IPv4 or 16-octet IPv6 address; other widths yield
// the zero (invalid) Addr.
func Addr(b []byte) netip.Addr {
	switch len(b) {
	case 4:
		return netip.AddrFrom4([4]byte(b))
	case 16:
		return netip.AddrFrom16([16]byte(b))
	}
	return netip.Addr{}
}

// MAC decodes a 6-octet MAC address; other widths yield zeros.
func MAC(b []byte) [6]byte {
	if len(b) != 6 {
		return [6]byte{}
	}
	return [6]byte(b)
}

// String returns b as a string without copying. The string shares b's
// memory: it is valid only while b is, and must be cloned (strings.Clone)
// to be kept.
func String(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// ntpEpochOffset is the number of seconds from 1900-01-01 (NTP era 0) to
// 1970-01-01.
const ntpEpochOffset = 2208988800

// DateTimeSeconds decodes seconds since the UNIX epoch (4 octets).
func DateTimeSeconds(b []byte) time.Time { return time.Unix(int64(Uint(b)), 0).UTC() }

// DateTimeMilliseconds decodes milliseconds since the UNIX epoch (8 octets,
// or fewer in reduced-size encoding).
func DateTimeMilliseconds(b []byte) time.Time { return time.UnixMilli(int64(Uint(b))).UTC() }

// DateTimeMicroseconds decodes an NTP timestamp (RFC 7011 section 6.1.9);
// the low 11 bits of the fraction are ignored as the RFC says.
func DateTimeMicroseconds(b []byte) time.Time {
	if len(b) != 8 {
		return time.Time{}
	}
	return ntpTime(binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:])&^0x7ff)
}

// DateTimeNanoseconds decodes an NTP timestamp with its full fraction.
func DateTimeNanoseconds(b []byte) time.Time {
	if len(b) != 8 {
		return time.Time{}
	}
	return ntpTime(binary.BigEndian.Uint32(b), binary.BigEndian.Uint32(b[4:]))
}

func ntpTime(sec, frac uint32) time.Time {
	ns := (uint64(frac)*1e9 + 1<<31) >> 32
	return time.Unix(int64(sec)-ntpEpochOffset, int64(ns)).UTC()
}
