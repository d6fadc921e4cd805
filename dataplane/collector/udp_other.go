//go:build !linux

package collector

import (
	"errors"
	"net/netip"
)

// Without recvmmsg the loop handles the one datagram gnet read per wake-up.
type udpBatch struct{}

func newUDPBatch(n, size int) *udpBatch { return &udpBatch{} }

var errNoBatch = errors.New("collector: recvmmsg not available")

func (b *udpBatch) size() int { return 0 }

func (b *udpBatch) recv(fd int) (int, error) { return 0, errNoBatch }

func (b *udpBatch) datagram(i int) ([]byte, netip.AddrPort, bool) {
	return nil, netip.AddrPort{}, false
}

func setReceiveBuffer(fd, size int) (int, bool) { return 0, false }

const batchSupported = false

func isAgain(err error) bool { return true }
