package collector

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// loopSockets returns, for each UDP listener, the socket each loop reads,
// in loop order. ctl holds each loop's control connection fd. gnet keeps a
// loop's sockets in the loop's own epoll set, and the kernel lists an epoll
// set's fds in /proc/self/fdinfo: the set holding loop i's control fd holds
// loop i's listener sockets.
func loopSockets(ctl []int, ls []Listener) ([][]int, error) {
	sets, err := epollSets()
	if err != nil {
		return nil, err
	}
	out := make([][]int, len(ls))
	for i := range out {
		out[i] = make([]int, len(ctl))
	}
	for loop, cfd := range ctl {
		var set []int
		for _, s := range sets {
			if slices.Contains(s.fds, cfd) {
				if set != nil {
					return nil, fmt.Errorf("loop %d: control fd %d in two epoll sets", loop, cfd)
				}
				set = s.fds
			}
		}
		if set == nil {
			return nil, fmt.Errorf("loop %d: no epoll set holds control fd %d", loop, cfd)
		}
		for g, l := range ls {
			found := -1
			for _, fd := range set {
				if !udpBoundTo(fd, l.Addr) {
					continue
				}
				if found >= 0 {
					return nil, fmt.Errorf("loop %d reads two sockets of %s", loop, l.URL())
				}
				found = fd
			}
			if found < 0 {
				return nil, fmt.Errorf("loop %d: no socket of %s", loop, l.URL())
			}
			out[g][loop] = found
		}
	}
	return out, nil
}

// epollSet is one epoll instance of this process: its fd and the fds it
// watches.
type epollSet struct {
	fd  int
	fds []int
}

// epollSets lists the epoll instances of this process.
func epollSets() ([]epollSet, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	var sets []epollSet
	for _, e := range ents {
		if link, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || link != "anon_inode:[eventpoll]" {
			continue
		}
		f, err := os.Open("/proc/self/fdinfo/" + e.Name())
		if err != nil {
			continue // closed meanwhile
		}
		var set []int
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// "tfd:        7 events:       19 data: ..."
			fields := strings.Fields(sc.Text())
			if len(fields) >= 2 && fields[0] == "tfd:" {
				if fd, err := strconv.Atoi(fields[1]); err == nil {
					set = append(set, fd)
				}
			}
		}
		f.Close()
		if efd, err := strconv.Atoi(e.Name()); err == nil {
			sets = append(sets, epollSet{fd: efd, fds: set})
		}
	}
	return sets, nil
}

// udpBoundTo reports whether fd is a UDP socket bound to addr (either
// wildcard matching the other family's wildcard).
func udpBoundTo(fd int, addr netip.AddrPort) bool {
	if t, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || t != unix.SOCK_DGRAM {
		return false
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return false
	}
	var got netip.AddrPort
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		got = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		got = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	default:
		return false
	}
	if got.Port() != addr.Port() {
		return false
	}
	a, b := got.Addr(), addr.Addr().Unmap()
	return a == b || (a.IsUnspecified() && b.IsUnspecified())
}

func closeFD(fd int) { _ = unix.Close(fd) }
