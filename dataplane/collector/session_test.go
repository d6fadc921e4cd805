package collector

import (
	"net/netip"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/template"
)

func tcpFrom(s *tcpSession) origin {
	return origin{src: s.remote, transport: transportTCP, session: s}
}

// A TCP session withdrawing template 256 (one and all) takes its own
// template only: the exporter's UDP template with the same ID decodes on.
func TestTCPWithdrawalLeavesUDPTemplate(t *testing.T) {
	c, l := testCollector(t, Config{})
	s := &tcpSession{id: 1, remote: netip.AddrPortFrom(exporterA.Addr(), 50000), loop: l}
	ug, tg := newGen(1), newGen(1)
	l.handle(ug.templates(256, tuple), udpFrom(exporterA))
	l.handle(tg.templates(256, tuple[:3]), tcpFrom(s))
	l.handle(tg.withdrawal(256), tcpFrom(s))
	l.handle(tg.templates(256, tuple[:3]), tcpFrom(s))
	l.handle(tg.withdrawal(ipfix.WithdrawAllTemplates), tcpFrom(s))
	l.handle(ug.withdrawal(256), udpFrom(exporterA)) // ignored over UDP
	l.handle(ug.data(256, 1, 4), udpFrom(exporterA))
	l.handle(tg.data(256, 1, 2), tcpFrom(s)) // held: the session has no template
	if d := drain(t, l); d.records != 4 {
		t.Fatalf("decoded %d records, want the 4 UDP ones", d.records)
	}
	if got := metric(t, c, `sluice_template_withdrawals_total{action="honoured"}`); got != "2" {
		t.Fatalf("honoured withdrawals %s, want 2", got)
	}
	if got := metric(t, c, "sluice_held_sets"); got != "1" {
		t.Fatalf("held sets %s, want 1", got)
	}
	// The session closes: what it held can no longer be decoded.
	l.sessionClosed(s)
	if got := metric(t, c, `sluice_dropped_sets_total{reason="template_timeout"}`); got != "1" {
		t.Fatalf("template_timeout drops %s, want 1", got)
	}
	if l.held.sets != 0 || len(l.held.perExporter) != 0 || c.heldTotal.Load() != 0 {
		t.Fatalf("held after close: %d sets, %v", l.held.sets, l.held.perExporter)
	}
}

// A TCP session's data waits for its own template, bounded per session, and
// its template never serves another session or UDP.
func TestHeldPerSession(t *testing.T) {
	_, l := testCollector(t, Config{})
	a := &tcpSession{id: 1, remote: netip.AddrPortFrom(exporterA.Addr(), 50000), loop: l}
	b := &tcpSession{id: 2, remote: netip.AddrPortFrom(exporterA.Addr(), 50001), loop: l}
	ga, gb, gu := newGen(1), newGen(1), newGen(1)
	l.handle(gb.data(256, 0, 3), tcpFrom(b))
	l.handle(gu.data(256, 0, 5), udpFrom(exporterA))
	l.handle(ga.templates(256, tuple), tcpFrom(a))
	if d := drain(t, l); d.records != 0 {
		t.Fatalf("session a's template decoded %d records of others", d.records)
	}
	if n := len(l.held.perExporter); n != 2 {
		t.Fatalf("%d held scopes, want 2 (udp, session b)", n)
	}
	l.handle(gb.templates(256, tuple), tcpFrom(b))
	if d := drain(t, l); d.records != 3 {
		t.Fatalf("session b's held data: %d records, want 3", d.records)
	}
	l.handle(gu.templates(256, tuple), udpFrom(exporterA))
	if d := drain(t, l); d.records != 5 {
		t.Fatalf("udp held data: %d records, want 5", d.records)
	}
}

// A closed session's counts are folded into one "closed" entry of its
// exporter and domain, kept in the API and the metrics until it has been
// idle as long as any exporter may be.
func TestClosedSessionCounts(t *testing.T) {
	c, l := testCollector(t, Config{})
	s := &tcpSession{id: 9, remote: netip.AddrPortFrom(exporterA.Addr(), 50000), loop: l}
	ug, tg := newGen(1), newGen(1)
	l.handle(ug.templates(256, tuple), udpFrom(exporterA))
	l.handle(ug.data(256, 0, 4), udpFrom(exporterA))
	l.handle(tg.templates(256, tuple), tcpFrom(s))
	l.handle(tg.data(256, 0, 6), tcpFrom(s))
	const series = `sluice_exporter_records_total{exporter="192.0.2.10",domain="1",version="10"}`
	if ex := c.Exporters(); len(ex) != 2 || metric(t, c, series) != "10" {
		t.Fatalf("before close: %+v, %s", ex, metric(t, c, series))
	}
	l.sessionClosed(s)
	if ex := c.Exporters(); len(ex) != 2 || ex[0].Transport != "udp" || ex[1].Transport != "tcp" || !ex[1].Closed ||
		ex[1].TCPSession != 0 || ex[1].Records != 6 || metric(t, c, series) != "10" {
		t.Fatalf("after close: %+v, %s", ex, metric(t, c, series))
	}
	if len(l.sessionKeys) != 0 || len(l.streams) != 1 || len(l.announce) != 1 {
		t.Fatalf("loop kept the session: %v, %d streams, %d announced", l.sessionKeys, len(l.streams), len(l.announce))
	}
	// The UDP exporter is still active, the closed sessions' entry idle:
	// it goes, and the series counts what stays.
	later := l.now + int64(3*time.Hour)
	c.exporters.get(template.DomainKey{Exporter: netip.AddrPortFrom(exporterA.Addr(), 0), Domain: 1, Version: 10}, later).lastSeen.Store(later)
	c.exporters.evict(later)
	if ex := c.Exporters(); len(ex) != 1 || ex[0].Transport != "udp" || metric(t, c, series) != "4" {
		t.Fatalf("after evicting idle entries: %+v, %s", ex, metric(t, c, series))
	}
	c.exporters.evict(later + int64(3*time.Hour))
	if n := len(c.exporters.m); n != 0 {
		t.Fatalf("%d registry entries left, want 0", n)
	}
}

// Keeping an options record copies bytes and allocates nothing once the
// exporter's buffer exists; formatting waits for the reader.
func TestKeepOptionsNoAllocs(t *testing.T) {
	_, l := testCollector(t, Config{})
	raw := ipfix.AppendOptionsTemplateRecord(nil, 400, 1, []ipfix.FieldSpec{{ID: 144, Length: 4}, {ID: 305, Length: 4}})
	var tr ipfix.TemplateRecord
	if err := ipfix.ParseTemplateRecord(raw, true, false, &tr); err != nil {
		t.Fatal(err)
	}
	lay, err := ipfix.Compile(&tr)
	if err != nil {
		t.Fatal(err)
	}
	body := ipfix.AppendUint(ipfix.AppendUint(nil, 1, 4), 1000, 4)
	m := &ipfix.Message{Version: ipfix.VersionIPFIX, DomainID: 1}
	ex := &exporterStats{}
	l.keepOptions(ex, lay, body, m)
	if a := testing.AllocsPerRun(100, func() { l.keepOptions(ex, lay, body, m) }); a != 0 {
		t.Fatalf("%v allocations per options record", a)
	}
	if got := string(ex.optionsJSON()["400"]); got != `{"exportingProcessId":1,"samplingPacketInterval":1000}` {
		t.Fatalf("options %s", got)
	}
}
