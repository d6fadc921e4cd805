package jsonl

import (
	"encoding/binary"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// A plan is a layout prepared for encoding: each field's `,"key":` written
// out, and the common fixed-width types (unsigned integers, IPv4
// addresses, times in seconds and milliseconds) given a formatter of their
// own. Every other field, and a field whose width is not the template's,
// goes through AppendValue, so a plan writes what appendFields writes.
type plan struct {
	layout *ipfix.Layout
	fields []planField // one per layout field
}

type planField struct {
	key string // `,"name":`
	op  fieldOp
	ie  *ipfix.InfoElement
}

type fieldOp uint8

const (
	opValue fieldOp = iota // AppendValue
	opSkip                 // paddingOctets
	opU8
	opU16
	opU32
	opU64
	opIPv4
	opSeconds
	opMillis
)

func newPlan(l *ipfix.Layout) *plan {
	p := &plan{layout: l, fields: make([]planField, len(l.Fields))}
	for i := range l.Fields {
		f := &l.Fields[i]
		pf := &p.fields[i]
		pf.ie = f.IE
		pf.key = `,"` + f.Key + `":`
		if f.ID == paddingOctetsID && f.PEN == 0 {
			pf.op = opSkip
			continue
		}
		ie := f.IE
		switch ie.Type {
		case ipfix.TypeUnsigned8, ipfix.TypeUnsigned16, ipfix.TypeUnsigned32, ipfix.TypeUnsigned64:
			if ie.PEN == 0 && (ie.ID == 21 || ie.ID == 22) {
				break // NetFlow uptimes: times in v9 and v5
			}
			switch f.Length {
			case 1:
				pf.op = opU8
			case 2:
				pf.op = opU16
			case 4:
				pf.op = opU32
			case 8:
				pf.op = opU64
			}
		case ipfix.TypeIPv4Address:
			if f.Length == 4 {
				pf.op = opIPv4
			}
		case ipfix.TypeDateTimeSeconds:
			if f.Length == 4 {
				pf.op = opSeconds
			}
		case ipfix.TypeDateTimeMilliseconds:
			if f.Length == 8 {
				pf.op = opMillis
			}
		}
	}
	return p
}

// appendFields appends `,"key":value` for every field of r, whose layout
// is p's.
func (p *plan) appendFields(dst []byte, m *Meta, r *ipfix.Record) []byte {
	for i := range p.fields {
		f := &p.fields[i]
		if f.op == opSkip {
			continue
		}
		dst = append(dst, f.key...)
		b := r.Bytes(i)
		switch f.op {
		case opU8:
			if len(b) == 1 {
				dst = appendUint(dst, uint64(b[0]))
				continue
			}
		case opU16:
			if len(b) == 2 {
				dst = appendUint(dst, uint64(binary.BigEndian.Uint16(b)))
				continue
			}
		case opU32:
			if len(b) == 4 {
				dst = appendUint(dst, uint64(binary.BigEndian.Uint32(b)))
				continue
			}
		case opU64:
			if len(b) == 8 {
				dst = appendUint(dst, binary.BigEndian.Uint64(b))
				continue
			}
		case opIPv4:
			if len(b) == 4 {
				dst = appendQuotedIPv4(dst, [4]byte(b))
				continue
			}
		case opSeconds:
			if len(b) == 4 {
				dst = append(dst, '"')
				dst = m.fieldCache.appendSecond(dst, int64(binary.BigEndian.Uint32(b)))
				dst = append(dst, 'Z', '"')
				continue
			}
		case opMillis:
			if len(b) == 8 {
				dst = m.fieldCache.appendMillis(dst, int64(binary.BigEndian.Uint64(b)))
				continue
			}
		}
		dst = AppendValue(dst, m, f.ie, b, 0)
	}
	return dst
}

// planCache holds the plans of the layouts a Meta met. A layout gets one
// the second time in a row it is seen, so a Meta made for one record
// never builds (allocates) one; at most maxPlans are kept (layouts change
// only when templates do).
type planCache struct {
	last *plan
	seen *ipfix.Layout // the last layout without a plan
	m    map[*ipfix.Layout]*plan
}

const maxPlans = 64

func (c *planCache) get(l *ipfix.Layout) *plan {
	if p := c.last; p != nil && p.layout == l {
		return p
	}
	return c.lookup(l)
}

func (c *planCache) lookup(l *ipfix.Layout) *plan {
	if p := c.m[l]; p != nil {
		c.last = p
		return p
	}
	if c.seen != l {
		c.seen = l
		return nil
	}
	if c.m == nil {
		c.m = make(map[*ipfix.Layout]*plan, maxPlans)
	} else if len(c.m) >= maxPlans {
		clear(c.m)
	}
	p := newPlan(l)
	c.m[l] = p
	c.last, c.seen = p, nil
	return p
}
