package ipfix

import "encoding/binary"

// VarLen is the field length that marks a variable-length field (RFC 7011
// section 7).
const VarLen = 0xffff

// Template IDs with special meaning in template sets.
const (
	// WithdrawAllTemplates and WithdrawAllOptionsTemplates, sent with a
	// field count of zero, withdraw every (options) template of the domain.
	WithdrawAllTemplates        = 2
	WithdrawAllOptionsTemplates = 3
	// MinDataSetID is the lowest template ID usable by data sets.
	MinDataSetID = 256
)

// FieldSpec is one field specifier of a template: element ID (enterprise bit
// cleared), encoded length (VarLen for variable length), and enterprise number
// (0 for IANA elements).
type FieldSpec struct {
	ID     uint16
	Length uint16
	PEN    uint32
}

// TemplateRecord is one record of a template or options template set.
// Fields is caller-owned and reused across calls to TemplateIter.Next; Raw is
// a view of the record's wire bytes, valid while the message buffer is.
type TemplateRecord struct {
	ID uint16
	// Options is set for options templates; ScopeCount fields lead.
	Options    bool
	ScopeCount uint16
	Fields     []FieldSpec
	Raw        []byte
	// V9 marks a NetFlow v9 template (scope fields use v9 scope types).
	V9 bool
}

// Withdrawal reports whether the record withdraws template ID (a field count
// of zero). IDs WithdrawAllTemplates and WithdrawAllOptionsTemplates withdraw
// every template of their kind.
func (t *TemplateRecord) Withdrawal() bool { return len(t.Fields) == 0 }

// Templates returns an iterator over the records of a template or options
// template set.
func (s *Set) Templates() TemplateIter {
	return TemplateIter{b: s.Body, options: s.Kind == SetOptionsTemplate, v9: s.v9}
}

// TemplateIter walks template records. It never allocates beyond growing the
// caller's TemplateRecord.Fields, which is bounded by the set length.
type TemplateIter struct {
	b       []byte
	err     error
	options bool
	v9      bool
}

// Err returns the error that stopped the iteration, if any.
func (it *TemplateIter) Err() error { return it.err }

// Next decodes the next template record into t.
func (it *TemplateIter) Next(t *TemplateRecord) bool {
	if it.v9 && it.options {
		return it.nextV9Options(t)
	}
	b := it.b
	if len(b) < 4 || (binary.BigEndian.Uint16(b) == 0 && allZero(b)) {
		// The rest is padding.
		it.b = nil
		return false
	}
	id := binary.BigEndian.Uint16(b)
	count := int(binary.BigEndian.Uint16(b[2:]))
	t.ID, t.Options, t.V9, t.ScopeCount = id, it.options, it.v9, 0
	t.Fields = t.Fields[:0]
	off := 4
	if count == 0 {
		// Withdrawal: ID alone (RFC 7011 section 8.1).
		if id < MinDataSetID && id != WithdrawAllTemplates && id != WithdrawAllOptionsTemplates {
			return it.fail(ErrTemplateID)
		}
		t.Raw = b[:off]
		it.b = b[off:]
		return true
	}
	if id < MinDataSetID {
		return it.fail(ErrTemplateID)
	}
	if it.options {
		if len(b) < 6 {
			return it.fail(ErrTemplateShort)
		}
		t.ScopeCount = binary.BigEndian.Uint16(b[4:])
		if int(t.ScopeCount) > count {
			return it.fail(ErrScopeCount)
		}
		off = 6
	}
	// Each specifier needs at least 4 octets: reject counts the set
	// cannot hold before growing anything.
	if count*4 > len(b)-off {
		return it.fail(ErrTemplateShort)
	}
	for range count {
		if len(b)-off < 4 {
			return it.fail(ErrTemplateShort)
		}
		raw := binary.BigEndian.Uint16(b[off:])
		f := FieldSpec{ID: raw, Length: binary.BigEndian.Uint16(b[off+2:])}
		off += 4
		if !it.v9 && raw&0x8000 != 0 {
			if len(b)-off < 4 {
				return it.fail(ErrTemplateShort)
			}
			f.ID = raw & 0x7fff
			f.PEN = binary.BigEndian.Uint32(b[off:])
			off += 4
		}
		t.Fields = append(t.Fields, f)
	}
	t.Raw = b[:off]
	it.b = b[off:]
	return true
}

// nextV9Options decodes an RFC 3954 options template: ID, scope length and
// option length in octets, then the specifiers, with padding at the end of
// the set.
func (it *TemplateIter) nextV9Options(t *TemplateRecord) bool {
	b := it.b
	if len(b) < 6 || binary.BigEndian.Uint16(b) == 0 {
		it.b = nil
		return false
	}
	id := binary.BigEndian.Uint16(b)
	scopeLen := int(binary.BigEndian.Uint16(b[2:]))
	optLen := int(binary.BigEndian.Uint16(b[4:]))
	if id < MinDataSetID {
		return it.fail(ErrTemplateID)
	}
	if scopeLen%4 != 0 || optLen%4 != 0 || 6+scopeLen+optLen > len(b) {
		return it.fail(ErrTemplateShort)
	}
	t.ID, t.Options, t.V9 = id, true, true
	t.ScopeCount = uint16(scopeLen / 4)
	t.Fields = t.Fields[:0]
	off := 6
	end := 6 + scopeLen + optLen
	for off < end {
		t.Fields = append(t.Fields, FieldSpec{
			ID:     binary.BigEndian.Uint16(b[off:]),
			Length: binary.BigEndian.Uint16(b[off+2:]),
		})
		off += 4
	}
	if len(t.Fields) == 0 {
		return it.fail(ErrTemplateShort)
	}
	t.Raw = b[:end]
	it.b = b[end:]
	return true
}

func (it *TemplateIter) fail(err error) bool {
	it.err = err
	it.b = nil
	return false
}

// ParseTemplateRecord decodes one template record from raw (as kept in
// Layout.Raw or TemplateRecord.Raw) into t.
func ParseTemplateRecord(raw []byte, options, v9 bool, t *TemplateRecord) error {
	it := TemplateIter{b: raw, options: options, v9: v9}
	if !it.Next(t) {
		if it.err != nil {
			return it.err
		}
		return ErrTemplateShort
	}
	return nil
}
