package collector_test

import (
	"encoding/json"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/collector"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// tcpLayout differs from tuple in order and length (17 octets a record, not
// 16): data decoded with the wrong one of the two comes out as garbage.
var tcpLayout = []ipfix.FieldSpec{{ID: 1, Length: 8}, {ID: 2, Length: 8}, {ID: 4, Length: 1}}

// layoutGen builds the messages of one exporter process: one template (ID
// 256) and data records whose octetDeltaCount values are first, first+1...
type layoutGen struct {
	w      ipfix.MessageWriter
	fields []ipfix.FieldSpec
}

func (g *layoutGen) template() []byte {
	b := g.w.Begin(nil, 1700000000)
	b = g.w.BeginSet(b, ipfix.TemplateSetID)
	b = ipfix.AppendTemplateRecord(b, 256, g.fields)
	b = g.w.EndSet(b)
	b, _ = g.w.Finish(b)
	return b
}

// data returns a message of n records and the sum of their octet counts.
func (g *layoutGen) data(first, n int) ([]byte, uint64) {
	b := g.w.Begin(nil, 1700000000)
	b = g.w.BeginSet(b, 256)
	var sum uint64
	for i := range n {
		v := uint64(first + i)
		sum += v
		for _, f := range g.fields {
			switch f.ID {
			case 1:
				b = ipfix.AppendUint(b, v, 8)
			case 8:
				b = ipfix.AppendAddr(b, netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}))
			default:
				b = ipfix.AppendUint(b, uint64(i), int(f.Length))
			}
		}
	}
	b = g.w.EndSet(b)
	g.w.AddRecords(n)
	b, _ = g.w.Finish(b)
	return b, sum
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) waitSum(t *testing.T, records, sum uint64) {
	t.Helper()
	h.waitRecords(t, records)
	if got := h.out.sum.Load(); got != sum {
		t.Fatalf("octet sum %d, want %d (records decoded with another transport's template)", got, sum)
	}
}

// RFC 7011 section 8: a UDP template belongs to (exporter, domain), a TCP
// template to its transport session. A UDP and a TCP exporter on one
// address, with the same domain and template ID but different layouts, must
// each decode with their own template, and the TCP session closing must
// leave the UDP template alone.
func TestUDPAndTCPTemplatesOfOneAddressStayApart(t *testing.T) {
	h := start(t, collector.Config{}, true)
	addr := "127.0.0.1:" + strconv.Itoa(h.port)
	u, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	tc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	ug := &layoutGen{w: ipfix.MessageWriter{DomainID: 1}, fields: tuple}
	tg := &layoutGen{w: ipfix.MessageWriter{DomainID: 1}, fields: tcpLayout}

	var records, sum uint64
	send := func(c net.Conn, g *layoutGen, first, n int) {
		t.Helper()
		b, s := g.data(first, n)
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		records += uint64(n)
		sum += s
		h.waitSum(t, records, sum)
	}
	u.Write(ug.template())
	send(u, ug, 1, 10)
	tc.Write(tg.template())
	send(tc, tg, 1000, 10)
	send(u, ug, 100, 10) // the TCP template must not have replaced the UDP one
	send(tc, tg, 2000, 10)

	ex := h.c.Exporters()
	if len(ex) != 2 {
		t.Fatalf("%d exporter entries, want 2 (udp and tcp): %+v", len(ex), ex)
	}
	for i, e := range ex {
		if e.Exporter != "127.0.0.1" || e.ObservationDomain != 1 || e.Messages != 3 || e.Records != 20 || e.Templates != 1 {
			t.Fatalf("exporter entry %+v", e)
		}
		// UDP first, then the TCP session.
		if want := []string{"udp", "tcp"}[i]; e.Transport != want || (e.TCPSession != 0) != (want == "tcp") {
			t.Fatalf("entry %d: transport %q session %d, want %s", i, e.Transport, e.TCPSession, want)
		}
	}
	ts := h.c.TemplateList()
	if len(ts) != 2 || ts[0].Transport != "udp" || ts[0].RecordLength != 16 || ts[0].Expires == nil ||
		ts[1].Transport != "tcp" || ts[1].RecordLength != 17 || ts[1].TCPSession != ex[1].TCPSession || ts[1].Expires != nil {
		t.Fatalf("templates %+v", ts)
	}

	// The TCP session ends: its template goes, the UDP one (with most of
	// its lifetime left) stays.
	tc.Close()
	waitFor(t, "the tcp session's template to go", func() bool {
		for _, s := range h.c.TemplateList() {
			if s.TCPSession != 0 {
				return false
			}
		}
		return true
	})
	if ts := h.c.TemplateList(); len(ts) != 1 || ts[0].RecordLength != 16 {
		t.Fatalf("templates after the tcp session closed: %+v", ts)
	}
	send(u, ug, 200, 10)
	// The UDP entry goes on; the closed session's counts stay, apart,
	// in an entry marked closed.
	if ex := h.c.Exporters(); len(ex) != 2 || ex[0].Transport != "udp" || ex[0].Records != 30 ||
		ex[1].Transport != "tcp" || !ex[1].Closed || ex[1].TCPSession != 0 || ex[1].Records != 20 || ex[1].Templates != 0 {
		t.Fatalf("exporters after the tcp session closed: %+v", ex)
	}
	// The metrics still count both transports' records, once per
	// exporter and domain.
	if m := string(h.c.AppendMetrics(nil)); !strings.Contains(m, `sluice_exporter_records_total{exporter="127.0.0.1",domain="1",version="10"} 50`+"\n") {
		t.Fatalf("per-exporter records:\n%s", m)
	}
}

// Two TCP sessions from one address do not see each other's templates.
func TestTCPSessionsOfOneAddressStayApart(t *testing.T) {
	h := start(t, collector.Config{}, true)
	addr := "127.0.0.1:" + strconv.Itoa(h.port)
	a, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ag := &layoutGen{w: ipfix.MessageWriter{DomainID: 1}, fields: tcpLayout}
	bg := &layoutGen{w: ipfix.MessageWriter{DomainID: 1}, fields: tuple}
	a.Write(ag.template())
	m, sum := ag.data(1, 10)
	a.Write(m)
	h.waitSum(t, 10, sum)
	// b's data comes before b's template: it waits for it rather than
	// being decoded with a's.
	m, s := bg.data(100, 10)
	b.Write(m)
	sum += s
	b.Write(bg.template())
	m, s = bg.data(200, 10)
	b.Write(m)
	sum += s
	h.waitSum(t, 30, sum)
	ex := h.c.Exporters()
	if len(ex) != 2 || ex[0].TCPSession == ex[1].TCPSession || ex[0].Records+ex[1].Records != 30 {
		t.Fatalf("exporter entries %+v, want one per tcp session", ex)
	}
	for _, e := range ex {
		if e.Transport != "tcp" || e.Templates != 1 {
			t.Fatalf("exporter entry %+v", e)
		}
	}
}

// An empty exporter list is [] in JSON, not null.
func TestNoExportersIsEmptyList(t *testing.T) {
	c, err := collector.New(collector.Config{Listen: []string{"udp://127.0.0.1:4739"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]any{"exporters": c.Exporters(), "templates": c.TemplateList()} {
		b, err := json.Marshal(v)
		if err != nil || string(b) != "[]" {
			t.Fatalf("%s: %s, %v; want []", name, b, err)
		}
	}
}
