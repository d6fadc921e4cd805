package collector_test

import (
	"context"
	"github.com/sluice-flow/sluice/dataplane/internal/testnet"
	"io"
	"net"
	"net/netip"
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
)

// countOut is a test output: it counts records and sums a field so tests can
// tell duplicates from loss.
type countOut struct {
	n   atomic.Uint64
	sum atomic.Uint64 // sum of octetDeltaCount
}

func (o *countOut) Record(_ *jsonl.Meta, r *ipfix.Record) {
	o.n.Add(1)
	if i := r.Layout.Index(0, 1); i >= 0 {
		o.sum.Add(r.Uint(i))
	}
}
func (o *countOut) Flush() error        { return nil }
func (o *countOut) Close() error        { return nil }
func (o *countOut) Name() string        { return "count" }
func (o *countOut) Stats() export.Stats { return export.Stats{Sent: o.n.Load()} }

type harness struct {
	c      *collector.Collector
	med    *mediator.Mediator
	out    *countOut
	port   int
	cancel context.CancelFunc
	runErr chan error
	medEnd chan struct{}
}

func start(t testing.TB, cfg collector.Config, startMediator bool) *harness {
	return startOn(t, "127.0.0.1", cfg, startMediator)
}

// startOn starts a collector listening on UDP and TCP on host (an IPv4 or
// IPv6 loopback address), with a mediator into a counting output.
func startOn(t testing.TB, host string, cfg collector.Config, startMediator bool) *harness {
	t.Helper()
	h := &harness{out: &countOut{}, port: testnet.FreePort(t, host), runErr: make(chan error, 1), medEnd: make(chan struct{})}
	hp := net.JoinHostPort(host, strconv.Itoa(h.port))
	cfg.Listen = []string{"udp://" + hp, "tcp://" + hp}
	if cfg.Loops == 0 {
		cfg.Loops = 2
	}
	c, err := collector.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	h.med = mediator.New(c.Rings(), []export.Output{h.out}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.runErr <- c.Run(context.Background()) }()
	select {
	case <-c.Booted():
	case <-time.After(5 * time.Second):
		t.Fatal("collector did not start")
	}
	if startMediator {
		h.startMediator(ctx)
	}
	t.Cleanup(func() { h.stop(t) })
	return h
}

func (h *harness) startMediator(ctx context.Context) {
	go func() {
		h.med.Run(ctx)
		close(h.medEnd)
	}()
}

// stop stops the collector, then lets the mediator drain.
func (h *harness) stop(t testing.TB) {
	if h.c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.c.Stop(ctx); err != nil {
		t.Errorf("stop: %v", err)
	}
	select {
	case <-h.runErr:
	case <-ctx.Done():
		t.Error("collector did not stop")
	}
	h.cancel()
	select {
	case <-h.medEnd:
	case <-time.After(10 * time.Second):
		t.Error("mediator did not drain")
	}
	h.c = nil
}

// waitRecords waits until the output has want records and the mediator has
// taken every record the collector queued (the positive marker for the
// check that no more than want came), then checks the count.
func (h *harness) waitRecords(t *testing.T, want uint64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if n := h.out.n.Load(); n >= want && float64(n) == h.metricValue("sluice_collected_records_total") {
			break
		}
	}
	if got := h.out.n.Load(); got != want {
		t.Fatalf("got %d records, want %d\n%s", got, want, h.c.AppendMetrics(nil))
	}
}

// metricValue returns a metric of the collector, summed over its labels
// (-1 when there is no such metric).
func (h *harness) metricValue(name string) float64 {
	v, found := 0.0, false
	for _, line := range strings.Split(string(h.c.AppendMetrics(nil)), "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f, err := strconv.ParseFloat(rest[strings.LastIndexByte(rest, ' ')+1:], 64)
		if err != nil {
			continue
		}
		v, found = v+f, true
	}
	if !found {
		return -1
	}
	return v
}

// waitMetric waits until the collector's metric name satisfies ok, and
// reports whether it did before a deadline. It may run on any goroutine.
func (h *harness) waitMetric(name string, ok func(float64) bool) bool {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if ok(h.metricValue(name)) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

var tuple = []ipfix.FieldSpec{{ID: 8, Length: 4}, {ID: 7, Length: 2}, {ID: 11, Length: 2}, {ID: 1, Length: 8}}

// exporterMsgs builds a template message and n data messages of k records;
// octetDeltaCount of record j of message i is i*k+j+1.
func exporterMsgs(domain uint32, n, k int) (tpl []byte, data [][]byte, octets uint64) {
	w := ipfix.MessageWriter{DomainID: domain}
	tpl = w.Begin(nil, 1700000000)
	tpl = w.BeginSet(tpl, ipfix.TemplateSetID)
	tpl = ipfix.AppendTemplateRecord(tpl, 256, tuple)
	tpl = w.EndSet(tpl)
	tpl, _ = w.Finish(tpl)
	for i := range n {
		b := w.Begin(nil, 1700000000)
		b = w.BeginSet(b, 256)
		for j := range k {
			v := uint64(i*k + j + 1)
			b = ipfix.AppendAddr(b, netip.AddrFrom4([4]byte{198, 51, 100, byte(j)}))
			b = ipfix.AppendUint(b, 1000, 2)
			b = ipfix.AppendUint(b, 443, 2)
			b = ipfix.AppendUint(b, v, 8)
			octets += v
		}
		b = w.EndSet(b)
		w.AddRecords(k)
		b, _ = w.Finish(b)
		data = append(data, b)
	}
	return tpl, data, octets
}

func TestUDPManyExporters(t *testing.T) {
	h := start(t, collector.Config{}, true)
	const exporters, msgs, recs = 6, 100, 20
	var wg sync.WaitGroup
	var want uint64
	var mu sync.Mutex
	var sent atomic.Int64 // datagrams, all exporters
	for e := range exporters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("udp", "127.0.0.1:"+strconv.Itoa(h.port))
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			tpl, data, octets := exporterMsgs(uint32(e), msgs, recs)
			mu.Lock()
			want += octets
			mu.Unlock()
			conn.Write(tpl)
			sent.Add(1)
			for i, d := range data {
				conn.Write(d)
				sent.Add(1)
				// Stay within the socket buffer: let the collector read
				// what was sent so far.
				if i%20 == 19 {
					n := float64(sent.Load())
					if !h.waitMetric("sluice_packets_total", func(v float64) bool { return v >= n }) {
						t.Errorf("the collector did not read %v datagrams", n)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	h.waitRecords(t, exporters*msgs*recs)
	if got := h.out.sum.Load(); got != want {
		t.Fatalf("octet sum %d, want %d", got, want)
	}
	// One exporter address with six observation domains.
	if ex := h.c.Exporters(); len(ex) != exporters {
		t.Fatalf("%d exporter entries, want %d: %+v", len(ex), exporters, ex)
	}
}

// TestTCPFraming sends messages over TCP cut every way a stream can be cut.
func TestTCPFraming(t *testing.T) {
	h := start(t, collector.Config{}, true)
	tpl, data, octets := exporterMsgs(1, 30, 10)
	var stream []byte
	stream = append(stream, tpl...)
	for _, d := range data {
		stream = append(stream, d...)
	}
	cases := map[string]func(c net.Conn){
		"byte by byte": func(c net.Conn) {
			for i := range stream {
				c.Write(stream[i : i+1])
			}
		},
		"coalesced": func(c net.Conn) { c.Write(stream) },
		"odd chunks": func(c net.Conn) {
			for i := 0; i < len(stream); i += 37 {
				c.Write(stream[i:min(i+37, len(stream))])
				if i%(37*8) == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		},
	}
	var total uint64
	for name, send := range cases {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(h.port))
		if err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).SetNoDelay(true)
		send(c)
		total += 300
		h.waitRecords(t, total)
		c.Close()
		t.Logf("%s: ok", name)
	}
	if got := h.out.sum.Load(); got != 3*octets {
		t.Fatalf("octet sum %d, want %d", got, 3*octets)
	}
}

func TestTCPLyingLengthClosesSession(t *testing.T) {
	h := start(t, collector.Config{}, true)
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(h.port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tpl, data, _ := exporterMsgs(1, 1, 5)
	c.Write(tpl)
	c.Write(data[0])
	h.waitRecords(t, 5)
	bad := append([]byte(nil), data[0]...)
	bad[2], bad[3] = 0, 10 // a length below the header size
	c.Write(bad)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("session not closed after a lying length: %v", err)
	}
	if !strings.Contains(string(h.c.AppendMetrics(nil)), `sluice_dropped_sets_total{reason="tcp_framing"} 1`) {
		t.Fatal("tcp_framing drop not counted")
	}
}

func TestTCPReconnectNeedsTemplatesAgain(t *testing.T) {
	h := start(t, collector.Config{}, true)
	tpl, data, _ := exporterMsgs(1, 4, 5)
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(h.port))
	if err != nil {
		t.Fatal(err)
	}
	c.Write(tpl)
	c.Write(data[0])
	h.waitRecords(t, 5)
	c.Close()
	if !h.waitMetric("sluice_tcp_sessions", func(v float64) bool { return v == 0 }) {
		t.Fatal("the server did not see the close")
	}
	c, err = net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(h.port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The new session's data waits for its templates (RFC 7011: TCP
	// templates live as long as their session) and is decoded once they come.
	// Held is the positive marker that the collector has handled it.
	c.Write(data[1])
	h.waitMetric("sluice_held_sets", func(v float64) bool { return v >= 1 || h.out.n.Load() != 5 })
	if got := h.out.n.Load(); got != 5 {
		t.Fatalf("data decoded with a previous session's template: %d records", got)
	}
	if held := h.metricValue("sluice_held_sets"); held != 1 {
		t.Fatalf("%v sets held, want the new session's data set", held)
	}
	c.Write(tpl)
	c.Write(data[2])
	h.waitRecords(t, 15)
}

// TestTCPBackpressureLosesNothing fills a small ring with no consumer
// running: the session pauses (the loop stops reading its socket), and once
// the mediator starts every record arrives.
func TestTCPBackpressureLosesNothing(t *testing.T) {
	h := start(t, collector.Config{RingSize: 64 << 10, Loops: 1}, false)
	tpl, data, octets := exporterMsgs(1, 400, 40) // about 270 KB, four rings' worth
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(h.port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sent := make(chan error, 1)
	go func() {
		_, err := c.Write(tpl)
		for _, d := range data {
			if err != nil {
				break
			}
			_, err = c.Write(d)
		}
		sent <- err
	}()
	if !h.waitMetric("sluice_tcp_backpressure_total", func(v float64) bool { return v >= 1 }) {
		t.Fatalf("no backpressure seen:\n%s", h.c.AppendMetrics(nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.cancel = cancel
	h.startMediator(ctx)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	h.waitRecords(t, 400*40)
	if got := h.out.sum.Load(); got != octets {
		t.Fatalf("octet sum %d, want %d", got, octets)
	}
}

// TestGracefulStopDrainsTCP stops the collector right after the exporter
// finished writing: everything accepted is still delivered.
func TestGracefulStopDrainsTCP(t *testing.T) {
	h := start(t, collector.Config{}, true)
	tpl, data, octets := exporterMsgs(1, 200, 30)
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(h.port))
	if err != nil {
		t.Fatal(err)
	}
	c.Write(tpl)
	for _, d := range data {
		c.Write(d)
	}
	c.(*net.TCPConn).CloseWrite()
	// Wait until the server has read the whole stream (it closes its side).
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.Copy(io.Discard, c)
	c.Close()
	h.stop(t)
	if got := h.out.n.Load(); got != 200*30 {
		t.Fatalf("%d records after a graceful stop, want %d", got, 200*30)
	}
	if got := h.out.sum.Load(); got != octets {
		t.Fatalf("octet sum %d, want %d", got, octets)
	}
}

func TestTCPManyExportersIPv6(t *testing.T) {
	h := startOn(t, "::1", collector.Config{}, true)
	p := strconv.Itoa(h.port)
	c := h.c

	const exporters = 16
	var wg sync.WaitGroup
	var want atomic.Uint64
	for e := range exporters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", "[::1]:"+p)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			tpl, data, octets := exporterMsgs(uint32(e+1), 50, 20)
			want.Add(octets)
			conn.Write(tpl)
			for _, d := range data {
				conn.Write(d)
			}
		}()
	}
	// And one over UDP on the same port.
	u, err := net.Dial("udp", "[::1]:"+p)
	if err != nil {
		t.Fatal(err)
	}
	tpl, data, octets := exporterMsgs(99, 5, 20)
	want.Add(octets)
	u.Write(tpl)
	for _, d := range data {
		u.Write(d)
	}
	u.Close()
	wg.Wait()
	h.waitRecords(t, exporters*50*20+5*20)
	if got := h.out.sum.Load(); got != want.Load() {
		t.Fatalf("octet sum %d, want %d", got, want.Load())
	}
	for _, e := range c.Exporters() {
		if e.Exporter != "::1" {
			t.Fatalf("exporter %q, want ::1", e.Exporter)
		}
	}
}

// TestStopRightAfterWrites stops the collector as soon as the exporter's
// writes returned, without waiting for the server to read: the quiesce
// step must still deliver everything the kernel accepted, over TCP and UDP.
func TestStopRightAfterWrites(t *testing.T) {
	h := start(t, collector.Config{}, true)
	tpl, data, octets := exporterMsgs(1, 300, 30)
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(h.port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	u, err := net.Dial("udp", "127.0.0.1:"+strconv.Itoa(h.port))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	utpl, udata, uoctets := exporterMsgs(2, 20, 30)
	u.Write(utpl)
	c.Write(tpl)
	for i, d := range data {
		if _, err := c.Write(d); err != nil {
			t.Fatal(err)
		}
		if i < len(udata) {
			u.Write(udata[i])
		}
	}
	col := h.c
	h.stop(t)
	if got, want := h.out.n.Load(), uint64(300*30+20*30); got != want {
		t.Fatalf("%d records after stop, want %d\n%s", got, want, col.AppendMetrics(nil))
	}
	if got := h.out.sum.Load(); got != octets+uoctets {
		t.Fatalf("octet sum %d, want %d", got, octets+uoctets)
	}
}
