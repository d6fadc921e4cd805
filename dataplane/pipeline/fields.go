package pipeline

import (
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// element resolves an element name: an IANA or reverse name
// (octetDeltaCount, reverseOctetDeltaCount) or the unknown-element forms
// _ipfix_<id> and e<pen>id<id>, which are typed octetArray.
func element(name string) (ipfix.InfoElement, error) {
	if ie, ok := ipfix.ElementByName(name); ok {
		return ie, nil
	}
	return ipfix.InfoElement{}, fmt.Errorf("unknown element %q", name)
}

// fieldIndex finds a named field in l: by the layout's field key first
// (octetDeltaCount_2 names a repeated element), then by element. -1 if
// absent.
func fieldIndex(l *ipfix.Layout, name string, ie *ipfix.InfoElement) int {
	for i := range l.Fields {
		if l.Fields[i].Key == name {
			return i
		}
	}
	if ie != nil {
		return l.Index(ie.PEN, ie.ID)
	}
	return -1
}

// namedField is a configured field name resolved against the registry once.
type namedField struct {
	name string
	ie   *ipfix.InfoElement // nil for a field key such as octetDeltaCount_2
}

func resolveNames(line int, what string, names []string) ([]namedField, error) {
	out := make([]namedField, 0, len(names))
	for _, n := range names {
		nf := namedField{name: n}
		if ie, err := element(n); err == nil {
			nf.ie = &ie
		} else if base, _, ok := cutRepeat(n); ok {
			if _, err := element(base); err != nil {
				return nil, errAt(line, "%s: %v", what, err)
			}
		} else {
			return nil, errAt(line, "%s: %v", what, err)
		}
		out = append(out, nf)
	}
	return out, nil
}

// cutRepeat splits a field key for a repeated element: "x_2" -> "x", 2.
func cutRepeat(n string) (string, int, bool) {
	i := strings.LastIndexByte(n, '_')
	if i <= 0 {
		return "", 0, false
	}
	k, err := strconv.Atoi(n[i+1:])
	if err != nil || k < 2 {
		return "", 0, false
	}
	return n[:i], k, true
}

func (f *namedField) index(l *ipfix.Layout) int { return fieldIndex(l, f.name, f.ie) }

// canonicalLength is the encoded length for an element's type; VarLen for
// strings, octet arrays and lists.
func canonicalLength(t ipfix.DataType) uint16 {
	switch t {
	case ipfix.TypeUnsigned8, ipfix.TypeSigned8, ipfix.TypeBoolean:
		return 1
	case ipfix.TypeUnsigned16, ipfix.TypeSigned16:
		return 2
	case ipfix.TypeUnsigned32, ipfix.TypeSigned32, ipfix.TypeFloat32, ipfix.TypeDateTimeSeconds, ipfix.TypeIPv4Address:
		return 4
	case ipfix.TypeUnsigned64, ipfix.TypeSigned64, ipfix.TypeFloat64, ipfix.TypeDateTimeMilliseconds,
		ipfix.TypeDateTimeMicroseconds, ipfix.TypeDateTimeNanoseconds:
		return 8
	case ipfix.TypeMACAddress:
		return 6
	case ipfix.TypeIPv6Address:
		return 16
	}
	return ipfix.VarLen
}

// encodeValue encodes text as a value of ie. Fixed-width types use their
// canonical length; strings and octet arrays are variable-length (fixed
// reports whether the returned bytes carry a length prefix: it is false
// for fixed-width types).
func encodeValue(ie *ipfix.InfoElement, s string) (b []byte, length uint16, err error) {
	length = canonicalLength(ie.Type)
	w := int(length)
	switch ie.Type {
	case ipfix.TypeUnsigned8, ipfix.TypeUnsigned16, ipfix.TypeUnsigned32, ipfix.TypeUnsigned64:
		var u uint64
		if s == "" {
			u = 0
		} else if u, err = strconv.ParseUint(s, 0, w*8); err != nil {
			return nil, 0, fmt.Errorf("%s: %q is not an unsigned%d", ie.Name, s, w*8)
		}
		return ipfix.AppendUint(nil, u, w), length, nil
	case ipfix.TypeSigned8, ipfix.TypeSigned16, ipfix.TypeSigned32, ipfix.TypeSigned64:
		var i int64
		if s != "" {
			if i, err = strconv.ParseInt(s, 0, w*8); err != nil {
				return nil, 0, fmt.Errorf("%s: %q is not a signed%d", ie.Name, s, w*8)
			}
		}
		return ipfix.AppendUint(nil, uint64(i), w), length, nil
	case ipfix.TypeFloat32, ipfix.TypeFloat64:
		var f float64
		if s != "" {
			if f, err = strconv.ParseFloat(s, w*8); err != nil {
				return nil, 0, fmt.Errorf("%s: %q is not a number", ie.Name, s)
			}
		}
		return ipfix.AppendFloat(nil, f, w), length, nil
	case ipfix.TypeBoolean:
		switch s {
		case "true":
			return []byte{1}, 1, nil
		case "false", "":
			return []byte{2}, 1, nil
		}
		return nil, 0, fmt.Errorf("%s: %q is not true or false", ie.Name, s)
	case ipfix.TypeMACAddress:
		if s == "" {
			return make([]byte, 6), 6, nil
		}
		m, err := net.ParseMAC(s)
		if err != nil || len(m) != 6 {
			return nil, 0, fmt.Errorf("%s: %q is not a MAC address", ie.Name, s)
		}
		return []byte(m), 6, nil
	case ipfix.TypeIPv4Address, ipfix.TypeIPv6Address:
		if s == "" {
			return make([]byte, w), length, nil
		}
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" || (a.Is4() != (ie.Type == ipfix.TypeIPv4Address)) {
			return nil, 0, fmt.Errorf("%s: %q is not an %s", ie.Name, s, ie.Type)
		}
		return ipfix.AppendAddr(nil, a), length, nil
	case ipfix.TypeDateTimeSeconds, ipfix.TypeDateTimeMilliseconds, ipfix.TypeDateTimeMicroseconds, ipfix.TypeDateTimeNanoseconds:
		var t time.Time
		if s != "" {
			if t, err = time.Parse(time.RFC3339Nano, s); err != nil {
				return nil, 0, fmt.Errorf("%s: %q is not an RFC 3339 time", ie.Name, s)
			}
		} else {
			t = time.Unix(0, 0)
		}
		switch ie.Type {
		case ipfix.TypeDateTimeSeconds:
			return ipfix.AppendDateTimeSeconds(nil, t), length, nil
		case ipfix.TypeDateTimeMilliseconds:
			return ipfix.AppendDateTimeMilliseconds(nil, t), length, nil
		}
		return ipfix.AppendNTP(nil, t), length, nil
	case ipfix.TypeBasicList, ipfix.TypeSubTemplateList, ipfix.TypeSubTemplateMultiList:
		return nil, 0, fmt.Errorf("%s: list elements cannot be set", ie.Name)
	}
	if len(s) > 65535-3 {
		return nil, 0, fmt.Errorf("%s: value longer than 65532 octets", ie.Name)
	}
	return []byte(s), ipfix.VarLen, nil
}

// buildLayout compiles an IPFIX data template from field specifiers.
func buildLayout(id uint16, specs []ipfix.FieldSpec) (*ipfix.Layout, error) {
	if len(specs) == 0 {
		return nil, errNoFields
	}
	if len(specs) > math.MaxUint16 {
		return nil, fmt.Errorf("too many fields")
	}
	raw := ipfix.AppendTemplateRecord(nil, id, specs)
	var tr ipfix.TemplateRecord
	if err := ipfix.ParseTemplateRecord(raw, false, false, &tr); err != nil {
		return nil, err
	}
	return ipfix.Compile(&tr)
}

// outputID is the template ID a derived layout is exported under: the
// input's, except for NetFlow v5 and v9 IDs below 256 that IPFIX reserves.
func outputID(l *ipfix.Layout) uint16 {
	if l.ID < ipfix.MinDataSetID {
		return 0xFF05
	}
	return l.ID
}

func putUint(b []byte, v uint64) {
	switch len(b) {
	case 1:
		b[0] = byte(v)
	case 2:
		binary.BigEndian.PutUint16(b, uint16(v))
	case 4:
		binary.BigEndian.PutUint32(b, uint32(v))
	case 8:
		binary.BigEndian.PutUint64(b, v)
	default:
		for i := len(b) - 1; i >= 0; i-- {
			b[i] = byte(v)
			v >>= 8
		}
	}
}
