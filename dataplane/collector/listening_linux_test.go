package collector

import (
	"net"
	"net/netip"
	"testing"
)

func TestParseProcAddr(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		got, ok := parseProcAddr(in)
		if !ok || got.String() != want {
			t.Errorf("parseProcAddr(%q) = %v, %v; want %s", in, got, ok, want)
		}
	}
	f("0100007F:1F90", "127.0.0.1:8080")
	f("00000000:128B", "0.0.0.0:4747")
	f("00000000000000000000000001000000:1F90", "[::1]:8080")
	f("B80D0120000000000000000001000000:0035", "[2001:db8::1]:53")
	for _, bad := range []string{"", "0100007F", "0100007F:XYZ", "01007F:1F90", "zz00007F:1F90"} {
		if _, ok := parseProcAddr(bad); ok {
			t.Errorf("parseProcAddr(%q) accepted", bad)
		}
	}
}

// A listener is found; a connection from an earlier run is not one.
func TestTCPListenerLookup(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	at := func(a string) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr(a), uint16(port)) }
	for _, a := range []string{"127.0.0.1", "::", "0.0.0.0"} {
		if _, ok := tcpListener(at(a)); !ok {
			t.Errorf("listener on 127.0.0.1:%d not found for %s", port, a)
		}
	}
	if _, ok := tcpListener(at("127.0.0.2")); ok {
		t.Errorf("a listener on 127.0.0.1 reported for 127.0.0.2")
	}
	// A connection whose server side stays after the listener closed.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ln.Close()
	if a, ok := tcpListener(at("127.0.0.1")); ok {
		t.Errorf("an established connection counted as a listener on %v", a)
	}
}
