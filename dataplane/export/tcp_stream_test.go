package export

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// hookLog is a streamHook that logs what it is told.
type hookLog struct {
	calls     []string
	overflows int
}

func (h *hookLog) greeting(dst []byte) []byte { return dst }

func (h *hookLog) written(unit []byte, records int, whole bool) {
	s := fmt.Sprintf("%c%d/%d", unit[0], len(unit), records)
	if !whole {
		s += "cut"
	}
	h.calls = append(h.calls, s)
}

func (h *hookLog) overflowed() { h.overflows++ }

// cutConn accepts accept octets (all if negative), then fails.
type cutConn struct {
	net.Conn // nil: the writer only writes
	accept   int
	got      []byte
}

func (c *cutConn) SetWriteDeadline(time.Time) error { return nil }

func (c *cutConn) Write(b []byte) (int, error) {
	if c.accept < 0 || len(b) <= c.accept {
		c.got = append(c.got, b...)
		c.accept -= len(b)
		return len(b), nil
	}
	n := max(c.accept, 0)
	c.got = append(c.got, b[:n]...)
	c.accept = 0
	return n, net.ErrClosed
}

// testStream is a tcpStream without a writer goroutine, with room for
// queueChunks chunks.
func testStream(hook streamHook, queueChunks int) *tcpStream {
	s := &tcpStream{hook: hook, slack: 16 << 10, limit: int64(queueChunks) * tcpChunkBytes,
		queue: make(chan *streamChunk, queueChunks), free: make(chan *streamChunk, queueChunks+2)}
	s.cur = s.chunk()
	return s
}

// TestStreamWrite checks the accounting of a write cut after some octets:
// whole units are sent, a cut one is dropped, and the rest waits at a unit
// boundary for the next connection.
func TestStreamWrite(t *testing.T) {
	f := func(accept int, wantCalls string, wantSent, wantDropped uint64) {
		t.Helper()
		h := &hookLog{}
		s := testStream(h, 4)
		for i, size := range []int{10, 20, 30} {
			s.commit(append(s.begin(), bytes.Repeat([]byte{byte('a' + i)}, size)...), i+1)
		}
		s.flush() // not connected: stays current
		s.connected.Store(true)
		s.flush()
		c := <-s.queue
		if s.Queued() != 6 || len(s.queue) != 0 {
			t.Fatalf("queued %d records, %d chunks", s.Queued(), len(s.queue))
		}
		conn := &cutConn{accept: accept}
		ok := s.write(conn, c)
		if ok != (accept < 0) || strings.Join(h.calls, " ") != wantCalls {
			t.Fatalf("accept %d: ok %v, hook told %q, want %q", accept, ok, h.calls, wantCalls)
		}
		wantErrs := uint64(1)
		if ok {
			wantErrs = 0
		}
		st := s.Stats()
		if st.Sent != wantSent || st.Dropped != wantDropped || st.Errors != wantErrs ||
			s.Queued() != 6-int(wantSent+wantDropped) || c.left != s.Queued() {
			t.Fatalf("accept %d: %+v, queued %d, left %d", accept, st, s.Queued(), c.left)
		}
		boundary := 0
		if c.next > 0 {
			boundary = int(c.units[c.next-1].end)
		}
		if c.off != boundary {
			t.Fatalf("accept %d: off %d not at the end of unit %d", accept, c.off, c.next)
		}
		// The next connection gets the rest, from a unit boundary.
		conn2 := &cutConn{accept: -1}
		if !s.write(conn2, c) || !bytes.Equal(conn2.got, c.buf[len(c.buf)-len(conn2.got):]) ||
			c.off != len(c.buf) || c.left != 0 || s.Queued() != 0 {
			t.Fatalf("accept %d: resumed with %q, off %d, left %d", accept, conn2.got, c.off, c.left)
		}
		s.release(c)
		if st := s.Stats(); st.Sent+st.Dropped != 6 || s.qBytes.Load() != 0 {
			t.Fatalf("accept %d: %+v, %d octets queued", accept, st, s.qBytes.Load())
		}
	}
	f(-1, "a10/1 b20/2 c30/3", 6, 0)
	f(0, "", 0, 0)
	f(10, "a10/1", 1, 0)
	f(15, "a10/1 b20/2cut", 1, 2)
	f(30, "a10/1 b20/2", 3, 0)
	f(59, "a10/1 b20/2 c30/3cut", 3, 3)
}

// TestStreamCommit checks that chunks stay within tcpChunkBytes unless one
// unit is larger, that a unit which does not fit opens the next chunk byte
// for byte, and that a full queue drops chunks and tells the hook.
func TestStreamCommit(t *testing.T) {
	h := &hookLog{}
	s := testStream(h, 2)
	add := func(c byte, size, records int) {
		s.commit(append(s.begin(), bytes.Repeat([]byte{c}, size)...), records)
	}
	add('a', 100<<10, 1)
	add('b', 100<<10, 1)
	add('c', 100<<10, 1) // opens the second chunk
	add('d', 300<<10, 5) // queues the second chunk, then alone past the queue's octets
	if len(s.queue) != 2 || s.Stats().Dropped != 5 || h.overflows != 1 || s.Queued() != 3 || len(s.cur.buf) != 0 {
		t.Fatalf("%d chunks queued, %d records, stats %+v, %d overflows, current %d octets",
			len(s.queue), s.Queued(), s.Stats(), h.overflows, len(s.cur.buf))
	}
	a, b := <-s.queue, <-s.queue
	if len(a.buf) != 200<<10 || len(a.units) != 2 || a.units[1] != (streamUnit{200 << 10, 1}) || a.left != 2 {
		t.Fatalf("first chunk: %d octets, units %v", len(a.buf), a.units)
	}
	if !bytes.Equal(b.buf, bytes.Repeat([]byte{'c'}, 100<<10)) || len(b.units) != 1 || b.left != 1 {
		t.Fatalf("second chunk: %d octets, units %v", len(b.buf), b.units)
	}

	// A unit that does not fit moves within the chunk it was appended to
	// when the queue drops that chunk.
	s = testStream(h, 2)
	s.limit = 1
	add('e', 200<<10, 1)
	add('f', 100<<10, 2)
	if !bytes.Equal(s.cur.buf, bytes.Repeat([]byte{'f'}, 100<<10)) || s.cur.records != 2 ||
		len(s.cur.units) != 1 || s.Stats().Dropped != 1 {
		t.Fatalf("current %d octets, %d records, stats %+v", len(s.cur.buf), s.cur.records, s.Stats())
	}
}

// TestIPFIXTCPCutMessage checks that after a message is cut, the next
// connection's templates include the ones it carried, with a sequence number
// that shows its records lost.
func TestIPFIXTCPCutMessage(t *testing.T) {
	recs, metas := steadyRecords(genIPFIX(false, 16, 60)[:8])
	var msgs [][]byte
	var counts []int
	enc := newIPFIXEncoder(maxTCPMessage, func(msg []byte, n int) {
		msgs, counts = append(msgs, bytes.Clone(msg)), append(counts, n)
	})
	enc.withdraw = true
	n := 0
	for i, r := range recs {
		if metas[i].Msg.DomainID != 1 { // one domain: its first message carries the templates
			continue
		}
		enc.record(metas[i], r)
		if n++; n%60 == 0 {
			enc.finish()
		}
	}
	enc.finish()
	if len(msgs) < 2 || !hasTemplateSet(msgs[0]) || hasTemplateSet(msgs[1]) {
		t.Fatalf("%d messages: want templates in the first only", len(msgs))
	}
	all := decodeStream(t, bytes.Join(msgs, nil), true)
	seq := binary.BigEndian.Uint32(msgs[0][8:])
	for _, whole := range []bool{true, false} {
		x := &IPFIXTCP{track: newTplTracker()}
		x.written(msgs[0], counts[0], whole)
		g := x.greeting(nil)
		want := seq + uint32(counts[0])
		if !whole {
			want = seq
		}
		if len(g) < ipfix.HeaderLenIPFIX || !hasTemplateSet(g) || binary.BigEndian.Uint32(g[8:]) != want {
			t.Fatalf("whole %v: greeting %x, want templates with sequence %d", whole, g, want)
		}
		got := decodeStream(t, append(g, bytes.Join(msgs[1:], nil)...), whole)
		equalRecs(t, got, all[counts[0]:])
	}
}

func TestIPFIXTCPRecordAfterClose(t *testing.T) {
	recs, metas := steadyRecords(genIPFIX(false, 1, 3))
	o := NewIPFIXTCP("x", freeAddr(t), 0)
	o.Close()
	o.Record(metas[0], recs[0])
	o.Flush()
	if st := o.Stats(); st.Dropped != 1 || st.Sent != 0 || o.Queued() != 0 {
		t.Fatalf("after Close: %+v, queued %d", st, o.Queued())
	}
}
