package ipfix

import (
	"encoding/binary"
	"errors"
	"math"
	"net/netip"
	"time"
)

// ErrMessageTooLarge is returned by MessageWriter.Finish when a message
// outgrows the 16-bit length field.
var ErrMessageTooLarge = errors.New("ipfix: message longer than 65535 octets")

// MessageWriter appends IPFIX or NetFlow v9 messages for one observation
// domain and keeps the domain's sequence number. It appends to the caller's
// slice and does not allocate beyond growing it. Not safe for concurrent use.
//
// Usage: Begin, then BeginSet / records / EndSet as often as needed, then
// Finish. Data records are appended with the Append* helpers; tell the writer
// how many with AddRecords so the sequence number stays right.
type MessageWriter struct {
	// Version is VersionIPFIX (the default when zero) or VersionNetFlow9.
	Version uint16
	// DomainID is the observation domain (v9: source ID).
	DomainID uint32
	// Sequence is the sequence number the next message will carry: data
	// records sent so far for IPFIX, messages sent for v9.
	Sequence uint32
	// SysUptime is written into v9 headers (milliseconds since boot).
	SysUptime uint32

	start, set int
	records    int // data records in the open message
	v9Records  int // v9 header count: template and data records
	open       bool
}

func (w *MessageWriter) v9() bool { return w.Version == VersionNetFlow9 }

// Begin appends a message header with the given export time (seconds since
// the UNIX epoch).
func (w *MessageWriter) Begin(dst []byte, exportTime uint32) []byte {
	w.start, w.records, w.v9Records, w.set, w.open = len(dst), 0, 0, -1, true
	if w.v9() {
		dst = binary.BigEndian.AppendUint16(dst, VersionNetFlow9)
		dst = append(dst, 0, 0) // count, patched by Finish
		dst = binary.BigEndian.AppendUint32(dst, w.SysUptime)
		dst = binary.BigEndian.AppendUint32(dst, exportTime)
		dst = binary.BigEndian.AppendUint32(dst, w.Sequence)
		return binary.BigEndian.AppendUint32(dst, w.DomainID)
	}
	dst = binary.BigEndian.AppendUint16(dst, VersionIPFIX)
	dst = append(dst, 0, 0) // length, patched by Finish
	dst = binary.BigEndian.AppendUint32(dst, exportTime)
	dst = binary.BigEndian.AppendUint32(dst, w.Sequence)
	return binary.BigEndian.AppendUint32(dst, w.DomainID)
}

// BeginSet opens a set with the given ID: TemplateSetID or
// OptionsTemplateSetID (translated for v9), or a template ID for data.
func (w *MessageWriter) BeginSet(dst []byte, id uint16) []byte {
	if w.v9() {
		switch id {
		case TemplateSetID:
			id = 0
		case OptionsTemplateSetID:
			id = 1
		}
	}
	w.set = len(dst)
	dst = binary.BigEndian.AppendUint16(dst, id)
	return append(dst, 0, 0)
}

// Set IDs of IPFIX template and options template sets.
const (
	TemplateSetID        = 2
	OptionsTemplateSetID = 3
)

// EndSet closes the open set, padding v9 sets to a 4-octet boundary as RFC
// 3954 requires, and patches its length. An empty set is removed.
func (w *MessageWriter) EndSet(dst []byte) []byte {
	if w.set < 0 {
		panic("BUG: ipfix: EndSet without BeginSet")
	}
	if len(dst)-w.set == SetHeaderLen {
		dst = dst[:w.set]
		w.set = -1
		return dst
	}
	if w.v9() {
		for (len(dst)-w.set)%4 != 0 {
			dst = append(dst, 0)
		}
	}
	binary.BigEndian.PutUint16(dst[w.set+2:], uint16(len(dst)-w.set))
	w.set = -1
	return dst
}

// AddRecords counts n data records appended to the open message.
func (w *MessageWriter) AddRecords(n int) {
	w.records += n
	w.v9Records += n
}

// AddTemplates counts n template records (v9 headers count them too).
func (w *MessageWriter) AddTemplates(n int) { w.v9Records += n }

// Len returns the length of the open message so far.
func (w *MessageWriter) Len(dst []byte) int { return len(dst) - w.start }

// Finish patches the header of the open message and advances the sequence
// number. On ErrMessageTooLarge the message is removed from dst and the
// sequence number is unchanged.
func (w *MessageWriter) Finish(dst []byte) ([]byte, error) {
	if !w.open {
		panic("BUG: ipfix: Finish without Begin")
	}
	w.open = false
	n := len(dst) - w.start
	if n > MaxMessageLen {
		return dst[:w.start], ErrMessageTooLarge
	}
	if w.v9() {
		binary.BigEndian.PutUint16(dst[w.start+2:], uint16(w.v9Records))
		w.Sequence++
		return dst, nil
	}
	binary.BigEndian.PutUint16(dst[w.start+2:], uint16(n))
	w.Sequence += uint32(w.records)
	return dst, nil
}

// AppendTemplateRecord appends a template record. Fields with a non-zero PEN
// get the enterprise bit and number (IPFIX only).
func AppendTemplateRecord(dst []byte, id uint16, fields []FieldSpec) []byte {
	dst = binary.BigEndian.AppendUint16(dst, id)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(fields)))
	return appendSpecs(dst, fields)
}

// AppendOptionsTemplateRecord appends an IPFIX options template record whose
// first scopeCount fields are scope fields.
func AppendOptionsTemplateRecord(dst []byte, id uint16, scopeCount int, fields []FieldSpec) []byte {
	dst = binary.BigEndian.AppendUint16(dst, id)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(fields)))
	dst = binary.BigEndian.AppendUint16(dst, uint16(scopeCount))
	return appendSpecs(dst, fields)
}

// AppendV9OptionsTemplateRecord appends an RFC 3954 options template record.
func AppendV9OptionsTemplateRecord(dst []byte, id uint16, scopeCount int, fields []FieldSpec) []byte {
	dst = binary.BigEndian.AppendUint16(dst, id)
	dst = binary.BigEndian.AppendUint16(dst, uint16(4*scopeCount))
	dst = binary.BigEndian.AppendUint16(dst, uint16(4*(len(fields)-scopeCount)))
	return appendSpecs(dst, fields)
}

// AppendWithdrawal appends a template withdrawal record for id.
func AppendWithdrawal(dst []byte, id uint16) []byte {
	dst = binary.BigEndian.AppendUint16(dst, id)
	return append(dst, 0, 0)
}

func appendSpecs(dst []byte, fields []FieldSpec) []byte {
	for _, f := range fields {
		if f.PEN != 0 {
			dst = binary.BigEndian.AppendUint16(dst, f.ID|0x8000)
			dst = binary.BigEndian.AppendUint16(dst, f.Length)
			dst = binary.BigEndian.AppendUint32(dst, f.PEN)
			continue
		}
		dst = binary.BigEndian.AppendUint16(dst, f.ID)
		dst = binary.BigEndian.AppendUint16(dst, f.Length)
	}
	return dst
}

// AppendUint appends v big-endian in width octets (1 to 8), keeping the low
// octets: reduced-size encoding when width is below the type's size.
func AppendUint(dst []byte, v uint64, width int) []byte {
	for i := width - 1; i >= 0; i-- {
		dst = append(dst, byte(v>>(8*uint(i))))
	}
	return dst
}

// AppendFloat appends f as float32 (width 4) or float64 (width 8).
func AppendFloat(dst []byte, f float64, width int) []byte {
	if width == 4 {
		return binary.BigEndian.AppendUint32(dst, math.Float32bits(float32(f)))
	}
	return binary.BigEndian.AppendUint64(dst, math.Float64bits(f))
}

// AppendBool appends an IPFIX boolean (1 true, 2 false).
func AppendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 2)
}

// AppendAddr appends a 4- or 16-octet address.
func AppendAddr(dst []byte, a netip.Addr) []byte {
	if a.Is4() {
		b := a.As4()
		return append(dst, b[:]...)
	}
	b := a.As16()
	return append(dst, b[:]...)
}

// AppendVarlen appends a variable-length value with its length prefix: one
// octet below 255, else 255 and two octets.
func AppendVarlen(dst []byte, v []byte) []byte {
	if len(v) < 255 {
		dst = append(dst, byte(len(v)))
	} else {
		dst = append(dst, 255)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(v)))
	}
	return append(dst, v...)
}

// AppendDateTimeMilliseconds appends t as milliseconds since the epoch.
func AppendDateTimeMilliseconds(dst []byte, t time.Time) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(t.UnixMilli()))
}

// AppendDateTimeSeconds appends t as seconds since the epoch.
func AppendDateTimeSeconds(dst []byte, t time.Time) []byte {
	return binary.BigEndian.AppendUint32(dst, uint32(t.Unix()))
}

// AppendNTP appends t as an NTP timestamp (dateTimeMicroseconds and
// dateTimeNanoseconds).
func AppendNTP(dst []byte, t time.Time) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(t.Unix()+ntpEpochOffset))
	return binary.BigEndian.AppendUint32(dst, uint32((uint64(t.Nanosecond())<<32)/1e9))
}

// AppendBasicListHeader appends the header of a basicList value: semantic
// and element; the values follow.
func AppendBasicListHeader(dst []byte, semantic uint8, elem FieldSpec) []byte {
	dst = append(dst, semantic)
	return appendSpecs(dst, []FieldSpec{elem})
}

// AppendSubTemplateListHeader appends the header of a subTemplateList
// value; the records follow.
func AppendSubTemplateListHeader(dst []byte, semantic uint8, templateID uint16) []byte {
	dst = append(dst, semantic)
	return binary.BigEndian.AppendUint16(dst, templateID)
}
