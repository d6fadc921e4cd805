package ipfix_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// strictWalk decodes every part of a message (header, sets, template
// records and their compilation, data records and the structured lists in
// them) and returns the first error. It does not allocate once warm, so
// rejecting a malformed message can be checked to allocate nothing.
type strictWalk struct {
	msg   ipfix.Message
	tr    ipfix.TemplateRecord
	recs  [ipfix.MaxListDepth + 2]ipfix.Record
	known layoutMap
	// records counts the data records decoded by the last run.
	records int
}

// Layouts known to strictWalk by template ID: data cases use them instead
// of templates in the message, so that the walk compiles nothing.
const (
	idFixed   = 256 // sourceIPv4Address, destinationIPv4Address, ports
	idVarlen  = 257 // interfaceName (varlen), ingressInterface
	idOctets  = 258 // ipHeaderPacketSection (varlen)
	idBasic   = 259 // basicList (varlen)
	idMulti   = 260 // subTemplateMultiList (varlen)
	idSubList = 261 // subTemplateList (varlen)
	idPorts   = 262 // sourceTransportPort, destinationTransportPort
	idFixed12 = 263 // 12-octet records, for padding tests
)

func newStrictWalk(tb testing.TB) *strictWalk {
	tb.Helper()
	mk := func(id uint16, fields ...ipfix.FieldSpec) *ipfix.Layout {
		l, err := ipfix.Compile(&ipfix.TemplateRecord{ID: id, Fields: fields})
		if err != nil {
			tb.Fatal(err)
		}
		return l
	}
	v := uint16(ipfix.VarLen)
	return &strictWalk{
		tr: ipfix.TemplateRecord{Fields: make([]ipfix.FieldSpec, 0, 64)},
		known: layoutMap{
			idFixed:   mk(idFixed, ipfix.FieldSpec{ID: 8, Length: 4}, ipfix.FieldSpec{ID: 12, Length: 4}, ipfix.FieldSpec{ID: 7, Length: 2}, ipfix.FieldSpec{ID: 11, Length: 2}),
			idVarlen:  mk(idVarlen, ipfix.FieldSpec{ID: 82, Length: v}, ipfix.FieldSpec{ID: 10, Length: 4}),
			idOctets:  mk(idOctets, ipfix.FieldSpec{ID: 313, Length: v}),
			idBasic:   mk(idBasic, ipfix.FieldSpec{ID: 291, Length: v}),
			idMulti:   mk(idMulti, ipfix.FieldSpec{ID: 293, Length: v}),
			idSubList: mk(idSubList, ipfix.FieldSpec{ID: 292, Length: v}),
			idPorts:   mk(idPorts, tplPorts...),
			idFixed12: mk(idFixed12, ipfix.FieldSpec{ID: 8, Length: 4}, ipfix.FieldSpec{ID: 12, Length: 4}, ipfix.FieldSpec{ID: 10, Length: 4}),
		},
	}
}

func (w *strictWalk) run(b []byte) error {
	w.records = 0
	m := &w.msg
	if err := m.Decode(b); err != nil {
		return err
	}
	if m.Version == ipfix.VersionNetFlow5 {
		it := m.V5Records()
		for it.Next(&w.recs[0]) {
			w.records++
		}
		return it.Err()
	}
	sets := m.Sets()
	var s ipfix.Set
	for sets.Next(&s) {
		switch s.Kind {
		case ipfix.SetTemplate, ipfix.SetOptionsTemplate:
			it := s.Templates()
			for it.Next(&w.tr) {
				if w.tr.Withdrawal() {
					continue
				}
				if _, err := ipfix.Compile(&w.tr); err != nil {
					return err
				}
			}
			if err := it.Err(); err != nil {
				return err
			}
		case ipfix.SetData:
			l := w.known[s.ID]
			if l == nil {
				return ipfix.ErrUnknownTemplate
			}
			if err := w.data(l, s.Body, 0); err != nil {
				return err
			}
		}
	}
	return sets.Err()
}

// data decodes records of l in b and the lists in them.
func (w *strictWalk) data(l *ipfix.Layout, b []byte, depth int) error {
	if depth > ipfix.MaxListDepth {
		return ipfix.ErrListDepth
	}
	r := &w.recs[depth]
	it := ipfix.NewDataIter(l, b)
	for it.Next(r) {
		if depth == 0 {
			w.records++
		}
		for i := range l.Fields {
			if err := w.list(l.Fields[i].IE.Type, r.Bytes(i), depth); err != nil {
				return err
			}
		}
	}
	return it.Err()
}

func (w *strictWalk) list(typ ipfix.DataType, v []byte, depth int) error {
	switch typ {
	case ipfix.TypeBasicList:
		bl, err := ipfix.DecodeBasicList(v)
		if err != nil {
			return err
		}
		it := bl.Values()
		for _, ok := it.Next(); ok; _, ok = it.Next() {
		}
		return it.Err()
	case ipfix.TypeSubTemplateList:
		sl, err := ipfix.DecodeSubTemplateList(v)
		if err != nil {
			return err
		}
		l := w.known[sl.TemplateID]
		if l == nil {
			return ipfix.ErrUnknownTemplate
		}
		return w.data(l, sl.Data, depth+1)
	case ipfix.TypeSubTemplateMultiList:
		ml, err := ipfix.DecodeSubTemplateMultiList(v)
		if err != nil {
			return err
		}
		it := ml.Groups()
		for id, data, ok := it.Next(); ok; id, data, ok = it.Next() {
			l := w.known[id]
			if l == nil {
				return ipfix.ErrUnknownTemplate
			}
			if err := w.data(l, data, depth+1); err != nil {
				return err
			}
		}
		return it.Err()
	}
	return nil
}

// damage returns a copy of b changed by fn.
func damage(b []byte, fn func(b []byte) []byte) []byte {
	return fn(bytes.Clone(b))
}

func put16(b []byte, off int, v uint16) []byte {
	binary.BigEndian.PutUint16(b[off:], v)
	return b
}

// withLength patches an IPFIX message's length to its buffer's.
func withLength(b []byte) []byte { return put16(b, 2, uint16(len(b))) }

// dataMsg builds an IPFIX message with one data set of template id whose
// body is body.
func dataMsg(tb testing.TB, id uint16, body ...byte) []byte {
	m := newBuilder(ipfix.VersionIPFIX, 1).begin()
	m.b = m.w.BeginSet(m.b, id)
	m.b = append(m.b, body...)
	m.b = m.w.EndSet(m.b)
	m.w.AddRecords(1)
	return m.finish(tb)
}

// listRecord builds a data message of a one-field list template holding v.
func listRecord(tb testing.TB, id uint16, v []byte) []byte {
	return dataMsg(tb, id, ipfix.AppendVarlen(nil, v)...)
}

// Offsets in messages built by newBuilder: the first set header, its first
// record, and in a template record the field count and first specifier.
const (
	setOff   = ipfix.HeaderLenIPFIX
	recOff   = setOff + ipfix.SetHeaderLen
	countOff = recOff + 2
	specOff  = recOff + 4
	v9RecOff = ipfix.HeaderLenV9 + ipfix.SetHeaderLen
)

// compileRejectAllocs is what Compile allocates before it rejects a
// template (the Layout, its Fields and Raw); see the report on Compile.
const compileRejectAllocs = 3

func TestMalformed(t *testing.T) {
	w := newStrictWalk(t)
	f := func(name string, msg []byte, want error) {
		t.Helper()
		err := w.run(msg)
		if !errors.Is(err, want) {
			t.Errorf("%s: got %v, want %v", name, err, want)
			return
		}
		var e *ipfix.Error
		if !errors.As(err, &e) || e.Reason() == "" || ipfix.Reason(err) != e.Reason() {
			t.Errorf("%s: %v is not a sentinel with a reason", name, err)
		}
		limit := 0.0
		if want == ipfix.ErrZeroLengthRecord || want == ipfix.ErrTemplateTooLarge {
			limit = compileRejectAllocs
		}
		if allocs := testing.AllocsPerRun(20, func() { _ = w.run(msg) }); allocs > limit {
			t.Errorf("%s: rejecting allocates %v times, want at most %v", name, allocs, limit)
		}
	}

	tmpl := newBuilder(ipfix.VersionIPFIX, 1).begin().template(300, tplPorts).finish(t)
	fixed := dataMsg(t, idFixed, 192, 0, 2, 1, 198, 51, 100, 1, 0, 80, 1, 187)
	if err := w.run(tmpl); err != nil {
		t.Fatalf("valid template message: %v", err)
	}
	if err := w.run(fixed); err != nil || w.records != 1 {
		t.Fatalf("valid data message: %v, %d records", err, w.records)
	}

	// Message header.
	f("empty buffer", nil, ipfix.ErrShortMessage)
	f("3 octets", fixed[:3], ipfix.ErrShortMessage)
	f("IPFIX header cut", fixed[:ipfix.HeaderLenIPFIX-1], ipfix.ErrShortMessage)
	f("length larger than the buffer", damage(fixed, func(b []byte) []byte { return put16(b, 2, uint16(len(b)+1)) }), ipfix.ErrMessageLength)
	f("length larger than the buffer (cut)", fixed[:len(fixed)-1], ipfix.ErrMessageLength)
	f("length smaller than the header", damage(fixed, func(b []byte) []byte { return put16(b, 2, ipfix.HeaderLenIPFIX-1) }), ipfix.ErrMessageLength)
	f("length zero", damage(fixed, func(b []byte) []byte { return put16(b, 2, 0) }), ipfix.ErrMessageLength)
	for _, v := range []uint16{0, 1, 8, 11, 0x0a00, 0xffff} {
		f("bad version", damage(fixed, func(b []byte) []byte { return put16(b, 0, v) }), ipfix.ErrVersion)
	}
	v9 := newBuilder(ipfix.VersionNetFlow9, 1).begin().template(300, tplPorts).finish(t)
	f("v9 header cut", v9[:ipfix.HeaderLenV9-1], ipfix.ErrShortMessage)
	v5 := v5Message(2)
	f("v5 header cut", v5[:ipfix.HeaderLenV5-1], ipfix.ErrShortMessage)
	f("v5 count above the records", damage(v5, func(b []byte) []byte { return put16(b, 2, 3) }), ipfix.ErrV5Count)
	f("v5 count zero", damage(v5, func(b []byte) []byte { return put16(b, 2, 0) }), ipfix.ErrV5Count)
	f("v5 last record cut", v5[:len(v5)-1], ipfix.ErrV5Count)
	f("v5 count 65535", damage(v5, func(b []byte) []byte { return put16(b, 2, 0xffff) }), ipfix.ErrV5Count)

	// Set headers.
	for _, n := range []uint16{0, 1, 2, 3} {
		f("set length below 4", damage(fixed, func(b []byte) []byte { return put16(b, setOff+2, n) }), ipfix.ErrSetLength)
	}
	f("set past the message end", damage(fixed, func(b []byte) []byte { return put16(b, setOff+2, uint16(len(b)-setOff+1)) }), ipfix.ErrSetLength)
	f("set length 65535", damage(fixed, func(b []byte) []byte { return put16(b, setOff+2, 0xffff) }), ipfix.ErrSetLength)
	f("second set past the end", withLength(append(bytes.Clone(fixed), 1, 0, 0, 8, 0)), ipfix.ErrSetLength)
	for n := 1; n <= 3; n++ {
		f("non-zero trailing octets", withLength(append(append(bytes.Clone(fixed), make([]byte, n-1)...), 1)), ipfix.ErrShortSet)
	}
	f("v9 set past the end", damage(v9, func(b []byte) []byte { return put16(b, ipfix.HeaderLenV9+2, uint16(len(b))) }), ipfix.ErrSetLength)

	// Template records.
	f("template ID below 256", damage(tmpl, func(b []byte) []byte { return put16(b, recOff, 255) }), ipfix.ErrTemplateID)
	f("template ID 0", damage(tmpl, func(b []byte) []byte { return put16(b, recOff, 0) }), ipfix.ErrTemplateID)
	f("withdrawal of template 5", newBuilder(ipfix.VersionIPFIX, 1).begin().withdraw(ipfix.TemplateSetID, 5).finish(t), ipfix.ErrTemplateID)
	f("field count beyond the set", damage(tmpl, func(b []byte) []byte { return put16(b, countOff, 3) }), ipfix.ErrTemplateShort)
	f("field count 65535", damage(tmpl, func(b []byte) []byte { return put16(b, countOff, 0xffff) }), ipfix.ErrTemplateShort)
	f("enterprise bit without its number", damage(tmpl, func(b []byte) []byte { return put16(b, specOff+4, 0x8000|11) }), ipfix.ErrTemplateShort)
	f("template record cut", withLength(damage(tmpl, func(b []byte) []byte {
		return put16(b, setOff+2, uint16(len(b)-setOff-2))
	})[:len(tmpl)-2]), ipfix.ErrTemplateShort)
	opts := newBuilder(ipfix.VersionIPFIX, 1).begin().optionsTemplate(300, 2, tplOptions).finish(t)
	if err := w.run(opts); err != nil {
		t.Fatalf("valid options template: %v", err)
	}
	f("scope count above field count", damage(opts, func(b []byte) []byte { return put16(b, recOff+4, 5) }), ipfix.ErrScopeCount)
	f("scope count 65535", damage(opts, func(b []byte) []byte { return put16(b, recOff+4, 0xffff) }), ipfix.ErrScopeCount)
	f("options template without scope count", withLength(put16(append(bytes.Clone(opts[:recOff]), 1, 44, 0, 1), setOff+2, 8)), ipfix.ErrTemplateShort)
	zero := []ipfix.FieldSpec{{ID: 8, Length: 0}, {ID: 12, Length: 0}, {ID: 82, Length: 0}}
	f("zero-length template record", newBuilder(ipfix.VersionIPFIX, 1).begin().template(300, zero).finish(t), ipfix.ErrZeroLengthRecord)
	f("zero-length v9 template record", newBuilder(ipfix.VersionNetFlow9, 1).begin().template(300, zero).finish(t), ipfix.ErrZeroLengthRecord)
	f("zero-length options record", newBuilder(ipfix.VersionIPFIX, 1).begin().optionsTemplate(300, 1, zero).finish(t), ipfix.ErrZeroLengthRecord)
	huge := []ipfix.FieldSpec{{ID: 313, Length: 40000}, {ID: 313, Length: 40000}}
	f("template larger than a message", newBuilder(ipfix.VersionIPFIX, 1).begin().template(300, huge).finish(t), ipfix.ErrTemplateTooLarge)
	f("one field larger than a message", newBuilder(ipfix.VersionIPFIX, 1).begin().template(300, []ipfix.FieldSpec{{ID: 313, Length: maxRecordLen + 1}}).finish(t), ipfix.ErrTemplateTooLarge)
	f("varlen fields larger than a message", newBuilder(ipfix.VersionIPFIX, 1).begin().template(300, append([]ipfix.FieldSpec{{ID: 313, Length: maxRecordLen}}, ipfix.FieldSpec{ID: 82, Length: ipfix.VarLen})).finish(t), ipfix.ErrTemplateTooLarge)
	f("v9 template larger than a message", newBuilder(ipfix.VersionNetFlow9, 1).begin().template(300, huge).finish(t), ipfix.ErrTemplateTooLarge)

	// NetFlow v9 options templates: scope and option lengths in octets.
	v9opts := newBuilder(ipfix.VersionNetFlow9, 1).begin().optionsTemplate(300, 2, tplV9Options).finish(t)
	if err := w.run(v9opts); err != nil {
		t.Fatalf("valid v9 options template: %v", err)
	}
	f("v9 options scope length not a multiple of 4", damage(v9opts, func(b []byte) []byte { return put16(b, v9RecOff+2, 6) }), ipfix.ErrTemplateShort)
	f("v9 options option length not a multiple of 4", damage(v9opts, func(b []byte) []byte { return put16(b, v9RecOff+4, 9) }), ipfix.ErrTemplateShort)
	f("v9 options lengths past the set", damage(v9opts, func(b []byte) []byte { return put16(b, v9RecOff+4, 0xfffc) }), ipfix.ErrTemplateShort)
	f("v9 options without fields", damage(v9opts, func(b []byte) []byte { return put16(put16(b, v9RecOff+2, 0), v9RecOff+4, 0) }), ipfix.ErrTemplateShort)
	f("v9 options template ID below 256", damage(v9opts, func(b []byte) []byte { return put16(b, v9RecOff, 1) }), ipfix.ErrTemplateID)

	// Data records.
	f("data record truncated after a varlen field", dataMsg(t, idVarlen, 2, 'a', 'b', 0, 0), ipfix.ErrShortRecord)
	f("varlen length past the record end", dataMsg(t, idOctets, 5, 'a', 'b'), ipfix.ErrVarlenLength)
	f("varlen length past the end, second record", dataMsg(t, idOctets, 1, 'a', 3, 'b'), ipfix.ErrVarlenLength)
	f("3-octet varlen length past the end", dataMsg(t, idOctets, 255, 1, 0, 'a'), ipfix.ErrVarlenLength)
	f("255 prefix without the length octets", dataMsg(t, idOctets, 255), ipfix.ErrShortRecord)
	f("255 prefix with one length octet", dataMsg(t, idOctets, 255, 0), ipfix.ErrShortRecord)
	f("fixed field after a varlen one cut", dataMsg(t, idVarlen, 1, 'a', 0, 0, 0), ipfix.ErrShortRecord)
	f("data set for an unknown template", dataMsg(t, 999, 1, 2, 3, 4), ipfix.ErrUnknownTemplate)

	// Structured lists.
	ports := basicListPorts(80, 443)
	f("basicList header cut", listRecord(t, idBasic, ports[:4]), ipfix.ErrListMalformed)
	f("basicList empty", listRecord(t, idBasic, nil), ipfix.ErrListMalformed)
	f("basicList enterprise number cut", listRecord(t, idBasic, damage(ports[:8], func(b []byte) []byte { b[1] |= 0x80; return b })), ipfix.ErrListMalformed)
	f("basicList value cut", listRecord(t, idBasic, ports[:len(ports)-1]), ipfix.ErrListMalformed)
	f("basicList zero-length element with values", listRecord(t, idBasic, damage(ports, func(b []byte) []byte { return put16(b, 3, 0) })), ipfix.ErrListMalformed)
	strs := basicListStrings(0, "eth0", "eth1")
	f("basicList varlen value past the end", listRecord(t, idBasic, strs[:len(strs)-1]), ipfix.ErrListMalformed)
	f("basicList 255 prefix cut", listRecord(t, idBasic, append(bytes.Clone(strs), 255, 1)), ipfix.ErrListMalformed)
	f("subTemplateList header cut", listRecord(t, idSubList, []byte{3, 1}), ipfix.ErrListMalformed)
	multi := subTemplateMultiList(stmlGroup{idPorts, [][]byte{portsRecord(1, 2)}}, stmlGroup{idPorts, nil})
	if err := w.run(listRecord(t, idMulti, multi)); err != nil {
		t.Fatalf("valid subTemplateMultiList: %v", err)
	}
	for _, n := range []uint16{0, 1, 2, 3} {
		f("subTemplateMultiList group length below 4", listRecord(t, idMulti, damage(multi, func(b []byte) []byte { return put16(b, 3, n) })), ipfix.ErrListMalformed)
	}
	f("subTemplateMultiList group past the end", listRecord(t, idMulti, damage(multi, func(b []byte) []byte { return put16(b, 3, uint16(len(b))) })), ipfix.ErrListMalformed)
	f("subTemplateMultiList group header cut", listRecord(t, idMulti, multi[:len(multi)-2]), ipfix.ErrListMalformed)
	f("subTemplateMultiList empty", listRecord(t, idMulti, nil), ipfix.ErrListMalformed)
	f("malformed list inside a list", listRecord(t, idSubList, subTemplateList(idBasic, ipfix.AppendVarlen(nil, ports[:4]))), ipfix.ErrListMalformed)
	f("record cut inside a list", listRecord(t, idSubList, subTemplateList(idVarlen, []byte{6, 'a', 0, 0, 0})), ipfix.ErrVarlenLength)
}

// TestMalformedListDepth checks that a walker bounded by MaxListDepth stops
// self-nesting lists with ErrListDepth and without allocating.
func TestMalformedListDepth(t *testing.T) {
	w := newStrictWalk(t)
	w.known[256] = w.known[idSubList] // 256 holds one subTemplateList
	ok := listRecord(t, idSubList, nestedSelfList(ipfix.MaxListDepth-1))
	if err := w.run(ok); err != nil {
		t.Fatalf("lists nested to MaxListDepth: %v", err)
	}
	deep := listRecord(t, idSubList, nestedSelfList(ipfix.MaxListDepth+1))
	if err := w.run(deep); !errors.Is(err, ipfix.ErrListDepth) {
		t.Fatalf("lists nested beyond MaxListDepth: %v, want ErrListDepth", err)
	}
	if allocs := testing.AllocsPerRun(20, func() { _ = w.run(deep) }); allocs != 0 {
		t.Fatalf("rejecting deep lists allocates %v times", allocs)
	}
}

// TestTemplateFieldCountBounded checks that a field count the set cannot
// hold is rejected before TemplateRecord.Fields grows.
func TestTemplateFieldCountBounded(t *testing.T) {
	for _, c := range []struct {
		name    string
		version uint16
		setID   uint16
		rec     []byte
		maxCap  int
	}{
		// 65535 fields announced, room for 2.
		{"template", ipfix.VersionIPFIX, ipfix.TemplateSetID, []byte{1, 0, 0xff, 0xff, 0, 8, 0, 4, 0, 12, 0, 4}, 0},
		{"options template", ipfix.VersionIPFIX, ipfix.OptionsTemplateSetID, []byte{1, 0, 0xff, 0xff, 0, 1, 0, 8, 0, 4, 0, 12, 0, 4}, 0},
		{"v9 template", ipfix.VersionNetFlow9, ipfix.TemplateSetID, []byte{1, 0, 0xff, 0xff, 0, 8, 0, 4, 0, 12, 0, 4}, 0},
		{"v9 options template", ipfix.VersionNetFlow9, ipfix.OptionsTemplateSetID, []byte{1, 0, 0xff, 0xfc, 0xff, 0xfc, 0, 8, 0, 4, 0, 12, 0, 4}, 0},
		// 6 fields announced and 24 octets of room, but every specifier
		// has the enterprise bit and takes 8: the walk stops at the third.
		{"enterprise specifiers", ipfix.VersionIPFIX, ipfix.TemplateSetID, []byte{
			1, 0, 0, 6,
			0x80, 1, 0, 4, 0, 0, 0, 9,
			0x80, 2, 0, 4, 0, 0, 0, 9,
			0x80, 3, 0, 4, 0, 0, 0, 9,
		}, 4},
	} {
		m := newBuilder(c.version, 1).begin()
		m.b = m.w.BeginSet(m.b, c.setID)
		m.b = append(m.b, c.rec...)
		m.b = m.w.EndSet(m.b)
		msg := m.finish(t)
		var dm ipfix.Message
		if err := dm.Decode(msg); err != nil {
			t.Fatal(err)
		}
		sets := dm.Sets()
		var s ipfix.Set
		if !sets.Next(&s) {
			t.Fatalf("%s: no set: %v", c.name, sets.Err())
		}
		it := s.Templates()
		var tr ipfix.TemplateRecord
		if it.Next(&tr) || !errors.Is(it.Err(), ipfix.ErrTemplateShort) {
			t.Fatalf("%s: got a record %+v, err %v; want ErrTemplateShort", c.name, tr, it.Err())
		}
		if cap(tr.Fields) > c.maxCap {
			t.Fatalf("%s: Fields grew to %d (%d octets of set)", c.name, cap(tr.Fields), len(s.Body))
		}
		if it.Next(&tr) {
			t.Fatalf("%s: iteration goes on after the error", c.name)
		}
		// And with room reserved, no growth at all.
		it = s.Templates()
		tr = ipfix.TemplateRecord{Fields: make([]ipfix.FieldSpec, 0, 8)}
		before := &tr.Fields[:1][0]
		if allocs := testing.AllocsPerRun(10, func() {
			it = s.Templates()
			it.Next(&tr)
		}); allocs != 0 || &tr.Fields[:1][0] != before {
			t.Fatalf("%s: rejecting allocates %v times", c.name, allocs)
		}
	}
}

// TestPaddingEndsCleanly checks that zero padding after the last set, at
// the end of a template set and at the end of a data set ends iteration
// without an error.
func TestPaddingEndsCleanly(t *testing.T) {
	w := newStrictWalk(t)
	rec := []byte{192, 0, 2, 1, 198, 51, 100, 1, 0, 0, 0, 7}
	for _, pad := range []int{1, 2, 3, 4, 5, 8, 11} {
		zeros := make([]byte, pad)
		// After the last set, inside the message length.
		msg := withLength(append(dataMsg(t, idFixed12, rec...), zeros...))
		if err := w.run(msg); err != nil || w.records != 1 {
			t.Errorf("%d octets after the last set: %v, %d records", pad, err, w.records)
		}
		// At the end of a data set whose records are longer.
		msg = dataMsg(t, idFixed12, append(append(bytes.Clone(rec), rec...), zeros...)...)
		if err := w.run(msg); err != nil || w.records != 2 {
			t.Errorf("%d octets at the end of a data set: %v, %d records", pad, err, w.records)
		}
		var m ipfix.Message
		if err := m.Decode(msg); err != nil {
			t.Fatal(err)
		}
		sets := m.Sets()
		var s ipfix.Set
		sets.Next(&s)
		it := s.Records(w.known[idFixed12])
		var r ipfix.Record
		for it.Next(&r) {
		}
		if it.Err() != nil || !bytes.Equal(it.Remaining(), zeros) {
			t.Errorf("%d octets of padding: Remaining %x, err %v", pad, it.Remaining(), it.Err())
		}
		// At the end of template sets, IPFIX and v9.
		for _, version := range []uint16{ipfix.VersionIPFIX, ipfix.VersionNetFlow9} {
			for _, setID := range []uint16{ipfix.TemplateSetID, ipfix.OptionsTemplateSetID} {
				mb := newBuilder(version, 1).begin()
				mb.b = mb.w.BeginSet(mb.b, setID)
				switch {
				case setID == ipfix.TemplateSetID:
					mb.b = ipfix.AppendTemplateRecord(mb.b, 300, tplPorts)
				case version == ipfix.VersionNetFlow9:
					mb.b = ipfix.AppendV9OptionsTemplateRecord(mb.b, 300, 1, tplV9Options)
				default:
					mb.b = ipfix.AppendOptionsTemplateRecord(mb.b, 300, 1, tplOptions)
				}
				mb.b = append(mb.b, zeros...)
				mb.b = mb.w.EndSet(mb.b)
				msg := mb.finish(t)
				if err := w.run(msg); err != nil {
					t.Errorf("v%d set %d with %d octets of padding: %v", version, setID, pad, err)
				}
				var m ipfix.Message
				if err := m.Decode(msg); err != nil {
					t.Fatal(err)
				}
				sets := m.Sets()
				n := 0
				for sets.Next(&s) {
					it := s.Templates()
					var tr ipfix.TemplateRecord
					for it.Next(&tr) {
						n++
					}
					if it.Err() != nil {
						t.Errorf("v%d set %d with %d octets of padding: %v", version, setID, pad, it.Err())
					}
				}
				if n != 1 || sets.Err() != nil {
					t.Errorf("v%d set %d with %d octets of padding: %d records, %v", version, setID, pad, n, sets.Err())
				}
			}
		}
	}
	// A v9 message padded after its last set (some exporters do).
	v9 := append(newBuilder(ipfix.VersionNetFlow9, 1).begin().template(300, tplPorts).finish(t), 0, 0, 0)
	if err := w.run(v9); err != nil {
		t.Errorf("v9 message with 3 octets of padding: %v", err)
	}
}

// TestErrorReasons checks that every sentinel has a distinct snake_case
// reason and that Reason labels foreign errors "other".
func TestErrorReasons(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range ipfix.Errors {
		r := e.Reason()
		snake := strings.IndexFunc(r, func(c rune) bool { return (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' }) < 0
		if r == "" || seen[r] || !snake {
			t.Errorf("reason %q empty, repeated or not snake_case", r)
		}
		seen[r] = true
		if !strings.HasPrefix(e.Error(), "ipfix: ") || ipfix.Reason(e) != r {
			t.Errorf("error %q, Reason %q", e.Error(), ipfix.Reason(e))
		}
	}
	if got := ipfix.Reason(errors.New("x")); got != "other" {
		t.Errorf("Reason of a foreign error = %q", got)
	}
	if got := ipfix.Reason(nil); got != "other" {
		t.Errorf("Reason(nil) = %q", got)
	}
}
