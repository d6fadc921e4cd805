package ipfix

import "encoding/binary"

// MaxListDepth bounds how deeply RFC 6313 lists may nest when a caller walks
// them recursively; deeper input is rejected with ErrListDepth.
const MaxListDepth = 8

// List semantics (RFC 6313 section 4.5.1).
const (
	ListNoneOf       = 0
	ListExactlyOneOf = 1
	ListOneOrMoreOf  = 2
	ListAllOf        = 3
	ListOrdered      = 4
	ListUndefined    = 0xff
)

// BasicList is a view of an RFC 6313 basicList: a list of values of one
// element. Its bytes are views into the record's buffer.
type BasicList struct {
	Semantic uint8
	// Element identifies the list's element; Length is per value (VarLen for
	// variable-length values).
	Element FieldSpec
	body    []byte
}

// DecodeBasicList parses a basicList field value.
func DecodeBasicList(b []byte) (BasicList, error) {
	if len(b) < 5 {
		return BasicList{}, ErrListMalformed
	}
	l := BasicList{Semantic: b[0]}
	raw := binary.BigEndian.Uint16(b[1:])
	l.Element = FieldSpec{ID: raw & 0x7fff, Length: binary.BigEndian.Uint16(b[3:])}
	off := 5
	if raw&0x8000 != 0 {
		if len(b) < 9 {
			return BasicList{}, ErrListMalformed
		}
		l.Element.PEN = binary.BigEndian.Uint32(b[5:])
		off = 9
	}
	if l.Element.Length == 0 && len(b) > off {
		// Zero-length values cannot be counted or walked.
		return BasicList{}, ErrListMalformed
	}
	l.body = b[off:]
	return l, nil
}

// Values returns an iterator over the list's values.
func (l *BasicList) Values() ListIter { return ListIter{b: l.body, n: l.Element.Length} }

// ListIter walks the values of a basicList.
type ListIter struct {
	b   []byte
	err error
	n   uint16
}

// Next returns the next value, a view into the record's buffer.
func (it *ListIter) Next() ([]byte, bool) {
	if len(it.b) == 0 {
		return nil, false
	}
	n := int(it.n)
	b := it.b
	off := 0
	if it.n == VarLen {
		n = int(b[0])
		off = 1
		if n == 255 {
			if len(b) < 3 {
				return it.fail()
			}
			n = int(binary.BigEndian.Uint16(b[1:]))
			off = 3
		}
	}
	if off+n > len(b) {
		return it.fail()
	}
	it.b = b[off+n:]
	return b[off : off+n], true
}

func (it *ListIter) fail() ([]byte, bool) {
	it.err = ErrListMalformed
	it.b = nil
	return nil, false
}

// Err returns the error that stopped the iteration, if any.
func (it *ListIter) Err() error { return it.err }

// SubTemplateList is a view of an RFC 6313 subTemplateList: records of one
// template. Decode Data with NewDataIter and the template's layout.
type SubTemplateList struct {
	Semantic   uint8
	TemplateID uint16
	Data       []byte
}

// DecodeSubTemplateList parses a subTemplateList field value.
func DecodeSubTemplateList(b []byte) (SubTemplateList, error) {
	if len(b) < 3 {
		return SubTemplateList{}, ErrListMalformed
	}
	return SubTemplateList{Semantic: b[0], TemplateID: binary.BigEndian.Uint16(b[1:]), Data: b[3:]}, nil
}

// SubTemplateMultiList is a view of an RFC 6313 subTemplateMultiList:
// groups of records, each group with its own template.
type SubTemplateMultiList struct {
	Semantic uint8
	body     []byte
}

// DecodeSubTemplateMultiList parses a subTemplateMultiList field value.
func DecodeSubTemplateMultiList(b []byte) (SubTemplateMultiList, error) {
	if len(b) < 1 {
		return SubTemplateMultiList{}, ErrListMalformed
	}
	return SubTemplateMultiList{Semantic: b[0], body: b[1:]}, nil
}

// Groups returns an iterator over the list's (template ID, records) groups.
func (l *SubTemplateMultiList) Groups() GroupIter { return GroupIter{b: l.body} }

// GroupIter walks the groups of a subTemplateMultiList.
type GroupIter struct {
	b   []byte
	err error
}

// Next returns the next group's template ID and record bytes.
func (it *GroupIter) Next() (templateID uint16, data []byte, ok bool) {
	if len(it.b) == 0 {
		return 0, nil, false
	}
	if len(it.b) < 4 {
		it.err, it.b = ErrListMalformed, nil
		return 0, nil, false
	}
	id := binary.BigEndian.Uint16(it.b)
	n := int(binary.BigEndian.Uint16(it.b[2:]))
	if n < 4 || n > len(it.b) {
		it.err, it.b = ErrListMalformed, nil
		return 0, nil, false
	}
	data = it.b[4:n]
	it.b = it.b[n:]
	return id, data, true
}

// Err returns the error that stopped the iteration, if any.
func (it *GroupIter) Err() error { return it.err }
