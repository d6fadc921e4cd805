package collector

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/entry"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

var (
	exporterA = netip.MustParseAddrPort("192.0.2.10:40000")
	exporterB = netip.MustParseAddrPort("192.0.2.20:40000")
	t0        = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC).UnixNano()
)

// tuple is a small test template: source address, ports, octet count.
var tuple = []ipfix.FieldSpec{
	{ID: 8, Length: 4}, {ID: 7, Length: 2}, {ID: 11, Length: 2}, {ID: 1, Length: 8},
}

func appendTuple(b []byte, i int) []byte {
	b = ipfix.AppendAddr(b, netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}))
	b = ipfix.AppendUint(b, uint64(1000+i), 2)
	b = ipfix.AppendUint(b, 443, 2)
	return ipfix.AppendUint(b, uint64(i*100), 8)
}

// gen builds IPFIX messages for one observation domain with correct
// sequence numbers.
type gen struct{ w ipfix.MessageWriter }

func newGen(domain uint32) *gen { return &gen{w: ipfix.MessageWriter{DomainID: domain}} }

func (g *gen) templates(id uint16, fields []ipfix.FieldSpec) []byte {
	b := g.w.Begin(nil, 1700000000)
	b = g.w.BeginSet(b, ipfix.TemplateSetID)
	b = ipfix.AppendTemplateRecord(b, id, fields)
	b = g.w.EndSet(b)
	b, _ = g.w.Finish(b)
	return b
}

func (g *gen) withdrawal(id uint16) []byte {
	b := g.w.Begin(nil, 1700000000)
	b = g.w.BeginSet(b, ipfix.TemplateSetID)
	b = ipfix.AppendWithdrawal(b, id)
	b = g.w.EndSet(b)
	b, _ = g.w.Finish(b)
	return b
}

// data returns a message with n tuple records of template id, numbered from
// first.
func (g *gen) data(id uint16, first, n int) []byte {
	b := g.w.Begin(nil, 1700000000)
	b = g.w.BeginSet(b, id)
	for i := range n {
		b = appendTuple(b, first+i)
	}
	b = g.w.EndSet(b)
	g.w.AddRecords(n)
	b, _ = g.w.Finish(b)
	return b
}

func testCollector(t testing.TB, cfg Config) (*Collector, *loop) {
	t.Helper()
	cfg.Loops = 1
	if cfg.RingSize == 0 {
		cfg.RingSize = 1 << 20
	}
	c, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := c.loops[0]
	l.now = t0
	return c, l
}

// drained is what a test consumer read from a loop's ring.
type drained struct {
	templates, data, withdrawals int
	records                      int
	firstOctets                  []uint64 // octetDeltaCount of each data entry's first record, in order
	received                     []int64  // each data entry's receive time, in order
}

func drain(t testing.TB, l *loop) drained {
	t.Helper()
	var d drained
	c := l.ring.Consumer()
	var h entry.Header
	for {
		b := c.Next()
		if b == nil {
			return d
		}
		body, err := entry.Parse(b, &h)
		if err != nil {
			t.Fatal(err)
		}
		switch h.Kind {
		case entry.KindTemplate:
			d.templates++
		case entry.KindWithdrawal:
			d.withdrawals++
		case entry.KindData:
			d.data++
			d.records += int(h.Records)
			d.received = append(d.received, h.Received)
			if h.Version == ipfix.VersionIPFIX && len(body) >= 16 {
				d.firstOctets = append(d.firstOctets, binary.BigEndian.Uint64(body[8:16]))
			}
		}
		c.Release()
	}
}

func metricsText(c *Collector) string { return string(c.AppendMetrics(nil)) }

// metric returns the value of the sample whose line starts with prefix.
func metric(t testing.TB, c *Collector, prefix string) string {
	t.Helper()
	for line := range strings.Lines(metricsText(c)) {
		if strings.HasPrefix(line, prefix+" ") {
			return strings.TrimSpace(strings.TrimPrefix(line, prefix))
		}
	}
	t.Fatalf("no metric %s", prefix)
	return ""
}

func udpFrom(src netip.AddrPort) origin { return origin{src: src, transport: transportUDP} }

func TestDataBeforeTemplateIsHeldThenDecodedInOrder(t *testing.T) {
	c, l := testCollector(t, Config{})
	g := newGen(1)
	tpl := g.templates(256, tuple)
	for i := range 3 {
		l.handle(g.data(256, 10*i+1, 5), udpFrom(exporterA))
	}
	if d := drain(t, l); d.data != 0 {
		t.Fatalf("data without a template reached the ring: %+v", d)
	}
	if got := metric(t, c, "sluice_held_sets"); got != "3" {
		t.Fatalf("held sets = %s, want 3", got)
	}
	l.handle(tpl, udpFrom(exporterA))
	l.handle(g.data(256, 100, 2), udpFrom(exporterA))
	d := drain(t, l)
	if d.records != 17 || d.templates != 1 {
		t.Fatalf("after the template: %+v, want 17 records and 1 template entry", d)
	}
	// Arrival order: the held sets first (records 1, 11, 21), then the new one.
	want := []uint64{100, 1100, 2100, 10000}
	for i, w := range want {
		if d.firstOctets[i] != w {
			t.Fatalf("data entry %d starts with octets %d, want %d (order %v)", i, d.firstOctets[i], w, d.firstOctets)
		}
	}
	if got := metric(t, c, "sluice_held_sets"); got != "0" {
		t.Fatalf("held sets = %s after release", got)
	}
	if got := metric(t, c, "sluice_held_bytes"); got != "0" {
		t.Fatalf("held bytes = %s after release", got)
	}
}

func TestHeldSetsAgeOut(t *testing.T) {
	c, l := testCollector(t, Config{Held: HeldConfig{MaxAge: time.Second}})
	g := newGen(1)
	l.handle(g.data(256, 1, 4), udpFrom(exporterA))
	l.sweep(t0 + int64(500*time.Millisecond))
	if got := metric(t, c, "sluice_held_sets"); got != "1" {
		t.Fatalf("held sets = %s before the age limit", got)
	}
	l.sweep(t0 + int64(1500*time.Millisecond))
	if got := metric(t, c, `sluice_dropped_sets_total{reason="template_timeout"}`); got != "1" {
		t.Fatalf("template_timeout drops = %s, want 1", got)
	}
	l.now = t0 + int64(2*time.Second)
	l.handle(g.templates(256, tuple), udpFrom(exporterA))
	if d := drain(t, l); d.records != 0 {
		t.Fatalf("aged-out records were decoded: %+v", d)
	}
}

func TestHeldBoundsPerExporter(t *testing.T) {
	c, l := testCollector(t, Config{Held: HeldConfig{PerExporterBytes: 1000, TotalBytes: 1 << 20}})
	g := newGen(1)
	// Each set: 10 records of 16 octets plus overhead, about 256 octets.
	for i := range 6 {
		l.handle(g.data(256, i*10, 10), udpFrom(exporterA))
	}
	held := metric(t, c, "sluice_held_sets")
	drops := metric(t, c, `sluice_dropped_sets_total{reason="held_overflow"}`)
	if held != "3" || drops != "3" {
		t.Fatalf("held %s, overflow drops %s; want 3 and 3", held, drops)
	}
	// Another exporter has its own bound.
	l.handle(newGen(1).data(256, 0, 10), udpFrom(exporterB))
	if got := metric(t, c, "sluice_held_sets"); got != "4" {
		t.Fatalf("held sets = %s, want 4", got)
	}
}

func TestHeldBoundsTotal(t *testing.T) {
	c, l := testCollector(t, Config{Held: HeldConfig{PerExporterBytes: 1 << 20, TotalBytes: 600}})
	for i := range 4 {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}), 1000)
		l.handle(newGen(1).data(256, 0, 10), udpFrom(src))
	}
	if held, drops := metric(t, c, "sluice_held_sets"), metric(t, c, `sluice_dropped_sets_total{reason="held_overflow"}`); held != "2" || drops != "2" {
		t.Fatalf("held %s, overflow drops %s; want 2 and 2", held, drops)
	}
	if c.heldTotal.Load() > 600 {
		t.Fatalf("held %d bytes in total, bound 600", c.heldTotal.Load())
	}
}

func TestTemplateExpiryAndRefresh(t *testing.T) {
	c, l := testCollector(t, Config{TemplateLifetime: 10 * time.Second})
	g := newGen(1)
	l.handle(g.templates(256, tuple), udpFrom(exporterA))
	// A retransmission at 8 s refreshes the lifetime to 18 s.
	l.now = t0 + int64(8*time.Second)
	l.handle(g.templates(256, tuple), udpFrom(exporterA))
	if got := metric(t, c, "sluice_template_refreshes_total"); got != "1" {
		t.Fatalf("refreshes = %s", got)
	}
	l.now = t0 + int64(15*time.Second)
	l.handle(g.data(256, 1, 3), udpFrom(exporterA))
	if d := drain(t, l); d.records != 3 {
		t.Fatalf("refreshed template did not decode: %+v", d)
	}
	l.now = t0 + int64(19*time.Second)
	l.handle(g.data(256, 1, 3), udpFrom(exporterA))
	if d := drain(t, l); d.records != 0 {
		t.Fatalf("expired template still decodes: %+v", d)
	}
	if got := metric(t, c, "sluice_held_sets"); got != "1" {
		t.Fatalf("data for the expired template should be held, held = %s", got)
	}
}

func TestRedefinitionReplacesLayout(t *testing.T) {
	c, l := testCollector(t, Config{})
	g := newGen(1)
	l.handle(g.templates(256, tuple), udpFrom(exporterA))
	short := tuple[:3] // 8-octet records now
	l.handle(g.templates(256, short), udpFrom(exporterA))
	if got := metric(t, c, "sluice_template_redefinitions_total"); got != "1" {
		t.Fatalf("redefinitions = %s", got)
	}
	b := g.w.Begin(nil, 1700000000)
	b = g.w.BeginSet(b, 256)
	for i := range 4 {
		b = ipfix.AppendAddr(b, netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}))
		b = ipfix.AppendUint(b, 1, 2)
		b = ipfix.AppendUint(b, 2, 2)
	}
	b = g.w.EndSet(b)
	g.w.AddRecords(4)
	b, _ = g.w.Finish(b)
	l.handle(b, udpFrom(exporterA))
	d := drain(t, l)
	// Both definitions were announced to the consumer when learned.
	if d.records != 4 || d.templates != 2 {
		t.Fatalf("%+v: want 4 records decoded with the new 8-octet layout", d)
	}
}

func TestWithdrawalIgnoredOverUDPHonouredOverTCP(t *testing.T) {
	c, l := testCollector(t, Config{})
	g := newGen(1)
	l.handle(g.templates(256, tuple), udpFrom(exporterA))
	l.handle(g.withdrawal(256), udpFrom(exporterA))
	l.handle(g.data(256, 1, 2), udpFrom(exporterA))
	if d := drain(t, l); d.records != 2 {
		t.Fatalf("UDP withdrawal was honoured: %+v", d)
	}
	if got := metric(t, c, `sluice_template_withdrawals_total{action="ignored"}`); got != "1" {
		t.Fatalf("ignored withdrawals = %s", got)
	}

	s := &tcpSession{id: 7, remote: exporterB, loop: l}
	tcp := origin{src: exporterB, transport: transportTCP, session: s}
	h := newGen(5)
	l.handle(h.templates(256, tuple), tcp)
	l.handle(h.templates(257, tuple), tcp)
	l.handle(h.withdrawal(256), tcp)
	l.handle(h.data(256, 1, 2), tcp)
	l.handle(h.data(257, 1, 2), tcp)
	d := drain(t, l)
	if d.records != 2 || d.withdrawals != 1 {
		t.Fatalf("TCP withdrawal of 256: %+v, want only template 257's 2 records", d)
	}
	// Withdraw-all (template ID 2) removes the rest of the domain.
	l.handle(h.withdrawal(ipfix.WithdrawAllTemplates), tcp)
	l.handle(h.data(257, 1, 2), tcp)
	if d := drain(t, l); d.records != 0 {
		t.Fatalf("withdraw-all left templates: %+v", d)
	}
	// Templates of a TCP session die with it.
	l.handle(h.templates(258, tuple), tcp)
	l.sessionClosed(s)
	l.handle(h.data(258, 1, 2), tcp)
	if d := drain(t, l); d.records != 0 {
		t.Fatalf("session templates outlived the session: %+v", d)
	}
	// The UDP exporter's template is untouched.
	l.handle(g.data(256, 1, 1), udpFrom(exporterA))
	if d := drain(t, l); d.records != 1 {
		t.Fatalf("UDP template lost: %+v", d)
	}
}

func TestSequenceAccounting(t *testing.T) {
	c, l := testCollector(t, Config{})
	g := newGen(3)
	l.handle(g.templates(256, tuple), udpFrom(exporterA))
	msgs := make([][]byte, 8)
	for i := range msgs {
		msgs[i] = g.data(256, i*10, 5) // 5 records each
	}
	// Lose message 2 (5 records) and messages 4 and 5 (10 records); deliver
	// 7 before 6 (so 6 is first counted lost, then recovered).
	for _, i := range []int{0, 1, 3, 7, 6} {
		l.handle(msgs[i], udpFrom(exporterA))
	}
	ex := c.Exporters()
	if len(ex) != 1 {
		t.Fatalf("exporters: %+v", ex)
	}
	if ex[0].SequenceLost != 15 || ex[0].OutOfOrder != 1 || ex[0].SequenceResets != 0 {
		t.Fatalf("lost %d out-of-order %d resets %d; want 15, 1, 0", ex[0].SequenceLost, ex[0].OutOfOrder, ex[0].SequenceResets)
	}
	// An exporter restart: sequence numbers start again from 0.
	g2 := newGen(3)
	g2.templates(256, tuple) // a template message does not advance the sequence
	l.handle(g2.data(256, 0, 5), udpFrom(exporterA))
	l.handle(g2.data(256, 0, 5), udpFrom(exporterA))
	ex = c.Exporters()
	if ex[0].SequenceResets != 1 || ex[0].SequenceLost != 15 {
		t.Fatalf("after restart: lost %d resets %d; want 15 and 1", ex[0].SequenceLost, ex[0].SequenceResets)
	}
}

// TestSequenceWrapAround crosses 2^32: sequence numbers are modular (RFC
// 7011 section 3.1), so a stream that wraps loses nothing and is no
// restart, and a message lost across the wrap counts its records.
func TestSequenceWrapAround(t *testing.T) {
	c, l := testCollector(t, Config{})
	g := newGen(3)
	g.w.Sequence = 1<<32 - 12
	l.handle(g.templates(256, tuple), udpFrom(exporterA))
	var msgs [][]byte
	for i := range 6 {
		msgs = append(msgs, g.data(256, i*5, 5)) // 5 records each: 2^32-12 ... 18
	}
	for _, i := range []int{0, 1, 2} { // up to 2^32-12+15 = 3: across the wrap
		l.handle(msgs[i], udpFrom(exporterA))
	}
	ex := c.Exporters()
	if len(ex) != 1 || ex[0].SequenceLost != 0 || ex[0].SequenceResets != 0 || ex[0].OutOfOrder != 0 {
		t.Fatalf("across the wrap: %+v; want no loss, reset or reordering", ex)
	}
	l.handle(msgs[4], udpFrom(exporterA)) // message 3 (5 records) lost
	l.handle(msgs[5], udpFrom(exporterA))
	if ex = c.Exporters(); ex[0].SequenceLost != 5 || ex[0].SequenceResets != 0 {
		t.Fatalf("after a loss past the wrap: lost %d resets %d; want 5 and 0", ex[0].SequenceLost, ex[0].SequenceResets)
	}
	l.handle(msgs[3], udpFrom(exporterA)) // late: no longer lost
	if ex = c.Exporters(); ex[0].SequenceLost != 0 || ex[0].OutOfOrder != 1 {
		t.Fatalf("after the late message: lost %d out of order %d; want 0 and 1", ex[0].SequenceLost, ex[0].OutOfOrder)
	}
}

func TestNetFlow9SequenceCountsPackets(t *testing.T) {
	c, l := testCollector(t, Config{})
	w := ipfix.MessageWriter{Version: ipfix.VersionNetFlow9, DomainID: 9}
	msg := func(withTemplate bool, n int) []byte {
		b := w.Begin(nil, 1700000000)
		if withTemplate {
			b = w.BeginSet(b, ipfix.TemplateSetID)
			b = ipfix.AppendTemplateRecord(b, 300, tuple)
			b = w.EndSet(b)
			w.AddTemplates(1)
		}
		b = w.BeginSet(b, 300)
		for i := range n {
			b = appendTuple(b, i)
		}
		b = w.EndSet(b)
		w.AddRecords(n)
		b, _ = w.Finish(b)
		return b
	}
	l.handle(msg(true, 3), udpFrom(exporterA))
	l.handle(msg(false, 3), udpFrom(exporterA))
	msg(false, 3) // lost
	msg(false, 3) // lost
	l.handle(msg(false, 3), udpFrom(exporterA))
	if d := drain(t, l); d.records != 9 {
		t.Fatalf("decoded %d v9 records, want 9", d.records)
	}
	if ex := c.Exporters(); len(ex) != 1 || ex[0].SequenceLost != 2 || ex[0].Version != 9 {
		t.Fatalf("exporters %+v: want 2 packets lost", ex)
	}
}

func TestUDPRingFullDropsAndCounts(t *testing.T) {
	c, l := testCollector(t, Config{RingSize: 64 << 10})
	g := newGen(1)
	l.handle(g.templates(256, tuple), udpFrom(exporterA))
	sent := 0
	for i := range 200 {
		l.handle(g.data(256, i, 60), udpFrom(exporterA))
		sent += 60
	}
	d := drain(t, l)
	dropped := metric(t, c, `sluice_dropped_records_total{reason="ring_full"}`)
	if d.records == sent || dropped == "0" {
		t.Fatalf("ring never filled: %d of %d records, dropped %s", d.records, sent, dropped)
	}
	if n, err := strconv.Atoi(dropped); err != nil || d.records+n != sent {
		t.Fatalf("delivered %d + dropped %s, want %d", d.records, dropped, sent)
	}
	// Loss is counted once, in records, not again as sets.
	if got := metric(t, c, `sluice_dropped_sets_total{reason="ring_full"}`); got != "0" {
		t.Fatalf("ring_full also counted as %s sets", got)
	}
}

func TestMalformedInputCountedNotFatal(t *testing.T) {
	c, l := testCollector(t, Config{})
	g := newGen(1)
	good := g.data(256, 1, 2)
	bad := append([]byte(nil), good...)
	binary.BigEndian.PutUint16(bad[2:], 9999) // length lies
	l.handle(bad, udpFrom(exporterA))
	l.handle([]byte{0, 10, 0}, udpFrom(exporterA))
	l.handle([]byte("garbage that is not flow export"), udpFrom(exporterA))
	if got := metric(t, c, `sluice_malformed_total{reason="bad_message_length"}`); got != "1" {
		t.Fatalf("bad_message_length = %s", got)
	}
	if got := metric(t, c, `sluice_malformed_total{reason="short_message"}`); got != "1" {
		t.Fatalf("short_message = %s", got)
	}
	if got := metric(t, c, `sluice_malformed_total{reason="bad_version"}`); got != "1" {
		t.Fatalf("bad_version = %s", got)
	}
}

func TestNetFlow5(t *testing.T) {
	c, l := testCollector(t, Config{})
	b := make([]byte, ipfix.HeaderLenV5+2*48)
	binary.BigEndian.PutUint16(b, 5)
	binary.BigEndian.PutUint16(b[2:], 2)
	l.handle(b, udpFrom(exporterA))
	if d := drain(t, l); d.records != 2 || d.data != 1 {
		t.Fatalf("v5: %+v", d)
	}
	if got := metric(t, c, "sluice_collected_records_total"); got != "2" {
		t.Fatalf("collected records = %s, want 2", got)
	}
}

func TestOptionsRecordsKeptPerExporter(t *testing.T) {
	c, l := testCollector(t, Config{})
	w := ipfix.MessageWriter{DomainID: 4}
	b := w.Begin(nil, 1700000000)
	b = w.BeginSet(b, ipfix.OptionsTemplateSetID)
	b = ipfix.AppendOptionsTemplateRecord(b, 400, 1, []ipfix.FieldSpec{
		{ID: 144, Length: 4},           // exportingProcessId (scope)
		{ID: 305, Length: 4},           // samplingPacketInterval
		{ID: 160, Length: 8},           // systemInitTimeMilliseconds
		{ID: 82, Length: ipfix.VarLen}, // interfaceName
	})
	b = w.EndSet(b)
	b = w.BeginSet(b, 400)
	b = ipfix.AppendUint(b, 1, 4)
	b = ipfix.AppendUint(b, 1000, 4)
	b = ipfix.AppendUint(b, 1700000000000, 8)
	b = ipfix.AppendVarlen(b, []byte("ge-0/0/1"))
	b = w.EndSet(b)
	w.AddRecords(1)
	b, _ = w.Finish(b)
	l.handle(b, udpFrom(exporterA))
	opts := c.Options(ExporterKey{netip.AddrPortFrom(exporterA.Addr(), 0), 4, ipfix.VersionIPFIX})
	got := string(opts["400"])
	want := `{"exportingProcessId":1,"samplingPacketInterval":1000,"systemInitTimeMilliseconds":"2023-11-14T22:13:20Z","interfaceName":"ge-0/0/1"}`
	if got != want {
		t.Fatalf("options = %s\nwant      %s", got, want)
	}
	if d := drain(t, l); d.records != 1 {
		t.Fatalf("options record not forwarded: %+v", d)
	}
}

// A template that a second TCP session re-sends belongs to that session
// from then on: the first session closing must not take it away.
func TestTemplateOwnershipMovesToResendingSession(t *testing.T) {
	_, l := testCollector(t, Config{})
	a := &tcpSession{id: 1, remote: exporterA, loop: l}
	b := &tcpSession{id: 2, remote: netip.AddrPortFrom(exporterA.Addr(), 40001), loop: l}
	ga, gb := newGen(1), newGen(1)
	l.handle(ga.templates(256, tuple), origin{src: a.remote, transport: transportTCP, session: a})
	l.handle(gb.templates(256, tuple), origin{src: b.remote, transport: transportTCP, session: b})
	l.sessionClosed(a)
	l.handle(gb.data(256, 1, 3), origin{src: b.remote, transport: transportTCP, session: b})
	if d := drain(t, l); d.records != 3 {
		t.Fatalf("session b's template went with session a: %+v", d)
	}
}

// Sequence numbers: a duplicate datagram or a late template-only message
// is not loss and not a restart.
func TestSequenceDuplicatesAreNotLoss(t *testing.T) {
	c, l := testCollector(t, Config{})
	g := newGen(3)
	l.handle(g.templates(256, tuple), udpFrom(exporterA))
	m1 := g.data(256, 0, 10)
	m2 := g.data(256, 10, 10)
	late := g.templates(256, tuple) // carries sequence 20, no records
	m3 := g.data(256, 20, 10)
	m4 := g.data(256, 30, 10)
	for _, m := range [][]byte{m1, m2, m2, m3, late, m4} {
		l.handle(m, udpFrom(exporterA))
	}
	ex := c.Exporters()[0]
	if ex.SequenceLost != 0 || ex.SequenceResets != 0 {
		t.Fatalf("lost %d resets %d; want 0 and 0", ex.SequenceLost, ex.SequenceResets)
	}
}

// Sequence numbers are per transport session: two sockets of one exporter
// address do not look like loss to each other.
func TestSequencePerSourcePort(t *testing.T) {
	c, l := testCollector(t, Config{})
	g1, g2 := newGen(3), newGen(3)
	l.handle(g1.templates(256, tuple), udpFrom(exporterA))
	other := netip.AddrPortFrom(exporterA.Addr(), 40002)
	for i := range 5 {
		l.handle(g1.data(256, i, 10), udpFrom(exporterA))
		l.handle(g2.data(256, i, 7), udpFrom(other))
	}
	ex := c.Exporters()[0]
	if ex.SequenceLost != 0 || ex.SequenceResets != 0 || ex.OutOfOrder != 0 {
		t.Fatalf("two sockets of one exporter: lost %d resets %d late %d", ex.SequenceLost, ex.SequenceResets, ex.OutOfOrder)
	}
	if d := drain(t, l); d.records != 5*10+5*7 {
		t.Fatalf("records %d", d.records)
	}
}

func TestTemplateLimit(t *testing.T) {
	c, l := testCollector(t, Config{MaxTemplates: 3})
	g := newGen(1)
	for id := range uint16(5) {
		l.handle(g.templates(256+id, tuple), udpFrom(exporterA))
	}
	if got := metric(t, c, `sluice_dropped_sets_total{reason="template_limit"}`); got != "2" {
		t.Fatalf("template_limit drops = %s, want 2", got)
	}
	if got := metric(t, c, "sluice_templates"); got != "3" {
		t.Fatalf("templates = %s, want 3", got)
	}
	// Known templates are still refreshed and redefined at the limit.
	l.handle(g.templates(256, tuple[:2]), udpFrom(exporterA))
	if got := metric(t, c, "sluice_template_redefinitions_total"); got != "1" {
		t.Fatalf("redefinition at the limit refused: %s", got)
	}
}

// Records carry the time their message was read; held ones keep the time
// they arrived, not the time their template came.
func TestReceiveTime(t *testing.T) {
	_, l := testCollector(t, Config{})
	g := newGen(1)
	l.now = t0
	l.handle(g.data(256, 0, 2), udpFrom(exporterA)) // held: no template yet
	l.now = t0 + int64(3*time.Second)
	l.handle(g.templates(256, tuple), udpFrom(exporterA))
	l.handle(g.data(256, 2, 2), udpFrom(exporterA))
	d := drain(t, l)
	if len(d.received) != 2 || d.received[0] != t0 || d.received[1] != t0+int64(3*time.Second) {
		t.Fatalf("receive times %v, want [%d %d]", d.received, t0, t0+int64(3*time.Second))
	}
}
