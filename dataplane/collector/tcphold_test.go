package collector_test

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/collector"
)

// TestUDPFlowsWhileTCPHeld: one event loop serves a TCP exporter that sends
// far more than the ring holds while nothing consumes it, and a UDP
// exporter. While the TCP session is held for ring room, the loop still
// reads and decodes the UDP datagrams, and their records reach the ring (TCP
// leaves part of the ring to UDP): none sits unread in the socket, none is
// dropped. Once the consumer runs, every TCP record arrives exactly once.
// Over rings in memory (sluice run) and in files (the split pod's
// collector).
func TestUDPFlowsWhileTCPHeld(t *testing.T) {
	t.Run("memory", func(t *testing.T) { testUDPFlowsWhileTCPHeld(t, "") })
	t.Run("files", func(t *testing.T) { testUDPFlowsWhileTCPHeld(t, t.TempDir()) })
}

func testUDPFlowsWhileTCPHeld(t *testing.T, ringDir string) {
	var c *collector.Collector
	t.Cleanup(func() { // after the harness has stopped it
		if c != nil {
			c.Close()
		}
	})
	h := start(t, collector.Config{RingSize: 64 << 10, Loops: 1, RingDir: ringDir}, false)
	c = h.c
	const tcpMsgs, tcpRecs = 400, 40 // about 270 KB, four rings' worth
	tpl, data, tcpOctets := exporterMsgs(1, tcpMsgs, tcpRecs)
	total := len(tpl)
	for _, d := range data {
		total += len(d)
	}
	tc, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(h.port))
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	sent := make(chan error, 1)
	go func() {
		_, err := tc.Write(tpl)
		for _, d := range data {
			if err != nil {
				break
			}
			_, err = tc.Write(d)
		}
		// Closing while paused: the collector sees the end of the
		// stream only after the bytes before it.
		if cerr := tc.Close(); err == nil {
			err = cerr
		}
		sent <- err
	}()
	if !h.waitMetric("sluice_tcp_backpressure_total", func(v float64) bool { return v >= 1 }) {
		t.Fatalf("no backpressure seen:\n%s", h.c.AppendMetrics(nil))
	}
	// The consumer is not running: the TCP session stays held, so what
	// the ring holds now changes only with the UDP input below.
	before := h.metricValue("sluice_collected_records_total")
	if before <= 0 || before >= tcpMsgs*tcpRecs {
		t.Fatalf("%v records collected before UDP, want some but not all of the TCP exporter's", before)
	}

	const udpMsgs, udpRecs = 20, 5
	utpl, udata, udpOctets := exporterMsgs(2, udpMsgs, udpRecs)
	uc, err := net.Dial("udp", "127.0.0.1:"+strconv.Itoa(h.port))
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	for _, d := range append([][]byte{utpl}, udata...) {
		if _, err := uc.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	if !h.waitMetric("sluice_collected_records_total", func(v float64) bool { return v >= before+udpMsgs*udpRecs }) {
		t.Fatalf("UDP records not decoded while the TCP exporter is held (%v collected before, want %d more):\n%s",
			before, udpMsgs*udpRecs, h.c.AppendMetrics(nil))
	}
	if got := h.metricValue("sluice_collected_records_total"); got != before+udpMsgs*udpRecs {
		t.Fatalf("%v records collected, want %v: the TCP session was not held", got, before+udpMsgs*udpRecs)
	}
	if got := h.metricValue(`sluice_packets_total{transport="udp"}`); got != udpMsgs+1 {
		t.Fatalf("%v UDP datagrams read, want %d", got, udpMsgs+1)
	}
	for _, m := range []string{"sluice_dropped_records_total", "sluice_dropped_sets_total", "sluice_udp_socket_drops_total"} {
		if got := h.metricValue(m); got != 0 {
			t.Fatalf("%s = %v, want 0:\n%s", m, got, h.c.AppendMetrics(nil))
		}
	}
	if got := h.metricValue("sluice_tcp_paused_sessions"); got != 1 {
		t.Fatalf("sluice_tcp_paused_sessions = %v, want 1", got)
	}

	// The session's reads stopped: what the collector has neither handled
	// nor left in the kernel (its receive queue, the exporter's send
	// queue) is what gnet holds for it, at most a partial message and one
	// read (2 x 64 KiB), or the exporter has not written yet. Were the
	// loop still reading, gnet would hold it all.
	exp := netip.MustParseAddrPort(tc.LocalAddr().String())
	inGnet := func() int {
		rx, _, ok1 := tcpQueues(t, uint16(h.port), exp.Port())
		_, tx, ok2 := tcpQueues(t, exp.Port(), uint16(h.port))
		if !ok1 || !ok2 {
			t.Fatal("the TCP session is not in /proc/net/tcp")
		}
		return total - int(h.metricValue(`sluice_received_bytes_total{transport="tcp"}`)) - rx - tx
	}
	for deadline := time.Now().Add(10 * time.Second); inGnet() > 128<<10; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes read from the paused session and not handled, want at most %d", inGnet(), 128<<10)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h.cancel = cancel
	h.startMediator(ctx)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	h.waitRecords(t, tcpMsgs*tcpRecs+udpMsgs*udpRecs)
	if got, want := h.out.sum.Load(), tcpOctets+udpOctets; got != want {
		t.Fatalf("octet sum %d, want %d", got, want)
	}
	if !h.waitMetric("sluice_tcp_paused_sessions", func(v float64) bool { return v == 0 }) {
		t.Fatal("a TCP session is still held after the consumer drained the ring")
	}
	if got := h.metricValue("sluice_tcp_backpressure_seconds_total"); got <= 0 {
		t.Fatalf("sluice_tcp_backpressure_seconds_total = %v, want > 0", got)
	}
	if got := h.metricValue("sluice_dropped_records_total"); got != 0 {
		t.Fatalf("%v records dropped, want 0", got)
	}
}

// tcpQueues returns the send and receive queues the kernel reports for the
// IPv4 TCP socket from local to remote port (/proc/net/tcp), and whether
// it found it.
func tcpQueues(t *testing.T, local, remote uint16) (rx, tx int, ok bool) {
	t.Helper()
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		port := func(a string) uint16 {
			p, _ := strconv.ParseUint(a[strings.LastIndexByte(a, ':')+1:], 16, 16)
			return uint16(p)
		}
		if port(fields[1]) != local || port(fields[2]) != remote {
			continue
		}
		q := strings.Split(fields[4], ":")
		txq, _ := strconv.ParseUint(q[0], 16, 32)
		rxq, _ := strconv.ParseUint(q[1], 16, 32)
		return int(rxq), int(txq), true
	}
	return 0, 0, false
}
