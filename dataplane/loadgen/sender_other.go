//go:build !linux

package loadgen

import "net"

// Without sendmmsg the generator writes one message per call.
const gsoAvailable = false

type batchSender struct{ batchBuf }

func newBatchSender(batch int, gso bool) *batchSender { return &batchSender{newBatchBuf(batch)} }

func (s *batchSender) send(fd int, conn net.Conn, n int) (int, error) {
	for i := range n {
		if _, err := conn.Write(s.msg(i)); err != nil {
			return i, err
		}
	}
	return n, nil
}

func (s *batchSender) writeStream(conn net.Conn, n int) (int, error) { return s.send(0, conn, n) }

func setSendBuffer(fd, size int) {}
