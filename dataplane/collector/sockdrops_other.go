//go:build !linux

package collector

func socketDrops(ports map[uint16]bool) (uint64, bool) { return 0, false }
