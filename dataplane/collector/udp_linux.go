package collector

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr mirrors struct mmsghdr from <sys/socket.h>.
// Go pads the struct to Msghdr's alignment, as C does on every
// architecture, so no explicit padding field.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// udpBatch is a loop's recvmmsg state: buffers, iovecs and address slots
// allocated once and reused for every call.
type udpBatch struct {
	msgs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	bufs  [][]byte
}

func newUDPBatch(n, size int) *udpBatch {
	b := &udpBatch{
		msgs:  make([]mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet6, n),
		bufs:  make([][]byte, n),
	}
	mem := make([]byte, n*size)
	for i := range n {
		b.bufs[i] = mem[i*size : (i+1)*size : (i+1)*size]
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(size)
		b.msgs[i].hdr.Iov = &b.iovs[i]
		b.msgs[i].hdr.SetIovlen(1)
		b.msgs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
	}
	return b
}

// size is how many datagrams one recv may return.
func (b *udpBatch) size() int { return len(b.msgs) }

// recv reads up to len(msgs) datagrams without blocking and returns how many.
func (b *udpBatch) recv(fd int) (int, error) {
	for i := range b.msgs {
		b.msgs[i].hdr.Namelen = uint32(unsafe.Sizeof(b.names[i]))
		b.msgs[i].hdr.Flags = 0
	}
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.msgs[0])),
		uintptr(len(b.msgs)), unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// datagram returns datagram i of the last recv: its bytes, sender, and
// whether the kernel truncated it.
func (b *udpBatch) datagram(i int) ([]byte, netip.AddrPort, bool) {
	m := &b.msgs[i]
	n := int(m.len)
	truncated := m.hdr.Flags&unix.MSG_TRUNC != 0
	if n > len(b.bufs[i]) {
		n = len(b.bufs[i])
		truncated = true
	}
	return b.bufs[i][:n], sockaddrToAddrPort(&b.names[i]), truncated
}

func sockaddrToAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET6:
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}

// setReceiveBuffer asks for size bytes of socket receive buffer, forcing past
// rmem_max when the process may (CAP_NET_ADMIN), and returns what the kernel
// granted (it reports twice the usable size) and whether it was forced.
func setReceiveBuffer(fd, size int) (granted int, forced bool) {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size); err == nil {
		forced = true
	} else {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, size)
	}
	granted, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	return granted, forced
}

const batchSupported = true

func isAgain(err error) bool {
	return err == unix.EAGAIN || err == unix.EWOULDBLOCK || err == unix.EINTR
}
