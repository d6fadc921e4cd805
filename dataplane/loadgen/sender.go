package loadgen

// batchBuf holds one batch of messages back to back, so a GSO send can
// pass runs of them as one buffer.
type batchBuf struct {
	mem  []byte
	size []int
	off  []int
}

func newBatchBuf(batch int) batchBuf {
	return batchBuf{size: make([]int, batch), off: make([]int, batch)}
}

// slot returns room for message i of the batch, right after message i-1.
func (s *batchBuf) slot(i, size int) []byte {
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

// msg returns message i of the batch, valid until the slot is reused.
func (s *batchBuf) msg(i int) []byte { return s.mem[s.off[i] : s.off[i]+s.size[i]] }

// bytes returns the length of the first n messages.
func (s *batchBuf) bytes(n int) int {
	t := 0
	for i := range n {
		t += s.size[i]
	}
	return t
}
