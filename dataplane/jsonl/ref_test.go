package jsonl

// The encoder as it was before issue 19 (commit 35ec279), kept as the slow,
// obviously right reference the fast one is checked against byte for byte.

import (
	"encoding/hex"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// refMeta is Meta with the reference's own formatting caches.
type refMeta struct {
	*Meta
	exportCache, fieldCache refTimeCache
}

// refTimeCache remembers the formatting of the two UTC seconds used last (a
// flow's start and end often fall in neighbouring seconds).
type refTimeCache struct {
	slot [2]struct {
		sec    int64
		ok     bool
		prefix [len("2006-01-02T15:04:05")]byte
	}
	next int
}

// appendUTC appends t (UTC) like time.RFC3339Nano does: seconds, then the
// fraction without trailing zeros, then "Z".
func (c *refTimeCache) appendUTC(dst []byte, t time.Time) []byte {
	sec := t.Unix()
	if y := t.Year(); y < 0 || y > 9999 {
		return t.AppendFormat(dst, time.RFC3339Nano)
	}
	i := 0
	switch {
	case c.slot[0].ok && c.slot[0].sec == sec:
	case c.slot[1].ok && c.slot[1].sec == sec:
		i = 1
	default:
		i = c.next
		c.next ^= 1
		s := &c.slot[i]
		t.AppendFormat(s.prefix[:0], "2006-01-02T15:04:05")
		s.sec, s.ok = sec, true
	}
	dst = append(dst, c.slot[i].prefix[:]...)
	if ns := t.Nanosecond(); ns != 0 {
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
	return append(dst, 'Z')
}

func refAppendRecord(dst []byte, m *refMeta, r *ipfix.Record) []byte {
	dst = append(dst, `{"exporter":"`...)
	if m.Exporter.Port() == 0 {
		dst = m.Exporter.Addr().AppendTo(dst)
	} else {
		dst = m.Exporter.AppendTo(dst)
	}
	dst = append(dst, `","version":`...)
	dst = strconv.AppendUint(dst, uint64(m.Msg.Version), 10)
	dst = append(dst, `,"observation_domain":`...)
	dst = strconv.AppendUint(dst, uint64(m.Msg.DomainID), 10)
	dst = append(dst, `,"template_id":`...)
	dst = strconv.AppendUint(dst, uint64(r.Layout.ID), 10)
	dst = append(dst, `,"export_time":"`...)
	dst = m.exportCache.appendUTC(dst, time.Unix(int64(m.Msg.ExportTime), 0).UTC())
	dst = append(dst, '"')
	if m.Received != 0 {
		dst = append(dst, `,"time_received_ns":`...)
		dst = strconv.AppendInt(dst, m.Received, 10)
	}
	if r.Layout.Options {
		dst = append(dst, `,"options":true`...)
	}
	dst = refAppendFields(dst, m, r, 0)
	return append(dst, "}\n"...)
}

// refAppendFields appends `,"key":value` for every field of r.
func refAppendFields(dst []byte, m *refMeta, r *ipfix.Record, depth int) []byte {
	fields := r.Layout.Fields
	for i := range fields {
		f := &fields[i]
		if f.ID == paddingOctetsID && f.PEN == 0 {
			continue
		}
		dst = append(dst, ',', '"')
		dst = append(dst, f.Key...)
		dst = append(dst, '"', ':')
		dst = refAppendValue(dst, m, f.IE, r.Bytes(i), depth)
	}
	return dst
}

// refAppendValue appends one field value in JSON as refAppendRecord does.
// depth counts enclosing lists; beyond ipfix.MaxListDepth lists are shown as
// octets.
func refAppendValue(dst []byte, m *refMeta, ie *ipfix.InfoElement, b []byte, depth int) []byte {
	switch ie.Type {
	case ipfix.TypeUnsigned8, ipfix.TypeUnsigned16, ipfix.TypeUnsigned32, ipfix.TypeUnsigned64:
		if len(b) == 0 || len(b) > 8 {
			break
		}
		if m != nil && m.Msg != nil && m.Msg.Version != ipfix.VersionIPFIX && ie.PEN == 0 && (ie.ID == 21 || ie.ID == 22) && len(b) == 4 {
			return refAppendTime(dst, m, m.Msg.UptimeTime(uint32(ipfix.Uint(b))))
		}
		return strconv.AppendUint(dst, ipfix.Uint(b), 10)
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
		return refAppendString(dst, b)
	case ipfix.TypeDateTimeSeconds:
		if len(b) == 0 || len(b) > 4 {
			break
		}
		return refAppendTime(dst, m, ipfix.DateTimeSeconds(b))
	case ipfix.TypeDateTimeMilliseconds:
		if len(b) == 0 || len(b) > 8 {
			break
		}
		return refAppendTime(dst, m, ipfix.DateTimeMilliseconds(b))
	case ipfix.TypeDateTimeMicroseconds:
		if len(b) != 8 {
			break
		}
		return refAppendTime(dst, m, ipfix.DateTimeMicroseconds(b))
	case ipfix.TypeDateTimeNanoseconds:
		if len(b) != 8 {
			break
		}
		return refAppendTime(dst, m, ipfix.DateTimeNanoseconds(b))
	case ipfix.TypeBasicList:
		if depth < ipfix.MaxListDepth {
			if out, ok := refAppendBasicList(dst, m, b, depth+1); ok {
				return out
			}
		}
	case ipfix.TypeSubTemplateList:
		if depth < ipfix.MaxListDepth {
			if out, ok := refAppendSubTemplateList(dst, m, b, depth+1); ok {
				return out
			}
		}
	case ipfix.TypeSubTemplateMultiList:
		if depth < ipfix.MaxListDepth {
			if out, ok := refAppendSubTemplateMultiList(dst, m, b, depth+1); ok {
				return out
			}
		}
	case ipfix.TypeOctetArray:
		if ie.IsMPLSLabelStackSection() {
			if label, exp, bottom, ok := ipfix.MPLSLabel(b); ok {
				return refAppendMPLSLabel(dst, label, exp, bottom)
			}
		}
	}
	return refAppendHex(dst, b)
}

// refAppendMPLSLabel writes a label stack entry as tshark shows it: label,
// exp bits, bottom of stack.
func refAppendMPLSLabel(dst []byte, label uint32, exp uint8, bottom bool) []byte {
	dst = append(dst, `{"label":`...)
	dst = strconv.AppendUint(dst, uint64(label), 10)
	dst = append(dst, `,"exp":`...)
	dst = strconv.AppendUint(dst, uint64(exp), 10)
	dst = append(dst, `,"bottom_of_stack":`...)
	dst = strconv.AppendBool(dst, bottom)
	return append(dst, '}')
}

func refAppendBasicList(dst []byte, m *refMeta, b []byte, depth int) ([]byte, bool) {
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
		dst = refAppendValue(dst, m, ie, v, depth)
		n++
	}
	if it.Err() != nil {
		return dst[:start], false
	}
	return append(dst, ']'), true
}

func refAppendSubTemplateList(dst []byte, m *refMeta, b []byte, depth int) ([]byte, bool) {
	l, err := ipfix.DecodeSubTemplateList(b)
	if err != nil || m == nil || m.Resolve == nil {
		return dst, false
	}
	start := len(dst)
	dst = append(dst, '[')
	n := 0
	dst, ok := refAppendRecords(dst, m, l.TemplateID, l.Data, depth, &n)
	if !ok {
		return dst[:start], false
	}
	return append(dst, ']'), true
}

func refAppendSubTemplateMultiList(dst []byte, m *refMeta, b []byte, depth int) ([]byte, bool) {
	l, err := ipfix.DecodeSubTemplateMultiList(b)
	if err != nil || m == nil || m.Resolve == nil {
		return dst, false
	}
	start := len(dst)
	dst = append(dst, '[')
	it := l.Groups()
	n := 0
	for id, data, ok := it.Next(); ok; id, data, ok = it.Next() {
		dst, ok = refAppendRecords(dst, m, id, data, depth, &n)
		if !ok {
			return dst[:start], false
		}
	}
	if it.Err() != nil {
		return dst[:start], false
	}
	return append(dst, ']'), true
}

// refAppendRecords appends the records in data as objects; *n counts the
// records already in the enclosing array, for the separators.
func refAppendRecords(dst []byte, m *refMeta, id uint16, data []byte, depth int, n *int) ([]byte, bool) {
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
		dst = refAppendFields(dst, m, &r, depth)
		dst = append(dst, '}')
		*n++
	}
	return dst, it.Err() == nil
}

func refAppendTime(dst []byte, m *refMeta, t time.Time) []byte {
	dst = append(dst, '"')
	if m != nil && t.Location() == time.UTC {
		dst = m.fieldCache.appendUTC(dst, t)
	} else {
		dst = t.AppendFormat(dst, time.RFC3339Nano)
	}
	return append(dst, '"')
}

func refAppendHex(dst []byte, b []byte) []byte {
	dst = append(dst, '"')
	dst = hex.AppendEncode(dst, b)
	return append(dst, '"')
}

// refAppendString appends b as a JSON string, escaping what JSON requires and
// replacing invalid UTF-8 with U+FFFD. Trailing NUL padding, common in
// fixed-length string fields, is dropped.
func refAppendString(dst []byte, b []byte) []byte {
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

func refAppendUint(v uint64) []byte { return strconv.AppendUint(nil, v, 10) }
