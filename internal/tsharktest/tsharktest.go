// Package tsharktest helps tests that have tshark check what dumpcap or a
// test wrote: which expert notes are no problem of the capture, UDP ports
// kept clear of tshark's traceroute heuristic, and a probe that tells when
// dumpcap has written what was sent before it.
package tsharktest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// tshark's UDP dissector notes "Possible traceroute" for a datagram whose
// source or destination port is in the range classic traceroute probes
// (33434 and up; tshark 4.0 flags 33435 to 33464). Tests keep their ports
// out of this wider range, and Benign accepts the note for ports they do
// not choose (an exporter's source port).
const (
	TracerouteLow  = 33434
	TracerouteHigh = 33534
)

// InTracerouteRange reports whether tshark may take port for a traceroute
// probe's.
func InTracerouteRange(port int) bool { return port >= TracerouteLow && port <= TracerouteHigh }

// benign are expert notes on the transport, not on the capture's content:
// TCP's notes on a connection's life, and the traceroute guess.
var benign = []string{
	"Connection establish request (SYN)",
	"Connection establish acknowledge (SYN+ACK)",
	"Connection finish (FIN)",
	"This frame initiates the connection closing",
	"This frame undergoes the connection closing",
	"Possible traceroute",
}

// Benign reports whether a line of tshark's output that carries expert
// information ("Expert Info (...)", or a _ws.expert.message field) notes
// something that is not a problem of the capture.
func Benign(line string) bool {
	for _, b := range benign {
		if strings.Contains(line, b) {
			return true
		}
	}
	return false
}

// ListenUDP listens on a UDP port of host (network "udp", "udp4" or
// "udp6") outside the traceroute range. The listener is closed when the
// test ends.
func ListenUDP(t testing.TB, network, host string) net.PacketConn {
	t.Helper()
	var held []net.PacketConn // kept open so the kernel hands out another port
	defer func() {
		for _, pc := range held {
			pc.Close()
		}
	}()
	for range 200 {
		pc, err := net.ListenPacket(network, net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		if !InTracerouteRange(pc.LocalAddr().(*net.UDPAddr).Port) {
			t.Cleanup(func() { pc.Close() })
			return pc
		}
		held = append(held, pc)
	}
	t.Fatal("tsharktest: no UDP port outside the traceroute range")
	return nil
}

// Probe is a UDP port to include in a capture filter. Sending marker
// datagrams to it and finding a marker in the capture file tells that the
// capture runs and has written everything that went over the loopback
// interface before the marker (loopback keeps the order).
type Probe struct {
	conn net.Conn
	port int
}

var probeMarkers atomic.Uint64

// NewProbe opens a probe port on 127.0.0.1, outside the traceroute range.
// It is closed when the test ends.
func NewProbe(t testing.TB) *Probe {
	t.Helper()
	pc := ListenUDP(t, "udp4", "127.0.0.1")
	conn, err := net.Dial("udp4", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() { // drain, so the port never answers with ICMP or fills up
		buf := make([]byte, 1500)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return &Probe{conn: conn, port: pc.LocalAddr().(*net.UDPAddr).Port}
}

// ProbeOver makes a probe of a connected UDP socket the caller opened, for
// a capture in another network namespace. Nothing needs to listen on its
// port: dumpcap captures the datagrams all the same.
func ProbeOver(conn net.Conn) *Probe {
	return &Probe{conn: conn, port: conn.RemoteAddr().(*net.UDPAddr).Port}
}

// Port returns the probe's port.
func (p *Probe) Port() int { return p.port }

// Filter returns the capture filter expression that takes the probe's
// datagrams, to be joined with "or" to the test's own.
func (p *Probe) Filter() string { return "udp port " + strconv.Itoa(p.Port()) }

// WaitCaptured sends a new marker to the probe port, again every 20 ms,
// until the capture file at path holds it, and fails the test after d.
func (p *Probe) WaitCaptured(t testing.TB, path string, d time.Duration) {
	t.Helper()
	marker := []byte(fmt.Sprintf("sluice-capture-probe-%d-%d", os.Getpid(), probeMarkers.Add(1)))
	deadline := time.Now().Add(d)
	for {
		// An error is the ICMP port unreachable a port nobody listens on
		// sent back for an earlier datagram (ProbeOver): send again.
		p.conn.Write(marker)
		if b, _ := os.ReadFile(path); bytes.Contains(b, marker) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("capture %s did not take the probe's marker in %v", path, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
