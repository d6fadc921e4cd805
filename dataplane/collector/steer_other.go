//go:build !linux

package collector

import "errors"

// Elsewhere BPF programs do not load, so steering never gets this far.

func loopSockets(ctl []int, ls []Listener) ([][]int, error) {
	return nil, errors.ErrUnsupported
}

func closeFD(int) {}
