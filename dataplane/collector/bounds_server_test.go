package collector_test

import (
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/collector"
)

// closedByPeer waits until the peer closes conn.
func closedByPeer(t *testing.T, conn net.Conn) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("the session was not closed")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the session was not closed within 10 s")
	}
}

func is(v float64) func(float64) bool { return func(x float64) bool { return x == v } }

// TCP sessions per address are bounded: the session past the bound is
// closed at once and counted; the others still deliver, and a closed
// session frees its slot.
func TestTCPSessionsPerExporter(t *testing.T) {
	h := start(t, collector.Config{Loops: 1, MaxTCPSessionsPerExporter: 2}, true)
	addr := "127.0.0.1:" + strconv.Itoa(h.port)
	var conns []net.Conn
	for range 2 {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conns = append(conns, conn)
	}
	if !h.waitMetric("sluice_tcp_sessions", is(2)) {
		t.Fatal("two sessions did not open")
	}
	third, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	closedByPeer(t, third)
	if !h.waitMetric(`sluice_tcp_sessions_refused_total{reason="max_sessions_per_exporter"}`, is(1)) {
		t.Fatal("refusal not counted")
	}
	tpl, data, _ := exporterMsgs(1, 1, 4)
	if _, err := conns[1].Write(append(tpl, data[0]...)); err != nil {
		t.Fatal(err)
	}
	h.waitRecords(t, 4)
	conns[0].Close()
	if !h.waitMetric("sluice_tcp_sessions", is(1)) {
		t.Fatal("session did not close")
	}
	again, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if !h.waitMetric("sluice_tcp_sessions", is(2)) {
		t.Fatal("a freed slot was not given to a new session")
	}
}

// An allow-list: datagrams and sessions from other sources are dropped
// before decoding and counted; allowed ones are decoded. 127.0.0.2 is
// outside the list, 127.0.0.1 inside (both loopback, so the test runs
// without privilege).
func TestAllowExporters(t *testing.T) {
	// Kernel steering: with eBPF steering the program drops refused
	// sources before any socket (tested with the steering); this is the
	// user-space check, which TCP, TLS and kernel steering rely on.
	cfg := collector.Config{AllowExporters: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Steer: collector.SteerKernel}
	h := startOn(t, "0.0.0.0", cfg, true)
	dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: h.port}
	tpl, data, _ := exporterMsgs(1, 3, 5)
	send := func(src string) {
		t.Helper()
		conn, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, dst)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, m := range append([][]byte{tpl}, data...) {
			if _, err := conn.Write(m); err != nil {
				t.Fatal(err)
			}
		}
	}
	send("127.0.0.2")
	if !h.waitMetric(`sluice_dropped_sets_total{reason="not_allowed"}`, is(4)) {
		t.Fatalf("datagrams from outside the list not counted:\n%s", h.c.AppendMetrics(nil))
	}
	send("127.0.0.1")
	h.waitRecords(t, 15)
	if got := h.metricValue("sluice_templates"); got != 1 {
		t.Fatalf("templates %v: the refused source's were decoded", got)
	}

	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	conn, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(h.port)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	closedByPeer(t, conn)
	if !h.waitMetric(`sluice_tcp_sessions_refused_total{reason="not_allowed"}`, is(1)) {
		t.Fatal("session from outside the list not counted")
	}
}
