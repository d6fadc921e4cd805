package ring

import (
	"bytes"
	"testing"
)

// model is the reference for FuzzRingOps: a FIFO of committed entries and
// the space accounting the framing rules imply, worked out per entry: a
// frame is 4+n bytes rounded up to 8, and a frame that does not fit before
// the end of the area first skips to its start.
type model struct {
	size     int
	maxEntry int
	written  int // bytes ever taken, gaps included (the head)
	freed    int // bytes ever released (the tail)
	queue    []modelEntry
	reserved int // -1 when nothing is reserved
	skip     int // gap the reservation skips
	refused  uint64
}

type modelEntry struct {
	data []byte
	cost int // frame plus the gap skipped before it
}

func (m *model) frame(n int) int { return (4 + n + 7) / 8 * 8 }

func (m *model) reserve(n int) bool {
	m.reserved = -1
	if n > m.maxEntry {
		m.refused++
		return false
	}
	at := m.written % m.size
	m.skip = 0
	if at+m.frame(n) > m.size {
		m.skip = m.size - at
	}
	if m.written-m.freed+m.skip+m.frame(n) > m.size {
		return false
	}
	m.reserved = n
	return true
}

func (m *model) commit(data []byte) {
	cost := m.skip + m.frame(len(data))
	m.queue = append(m.queue, modelEntry{bytes.Clone(data), cost})
	m.written += cost
	m.reserved = -1
}

// FuzzRingOps drives a ring with a sequence of operations decoded from the
// input and checks every result against model. The first byte picks the
// set-up: the consumer on the same Ring value, or on a second Ring attached
// to the same memory.
func FuzzRingOps(f *testing.F) {
	f.Add([]byte{0, 0, 10, 0, 2, 0xff, 3, 4})
	f.Add([]byte{1, 0, 0xff, 0x03, 2, 0xff, 0, 0xf0, 0x03, 2, 1, 3, 4, 3, 4})
	f.Add(bytes.Repeat([]byte{0, 0xf8, 0x03, 2, 0xff}, 8))
	f.Add(bytes.Repeat([]byte{0, 0xe8, 0x03, 2, 0xff, 3, 4, 1, 7, 0, 2, 3}, 20))
	f.Add(bytes.Repeat([]byte{1, 0x01, 0x04, 2, 0x80, 0, 0x33, 0x01, 2, 0x10, 3, 4, 3}, 30))
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) == 0 {
			return
		}
		mem := alignedMem(4096)
		rp, err := On(mem, true)
		if err != nil {
			t.Fatal(err)
		}
		rc := rp
		if ops[0]&1 == 1 {
			if rc, err = On(mem, false); err != nil {
				t.Fatal(err)
			}
		}
		ops = ops[1:]
		p, c := rp.Producer(), rc.Consumer()
		m := &model{size: rp.Cap(), maxEntry: rp.MaxEntry(), reserved: -1}
		var resv []byte
		var held []byte
		fill := byte(0)
		next := func() int {
			if len(ops) == 0 {
				return 0
			}
			b := ops[0]
			ops = ops[1:]
			return int(b)
		}
		for step := 0; len(ops) > 0; step++ {
			switch op := next(); op % 5 {
			case 0, 1: // reserve up to MaxEntry+8 bytes
				n := (next() | next()<<8) % (m.maxEntry + 9)
				resv = p.Reserve(n)
				if ok := m.reserve(n); ok != (resv != nil) {
					t.Fatalf("step %d: Reserve(%d) = %v, model says %v (used %d)", step, n, resv != nil, ok, m.written-m.freed)
				}
				if resv != nil && (len(resv) != n || cap(resv) != n) {
					t.Fatalf("step %d: Reserve(%d): len %d cap %d", step, n, len(resv), cap(resv))
				}
				// Fill all of it: a reservation that overlapped unread
				// entries would show in their content.
				for i := range resv {
					fill++
					resv[i] = fill
				}
			case 2: // commit all or part
				if m.reserved < 0 {
					continue
				}
				k := next()
				n := m.reserved
				if k != 0xff {
					n = k % (m.reserved + 1)
				}
				p.Commit(n)
				m.commit(resv[:n])
				resv = nil
			case 3: // next
				held = c.Next()
				if len(m.queue) == 0 {
					if held != nil {
						t.Fatalf("step %d: Next = %d bytes on an empty ring", step, len(held))
					}
					continue
				}
				if !bytes.Equal(held, m.queue[0].data) || held == nil {
					t.Fatalf("step %d: Next = %x, want %x", step, held, m.queue[0].data)
				}
			case 4: // release what Next returned
				if held == nil {
					continue
				}
				c.Release()
				m.freed += m.queue[0].cost
				m.queue = m.queue[1:]
				held = nil
			}
			if got, want := rp.Len(), m.written-m.freed; got != want || rc.Len() != want {
				t.Fatalf("step %d: Len = %d / %d, model %d", step, got, rc.Len(), want)
			}
			if rp.Refused() != m.refused {
				t.Fatalf("step %d: Refused = %d, model %d", step, rp.Refused(), m.refused)
			}
		}
		// Whatever is left drains in order.
		if held != nil {
			c.Release()
			m.queue = m.queue[1:]
		}
		for _, e := range m.queue {
			b := c.Next()
			if !bytes.Equal(b, e.data) || b == nil {
				t.Fatalf("drain: Next = %x, want %x", b, e.data)
			}
			c.Release()
		}
		if b := c.Next(); b != nil {
			t.Fatalf("drain: extra entry %x", b)
		}
		if rp.Len() != 0 {
			t.Fatalf("drain: Len = %d", rp.Len())
		}
	})
}
