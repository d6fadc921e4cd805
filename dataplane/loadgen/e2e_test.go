package loadgen

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// datagram is one message as it arrived, with its source.
type datagram struct {
	src netip.AddrPort
	b   []byte
}

// TestEndToEndUDP sends to a real UDP socket on 127.0.0.1 and checks what
// arrives against the summary, message by message.
func TestEndToEndUDP(t *testing.T) {
	f := func(cfg Config) {
		t.Helper()
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		_ = pc.SetReadBuffer(4 << 20)
		got := make(chan datagram, 4096)
		go func() {
			buf := make([]byte, 65536)
			for {
				n, src, err := pc.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				got <- datagram{src, append([]byte(nil), buf[:n]...)}
			}
		}()
		cfg.Addr = pc.LocalAddr().(*net.UDPAddr).AddrPort()
		sum := runReal(t, cfg)
		checkArrived(t, cfg, sum, got)
		// GSO needs data messages of one size: one fixed-length template.
		var kinds []Template
		for _, k := range cfg.withDefaults().Templates {
			if k != Options {
				kinds = append(kinds, k)
			}
		}
		fixed := len(kinds) == 1 && kinds[0] != VarLen
		if want := gsoAvailable && !cfg.NoGSO && fixed; sum.GSO != want {
			t.Errorf("%+v: GSO %v, want %v", cfg, sum.GSO, want)
		}
	}
	// Paced at 20k messages/s so the receiving socket keeps up.
	rate := Rate{PerSecond: 2e4, Packets: true}
	f(Config{Rate: rate, Count: 300, Exporters: 3, Records: 10, Templates: []Template{FiveTuple}})
	f(Config{Rate: rate, Count: 300, Exporters: 3, Records: 10, Templates: []Template{FiveTuple}, NoGSO: true})
	f(Config{Rate: rate, Count: 200, Exporters: 2, Records: 5, Templates: []Template{IPv6, VarLen, Options},
		TemplateInterval: time.Millisecond})
	f(Config{Rate: rate, Count: 200, Exporters: 2, Records: 7, Templates: []Template{FiveTuple, Options},
		Protocol: NetFlowV9, TemplateInterval: time.Millisecond})
	if runtime.GOOS == "linux" {
		// The whole of 127.0.0.0/8 is local on Linux.
		f(Config{Rate: rate, Count: 100, Exporters: 4, Records: 3, DistinctAddrs: true, Protocol: NetFlowV9})
	}
}

// TestEndToEndPorts: with Ports, an exporter's sockets share its address
// and domain, and each numbers its own messages.
func TestEndToEndPorts(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("distinct loopback sources need Linux")
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	cfg := Config{Addr: pc.LocalAddr().(*net.UDPAddr).AddrPort(), Rate: Rate{PerSecond: 2e4, Packets: true},
		Count: 120, Exporters: 2, Ports: 3, Records: 3, DistinctAddrs: true, Templates: []Template{FiveTuple}}
	sum := runReal(t, cfg)
	if len(sum.Exporters) != 6 {
		t.Fatalf("%d sockets in the summary, want 6", len(sum.Exporters))
	}
	want := map[netip.AddrPort]ExporterSummary{}
	total := sum.Messages + sum.TemplateMessages
	for i, es := range sum.Exporters {
		src := netip.MustParseAddrPort(es.Source)
		if src.Addr() != sourceAddr(i/3) || es.ObservationDomain != uint32(i/3+1) {
			t.Errorf("socket %d: %v domain %d, want %v domain %d", i, src, es.ObservationDomain, sourceAddr(i/3), i/3+1)
		}
		want[src] = es
	}
	buf := make([]byte, 65536)
	data := map[netip.AddrPort]uint64{}
	for n := uint64(0); n < total; n++ {
		_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		k, src, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("%d of %d messages arrived: %v", n, total, err)
		}
		es, ok := want[src]
		if !ok {
			t.Fatalf("a message from %v, no socket of the summary", src)
		}
		if d := binary.BigEndian.Uint32(buf[12:k]); d != es.ObservationDomain {
			t.Errorf("%v sent domain %d, want %d", src, d, es.ObservationDomain)
		}
		if binary.BigEndian.Uint16(buf[16:]) == 256 { // a data set
			if seq := binary.BigEndian.Uint32(buf[8:]); uint64(seq) != data[src]*3 {
				t.Errorf("%v: sequence %d, want %d", src, seq, data[src]*3)
			}
			data[src]++
		}
	}
	for src, es := range want {
		if data[src] != es.Messages {
			t.Errorf("%v: %d data messages arrived, summary says %d", src, data[src], es.Messages)
		}
	}
}

// TestEndToEndTCP sends to a real TCP listener, one connection per exporter.
func TestEndToEndTCP(t *testing.T) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan datagram, 4096)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go readStream(t, c, got)
		}
	}()
	cfg := Config{Addr: ln.Addr().(*net.TCPAddr).AddrPort(), TCP: true, Count: 500, Exporters: 3,
		Templates: []Template{FiveTuple, VarLen, Options}}
	sum := runReal(t, cfg)
	checkArrived(t, cfg, sum, got)
	if sum.TemplateMessages != 3 || sum.GSO {
		t.Errorf("TCP: %d template messages (want 3), GSO %v", sum.TemplateMessages, sum.GSO)
	}
}

// readStream splits a TCP stream into IPFIX messages by their length field.
func readStream(t *testing.T, c net.Conn, got chan<- datagram) {
	defer c.Close()
	src := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	for {
		hdr := make([]byte, 16)
		if _, err := io.ReadFull(c, hdr); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Errorf("reading %v: %v", src, err)
			}
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[2:]))
		if n < 16 {
			t.Errorf("message of length %d from %v", n, src)
			return
		}
		msg := append(hdr, make([]byte, n-16)...)
		if _, err := io.ReadFull(c, msg[16:]); err != nil {
			t.Errorf("reading %v: %v", src, err)
			return
		}
		got <- datagram{src, msg}
	}
}

// runReal runs cfg over real sockets.
func runReal(t *testing.T, cfg Config) Summary {
	t.Helper()
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sum := g.Run(context.Background())
	if err := g.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if sum.SendErrors != 0 {
		t.Fatalf("%+v: %d send errors", cfg, sum.SendErrors)
	}
	if sum.Messages < uint64(cfg.Count) {
		t.Fatalf("%+v: %d messages sent, want at least %d", cfg, sum.Messages, cfg.Count)
	}
	return sum
}

// checkArrived waits until every message of the summary has arrived (or
// ten seconds have passed), then checks them against the summary.
func checkArrived(t *testing.T, cfg Config, sum Summary, got <-chan datagram) {
	t.Helper()
	want := sum.Messages + sum.TemplateMessages
	bySource := map[netip.AddrPort][]sunk{}
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for n := uint64(0); n < want; n++ {
		select {
		case d := <-got:
			bySource[d.src] = append(bySource[d.src], sunk{b: d.b})
		case <-deadline.C:
			t.Fatalf("%+v: %d of %d messages arrived", cfg, n, want)
		}
	}
	msgs := map[uint32][]sunk{}
	for i, es := range sum.Exporters {
		src, err := netip.ParseAddrPort(es.Source)
		if err != nil {
			t.Fatalf("exporter %d source %q: %v", i, es.Source, err)
		}
		if cfg.DistinctAddrs && src.Addr() != sourceAddr(i) {
			t.Errorf("exporter %d sent from %v, want %v", i, src, sourceAddr(i))
		}
		if !cfg.DistinctAddrs && src.Addr() != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("exporter %d sent from %v, want 127.0.0.1", i, src)
		}
		msgs[es.ObservationDomain] = bySource[src]
		delete(bySource, src)
	}
	if len(bySource) > 0 {
		t.Errorf("messages from sources no exporter has: %v", bySource)
	}
	checkSummary(t, msgs, sum, 0)
}

// TestReconnectTCP resets the collector's side of the connection mid-run:
// with Reconnect the exporter dials again, opens the new session with its
// templates, and its sequence numbers go on past the ones it could not send.
func TestReconnectTCP(t *testing.T) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type session struct{ msgs []datagram }
	sessions := make(chan session, 4)
	go func() {
		for i := 0; ; i++ {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			got := make(chan datagram, 8192)
			if i == 0 {
				// The first session: 20 messages, then a reset.
				var s session
				for len(s.msgs) < 20 {
					hdr := make([]byte, 16)
					if _, err := io.ReadFull(c, hdr); err != nil {
						break
					}
					body := make([]byte, int(binary.BigEndian.Uint16(hdr[2:]))-16)
					if _, err := io.ReadFull(c, body); err != nil {
						break
					}
					s.msgs = append(s.msgs, datagram{b: append(hdr, body...)})
				}
				_ = c.SetLinger(0)
				c.Close()
				sessions <- s
				continue
			}
			go func() {
				readStream(t, c, got)
				close(got)
				var s session
				for d := range got {
					s.msgs = append(s.msgs, d)
				}
				sessions <- s
			}()
		}
	}()
	cfg := Config{Addr: ln.Addr().(*net.TCPAddr).AddrPort(), TCP: true, Count: 3000, Records: 5,
		Rate: Rate{PerSecond: 1e4, Packets: true}, FirstDomain: 7, Reconnect: true}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sum := g.Run(context.Background())
	g.Close()
	if sum.Reconnects == 0 || sum.Exporters[0].ObservationDomain != 7 {
		t.Fatalf("reconnects %d, domain %d; want at least 1 and 7", sum.Reconnects, sum.Exporters[0].ObservationDomain)
	}
	first := <-sessions
	var later []datagram
	for range sum.Reconnects {
		select {
		case s := <-sessions:
			later = append(later, s.msgs...)
			if len(s.msgs) == 0 || binary.BigEndian.Uint16(s.msgs[0].b[16:]) != 2 {
				t.Fatalf("a new session does not start with a template set")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a reconnected session did not end")
		}
	}
	lastSeq := func(ms []datagram) uint32 {
		var seq uint32
		for _, m := range ms {
			if binary.BigEndian.Uint32(m.b[12:]) != 7 {
				t.Fatalf("message of domain %d", binary.BigEndian.Uint32(m.b[12:]))
			}
			if binary.BigEndian.Uint16(m.b[16:]) >= 256 {
				seq = binary.BigEndian.Uint32(m.b[8:])
			}
		}
		return seq
	}
	if len(first.msgs) != 20 || len(later) < 1000 {
		t.Fatalf("%d messages on the first session, %d after it", len(first.msgs), len(later))
	}
	if a, b := lastSeq(first.msgs), lastSeq(later); b <= a || b != sum.Exporters[0].NextSequence-5 {
		t.Fatalf("sequence numbers: last %d before the reset, %d at the end; next %d", a, b, sum.Exporters[0].NextSequence)
	}
}
