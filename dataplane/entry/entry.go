// Package entry defines the framed entries the collector hands to the
// mediator side through a ring: template definitions, data sets tagged with
// their template's fingerprint and the exporter's metadata, and withdrawals.
// Entries hold no Go pointers, so a ring in shared memory can carry them
// between processes.
package entry

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Kind says what an entry carries.
type Kind uint8

// Entry kinds.
const (
	KindTemplate   Kind = 1 // body: the template record's wire bytes
	KindData       Kind = 2 // body: the data set body (records and padding)
	KindWithdrawal Kind = 3 // no body
	// KindReset tells the consumer to forget every template definition the
	// ring carried: the producer will announce again what it needs.
	KindReset Kind = 4
)

// Flags on template entries.
const (
	FlagOptions = 1 << 0
	FlagV9      = 1 << 1
)

// HeaderLen is the fixed size of an entry header.
const HeaderLen = 72

// ErrShort is returned for an entry shorter than its header.
var ErrShort = errors.New("entry: shorter than its header")

// Header is the fixed part of every entry. Fields that do not apply to a
// kind are zero.
type Header struct {
	Kind    Kind
	Flags   uint8
	Version uint16
	Domain  uint32
	// Exporter is the exporter's address and port for data entries; for
	// template entries it is the template's scope (the port is 0 unless
	// templates are scoped by port).
	Exporter    netip.AddrPort
	TemplateID  uint16
	Fingerprint uint64
	ExportTime  uint32
	Sequence    uint32
	SysUptime   uint32
	ExportNanos uint32
	// Records is the number of data records in a data entry.
	Records uint32
	// Session is the TCP transport session the entry's templates belong
	// to (RFC 7011 section 8); 0 for UDP.
	Session uint64
	// Received is when the collector read the message, in Unix
	// nanoseconds (data entries).
	Received int64
}

// Put writes h into b[:HeaderLen] and returns HeaderLen. b must be at least
// HeaderLen long.
func Put(b []byte, h *Header) int {
	_ = b[HeaderLen-1]
	b[0] = byte(h.Kind)
	b[1] = h.Flags
	binary.LittleEndian.PutUint16(b[2:], h.Version)
	binary.LittleEndian.PutUint32(b[4:], h.Domain)
	a := h.Exporter.Addr().As16()
	copy(b[8:24], a[:])
	binary.LittleEndian.PutUint16(b[24:], h.Exporter.Port())
	binary.LittleEndian.PutUint16(b[26:], h.TemplateID)
	binary.LittleEndian.PutUint64(b[28:], h.Fingerprint)
	binary.LittleEndian.PutUint32(b[36:], h.ExportTime)
	binary.LittleEndian.PutUint32(b[40:], h.Sequence)
	binary.LittleEndian.PutUint32(b[44:], h.SysUptime)
	binary.LittleEndian.PutUint32(b[48:], h.ExportNanos)
	binary.LittleEndian.PutUint32(b[52:], h.Records)
	binary.LittleEndian.PutUint64(b[56:], h.Session)
	binary.LittleEndian.PutUint64(b[64:], uint64(h.Received))
	return HeaderLen
}

// Parse reads the header at the start of b and returns the body, a view into
// b valid as long as b is. Any b of HeaderLen bytes or more parses, and Put
// writes the same HeaderLen bytes back. A header Put wrote parses back
// equal, but for the exporter's IPv6 zone, which is not carried, and an
// IPv4-mapped IPv6 exporter, which comes back as IPv4.
func Parse(b []byte, h *Header) ([]byte, error) {
	if len(b) < HeaderLen {
		return nil, ErrShort
	}
	h.Kind = Kind(b[0])
	h.Flags = b[1]
	h.Version = binary.LittleEndian.Uint16(b[2:])
	h.Domain = binary.LittleEndian.Uint32(b[4:])
	var addr netip.Addr // all zero: Put's zero Exporter (no exporter ever sends from ::)
	if a16 := [16]byte(b[8:24]); a16 != [16]byte{} {
		addr = netip.AddrFrom16(a16).Unmap()
	}
	h.Exporter = netip.AddrPortFrom(addr, binary.LittleEndian.Uint16(b[24:]))
	h.TemplateID = binary.LittleEndian.Uint16(b[26:])
	h.Fingerprint = binary.LittleEndian.Uint64(b[28:])
	h.ExportTime = binary.LittleEndian.Uint32(b[36:])
	h.Sequence = binary.LittleEndian.Uint32(b[40:])
	h.SysUptime = binary.LittleEndian.Uint32(b[44:])
	h.ExportNanos = binary.LittleEndian.Uint32(b[48:])
	h.Records = binary.LittleEndian.Uint32(b[52:])
	h.Session = binary.LittleEndian.Uint64(b[56:])
	h.Received = int64(binary.LittleEndian.Uint64(b[64:]))
	return b[HeaderLen:], nil
}
