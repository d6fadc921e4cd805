package collector

import (
	"bufio"
	"encoding/hex"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// tcpListener reports a listening TCP socket in this network namespace
// whose address overlaps addr (the same address, or either one a wildcard)
// on addr's port. Connections left from an earlier run (FIN_WAIT,
// TIME_WAIT) are not listeners and do not count.
func tcpListener(addr netip.AddrPort) (netip.AddrPort, bool) {
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if a, ok := scanListeners(name, addr); ok {
			return a, true
		}
	}
	return netip.AddrPort{}, false
}

func scanListeners(name string, want netip.AddrPort) (netip.AddrPort, bool) {
	f, err := os.Open(name)
	if err != nil {
		return netip.AddrPort{}, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "0A" { // 0A: TCP_LISTEN
			continue
		}
		local, ok := parseProcAddr(fields[1])
		if !ok || local.Port() != want.Port() {
			continue
		}
		la, wa := local.Addr().Unmap(), want.Addr().Unmap()
		if la == wa || la.IsUnspecified() || wa.IsUnspecified() {
			return local, true
		}
	}
	return netip.AddrPort{}, false
}

// parseProcAddr parses /proc/net/tcp's "0100007F:1F90": the address as
// 32-bit words in host byte order (little-endian here), the port in hex.
func parseProcAddr(s string) (netip.AddrPort, bool) {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, false
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	b, err := hex.DecodeString(h)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return netip.AddrPort{}, false
	}
	for i := 0; i+4 <= len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	a, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(a, uint16(port)), true
}
