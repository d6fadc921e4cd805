package bpf

import (
	"encoding/binary"
	"net/netip"
)

// The Go mirror of steer.c's choice. The end-to-end tests compare where
// datagrams land with what Pick says, so a change to one without the other
// fails them.

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
	// MaxLoops is the most sockets the steering program can choose from.
	MaxLoops = 1024
)

func fnv1a(h uint64, b []byte) uint64 {
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return h
}

// Domain returns the observation domain ID of an IPFIX message or the
// source ID of a NetFlow v9 packet, from the start of a UDP payload; false
// for NetFlow v5, other versions and payloads too short to hold it.
func Domain(payload []byte) (uint32, bool) {
	if len(payload) < 2 {
		return 0, false
	}
	off := 0
	switch binary.BigEndian.Uint16(payload) {
	case 10:
		off = 12
	case 9:
		off = 16
	default:
		return 0, false
	}
	if len(payload) < off+4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(payload[off:]), true
}

// Hash is the steering key of a datagram from src: FNV-1a over the
// address in its 16-byte form (IPv4 mapped into IPv6), then over the
// domain's four bytes in network order when the payload carries one, then
// MurmurHash3's 64-bit finalizer (FNV alone leaves the high bits, which
// the jump hash reads first, alike for neighbouring addresses).
func Hash(src netip.Addr, payload []byte) uint64 {
	a := src.As16() // IPv4 comes out mapped, as steer.c builds it
	h := fnv1a(fnvOffset, a[:])
	if d, ok := Domain(payload); ok {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], d)
		h = fnv1a(h, b[:])
	}
	return mix(h)
}

func mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// Jump is Lamping and Veach's jump consistent hash, in integers as the
// BPF program computes it: the bucket in [0, n) of key. Growing n to n+1
// moves a key only to bucket n, with probability 1/(n+1). n must be
// positive.
func Jump(key uint64, n int) int {
	var b, j uint64
	for j < uint64(n) {
		b = j
		key = key*2862933555777941757 + 1
		j = ((b + 1) << 31) / ((key >> 33) + 1)
	}
	return int(b)
}

// Pick returns the loop the steering program sends a datagram from src
// with this payload to, out of loops.
func Pick(src netip.Addr, payload []byte, loops int) int {
	return Jump(Hash(src, payload), loops)
}
