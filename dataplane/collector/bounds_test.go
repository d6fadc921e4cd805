package collector

import (
	"net/netip"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// fields8 is an 8-field template, the size the memory bound is stated for.
var fields8 = []ipfix.FieldSpec{
	{ID: 8, Length: 4}, {ID: 12, Length: 4}, {ID: 7, Length: 2}, {ID: 11, Length: 2},
	{ID: 4, Length: 1}, {ID: 1, Length: 8}, {ID: 2, Length: 8}, {ID: 152, Length: 8},
}

// heapAfterGC returns the live heap.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// domainTemplates returns one message defining templates first..first+n-1
// of observation domain domain, all 8-field.
func domainTemplates(domain uint32, first uint16, n int) []byte {
	w := ipfix.MessageWriter{DomainID: domain}
	b := w.Begin(nil, 1700000000)
	b = w.BeginSet(b, ipfix.TemplateSetID)
	for i := range n {
		b = ipfix.AppendTemplateRecord(b, first+uint16(i), fields8)
	}
	b = w.EndSet(b)
	b, _ = w.Finish(b)
	return b
}

// The memory a learned template costs, everything the collector keeps for
// it included (store, loop cache, ring announcement, exporter registry).
// It was about 1 KB for an 8-field template before layouts of the same
// content shared their field descriptions and the loop cache was bounded.
func TestTemplateMemory(t *testing.T) {
	const domains, ids = 100, 200
	c, l := testCollector(t, Config{RingSize: 64 << 20, MaxTemplatesPerExporter: domains * ids})
	before := heapAfterGC()
	for d := range domains {
		l.handle(domainTemplates(uint32(d), 256, ids), udpFrom(exporterA))
	}
	after := heapAfterGC()
	if got := c.shared.Len(); got != domains*ids {
		t.Fatalf("learned %d templates, want %d", got, domains*ids)
	}
	per := float64(after-before) / (domains * ids)
	t.Logf("%.0f bytes per 8-field template", per)
	if per > 640 {
		t.Fatalf("%.0f bytes per 8-field template, want at most 640", per)
	}
	runtime.KeepAlive(c)
}

// Found while trying Sluice: one address sending 400,000 distinct templates
// (2,000 observation domains x 200 IDs) filled the global cap of 262,144 and
// every other exporter's new templates were refused. Now the exporter meets
// its own bound; the refusals are counted as its own; another exporter's
// templates are learned and its data decoded.
func TestOneExporterCannotTakeEveryTemplate(t *testing.T) {
	if testing.Short() {
		t.Skip("400,000 templates")
	}
	c, l := testCollector(t, Config{RingSize: 8 << 20})
	before := heapAfterGC()
	const domains, ids = 2000, 200
	for d := range domains {
		l.handle(domainTemplates(uint32(d), 256, ids), udpFrom(exporterA))
		if d%200 == 0 {
			drain(t, l) // a consumer keeps up, as the mediator would
		}
	}
	drain(t, l)
	if got, want := c.shared.ExporterTemplates(exporterA.Addr()), c.cfg.MaxTemplatesPerExporter; got != want {
		t.Fatalf("exporter A holds %d templates, want its bound %d", got, want)
	}
	grown := float64(heapAfterGC()-before) / (1 << 20)
	t.Logf("heap grew %.1f MiB for %d templates kept", grown, c.shared.Len())
	if grown > 48 {
		t.Fatalf("heap grew %.1f MiB", grown)
	}

	// Another exporter: its templates are learned, its data decoded.
	g := newGen(7)
	l.handle(g.templates(256, tuple), udpFrom(exporterB))
	l.handle(g.data(256, 0, 5), udpFrom(exporterB))
	if d := drain(t, l); d.records != 5 || d.templates != 1 {
		t.Fatalf("exporter B after the flood: %+v", d)
	}

	// A's refusals are A's: per entry in the API and in the metrics.
	var refusedA, excess uint64
	for _, e := range c.Exporters() {
		switch e.Exporter {
		case exporterA.Addr().String():
			refusedA += e.Refused["exporter_template_limit"]
			if e.Excess {
				excess = e.Refused["domain_limit"]
			}
		case exporterB.Addr().String():
			if len(e.Refused) != 0 {
				t.Fatalf("exporter B refused %v", e.Refused)
			}
		}
	}
	if want := uint64(domains*ids - c.cfg.MaxTemplatesPerExporter); refusedA != want {
		t.Fatalf("exporter A's refusals in the API: %d, want %d", refusedA, want)
	}
	if want := uint64(domains - c.cfg.MaxDomainsPerExporter); excess != want {
		t.Fatalf("exporter A's domains past its bound: %d, want %d", excess, want)
	}
	if got := metric(t, c, `sluice_dropped_sets_total{reason="exporter_template_limit"}`); got != strconv.Itoa(domains*ids-c.cfg.MaxTemplatesPerExporter) {
		t.Fatalf("exporter_template_limit drops %s", got)
	}
	if got := metric(t, c, `sluice_exporter_refused_total{exporter="192.0.2.10",domain="0",version="0",reason="domain_limit"}`); got != strconv.Itoa(domains-c.cfg.MaxDomainsPerExporter) {
		t.Fatalf("domain_limit metric %s", got)
	}
}

// The per-domain bound refuses a domain's templates past it; the same
// exporter's other domains still learn theirs.
func TestTemplatesPerDomainBound(t *testing.T) {
	c, l := testCollector(t, Config{MaxTemplatesPerDomain: 10})
	l.handle(domainTemplates(1, 256, 15), udpFrom(exporterA))
	l.handle(domainTemplates(2, 256, 3), udpFrom(exporterA))
	if got := metric(t, c, `sluice_dropped_sets_total{reason="domain_template_limit"}`); got != "5" {
		t.Fatalf("domain_template_limit drops %s, want 5", got)
	}
	if got := metric(t, c, "sluice_templates"); got != "13" {
		t.Fatalf("templates %s, want 13", got)
	}
	if got := metric(t, c, `sluice_exporter_refused_total{exporter="192.0.2.10",domain="1",version="10",reason="domain_template_limit"}`); got != "5" {
		t.Fatalf("per-exporter refusals %s, want 5", got)
	}
}

// A flood of data sets without templates from 10,000 source addresses: the
// held-data bounds hold per exporter and in total, the heap stays near them,
// and an exporter with its templates is still decoded.
func TestHeldFloodFromManySources(t *testing.T) {
	cfg := Config{Held: HeldConfig{PerExporterBytes: 4 << 10, TotalBytes: 2 << 20}}
	c, l := testCollector(t, cfg)
	g := newGen(1)
	l.handle(g.templates(300, tuple), udpFrom(exporterB))
	before := heapAfterGC()
	const sources = 10000
	sent := 0
	for round := range 5 {
		for i := range sources {
			src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 2055)
			l.handle(newGen(uint32(round)).data(256+uint16(round), 0, 80), udpFrom(src))
			sent++
		}
		l.handle(g.data(300, round*3, 3), udpFrom(exporterB))
		if c.heldTotal.Load() > int64(cfg.Held.TotalBytes) {
			t.Fatalf("held %d bytes, total bound %d", c.heldTotal.Load(), cfg.Held.TotalBytes)
		}
		for sc, n := range l.held.perExporter {
			if n > int(cfg.Held.PerExporterBytes) {
				t.Fatalf("%v holds %d bytes, bound %d", sc, n, cfg.Held.PerExporterBytes)
			}
		}
	}
	// What was sent is about 65 MB of data sets; the heap holds the held
	// bytes plus per-source state (registry entries, sequence tracking:
	// each bounded in number), far less than a copy of the flood.
	grown := int64(heapAfterGC() - before)
	t.Logf("held %d bytes in %d sets; heap grew %d bytes", c.heldTotal.Load(), l.held.sets, grown)
	if grown > 32<<20 {
		t.Fatalf("heap grew %d bytes holding at most %d", grown, cfg.Held.TotalBytes)
	}
	held, _ := strconv.Atoi(metric(t, c, "sluice_held_sets"))
	drops, _ := strconv.Atoi(metric(t, c, `sluice_dropped_sets_total{reason="held_overflow"}`))
	if held+drops != sent || drops == 0 {
		t.Fatalf("held %d + overflow %d != %d sent", held, drops, sent)
	}
	if d := drain(t, l); d.records != 5*3 {
		t.Fatalf("the exporter with templates lost records in the flood: %+v", d)
	}
}

func TestParsePrefixes(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		ps, err := ParsePrefixes(in)
		got := ""
		if err != nil {
			got = "error"
		} else {
			for i, p := range ps {
				if i > 0 {
					got += " "
				}
				got += p.String()
			}
		}
		if got != want {
			t.Errorf("ParsePrefixes(%q) = %s, want %s", in, got, want)
		}
	}
	f("192.0.2.0/24", "192.0.2.0/24")
	f("192.0.2.7/24, 2001:db8::1", "192.0.2.0/24 2001:db8::1/128")
	f("10.1.2.3", "10.1.2.3/32")
	f("::ffff:10.1.2.3", "10.1.2.3/32")
	f("", "error")
	f("example.com", "error")
	f("10.0.0.0/33", "error")
}

// The per-exporter rate limit: an exporter sending 10,000 records at one
// instant gets its burst (one second at 1,000 records/s) through, the rest
// dropped and counted as its own; another exporter is unaffected; a second
// later the first has another second's worth.
func TestRateLimitPerExporter(t *testing.T) {
	c, l := testCollector(t, Config{RingSize: 8 << 20, RateLimit: RateLimitConfig{RecordsPerSecond: 1000}})
	ga, gb := newGen(1), newGen(1)
	l.handle(ga.templates(256, tuple), udpFrom(exporterA))
	l.handle(gb.templates(256, tuple), udpFrom(exporterB))
	for i := range 1000 {
		l.handle(ga.data(256, i*10, 10), udpFrom(exporterA))
		if i%10 == 0 {
			l.handle(gb.data(256, i, 10), udpFrom(exporterB))
		}
	}
	if d := drain(t, l); d.records != 1000+100*10 {
		t.Fatalf("records through: %d, want 1000 of A and 1000 of B", d.records)
	}
	if got := metric(t, c, `sluice_exporter_refused_total{exporter="192.0.2.10",domain="1",version="10",reason="rate_limit"}`); got != "9000" {
		t.Fatalf("A's rate_limit refusals %s, want 9000", got)
	}
	if got := metric(t, c, `sluice_dropped_records_total{reason="rate_limit"}`); got != "9000" {
		t.Fatalf("rate_limit drops %s", got)
	}
	for _, e := range c.Exporters() {
		if e.Exporter == exporterB.Addr().String() && len(e.Refused) != 0 {
			t.Fatalf("B refused %v", e.Refused)
		}
	}
	l.now += int64(time.Second)
	for i := range 200 {
		l.handle(ga.data(256, i*10, 10), udpFrom(exporterA))
	}
	if d := drain(t, l); d.records != 1000 {
		t.Fatalf("a second later: %d records, want 1000", d.records)
	}
}
