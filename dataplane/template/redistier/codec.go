package redistier

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
	"strings"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/template"
)

// Keys are sluice:tpl:{<scope>}:<odid>:<tid> for IPFIX and
// sluice:tpl:{<scope>}:v9:<odid>:<tid> for NetFlow v9, where scope is the
// exporter address ("192.0.2.1", "2001:db8::1") or, when templates are
// scoped by port, address and port ("192.0.2.1:2055", "[2001:db8::1]:2055").
// The braces are a Redis Cluster hash tag: one exporter's templates share a
// slot, so one node answers for all of them.
const keyPrefix = "sluice:tpl:{"

// AppendKey appends k's Redis key to dst. It reports false for keys that are
// not stored: a TCP session's (k.Session != 0, RFC 7011 section 8 keeps those
// to their session) and versions other than IPFIX and NetFlow v9.
func AppendKey(dst []byte, k template.Key) ([]byte, bool) {
	if k.Session != 0 || k.Version != ipfix.VersionIPFIX && k.Version != ipfix.VersionNetFlow9 {
		return dst, false
	}
	dst = append(dst, keyPrefix...)
	dst = appendScope(dst, k.Exporter)
	dst = append(dst, '}', ':')
	if k.Version == ipfix.VersionNetFlow9 {
		dst = append(dst, "v9:"...)
	}
	dst = strconv.AppendUint(dst, uint64(k.Domain), 10)
	dst = append(dst, ':')
	dst = strconv.AppendUint(dst, uint64(k.ID), 10)
	return dst, true
}

func appendScope(dst []byte, exporter netip.AddrPort) []byte {
	if exporter.Port() == 0 {
		return exporter.Addr().AppendTo(dst)
	}
	return exporter.AppendTo(dst)
}

// ParseKey is the inverse of AppendKey. Its keys have Session 0.
func ParseKey(s string) (template.Key, bool) {
	var k template.Key
	rest, ok := strings.CutPrefix(s, keyPrefix)
	if !ok {
		return k, false
	}
	end := strings.IndexByte(rest, '}')
	if end < 0 {
		return k, false
	}
	scope, ok := parseScope(rest[:end])
	if !ok {
		return k, false
	}
	rest, ok = strings.CutPrefix(rest[end+1:], ":")
	if !ok {
		return k, false
	}
	k.Exporter, k.Version = scope, ipfix.VersionIPFIX
	if r, v9 := strings.CutPrefix(rest, "v9:"); v9 {
		rest, k.Version = r, ipfix.VersionNetFlow9
	}
	domain, id, ok := strings.Cut(rest, ":")
	if !ok {
		return k, false
	}
	d, err := strconv.ParseUint(domain, 10, 32)
	if err != nil {
		return k, false
	}
	i, err := strconv.ParseUint(id, 10, 16)
	if err != nil {
		return k, false
	}
	k.Domain, k.ID = uint32(d), uint16(i)
	return k, true
}

func parseScope(s string) (netip.AddrPort, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, 0), true
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 {
		return netip.AddrPort{}, false
	}
	return ap, true
}

// Values are versioned: byte 0 is the format (1), byte 1 the flags, bytes
// 2..9 the time the template was learned (Unix nanoseconds, big endian,
// from the pod that learned it), then the template record's wire bytes as
// the exporter sent them (ipfix.Layout.Raw).
const (
	valueFormat    = 1
	valueHeaderLen = 10
	flagOptions    = 1 << 0
	flagV9         = 1 << 1
)

// Value is a decoded stored template.
type Value struct {
	Options bool
	V9      bool
	Learned int64 // Unix nanoseconds
	// Raw is the template record. DecodeValue returns a view into its
	// input, valid as long as the input is.
	Raw []byte
}

// Errors of DecodeValue and Value.Template.
var (
	ErrValueShort    = errors.New("redistier: stored template too short")
	ErrValueFormat   = errors.New("redistier: unknown stored template format")
	ErrValueMismatch = errors.New("redistier: stored template does not match its key")
)

// AppendValue appends t's stored form to dst.
func AppendValue(dst []byte, t *template.Template) []byte {
	var flags byte
	if t.Layout.Options {
		flags |= flagOptions
	}
	if t.Layout.V9 {
		flags |= flagV9
	}
	dst = append(dst, valueFormat, flags)
	dst = binary.BigEndian.AppendUint64(dst, uint64(t.Learned))
	return append(dst, t.Layout.Raw...)
}

// DecodeValue decodes a stored template. Raw is a view into b.
func DecodeValue(b []byte) (Value, error) {
	if len(b) < valueHeaderLen {
		return Value{}, ErrValueShort
	}
	if b[0] != valueFormat {
		return Value{}, ErrValueFormat
	}
	return Value{
		Options: b[1]&flagOptions != 0,
		V9:      b[1]&flagV9 != 0,
		Learned: int64(binary.BigEndian.Uint64(b[2:10])),
		Raw:     b[valueHeaderLen:],
	}, nil
}

// sameDefinition reports whether t and v define the same template (the
// learned time aside).
func sameDefinition(t *template.Template, v *Value) bool {
	l := t.Layout
	return l.Options == v.Options && l.V9 == v.V9 && string(l.Raw) == string(v.Raw)
}

// Template compiles v into a template for k that expires at expires (Unix
// nanoseconds). It allocates; it runs once per fetched template.
func (v *Value) Template(k template.Key, expires int64) (*template.Template, error) {
	if v.V9 != (k.Version == ipfix.VersionNetFlow9) {
		return nil, ErrValueMismatch
	}
	var tr ipfix.TemplateRecord
	if err := ipfix.ParseTemplateRecord(v.Raw, v.Options, v.V9, &tr); err != nil {
		return nil, err
	}
	if tr.ID != k.ID || len(tr.Raw) != len(v.Raw) || tr.Withdrawal() {
		return nil, ErrValueMismatch
	}
	lay, err := ipfix.Compile(&tr)
	if err != nil {
		return nil, err
	}
	return template.New(k, lay, v.Learned, expires), nil
}
