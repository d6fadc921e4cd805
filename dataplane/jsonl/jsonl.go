// Package jsonl encodes decoded flow records as JSON lines: one object per
// data record with the exporter, domain, template and export time, then every
// field by its registered name (IANA, vendor or NetFlow v9) with a typed
// value. It appends to the caller's
// buffer and uses no reflection or fmt, so it can run on the hot path.
package jsonl

import (
	"encoding/hex"
	"math"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// Resolver finds the layout of a template in the same exporter scope and
// domain as the record, for RFC 6313 subTemplateLists. It returns nil if the
// template is unknown.
type Resolver interface {
	Resolve(templateID uint16) *ipfix.Layout
}

// Meta describes where a record came from.
type Meta struct {
	Exporter netip.AddrPort
	Msg      *ipfix.Message
	// Resolve is used for sub-template lists; nil shows them as octets.
	Resolve Resolver
	// Received is when the collector read the message, in Unix
	// nanoseconds; 0 (offline decoding) leaves "time_received_ns" out.
	Received int64

	// Caches for the records that follow, so reuse a Meta across records
	// to benefit (its zero value is ready; one Meta per goroutine).
	// Records of one set share everything before their fields (head);
	// RFC 3339 formatting was a third of the encoding time, and records of
	// one message share an export time and mostly a second; a template
	// seen twice gets a plan (keys written out, a formatter per field).
	exportCache, fieldCache timeCache
	head                    headCache
	plans                   planCache
}

// headKey is what the part of a record before its fields depends on.
type headKey struct {
	exporter netip.AddrPort
	received int64
	export   uint32
	domain   uint32
	version  uint16
	id       uint16
	options  bool
}

// headCache keeps the last record's head. A head longer than buf (an
// exporter address with a long zone) is not kept.
type headCache struct {
	key headKey
	ok  bool
	n   uint8
	buf [255]byte
}

// timeCache remembers the formatting of the two UTC seconds used last (a
// flow's start and end often fall in neighbouring seconds).
type timeCache struct {
	slot [2]struct {
		sec    int64
		ok     bool
		prefix [len("2006-01-02T15:04:05")]byte
	}
	next int
}

// Seconds of the first and after the last instant RFC 3339 can write
// (years 0000-9999); others go through time.Time.AppendFormat.
const (
	minRFC3339 = -62167219200
	endRFC3339 = 253402300800
)

// appendUTC appends t (UTC) like time.RFC3339Nano does: seconds, then the
// fraction without trailing zeros, then "Z".
func (c *timeCache) appendUTC(dst []byte, t time.Time) []byte {
	sec := t.Unix()
	if sec < minRFC3339 || sec >= endRFC3339 {
		return t.AppendFormat(dst, time.RFC3339Nano)
	}
	dst = c.appendSecond(dst, sec)
	if ns := t.Nanosecond(); ns != 0 {
		if ns%1e6 == 0 {
			dst = appendMillisFraction(dst, ns/1e6)
		} else {
			var frac [10]byte
			frac[0] = '.'
			for i := 9; i >= 1; i-- {
				frac[i] = byte('0' + ns%10)
				ns /= 10
			}
			n := 10
			for frac[n-1] == '0' {
				n--
			}
			dst = append(dst, frac[:n]...)
		}
	}
	return append(dst, 'Z')
}

// appendSecond appends "2006-01-02T15:04:05" for sec, which is within
// [minRFC3339, endRFC3339).
func (c *timeCache) appendSecond(dst []byte, sec int64) []byte {
	i := 0
	switch {
	case c.slot[0].ok && c.slot[0].sec == sec:
	case c.slot[1].ok && c.slot[1].sec == sec:
		i = 1
	default:
		i = c.next
		c.next ^= 1
		s := &c.slot[i]
		time.Unix(sec, 0).UTC().AppendFormat(s.prefix[:0], "2006-01-02T15:04:05")
		s.sec, s.ok = sec, true
	}
	return append(dst, c.slot[i].prefix[:]...)
}

// appendMillis appends Unix milliseconds ms as a quoted RFC 3339 time, as
// appendTime does with time.UnixMilli(ms).UTC().
func (c *timeCache) appendMillis(dst []byte, ms int64) []byte {
	sec, frac := ms/1000, ms%1000
	if frac < 0 {
		sec, frac = sec-1, frac+1000
	}
	if sec < minRFC3339 || sec >= endRFC3339 {
		dst = append(dst, '"')
		dst = time.UnixMilli(ms).UTC().AppendFormat(dst, time.RFC3339Nano)
		return append(dst, '"')
	}
	dst = append(dst, '"')
	dst = c.appendSecond(dst, sec)
	if frac != 0 {
		dst = appendMillisFraction(dst, int(frac))
	}
	return append(dst, 'Z', '"')
}

// appendMillisFraction appends ".ddd" for 1..999 ms without trailing
// zeros.
func appendMillisFraction(dst []byte, ms int) []byte {
	d := millisFrac[ms]
	return append(dst, d[1:1+d[0]]...)
}

// millisFrac[ms] is the length, then ".ddd" without trailing zeros.
var millisFrac = func() (t [1000][5]byte) {
	for ms := 1; ms < 1000; ms++ {
		e := &t[ms]
		e[1], e[2], e[3], e[4] = '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10)
		n := byte(4)
		for e[n] == '0' {
			n--
		}
		e[0] = n
	}
	return t
}()

// paddingOctets carries no information and is left out.
const paddingOctetsID = 210

// AppendRecord appends r as one JSON object and a newline.
//
// Keys: "exporter" (address:port, or address alone when the port is 0),
// "version", "observation_domain", "template_id", "export_time" (RFC 3339),
// "time_received_ns" (when the collector read the message, Unix nanoseconds,
// the name goflow2 uses; left out when unknown), "options" (true for options
// records), then each field under its unique
// key (ipfix.Field.Key). Values, typed by the element registry (IANA,
// vendor, NetFlow v9): numbers as numbers, booleans as booleans,
// addresses, MACs and times (RFC 3339) as strings, strings escaped, MPLS
// label stack entries as {"label":N,"exp":N,"bottom_of_stack":bool}, octet
// arrays and values whose width does not fit their type as hex strings.
// NetFlow v9/v5 uptime-relative times (flowStartSysUpTime,
// flowEndSysUpTime) are made absolute from the header.
//
// m keeps caches for the next records (see Meta): use one Meta per
// goroutine.
func AppendRecord(dst []byte, m *Meta, r *ipfix.Record) []byte {
	dst = m.appendHead(dst, r.Layout)
	if p := m.plans.get(r.Layout); p != nil {
		dst = p.appendFields(dst, m, r)
	} else {
		dst = appendFields(dst, m, r, 0)
	}
	return append(dst, "}\n"...)
}

// appendHead appends the record's object up to its first field, from the
// cache when the record is of the same set as the last one.
func (m *Meta) appendHead(dst []byte, l *ipfix.Layout) []byte {
	k := headKey{exporter: m.Exporter, received: m.Received, export: m.Msg.ExportTime, domain: m.Msg.DomainID,
		version: m.Msg.Version, id: l.ID, options: l.Options}
	h := &m.head
	if h.ok && h.key == k {
		return append(dst, h.buf[:h.n]...)
	}
	start := len(dst)
	dst = append(dst, `{"exporter":"`...)
	if m.Exporter.Port() == 0 {
		dst = m.Exporter.Addr().AppendTo(dst)
	} else {
		dst = m.Exporter.AppendTo(dst)
	}
	dst = append(dst, `","version":`...)
	dst = appendUint(dst, uint64(k.version))
	dst = append(dst, `,"observation_domain":`...)
	dst = appendUint(dst, uint64(k.domain))
	dst = append(dst, `,"template_id":`...)
	dst = appendUint(dst, uint64(k.id))
	dst = append(dst, `,"export_time":"`...)
	dst = m.exportCache.appendUTC(dst, time.Unix(int64(k.export), 0).UTC())
	dst = append(dst, '"')
	if m.Received != 0 {
		dst = append(dst, `,"time_received_ns":`...)
		dst = strconv.AppendInt(dst, m.Received, 10)
	}
	if k.options {
		dst = append(dst, `,"options":true`...)
	}
	if n := len(dst) - start; n <= len(h.buf) {
		h.key, h.ok, h.n = k, true, uint8(n)
		copy(h.buf[:], dst[start:])
	} else {
		h.ok = false
	}
	return dst
}

// appendFields appends `,"key":value` for every field of r.
func appendFields(dst []byte, m *Meta, r *ipfix.Record, depth int) []byte {
	fields := r.Layout.Fields
	for i := range fields {
		f := &fields[i]
		if f.ID == paddingOctetsID && f.PEN == 0 {
			continue
		}
		dst = append(dst, ',', '"')
		dst = append(dst, f.Key...)
		dst = append(dst, '"', ':')
		dst = AppendValue(dst, m, f.IE, r.Bytes(i), depth)
	}
	return dst
}

// AppendValue appends one field value in JSON as AppendRecord does.
// depth counts enclosing lists; beyond ipfix.MaxListDepth lists are shown as
// octets.
func AppendValue(dst []byte, m *Meta, ie *ipfix.InfoElement, b []byte, depth int) []byte {
	switch ie.Type {
	case ipfix.TypeUnsigned8, ipfix.TypeUnsigned16, ipfix.TypeUnsigned32, ipfix.TypeUnsigned64:
		if len(b) == 0 || len(b) > 8 {
			break
		}
		if m != nil && m.Msg != nil && m.Msg.Version != ipfix.VersionIPFIX && ie.PEN == 0 && (ie.ID == 21 || ie.ID == 22) && len(b) == 4 {
			return appendTime(dst, m, m.Msg.UptimeTime(uint32(ipfix.Uint(b))))
		}
		return appendUint(dst, ipfix.Uint(b))
	case ipfix.TypeSigned8, ipfix.TypeSigned16, ipfix.TypeSigned32, ipfix.TypeSigned64:
		if len(b) == 0 || len(b) > 8 {
			break
		}
		return strconv.AppendInt(dst, ipfix.Int(b), 10)
	case ipfix.TypeFloat32, ipfix.TypeFloat64:
		if len(b) != 4 && len(b) != 8 {
			break
		}
		f := ipfix.Float(b)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			dst = append(dst, '"')
			dst = strconv.AppendFloat(dst, f, 'g', -1, 64)
			return append(dst, '"')
		}
		bits := 64
		if len(b) == 4 {
			bits = 32
		}
		return strconv.AppendFloat(dst, f, 'g', -1, bits)
	case ipfix.TypeBoolean:
		if len(b) != 1 || (b[0] != 1 && b[0] != 2) {
			break
		}
		return strconv.AppendBool(dst, b[0] == 1)
	case ipfix.TypeIPv4Address, ipfix.TypeIPv6Address:
		if len(b) != 4 && len(b) != 16 {
			break
		}
		if len(b) == 4 {
			return appendQuotedIPv4(dst, [4]byte(b))
		}
		dst = append(dst, '"')
		dst = ipfix.Addr(b).AppendTo(dst)
		return append(dst, '"')
	case ipfix.TypeMACAddress:
		if len(b) != 6 {
			break
		}
		dst = append(dst, '"')
		for i, c := range b {
			if i > 0 {
				dst = append(dst, ':')
			}
			dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
		}
		return append(dst, '"')
	case ipfix.TypeString:
		return AppendString(dst, b)
	case ipfix.TypeDateTimeSeconds:
		if len(b) == 0 || len(b) > 4 {
			break
		}
		return appendTime(dst, m, ipfix.DateTimeSeconds(b))
	case ipfix.TypeDateTimeMilliseconds:
		if len(b) == 0 || len(b) > 8 {
			break
		}
		if m != nil {
			return m.fieldCache.appendMillis(dst, int64(ipfix.Uint(b)))
		}
		return appendTime(dst, m, ipfix.DateTimeMilliseconds(b))
	case ipfix.TypeDateTimeMicroseconds:
		if len(b) != 8 {
			break
		}
		return appendTime(dst, m, ipfix.DateTimeMicroseconds(b))
	case ipfix.TypeDateTimeNanoseconds:
		if len(b) != 8 {
			break
		}
		return appendTime(dst, m, ipfix.DateTimeNanoseconds(b))
	case ipfix.TypeBasicList:
		if depth < ipfix.MaxListDepth {
			if out, ok := appendBasicList(dst, m, b, depth+1); ok {
				return out
			}
		}
	case ipfix.TypeSubTemplateList:
		if depth < ipfix.MaxListDepth {
			if out, ok := appendSubTemplateList(dst, m, b, depth+1); ok {
				return out
			}
		}
	case ipfix.TypeSubTemplateMultiList:
		if depth < ipfix.MaxListDepth {
			if out, ok := appendSubTemplateMultiList(dst, m, b, depth+1); ok {
				return out
			}
		}
	case ipfix.TypeOctetArray:
		if ie.IsMPLSLabelStackSection() {
			if label, exp, bottom, ok := ipfix.MPLSLabel(b); ok {
				return appendMPLSLabel(dst, label, exp, bottom)
			}
		}
	}
	return appendHex(dst, b)
}

// appendMPLSLabel writes a label stack entry as tshark shows it: label,
// exp bits, bottom of stack.
func appendMPLSLabel(dst []byte, label uint32, exp uint8, bottom bool) []byte {
	dst = append(dst, `{"label":`...)
	dst = strconv.AppendUint(dst, uint64(label), 10)
	dst = append(dst, `,"exp":`...)
	dst = strconv.AppendUint(dst, uint64(exp), 10)
	dst = append(dst, `,"bottom_of_stack":`...)
	dst = strconv.AppendBool(dst, bottom)
	return append(dst, '}')
}

func appendBasicList(dst []byte, m *Meta, b []byte, depth int) ([]byte, bool) {
	l, err := ipfix.DecodeBasicList(b)
	if err != nil {
		return dst, false
	}
	ie := ipfix.Lookup(l.Element.PEN, l.Element.ID)
	if ie == nil {
		ie = &octets
	}
	start := len(dst)
	dst = append(dst, '[')
	it := l.Values()
	n := 0
	for v, ok := it.Next(); ok; v, ok = it.Next() {
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = AppendValue(dst, m, ie, v, depth)
		n++
	}
	if it.Err() != nil {
		return dst[:start], false
	}
	return append(dst, ']'), true
}

var octets = ipfix.InfoElement{Type: ipfix.TypeOctetArray}

func appendSubTemplateList(dst []byte, m *Meta, b []byte, depth int) ([]byte, bool) {
	l, err := ipfix.DecodeSubTemplateList(b)
	if err != nil || m == nil || m.Resolve == nil {
		return dst, false
	}
	start := len(dst)
	dst = append(dst, '[')
	n := 0
	dst, ok := appendRecords(dst, m, l.TemplateID, l.Data, depth, &n)
	if !ok {
		return dst[:start], false
	}
	return append(dst, ']'), true
}

func appendSubTemplateMultiList(dst []byte, m *Meta, b []byte, depth int) ([]byte, bool) {
	l, err := ipfix.DecodeSubTemplateMultiList(b)
	if err != nil || m == nil || m.Resolve == nil {
		return dst, false
	}
	start := len(dst)
	dst = append(dst, '[')
	it := l.Groups()
	n := 0
	for id, data, ok := it.Next(); ok; id, data, ok = it.Next() {
		dst, ok = appendRecords(dst, m, id, data, depth, &n)
		if !ok {
			return dst[:start], false
		}
	}
	if it.Err() != nil {
		return dst[:start], false
	}
	return append(dst, ']'), true
}

// appendRecords appends the records in data as objects; *n counts the
// records already in the enclosing array, for the separators.
func appendRecords(dst []byte, m *Meta, id uint16, data []byte, depth int, n *int) ([]byte, bool) {
	l := m.Resolve.Resolve(id)
	if l == nil {
		return dst, false
	}
	var r ipfix.Record
	it := ipfix.NewDataIter(l, data)
	for it.Next(&r) {
		if *n > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"template_id":`...)
		dst = strconv.AppendUint(dst, uint64(id), 10)
		dst = appendFields(dst, m, &r, depth)
		dst = append(dst, '}')
		*n++
	}
	return dst, it.Err() == nil
}

func appendTime(dst []byte, m *Meta, t time.Time) []byte {
	dst = append(dst, '"')
	if m != nil && t.Location() == time.UTC {
		dst = m.fieldCache.appendUTC(dst, t)
	} else {
		dst = t.AppendFormat(dst, time.RFC3339Nano)
	}
	return append(dst, '"')
}

const hexDigits = "0123456789abcdef"

func appendHex(dst []byte, b []byte) []byte {
	dst = append(dst, '"')
	dst = hex.AppendEncode(dst, b)
	return append(dst, '"')
}

// AppendString appends b as a JSON string, escaping what JSON requires and
// replacing invalid UTF-8 with U+FFFD. Trailing NUL padding, common in
// fixed-length string fields, is dropped.
func AppendString(dst []byte, b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	dst = append(dst, '"')
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c >= 0x20:
				dst = append(dst, c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, "\\ufffd"...)
		} else {
			dst = append(dst, b[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}
