package ipfix

import "strconv"

// Field is one compiled field of a Layout.
type Field struct {
	FieldSpec
	// IE describes the element; never nil. Unregistered elements get a
	// synthesized octetArray description named by UnknownName (by
	// UnknownNameV9 in v9 layouts).
	IE *InfoElement
	// Scope marks the scope fields of an options template.
	Scope bool
	// Offset is the field's fixed offset within the record, or -1 when a
	// variable-length field precedes it.
	Offset int
	// Key is the field's name, made unique within the template: a repeated
	// element gets "_2", "_3"... appended (JSON keys, filters).
	Key string
}

// Layout is a template compiled for decoding data records: field
// descriptions, fixed offsets where they exist, and the record bounds. A
// Layout is immutable once built and safe for concurrent use.
type Layout struct {
	ID      uint16
	Options bool
	V9      bool
	// Lists reports whether any field is an RFC 6313 structured list.
	Lists      bool
	ScopeCount int
	Fields     []Field
	// RecordLen is the length of every record, or -1 if the template has
	// variable-length fields.
	RecordLen int
	// MinLen is the shortest record the template allows (a variable-length
	// field counts one octet). It is always at least 1.
	MinLen int
	// Fingerprint identifies the template's content (kind and field
	// specifiers, not its ID) and is stable across processes.
	Fingerprint uint64

	pos []fieldPos // fixed positions; nil for variable-length layouts
	// shape keeps the interned Fields and pos alive (shared by layouts of
	// the same content).
	shape *shape
	// Raw is the template record's wire bytes, owned by the Layout.
	Raw []byte
}

// fieldPos locates one field in a record; typ saves accessors a walk to
// the element description.
type fieldPos struct {
	off, end uint16
	typ      DataType
}

// maxRecordLen bounds a record by what a single IPFIX message can carry.
const maxRecordLen = MaxMessageLen - HeaderLenIPFIX - SetHeaderLen

// v9 scope field types (RFC 3954 section 6.1); they overlap IANA IDs 1-5,
// so scope fields of v9 options templates get their own names.
var v9ScopeIEs = [...]InfoElement{
	1: {Name: "scopeSystem", ID: 1, Type: TypeOctetArray, Known: true},
	2: {Name: "scopeInterface", ID: 2, Type: TypeUnsigned32, Known: true},
	3: {Name: "scopeLineCard", ID: 3, Type: TypeUnsigned32, Known: true},
	4: {Name: "scopeCache", ID: 4, Type: TypeOctetArray, Known: true},
	5: {Name: "scopeTemplate", ID: 5, Type: TypeUnsigned16, Known: true},
}

// Compile builds a Layout from a template record. It allocates (once per
// template, not per record) and copies what it keeps from t.
func Compile(t *TemplateRecord) (*Layout, error) {
	if t.Withdrawal() {
		return nil, ErrTemplateShort
	}
	// Check the record bounds before allocating anything, so a rejected
	// template costs nothing.
	minLen := 0
	for _, s := range t.Fields {
		if s.Length == VarLen {
			minLen++
		} else {
			minLen += int(s.Length)
		}
		if minLen > maxRecordLen {
			return nil, ErrTemplateTooLarge
		}
	}
	if minLen == 0 {
		return nil, ErrZeroLengthRecord
	}
	l := &Layout{
		ID:         t.ID,
		Options:    t.Options,
		ScopeCount: int(t.ScopeCount),
		V9:         t.V9,
		Fields:     make([]Field, len(t.Fields)),
		Raw:        append([]byte(nil), t.Raw...),
	}
	h := fnvInit
	h = fnvAdd(h, uint64(btoi(t.Options))<<32|uint64(t.ScopeCount)<<16|uint64(btoi(t.V9)))
	fixed := true
	off := 0
	for i, s := range t.Fields {
		h = fnvAdd(h, uint64(s.PEN)<<32|uint64(s.ID)<<16|uint64(s.Length))
		f := &l.Fields[i]
		f.FieldSpec = s
		f.Scope = i < int(t.ScopeCount)
		f.IE = resolveIE(s, f.Scope, t.V9)
		switch f.IE.Type {
		case TypeBasicList, TypeSubTemplateList, TypeSubTemplateMultiList:
			l.Lists = true
		}
		if fixed {
			f.Offset = off
		} else {
			f.Offset = -1
		}
		if s.Length == VarLen {
			fixed = false
			l.MinLen++
		} else {
			off += int(s.Length)
			l.MinLen += int(s.Length)
		}
	}
	setKeys(l.Fields)
	l.Fingerprint = h
	if fixed {
		l.RecordLen = off
		l.pos = make([]fieldPos, len(l.Fields))
		for i := range l.Fields {
			off := uint16(l.Fields[i].Offset)
			l.pos[i] = fieldPos{off, off + l.Fields[i].Length, l.Fields[i].IE.Type}
		}
	} else {
		l.RecordLen = -1
	}
	sh := internShape(h, &shape{fields: l.Fields, pos: l.pos}, func(o *shape) bool {
		return sameShape(o, l)
	})
	l.shape, l.Fields, l.pos = sh, sh.fields, sh.pos
	return l, nil
}

// sameShape reports whether s describes the fields of l: same specifiers,
// scope marks and element descriptions (which differ between v9 and IPFIX).
func sameShape(s *shape, l *Layout) bool {
	if len(s.fields) != len(l.Fields) || (s.pos == nil) != (l.pos == nil) {
		return false
	}
	for i := range s.fields {
		a, b := &s.fields[i], &l.Fields[i]
		if a.FieldSpec != b.FieldSpec || a.Scope != b.Scope || a.IE != b.IE && *a.IE != *b.IE {
			return false
		}
	}
	return true
}

func resolveIE(s FieldSpec, scope, v9 bool) *InfoElement {
	if v9 {
		if scope && int(s.ID) < len(v9ScopeIEs) && s.ID > 0 {
			return &v9ScopeIEs[s.ID]
		}
		if ie := LookupV9(s.ID); ie != nil {
			return ie
		}
		e := ElementForV9(s.ID)
		return &e
	}
	if ie := Lookup(s.PEN, s.ID); ie != nil {
		return ie
	}
	e := ElementFor(s.PEN, s.ID)
	return &e
}

// Index returns the position of the first field with the given enterprise
// number and element ID, or -1. Resolve indexes once per layout, not per
// record.
func (l *Layout) Index(pen uint32, id uint16) int {
	for i := range l.Fields {
		if l.Fields[i].ID == id && l.Fields[i].PEN == pen {
			return i
		}
	}
	return -1
}

// Equal reports whether two layouts describe the same template content.
func (l *Layout) Equal(o *Layout) bool {
	if l.Fingerprint != o.Fingerprint || len(l.Fields) != len(o.Fields) ||
		l.Options != o.Options || l.ScopeCount != o.ScopeCount || l.V9 != o.V9 {
		return false
	}
	for i := range l.Fields {
		if l.Fields[i].FieldSpec != o.Fields[i].FieldSpec {
			return false
		}
	}
	return true
}

// String describes the layout for logs and tests.
func (l *Layout) String() string {
	b := []byte("template ")
	b = strconv.AppendUint(b, uint64(l.ID), 10)
	if l.Options {
		b = append(b, " options"...)
	}
	b = append(b, " ["...)
	for i, f := range l.Fields {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, f.IE.Name...)
		b = append(b, ':')
		if f.Length == VarLen {
			b = append(b, 'v')
		} else {
			b = strconv.AppendUint(b, uint64(f.Length), 10)
		}
	}
	return string(append(b, ']'))
}

const (
	fnvInit  uint64 = 14695981039346656037
	fnvPrime        = 1099511628211
)

func fnvAdd(h, v uint64) uint64 {
	for range 8 {
		h ^= v & 0xff
		h *= fnvPrime
		v >>= 8
	}
	return h
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func setKeys(fields []Field) {
	seen := make(map[string]int, len(fields))
	for i := range fields {
		f := &fields[i]
		n := seen[f.IE.Name] + 1
		seen[f.IE.Name] = n
		f.Key = f.IE.Name
		if n > 1 {
			f.Key = f.IE.Name + "_" + strconv.Itoa(n)
		}
	}
}
