//go:build !linux

package collector

import "net/netip"

// tcpListener is not checked outside Linux: gnet's own bind reports what it
// can.
func tcpListener(netip.AddrPort) (netip.AddrPort, bool) { return netip.AddrPort{}, false }
