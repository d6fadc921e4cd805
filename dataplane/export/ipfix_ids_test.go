package export

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
)

// idsLayout compiles a data template from specs.
func idsLayout(t *testing.T, id uint16, specs []ipfix.FieldSpec) *ipfix.Layout {
	t.Helper()
	var tr ipfix.TemplateRecord
	if err := ipfix.ParseTemplateRecord(ipfix.AppendTemplateRecord(nil, id, specs), false, false, &tr); err != nil {
		t.Fatal(err)
	}
	l, err := ipfix.Compile(&tr)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// templateIDs lists the template IDs announced in a stream, in order.
func templateIDs(b []byte) []uint16 {
	var ids []uint16
	for len(b) >= ipfix.HeaderLenIPFIX {
		l := int(binary.BigEndian.Uint16(b[2:]))
		s := b[ipfix.HeaderLenIPFIX:l]
		for len(s) >= 4 {
			id, sl := binary.BigEndian.Uint16(s), int(binary.BigEndian.Uint16(s[2:]))
			if id == ipfix.TemplateSetID && sl > 8 {
				ids = append(ids, binary.BigEndian.Uint16(s[4:]))
			}
			s = s[sl:]
		}
		b = b[l:]
	}
	return ids
}

// TestIPFIXTemplateIDCollision: two exporters in one domain use template
// 256 for different templates. Both stay in force under distinct IDs (no
// redefinition back and forth), and every record decodes as it was fed. An
// exporter changing its own template redefines it in place.
func TestIPFIXTemplateIDCollision(t *testing.T) {
	la := idsLayout(t, 256, []ipfix.FieldSpec{{ID: 8, Length: 4}, {ID: 1, Length: 8}})
	lb := idsLayout(t, 256, []ipfix.FieldSpec{{ID: 27, Length: 16}, {ID: 2, Length: 4}})
	la2 := idsLayout(t, 256, []ipfix.FieldSpec{{ID: 8, Length: 4}, {ID: 2, Length: 8}})
	var stream []byte
	enc := newIPFIXEncoder(1400, func(msg []byte, _ int) { stream = append(stream, msg...) })
	enc.withdraw = true
	ma := &jsonl.Meta{Exporter: netip.MustParseAddrPort("192.0.2.1:4739"), Msg: &ipfix.Message{DomainID: 5}}
	mb := &jsonl.Meta{Exporter: netip.MustParseAddrPort("192.0.2.2:4739"), Msg: &ipfix.Message{DomainID: 5}}
	var want []rec
	add := func(m *jsonl.Meta, l *ipfix.Layout, raw []byte) {
		var r ipfix.Record
		it := ipfix.NewDataIter(l, raw)
		if !it.Next(&r) {
			t.Fatal("bad record")
		}
		if !enc.record(m, &r) {
			t.Fatal("record refused")
		}
		want = append(want, recOf(5, &r))
	}
	for i := range 200 {
		add(ma, la, append([]byte{10, 0, 0, byte(i)}, 0, 0, 0, 0, 0, 0, 0, byte(i)))
		add(mb, lb, append(make([]byte, 16), 0, 0, 1, byte(i)))
	}
	for i := range 10 {
		add(ma, la2, append([]byte{10, 0, 1, byte(i)}, 0, 0, 0, 0, 0, 0, 0, byte(i)))
	}
	enc.finish()
	equalRecs(t, decodeStream(t, stream, true), want)
	ids := templateIDs(stream)
	if len(ids) != 3 || ids[0] != 256 || ids[1] == 256 || ids[2] != 256 {
		t.Fatalf("templates announced %v: want 256, another ID, then 256 redefined", ids)
	}
	if n := countWithdrawals(stream); n != 1 {
		t.Fatalf("%d withdrawals, want 1 (the exporter's own redefinition)", n)
	}
}

// Domains are bounded: records of a domain beyond the bound are refused
// and counted; known domains go on.
func TestIPFIXDomainBound(t *testing.T) {
	l := idsLayout(t, 256, []ipfix.FieldSpec{{ID: 8, Length: 4}})
	n := 0
	enc := newIPFIXEncoder(1400, func([]byte, int) { n++ })
	var r ipfix.Record
	it := ipfix.NewDataIter(l, []byte{10, 0, 0, 1})
	it.Next(&r)
	m := &jsonl.Meta{Exporter: netip.MustParseAddrPort("192.0.2.1:4739"), Msg: &ipfix.Message{}}
	for d := range uint32(maxEncDomains + 10) {
		m.Msg.DomainID = d
		ok := enc.record(m, &r)
		if ok != (d < maxEncDomains) {
			t.Fatalf("domain %d: accepted %v", d, ok)
		}
	}
	m.Msg.DomainID = 1
	if !enc.record(m, &r) {
		t.Fatal("a known domain refused")
	}
	enc.finish()
	if got := enc.refused.Load(); got != 10 {
		t.Fatalf("refused %d, want 10", got)
	}
}
