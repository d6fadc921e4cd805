// Package testnet helps tests find loopback ports.
package testnet

import (
	"net"
	"strconv"
	"testing"
)

// FreePort returns a port free for both UDP and TCP on host (127.0.0.1 or
// ::1), for a listener that opens both on one port number.
func FreePort(t testing.TB, host string) int {
	t.Helper()
	for range 50 {
		tl, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Skipf("no %s loopback: %v", host, err)
		}
		port := tl.Addr().(*net.TCPAddr).Port
		ul, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(port)))
		tl.Close()
		if err == nil {
			ul.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}
