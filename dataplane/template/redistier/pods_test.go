package redistier_test

import (
	"context"
	"github.com/sluice-flow/sluice/dataplane/internal/testnet"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/collector"
	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
	"github.com/sluice-flow/sluice/dataplane/mediator"
	"github.com/sluice-flow/sluice/dataplane/template"
	"github.com/sluice-flow/sluice/dataplane/template/redistier"
)

// lines is a test output that keeps every record as a JSON line, so pods'
// outputs can be compared with a single collector's.
type lines struct {
	mu  sync.Mutex
	all []string
	n   atomic.Int64
}

func (o *lines) Record(m *jsonl.Meta, r *ipfix.Record) {
	// Pods read the same data at different times: compare records
	// without their receive time.
	mm := *m
	mm.Received = 0
	b := jsonl.AppendRecord(nil, &mm, r)
	o.mu.Lock()
	o.all = append(o.all, string(b))
	o.mu.Unlock()
	o.n.Add(1)
}
func (o *lines) Flush() error        { return nil }
func (o *lines) Close() error        { return nil }
func (o *lines) Name() string        { return "lines" }
func (o *lines) Stats() export.Stats { return export.Stats{Sent: uint64(o.n.Load())} }

func (o *lines) snapshot() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.all)
}

// pod is one collector with its mediator, output and (optionally) Redis
// tier, as a collector pod would run them.
type pod struct {
	c      *collector.Collector
	med    *mediator.Mediator
	store  *redistier.Store
	out    *lines
	port   int
	runErr chan error
	medEnd chan struct{}
	stopM  context.CancelFunc
	once   sync.Once
}

type podConfig struct {
	redis []string // nil: no shared tier
	port  int      // 0: a free one
	warm  []string // exporters to warm up from Redis before listening
	// noWait starts listening without waiting for the Redis connection
	// (sluice run waits, for a bounded time).
	noWait bool
}

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func startPod(t testing.TB, pc podConfig) *pod {
	t.Helper()
	p := &pod{out: &lines{}, port: pc.port, runErr: make(chan error, 1), medEnd: make(chan struct{})}
	if p.port == 0 {
		p.port = testnet.FreePort(t, "127.0.0.1")
	}
	addr := "127.0.0.1:" + strconv.Itoa(p.port)
	cfg := collector.Config{
		Listen: []string{"udp://" + addr, "tcp://" + addr}, Loops: 2,
		RingSize: 1 << 20, UDPReceiveBuffer: 4 << 20,
	}
	log := testLogger()
	c, err := collector.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	p.c = c
	if pc.redis != nil {
		st, err := redistier.New(redistier.Config{Addrs: pc.redis, Timeout: time.Second},
			c.Templates(), c.TemplateArrived, log)
		if err != nil {
			t.Fatal(err)
		}
		p.store = st
		c.SetRemote(st)
		if !pc.noWait {
			select {
			case <-st.Ready():
			case <-time.After(5 * time.Second):
				t.Fatal("no redis connection")
			}
		}
		if len(pc.warm) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := st.WarmUp(ctx, pc.warm)
			cancel()
			if err != nil {
				st.Close()
				t.Fatal(err)
			}
		}
	}
	p.med = mediator.New(c.Rings(), []export.Output{p.out}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	p.stopM = cancel
	go func() {
		p.med.Run(ctx)
		close(p.medEnd)
	}()
	go func() { p.runErr <- c.Run(context.Background()) }()
	select {
	case <-c.Booted():
	case <-time.After(5 * time.Second):
		t.Fatal("collector did not start")
	}
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop stops the collector, lets the mediator drain, then closes the store.
func (p *pod) stop(t testing.TB) {
	p.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.c.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
		select {
		case <-p.runErr:
		case <-ctx.Done():
			t.Error("collector did not stop")
		}
		p.stopM()
		select {
		case <-p.medEnd:
		case <-ctx.Done():
			t.Error("mediator did not drain")
		}
		if p.store != nil {
			p.store.Close()
		}
	})
}

// metrics returns the pod's /metrics text: collector, mediator and store.
func (p *pod) metrics() string {
	b := p.c.AppendMetrics(nil)
	b = p.med.AppendMetrics(b)
	if p.store != nil {
		b = p.store.AppendMetrics(b)
	}
	return string(b)
}

// metric returns the value of one series (name with labels, as printed).
func (p *pod) metric(t testing.TB, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(p.metrics(), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", series, err)
			}
			return f
		}
	}
	t.Fatalf("no series %s", series)
	return 0
}

// checkNoTemplateDrops fails if the pod dropped data for want of a template.
func (p *pod) checkNoTemplateDrops(t testing.TB) {
	t.Helper()
	for _, r := range []string{"template_timeout", "held_overflow"} {
		if n := p.metric(t, `sluice_dropped_sets_total{reason="`+r+`"}`); n != 0 {
			t.Errorf("pod :%d dropped %v data sets (%s)", p.port, n, r)
		}
	}
}

// waitFor polls cond until it holds or the time is up.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitRecords waits until the pods together output want records and each
// pod's mediator has taken all its collector queued, nothing held (the
// marker for the check that no more come: duplicates), then checks.
func waitRecords(t testing.TB, want int64, pods ...*pod) {
	t.Helper()
	sum := func() int64 {
		var n int64
		for _, p := range pods {
			n += p.out.n.Load()
		}
		return n
	}
	drained := func() bool {
		for _, p := range pods {
			n := float64(p.out.n.Load())
			if n+p.metric(t, "sluice_mediator_unknown_template_records_total") != p.metric(t, "sluice_collected_records_total") ||
				p.metric(t, "sluice_held_sets") != 0 {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(10 * time.Second)
	for !(sum() >= want && drained()) && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	if got := sum(); got != want {
		var m strings.Builder
		for _, p := range pods {
			m.WriteString(p.metrics())
		}
		t.Fatalf("got %d records, want %d\n%s", got, want, filterMetrics(m.String()))
	}
}

func filterMetrics(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "#") || strings.HasSuffix(l, " 0") {
			continue
		}
		if strings.Contains(l, "dropped") || strings.Contains(l, "template") || strings.Contains(l, "held") || strings.Contains(l, "records") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// exporter sends from one UDP socket, as a router behind a load balancer
// without affinity would reach several pods from one address.
type exporter struct {
	conn *net.UDPConn
	sent map[int]int // datagrams, by pod port
}

func newExporter(t testing.TB) *exporter {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &exporter{conn: c, sent: map[int]int{}}
}

func (e *exporter) send(t testing.TB, p *pod, msgs ...[]byte) {
	t.Helper()
	to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(p.port)))
	for _, m := range msgs {
		if _, err := e.conn.WriteToUDP(m, to); err != nil {
			t.Fatal(err)
		}
		e.sent[p.port]++
	}
}

// waitRead waits until the pods have read every datagram e sent them, to
// keep bursts within their receive buffers.
func (e *exporter) waitRead(t testing.TB, pods ...*pod) {
	t.Helper()
	for _, p := range pods {
		waitFor(t, 10*time.Second, "datagrams read", func() bool {
			return p.metric(t, `sluice_packets_total{transport="udp"}`) >= float64(e.sent[p.port])
		})
	}
}

// scope is the exporter scope the collectors give the test exporter.
var scope = netip.MustParseAddrPort("127.0.0.1:0")

func key(version uint16, domain uint32, id uint16) template.Key {
	return template.Key{Exporter: scope, Domain: domain, Version: version, ID: id}
}

var (
	flowFields = []ipfix.FieldSpec{{ID: 8, Length: 4}, {ID: 12, Length: 4}, {ID: 7, Length: 2}, {ID: 11, Length: 2}, {ID: 1, Length: 8}}
	nameFields = []ipfix.FieldSpec{{ID: 82, Length: ipfix.VarLen}, {ID: 1, Length: 8}}
	// Options: scope observationDomainId, then samplingInterval.
	optFields = []ipfix.FieldSpec{{ID: 149, Length: 4}, {ID: 34, Length: 4}}
	// A changed definition of template 256.
	flowFieldsV2 = []ipfix.FieldSpec{{ID: 8, Length: 4}, {ID: 2, Length: 8}, {ID: 1, Length: 8}}
)

// traffic is one observation domain's export: a message of templates and
// data messages that need them.
type traffic struct {
	tpl     []byte
	data    [][]byte
	records []int // data records per message (options records included)
}

func (tr *traffic) count(from, to int) int64 {
	n := 0
	for _, r := range tr.records[from:to] {
		n += r
	}
	return int64(n)
}

// ipfixTraffic builds templates 256 (fixed), 257 (variable length) and
// options template 258, and msgs data messages using all three.
func ipfixTraffic(domain uint32, msgs, perMsg int) traffic {
	var tr traffic
	w := ipfix.MessageWriter{DomainID: domain}
	b := w.Begin(nil, 1700000000)
	b = w.BeginSet(b, ipfix.TemplateSetID)
	b = ipfix.AppendTemplateRecord(b, 256, flowFields)
	b = ipfix.AppendTemplateRecord(b, 257, nameFields)
	b = w.EndSet(b)
	b = w.BeginSet(b, ipfix.OptionsTemplateSetID)
	b = ipfix.AppendOptionsTemplateRecord(b, 258, 1, optFields)
	b = w.EndSet(b)
	tr.tpl, _ = w.Finish(b)
	for i := range msgs {
		n := 0
		b := w.Begin(nil, 1700000000+uint32(i))
		b = w.BeginSet(b, 256)
		for j := range perMsg {
			b = appendFlow(b, domain, i*perMsg+j)
		}
		b = w.EndSet(b)
		w.AddRecords(perMsg)
		n += perMsg
		b = w.BeginSet(b, 257)
		for j := range 2 {
			b = ipfix.AppendVarlen(b, []byte("eth"+strconv.Itoa(i)+"/"+strconv.Itoa(j)))
			b = ipfix.AppendUint(b, uint64(domain)<<32|uint64(i*2+j), 8)
		}
		b = w.EndSet(b)
		w.AddRecords(2)
		n += 2
		if i%5 == 0 {
			b = w.BeginSet(b, 258)
			b = ipfix.AppendUint(b, uint64(domain), 4)
			b = ipfix.AppendUint(b, uint64(100+i), 4)
			b = w.EndSet(b)
			w.AddRecords(1)
			n++
		}
		m, _ := w.Finish(b)
		tr.data = append(tr.data, m)
		tr.records = append(tr.records, n)
	}
	return tr
}

func appendFlow(b []byte, domain uint32, i int) []byte {
	b = ipfix.AppendAddr(b, netip.AddrFrom4([4]byte{10, byte(domain), byte(i >> 8), byte(i)}))
	b = ipfix.AppendAddr(b, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
	b = ipfix.AppendUint(b, uint64(1024+i%1000), 2)
	b = ipfix.AppendUint(b, 443, 2)
	return ipfix.AppendUint(b, uint64(domain)<<32|uint64(i), 8)
}

// v9Traffic builds a NetFlow v9 template 300 and msgs data messages.
func v9Traffic(source uint32, msgs, perMsg int) traffic {
	var tr traffic
	w := ipfix.MessageWriter{Version: ipfix.VersionNetFlow9, DomainID: source, SysUptime: 1000}
	b := w.Begin(nil, 1700000000)
	b = w.BeginSet(b, ipfix.TemplateSetID)
	b = ipfix.AppendTemplateRecord(b, 300, flowFields)
	w.AddTemplates(1)
	b = w.EndSet(b)
	tr.tpl, _ = w.Finish(b)
	for i := range msgs {
		b := w.Begin(nil, 1700000000+uint32(i))
		b = w.BeginSet(b, 300)
		for j := range perMsg {
			b = appendFlow(b, source, i*perMsg+j)
		}
		b = w.EndSet(b)
		w.AddRecords(perMsg)
		m, _ := w.Finish(b)
		tr.data = append(tr.data, m)
		tr.records = append(tr.records, perMsg)
	}
	return tr
}

// changedTraffic builds template 256 with flowFieldsV2 and data for it.
func changedTraffic(domain uint32, seq uint32, msgs int) traffic {
	var tr traffic
	w := ipfix.MessageWriter{DomainID: domain, Sequence: seq}
	b := w.Begin(nil, 1700001000)
	b = w.BeginSet(b, ipfix.TemplateSetID)
	b = ipfix.AppendTemplateRecord(b, 256, flowFieldsV2)
	b = w.EndSet(b)
	tr.tpl, _ = w.Finish(b)
	for i := range msgs {
		b := w.Begin(nil, 1700001000+uint32(i))
		b = w.BeginSet(b, 256)
		for j := range 3 {
			b = ipfix.AppendAddr(b, netip.AddrFrom4([4]byte{10, 9, byte(i), byte(j)}))
			b = ipfix.AppendUint(b, uint64(7000+i*3+j), 8)
			b = ipfix.AppendUint(b, uint64(9000+i*3+j), 8)
		}
		b = w.EndSet(b)
		w.AddRecords(3)
		m, _ := w.Finish(b)
		tr.data = append(tr.data, m)
		tr.records = append(tr.records, 3)
	}
	return tr
}
