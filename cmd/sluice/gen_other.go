//go:build !linux

package main

import "net"

// Without sendmmsg the generator writes one message per call.
const gsoAvailable = false

type batchSender struct {
	mem  []byte
	size []int
	off  []int
}

func newBatchSender(batch int, gso bool) *batchSender {
	return &batchSender{size: make([]int, batch), off: make([]int, batch)}
}

func (s *batchSender) slot(i, size int) []byte {
	off := 0
	if i > 0 {
		off = s.off[i-1] + s.size[i-1]
	}
	if need := off + size; need > len(s.mem) {
		grown := make([]byte, max(need, 2*len(s.mem)))
		copy(grown, s.mem)
		s.mem = grown
	}
	s.off[i], s.size[i] = off, size
	return s.mem[off : off+size]
}

func (s *batchSender) bytes(n int) int {
	t := 0
	for i := range n {
		t += s.size[i]
	}
	return t
}

func (s *batchSender) send(fd int, conn net.Conn, n int) (int, error) {
	for i := range n {
		if _, err := conn.Write(s.mem[s.off[i] : s.off[i]+s.size[i]]); err != nil {
			return i, err
		}
	}
	return n, nil
}

func (s *batchSender) writeStream(conn net.Conn, n int) (int, error) { return s.send(0, conn, n) }

func setSendBuffer(fd, size int) {}
