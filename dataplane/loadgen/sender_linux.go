package loadgen

import (
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// gsoAvailable: Linux 4.18+ has UDP_SEGMENT; a failed send falls back.
const gsoAvailable = true

// Go pads the struct to Msghdr's alignment, as C does on every
// architecture, so no explicit padding field.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// batchSender sends many messages per system call: sendmmsg, and with GSO
// one buffer per call entry that the kernel cuts into equal datagrams.
type batchSender struct {
	batchBuf
	gso   bool
	msgs  []mmsghdr
	iovs  []unix.Iovec
	cmsgs []byte
}

func newBatchSender(batch int, gso bool) *batchSender {
	return &batchSender{
		batchBuf: newBatchBuf(batch),
		gso:      gso,
		msgs:     make([]mmsghdr, batch),
		iovs:     make([]unix.Iovec, batch),
		cmsgs:    make([]byte, batch*unix.CmsgSpace(2)),
	}
}

// maxGSO is the most payload one GSO buffer may carry.
const maxGSO = 65000

// send sends messages [0, n) on fd and returns how many were sent.
func (s *batchSender) send(fd int, conn net.Conn, n int) (int, error) {
	if s.gso {
		sent, err := s.sendGSO(fd, n)
		if err == nil {
			return sent, nil
		}
		s.gso = false // not supported here: fall back for good
	}
	for i := range n {
		s.iovs[i].Base = &s.mem[s.off[i]]
		s.iovs[i].SetLen(s.size[i])
		s.msgs[i] = mmsghdr{}
		s.msgs[i].hdr.Iov = &s.iovs[i]
		s.msgs[i].hdr.SetIovlen(1)
	}
	return s.sendmmsg(fd, n)
}

func (s *batchSender) sendGSO(fd, n int) (int, error) {
	seg := s.size[0]
	per := max(1, min(maxGSO/seg, 64))
	entries := 0
	for first := 0; first < n; first += per {
		k := min(per, n-first)
		e := entries
		s.iovs[e].Base = &s.mem[s.off[first]]
		s.iovs[e].SetLen(k * seg)
		s.msgs[e] = mmsghdr{}
		s.msgs[e].hdr.Iov = &s.iovs[e]
		s.msgs[e].hdr.SetIovlen(1)
		if k > 1 {
			c := s.cmsgs[e*unix.CmsgSpace(2) : (e+1)*unix.CmsgSpace(2)]
			h := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
			h.Level = unix.SOL_UDP
			h.Type = unix.UDP_SEGMENT
			h.SetLen(unix.CmsgLen(2))
			*(*uint16)(unsafe.Pointer(&c[unix.CmsgLen(0)])) = uint16(seg)
			s.msgs[e].hdr.Control = &c[0]
			s.msgs[e].hdr.SetControllen(len(c))
		}
		entries++
	}
	sentEntries, err := s.sendmmsg(fd, entries)
	if err != nil && sentEntries == 0 {
		return 0, err
	}
	return min(n, sentEntries*per), nil
}

// sendmmsg sends entries [0, n), retrying the rest after a partial send.
func (s *batchSender) sendmmsg(fd, n int) (int, error) {
	done := 0
	for done < n {
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&s.msgs[done])),
			uintptr(n-done), 0, 0, 0)
		if errno != 0 {
			if errno == unix.EINTR {
				continue
			}
			return done, errno
		}
		done += int(r)
	}
	return done, nil
}

// writeStream writes messages [0, n) to a TCP connection in one write.
func (s *batchSender) writeStream(conn net.Conn, n int) (int, error) {
	end := s.off[n-1] + s.size[n-1]
	w, err := conn.Write(s.mem[:end])
	if err != nil {
		sent := 0
		for sent < n && s.off[sent]+s.size[sent] <= w {
			sent++
		}
		return sent, err
	}
	return n, nil
}

// setSendBuffer enlarges the socket send buffer and makes the socket
// blocking, so a full buffer waits instead of failing.
func setSendBuffer(fd, size int) {
	if fd <= 0 {
		return
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size)
	_ = syscall.SetNonblock(fd, false)
}
