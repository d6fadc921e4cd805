package filter

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// oneVendorRecord decodes body as one record of l.
func oneVendorRecord(t *testing.T, l *ipfix.Layout, body []byte) *ipfix.Record {
	t.Helper()
	w := ipfix.MessageWriter{DomainID: 1}
	msg := w.Begin(nil, 1_700_000_000)
	msg = w.BeginSet(msg, l.ID)
	msg = append(msg, body...)
	msg = w.EndSet(msg)
	w.AddRecords(1)
	msg, err := w.Finish(msg)
	if err != nil {
		t.Fatal(err)
	}
	var m ipfix.Message
	if err := m.Decode(msg); err != nil {
		t.Fatal(err)
	}
	var s ipfix.Set
	sets := m.Sets()
	if !sets.Next(&s) {
		t.Fatal("no set")
	}
	var r ipfix.Record
	if it := s.Records(l); !it.Next(&r) {
		t.Fatalf("no record: %v", it.Err())
	}
	return &r
}

// Vendor and NetFlow v9 names resolve through the registry and compare by
// the type it gives them.
func TestVendorNames(t *testing.T) {
	v9, err := ipfix.Compile(&ipfix.TemplateRecord{ID: 260, V9: true, Fields: []ipfix.FieldSpec{
		{ID: 40001, Length: 4}, {ID: 40003, Length: 2}, {ID: 65, Length: 2},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	b = ipfix.AppendAddr(b, netip.MustParseAddr("192.0.2.7"))
	b = ipfix.AppendUint(b, 1024, 2)
	b = ipfix.AppendUint(b, 7, 2)
	v9Rec := oneVendorRecord(t, v9, b)

	ent := testLayout(t, []ipfix.FieldSpec{
		{ID: 128, Length: 4, PEN: 5951},            // NetScaler roundTripTime
		{ID: 111, Length: ipfix.VarLen, PEN: 3054}, // ixiaL7AppName
	})
	b = ipfix.AppendUint(nil, 42, 4)
	b = ipfix.AppendVarlen(b, []byte("netflix"))
	entRec := oneVendorRecord(t, ent, b)

	f := func(l *ipfix.Layout, r *ipfix.Record, expr string, want bool) {
		t.Helper()
		p, err := MustParse(expr).Compile(l)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		if got := p.Match(r); got != want {
			t.Errorf("%s = %v, want %v", expr, got, want)
		}
	}
	f(v9, v9Rec, "xlateSrcAddrIpv4 in 192.0.2.0/24 and xlateSrcPort == 1024", true)
	f(v9, v9Rec, "xlateSrcAddrIpv4 == 192.0.2.8", false)
	f(v9, v9Rec, "has _v9_65 and not has roundTripTime", true)
	f(ent, entRec, `roundTripTime > 10 and ixiaL7AppName == "netflix"`, true)
	f(ent, entRec, "roundTripTime < 10", false)
	f(ent, entRec, "xlateSrcPort == 1024", false) // not in this template

	if _, err := Parse("xlateSrcAddrIpv5 == 1.2.3.4"); err == nil {
		t.Error("an unknown name parsed")
	}
	// The registry's type decides what a literal may be.
	if _, err := MustParse(`roundTripTime == "slow"`).Compile(ent); err == nil || !strings.Contains(err.Error(), "unsigned32") {
		t.Errorf("string against unsigned32 roundTripTime: %v", err)
	}
}
