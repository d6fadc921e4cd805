package mediator

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/entry"
	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
	"github.com/sluice-flow/sluice/dataplane/ring"
)

func push(t *testing.T, p *ring.Producer, h entry.Header, body []byte) {
	t.Helper()
	b := p.Reserve(entry.HeaderLen + len(body))
	if b == nil {
		t.Fatal("ring full")
	}
	entry.Put(b, &h)
	copy(b[entry.HeaderLen:], body)
	p.Commit(len(b))
}

// The consumer follows the producer's template announcements, and forgets
// them all on a reset entry.
func TestEntriesAndReset(t *testing.T) {
	r := ring.New(1 << 20)
	p := r.Producer()
	d := &export.Discard{}
	m := New([]*ring.Ring{r}, []export.Output{d}, nil)

	specs := []ipfix.FieldSpec{{ID: 8, Length: 4}, {ID: 1, Length: 8}}
	raw := ipfix.AppendTemplateRecord(nil, 256, specs)
	var tr ipfix.TemplateRecord
	if err := ipfix.ParseTemplateRecord(raw, false, false, &tr); err != nil {
		t.Fatal(err)
	}
	l, err := ipfix.Compile(&tr)
	if err != nil {
		t.Fatal(err)
	}
	exp := netip.MustParseAddrPort("192.0.2.1:9999")
	tpl := entry.Header{Kind: entry.KindTemplate, Version: 10, Domain: 1, Exporter: exp, TemplateID: 256, Fingerprint: l.Fingerprint}
	data := entry.Header{Kind: entry.KindData, Version: 10, Domain: 1, Exporter: exp, TemplateID: 256, Fingerprint: l.Fingerprint, Records: 3}
	var body []byte
	for i := range 3 {
		body = ipfix.AppendAddr(body, netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}))
		body = ipfix.AppendUint(body, uint64(i), 8)
	}
	push(t, p, tpl, raw)
	push(t, p, data, body)
	push(t, p, entry.Header{Kind: entry.KindReset}, nil)
	push(t, p, data, body) // its template was forgotten
	push(t, p, tpl, raw)
	push(t, p, data, body)
	v5 := make([]byte, 48)
	push(t, p, entry.Header{Kind: entry.KindData, Version: 5, Fingerprint: ipfix.V5Layout().Fingerprint, Records: 1}, v5)

	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Run drains what is queued, then returns
	m.Run(ctx)
	if got := d.Stats().Sent; got != 7 {
		t.Fatalf("sent %d records, want 7", got)
	}
	metrics := string(m.AppendMetrics(nil))
	if !strings.Contains(metrics, "sluice_mediator_unknown_template_records_total 3") {
		t.Fatalf("records without a template not counted:\n%s", metrics)
	}
}

// Two templates with the same fields share a fingerprint; records must
// still name the template of their own set.
func TestSameContentDifferentIDs(t *testing.T) {
	r := ring.New(1 << 20)
	p := r.Producer()
	out := &idOut{}
	m := New([]*ring.Ring{r}, []export.Output{out}, nil)
	specs := []ipfix.FieldSpec{{ID: 8, Length: 4}}
	exp := netip.MustParseAddrPort("192.0.2.1:9999")
	scope := netip.AddrPortFrom(exp.Addr(), 0)
	var fp uint64
	for _, id := range []uint16{1024, 1025} {
		raw := ipfix.AppendTemplateRecord(nil, id, specs)
		var tr ipfix.TemplateRecord
		if err := ipfix.ParseTemplateRecord(raw, false, false, &tr); err != nil {
			t.Fatal(err)
		}
		l, _ := ipfix.Compile(&tr)
		fp = l.Fingerprint
		push(t, p, entry.Header{Kind: entry.KindTemplate, Version: 10, Exporter: scope, TemplateID: id, Fingerprint: fp}, raw)
	}
	push(t, p, entry.Header{Kind: entry.KindData, Version: 10, Exporter: exp, TemplateID: 1024, Fingerprint: fp, Records: 1}, []byte{10, 0, 0, 1})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m.Run(ctx)
	if len(out.ids) != 1 || out.ids[0] != 1024 {
		t.Fatalf("record named template %v, want 1024", out.ids)
	}
}

type idOut struct {
	ids      []uint16
	received []int64
}

func (o *idOut) Record(m *jsonl.Meta, r *ipfix.Record) {
	o.ids = append(o.ids, r.Layout.ID)
	o.received = append(o.received, m.Received)
}
func (o *idOut) Flush() error        { return nil }
func (o *idOut) Close() error        { return nil }
func (o *idOut) Name() string        { return "ids" }
func (o *idOut) Stats() export.Stats { return export.Stats{Sent: uint64(len(o.ids))} }

// A TCP session's templates are its own (RFC 7011 section 8): the same ID
// from a UDP exporter on the same address names another template. Records
// also carry the receive time of their entry.
func TestSessionScopedTemplates(t *testing.T) {
	r := ring.New(1 << 20)
	p := r.Producer()
	out := &idOut{}
	m := New([]*ring.Ring{r}, []export.Output{out}, nil)
	exp := netip.MustParseAddrPort("192.0.2.1:9999")
	scope := netip.AddrPortFrom(exp.Addr(), 0)
	announce := func(session uint64, id uint16, specs []ipfix.FieldSpec) uint64 {
		raw := ipfix.AppendTemplateRecord(nil, id, specs)
		var tr ipfix.TemplateRecord
		if err := ipfix.ParseTemplateRecord(raw, false, false, &tr); err != nil {
			t.Fatal(err)
		}
		l, err := ipfix.Compile(&tr)
		if err != nil {
			t.Fatal(err)
		}
		push(t, p, entry.Header{Kind: entry.KindTemplate, Version: 10, Exporter: scope, Session: session, TemplateID: id, Fingerprint: l.Fingerprint}, raw)
		return l.Fingerprint
	}
	x := []ipfix.FieldSpec{{ID: 8, Length: 4}}
	y := []ipfix.FieldSpec{{ID: 12, Length: 4}, {ID: 7, Length: 2}}
	fpX := announce(0, 1024, x) // UDP: 1024 has fields x
	announce(7, 1025, x)        // session 7: 1025 has the same fields
	announce(7, 1024, y)        // session 7: its own 1024 differs
	push(t, p, entry.Header{Kind: entry.KindData, Version: 10, Exporter: exp, TemplateID: 1024, Fingerprint: fpX, Records: 1, Received: 111}, []byte{10, 0, 0, 1})
	push(t, p, entry.Header{Kind: entry.KindData, Version: 10, Exporter: exp, Session: 7, TemplateID: 1025, Fingerprint: fpX, Records: 1, Received: 222}, []byte{10, 0, 0, 2})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m.Run(ctx)
	if len(out.ids) != 2 || out.ids[0] != 1024 || out.ids[1] != 1025 {
		t.Fatalf("records named templates %v, want [1024 1025]", out.ids)
	}
	if len(out.received) != 2 || out.received[0] != 111 || out.received[1] != 222 {
		t.Fatalf("receive times %v, want [111 222]", out.received)
	}
}
