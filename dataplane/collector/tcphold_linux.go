//go:build linux && !poll_opt

package collector

import (
	"slices"

	"golang.org/x/sys/unix"
)

// Pausing a TCP session's reads. gnet has no call for it, so the loop
// changes the session's registration in its own epoll set: gnet's default
// poller (not the poll_opt one) registers a connection level-triggered for
// EPOLLIN|EPOLLPRI with the fd as the event's data, dispatches events by
// that fd, and changes the registration of a connection only when it has
// something to write, which a collector never has. With no events asked
// for, the kernel reports the socket only on an error or a hang-up (a
// reset: what was read and not yet handled is then counted tcp_partial);
// a peer's orderly close (FIN) is seen once reading resumes, after the
// bytes before it. The loop's epoll set is the one that holds the
// session's fd (the kernel lists each set's fds in /proc/self/fdinfo).

const (
	epollUnknown = -1 // not looked for yet
	epollNone    = -2 // looked for and not found: pausing unavailable
)

// stopReading asks the loop's poller to stop reporting fd as readable, and
// reports whether it did.
func (l *loop) stopReading(fd int) bool {
	if l.epfd == epollUnknown {
		l.epfd = epollHolding(fd)
		if l.epfd == epollNone {
			l.c.log.Warn("tcp sessions cannot be paused on this loop; a full ring makes the loop wait", "loop", l.idx)
		}
	}
	if l.epfd < 0 {
		return false
	}
	return unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Fd: int32(fd)}) == nil
}

// startReading restores gnet's registration of fd (see stopReading).
func (l *loop) startReading(fd int) {
	if l.epfd >= 0 {
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Fd: int32(fd), Events: unix.EPOLLIN | unix.EPOLLPRI})
	}
}

// epollHolding returns the epoll instance that watches fd, or epollNone
// unless exactly one does.
func epollHolding(fd int) int {
	sets, err := epollSets()
	if err != nil {
		return epollNone
	}
	found := epollNone
	for _, s := range sets {
		if slices.Contains(s.fds, fd) {
			if found != epollNone {
				return epollNone
			}
			found = s.fd
		}
	}
	return found
}
