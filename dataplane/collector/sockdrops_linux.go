package collector

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// socketDrops sums the kernel's drop counters (the last column of
// /proc/net/udp and udp6) of the sockets bound to the given local ports:
// datagrams the kernel discarded because a receive buffer was full, which
// the collector never saw.
func socketDrops(ports map[uint16]bool) (uint64, bool) {
	var total uint64
	ok := false
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 13 {
				continue
			}
			local := fields[1]
			i := strings.LastIndexByte(local, ':')
			if i < 0 {
				continue
			}
			port, err := strconv.ParseUint(local[i+1:], 16, 16)
			if err != nil || !ports[uint16(port)] {
				continue
			}
			if d, err := strconv.ParseUint(fields[len(fields)-1], 10, 64); err == nil {
				total += d
				ok = true
			}
		}
		fh.Close()
	}
	return total, ok
}
