package ipfix

import (
	"encoding/binary"
	"time"
)

// Protocol versions carried in the first two octets of every message.
const (
	VersionNetFlow5 = 5
	VersionNetFlow9 = 9
	VersionIPFIX    = 10
)

// Header sizes.
const (
	HeaderLenIPFIX = 16
	HeaderLenV9    = 20
	HeaderLenV5    = 24
	SetHeaderLen   = 4
	v5RecordLen    = 48
	// MaxMessageLen is the largest message the 16-bit length field allows.
	MaxMessageLen = 65535
)

// Message is a decoded message header plus a view of its body. The zero value
// is an empty message; Decode fills it. Body views point into the buffer
// given to Decode and are valid as long as that buffer is not modified.
type Message struct {
	Version uint16
	// Length is the number of bytes of the buffer this message occupies.
	// For IPFIX it comes from the header; NetFlow v9 has no length field, so
	// a v9 message is the whole buffer; for v5 it follows from the count.
	Length int
	// ExportTime is the export time in seconds since the UNIX epoch
	// (IPFIX Export Time, NetFlow unix_secs).
	ExportTime uint32
	// Sequence is the header sequence number: data records sent before this
	// message for IPFIX and v5, export packets for v9.
	Sequence uint32
	// DomainID is the IPFIX observation domain ID, the v9 source ID, or for
	// v5 engine_type<<8 | engine_id.
	DomainID uint32
	// SysUptime is the exporter's uptime in milliseconds at export (v9, v5).
	SysUptime uint32
	// Count is the header's record count (v9: all records, v5: flows).
	Count uint16
	// ExportNanos is the v5 unix_nsecs residual.
	ExportNanos uint32
	// SamplingInterval is the raw v5 sampling_interval field.
	SamplingInterval uint16

	body []byte
}

// Decode parses the message header at the start of b. For IPFIX, b may hold
// more bytes than the message (a stream or file of messages); Length says how
// many belong to this one. Decode does not copy b.
func (m *Message) Decode(b []byte) error {
	if len(b) < 4 {
		return ErrShortMessage
	}
	m.Version = binary.BigEndian.Uint16(b)
	switch m.Version {
	case VersionIPFIX:
		if len(b) < HeaderLenIPFIX {
			return ErrShortMessage
		}
		n := int(binary.BigEndian.Uint16(b[2:]))
		if n < HeaderLenIPFIX || n > len(b) {
			return ErrMessageLength
		}
		m.Length = n
		m.ExportTime = binary.BigEndian.Uint32(b[4:])
		m.Sequence = binary.BigEndian.Uint32(b[8:])
		m.DomainID = binary.BigEndian.Uint32(b[12:])
		m.SysUptime, m.Count, m.ExportNanos, m.SamplingInterval = 0, 0, 0, 0
		m.body = b[HeaderLenIPFIX:n]
	case VersionNetFlow9:
		if len(b) < HeaderLenV9 {
			return ErrShortMessage
		}
		m.Length = len(b)
		m.Count = binary.BigEndian.Uint16(b[2:])
		m.SysUptime = binary.BigEndian.Uint32(b[4:])
		m.ExportTime = binary.BigEndian.Uint32(b[8:])
		m.Sequence = binary.BigEndian.Uint32(b[12:])
		m.DomainID = binary.BigEndian.Uint32(b[16:])
		m.ExportNanos, m.SamplingInterval = 0, 0
		m.body = b[HeaderLenV9:]
	case VersionNetFlow5:
		if len(b) < HeaderLenV5 {
			return ErrShortMessage
		}
		m.Count = binary.BigEndian.Uint16(b[2:])
		n := HeaderLenV5 + int(m.Count)*v5RecordLen
		if m.Count == 0 || n > len(b) {
			return ErrV5Count
		}
		m.Length = n
		m.SysUptime = binary.BigEndian.Uint32(b[4:])
		m.ExportTime = binary.BigEndian.Uint32(b[8:])
		m.ExportNanos = binary.BigEndian.Uint32(b[12:])
		m.Sequence = binary.BigEndian.Uint32(b[16:])
		m.DomainID = uint32(b[20])<<8 | uint32(b[21])
		m.SamplingInterval = binary.BigEndian.Uint16(b[22:])
		m.body = b[HeaderLenV5:n]
	default:
		return ErrVersion
	}
	return nil
}

// Body returns the bytes after the header: sets for IPFIX and v9, flow
// records for v5. It is a view into the decoded buffer.
func (m *Message) Body() []byte { return m.body }

// Time returns the export time.
func (m *Message) Time() time.Time {
	return time.Unix(int64(m.ExportTime), int64(m.ExportNanos%1e9)).UTC()
}

// UptimeTime converts a NetFlow sysUpTime-relative timestamp (milliseconds
// since the exporter booted, as in v9 FIRST_SWITCHED or v5 First) into an
// absolute time using the header's uptime and export time. Uptime wraps
// after 49.7 days; the difference is taken modulo 2^32 so a flow that
// started just before the wrap is still placed in the past.
func (m *Message) UptimeTime(ms uint32) time.Time {
	ago := int64(int32(m.SysUptime - ms))
	exportMs := int64(m.ExportTime)*1000 + int64(m.ExportNanos/1e6)
	return time.UnixMilli(exportMs - ago).UTC()
}

// SetKind classifies a set by its ID.
type SetKind uint8

// Set kinds.
const (
	SetReserved SetKind = iota
	SetTemplate
	SetOptionsTemplate
	SetData
)

// Set is one set of a message. Body excludes the 4-byte set header and
// includes any padding; it is a view into the message buffer.
type Set struct {
	ID   uint16
	Kind SetKind
	Body []byte
	v9   bool
}

// Sets returns an iterator over the message's sets. It is not meaningful for
// NetFlow v5, which has no sets (use V5Records).
func (m *Message) Sets() SetIter {
	return SetIter{b: m.body, v9: m.Version == VersionNetFlow9}
}

// SetIter walks the sets of a message. The zero value yields nothing.
type SetIter struct {
	b   []byte
	err error
	v9  bool
}

// Next stores the next set in s and reports whether there was one. After it
// returns false, Err tells whether the walk ended on malformed input.
func (it *SetIter) Next(s *Set) bool {
	if len(it.b) < SetHeaderLen {
		// Fewer than 4 trailing octets cannot be a set; exporters that pad
		// the message (some v9 ones do) leave zeros here.
		if !allZero(it.b) {
			it.err = ErrShortSet
		}
		it.b = nil
		return false
	}
	id := binary.BigEndian.Uint16(it.b)
	n := int(binary.BigEndian.Uint16(it.b[2:]))
	if n < SetHeaderLen || n > len(it.b) {
		if id == 0 && n == 0 && allZero(it.b) {
			// Zero padding after the last set.
			it.b = nil
			return false
		}
		it.err = ErrSetLength
		it.b = nil
		return false
	}
	s.ID = id
	s.Body = it.b[SetHeaderLen:n]
	s.v9 = it.v9
	s.Kind = setKind(id, it.v9)
	it.b = it.b[n:]
	return true
}

// Err returns the error that stopped the iteration, if any.
func (it *SetIter) Err() error { return it.err }

func setKind(id uint16, v9 bool) SetKind {
	switch {
	case id >= 256:
		return SetData
	case v9 && id == 0, !v9 && id == 2:
		return SetTemplate
	case v9 && id == 1, !v9 && id == 3:
		return SetOptionsTemplate
	}
	return SetReserved
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
