package export

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// TCP output options.
const (
	DefaultTCPQueueBytes = 16 << 20
	tcpChunkBytes        = 256 << 10
	tcpBackoffMin        = 100 * time.Millisecond
	tcpBackoffMax        = 10 * time.Second
	tcpWriteTimeout      = 10 * time.Second
	tcpCloseGrace        = 5 * time.Second
)

// streamHook is what a tcpStream's content adds to it (IPFIX: templates).
type streamHook interface {
	// greeting appends to dst what each new connection starts with. Writer
	// goroutine.
	greeting(dst []byte) []byte
	// written is told of each unit the writer is done with: whole, or cut
	// short by a broken connection (its records are then dropped, and the
	// next connection starts after it). Writer goroutine.
	written(unit []byte, records int, whole bool)
	// overflowed is told that a full queue dropped a chunk. Either
	// goroutine, with the stream's mutex held.
	overflowed()
}

// streamChunk is a run of whole units handed to the writer.
type streamChunk struct {
	buf     []byte
	units   []streamUnit
	records int // in buf
	// Writer side: buf[off:] is still to send, from units[next] on, and
	// holds left records; off is always at a unit boundary.
	off, next, left int
}

// streamUnit is where a unit ends in its chunk's buf and how many records
// it holds.
type streamUnit struct{ end, records int32 }

func (c *streamChunk) add(records int) {
	c.units = append(c.units, streamUnit{int32(len(c.buf)), int32(records)})
	c.records += records
}

func (c *streamChunk) reset() {
	c.buf, c.units, c.records, c.off, c.next, c.left = c.buf[:0], c.units[:0], 0, 0, 0, 0
}

// tcpStream carries the units of an output (IPFIX messages, JSON lines)
// over TCP. The mediator appends units to a current chunk and never blocks:
// full chunks go to a bounded queue, and when it is full their records are
// dropped and counted. A writer goroutine owns the connection: it dials with
// exponential backoff and counts records as sent once written to the
// socket. A unit cut by a broken connection is dropped (counted) and each
// new connection starts at a unit boundary, so a receiver sees at most a
// truncated last unit on a broken connection, never two units run together.
// begin, commit, flush and shutdown are called by one goroutine (the
// mediator's); Stats, Queued and Reconnects are safe from any goroutine.
type tcpStream struct {
	name, addr string
	// dial opens a connection (nil: plain TCP); ipfix+tls sets one.
	dial  func(ctx context.Context, d *net.Dialer, addr string) (net.Conn, error)
	hook  streamHook // nil when units need nothing
	slack int        // room in a chunk for one unit past tcpChunkBytes

	// mu guards cur: the mediator appends units, the writer may queue cur
	// when it runs out of work after a Flush.
	mu         sync.Mutex
	cur        *streamChunk
	wantFlush  atomic.Bool
	queue      chan *streamChunk
	free       chan *streamChunk
	limit      int64
	qBytes     atomic.Int64
	qRecords   atomic.Int64
	connected  atomic.Bool
	closed     bool // mediator side: shutdown was called
	closing    chan struct{}
	ctx        context.Context
	cancel     context.CancelFunc
	done       chan struct{}
	closeOnce  sync.Once
	closeGrace time.Duration
	greet      []byte // writer side: hook.greeting's buffer
	sent       atomic.Uint64
	dropped    atomic.Uint64
	errs       atomic.Uint64
	reconnects atomic.Uint64
}

// start sets s up to send to addr with a queue of at most queueBytes octets
// (0: DefaultTCPQueueBytes; at least two chunks of 256 KiB) and starts the
// writer. slack is the largest unit expected: chunks get room for it.
func (s *tcpStream) start(name, addr string, queueBytes int64, slack int, hook streamHook) {
	s.startDial(name, addr, queueBytes, slack, hook, nil)
}

// startDial is start with a dial function (nil: plain TCP).
func (s *tcpStream) startDial(name, addr string, queueBytes int64, slack int, hook streamHook,
	dial func(ctx context.Context, d *net.Dialer, addr string) (net.Conn, error)) {
	if queueBytes <= 0 {
		queueBytes = DefaultTCPQueueBytes
	}
	queueBytes = max(queueBytes, 2*tcpChunkBytes)
	maxChunks := int(queueBytes / tcpChunkBytes)
	ctx, cancel := context.WithCancel(context.Background())
	*s = tcpStream{
		name: name, addr: addr, hook: hook, slack: slack, dial: dial,
		queue: make(chan *streamChunk, maxChunks), free: make(chan *streamChunk, maxChunks+2),
		limit:   queueBytes,
		closing: make(chan struct{}), ctx: ctx, cancel: cancel, done: make(chan struct{}),
		closeGrace: tcpCloseGrace,
	}
	s.cur = s.chunk()
	go s.run()
}

// chunk returns a free chunk. The caller holds mu, or is start.
func (s *tcpStream) chunk() *streamChunk {
	select {
	case c := <-s.free:
		return c
	default:
	}
	// Chunks in use: at most maxChunks queued, one at the writer, one
	// current, so free never overflows.
	return &streamChunk{buf: make([]byte, 0, tcpChunkBytes+s.slack), units: make([]streamUnit, 0, 256)}
}

// begin locks s for one unit and returns the current chunk's buffer: the
// caller appends the unit to it and hands the result to commit, which
// unlocks.
func (s *tcpStream) begin() []byte {
	s.mu.Lock()
	return s.cur.buf
}

// commit ends the unit at the end of b (the buffer from begin with the unit
// appended) holding records records, queues the chunk if it is full, and
// unlocks s.
func (s *tcpStream) commit(b []byte, records int) {
	c := s.cur
	start := len(c.buf)
	c.buf = b
	if len(b) > tcpChunkBytes && start > 0 {
		// Chunks stay within tcpChunkBytes (unless one unit is larger),
		// so a queue of N chunks' octets holds N chunks: the unit opens
		// the next chunk. Until someone takes a chunk from free, which
		// needs mu, unit's bytes stay in place.
		unit := b[start:]
		c.buf = b[:start]
		s.push()
		c = s.cur
		c.buf = append(c.buf, unit...)
	}
	c.add(records)
	if len(c.buf) >= tcpChunkBytes {
		s.push()
	}
	s.mu.Unlock()
}

// push queues the current chunk, or drops its records if the queue is
// full. The caller holds mu.
func (s *tcpStream) push() {
	c := s.cur
	if len(c.buf) == 0 {
		return
	}
	if s.qBytes.Load()+int64(len(c.buf)) <= s.limit {
		// Count before the writer can see the chunk.
		s.qBytes.Add(int64(len(c.buf)))
		s.qRecords.Add(int64(c.records))
		c.off, c.next, c.left = 0, 0, c.records
		select {
		case s.queue <- c:
			s.cur = s.chunk()
			return
		default:
			s.qBytes.Add(-int64(len(c.buf)))
			s.qRecords.Add(-int64(c.records))
		}
	}
	s.dropped.Add(uint64(c.records))
	if s.hook != nil {
		s.hook.overflowed()
	}
	c.reset()
}

// flush queues the current chunk when the writer is idle, else the writer
// queues it when it runs out of work. While disconnected units gather into
// full chunks instead, so small flushes do not use up the queue's slots.
func (s *tcpStream) flush() {
	s.mu.Lock()
	if s.connected.Load() {
		if len(s.queue) == 0 {
			s.push()
		} else {
			s.wantFlush.Store(true)
		}
	}
	s.mu.Unlock()
}

// shutdown gives queued records closeGrace to go out; what is left is
// counted as dropped. Records given after shutdown are the caller's to drop
// (see closed).
func (s *tcpStream) shutdown() {
	s.closeOnce.Do(func() {
		s.closed = true
		s.mu.Lock()
		s.push()
		s.mu.Unlock()
		close(s.closing)
		timer := time.AfterFunc(s.closeGrace, s.cancel)
		<-s.done
		timer.Stop()
		s.cancel()
	})
}

// Name implements Output.
func (s *tcpStream) Name() string { return s.name }

// Stats implements Output.
func (s *tcpStream) Stats() Stats {
	return Stats{Sent: s.sent.Load(), Dropped: s.dropped.Load(), Errors: s.errs.Load()}
}

// Queued implements QueueStats: records handed to the writer and not yet
// sent or dropped.
func (s *tcpStream) Queued() int { return int(s.qRecords.Load()) }

// Reconnects implements QueueStats.
func (s *tcpStream) Reconnects() uint64 { return s.reconnects.Load() }

// run is the writer goroutine; it owns the connection.
func (s *tcpStream) run() {
	defer close(s.done)
	var pending *streamChunk
	defer func() {
		s.connected.Store(false)
		if pending != nil {
			s.drop(pending)
		}
		for {
			select {
			case c := <-s.queue:
				s.drop(c)
			default:
				return
			}
		}
	}()
	backoff := tcpBackoffMin
	dialer := net.Dialer{Timeout: 5 * time.Second}
	first := true
	for {
		if s.finished(pending) {
			return
		}
		var conn net.Conn
		var err error
		if s.dial != nil {
			conn, err = s.dial(s.ctx, &dialer, s.addr)
		} else {
			conn, err = dialer.DialContext(s.ctx, "tcp", s.addr)
		}
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			s.errs.Add(1)
			var wake <-chan struct{} // shutdown with nothing to send ends the wait
			if pending == nil && len(s.queue) == 0 {
				wake = s.closing
			}
			timer := time.NewTimer(backoff)
			select {
			case <-timer.C:
			case <-wake:
			case <-s.ctx.Done():
				timer.Stop()
				return
			}
			timer.Stop()
			backoff = min(2*backoff, tcpBackoffMax)
			continue
		}
		if !first {
			s.reconnects.Add(1)
		}
		first = false
		backoff = tcpBackoffMin
		var drained bool
		if pending, drained = s.serve(conn, pending); drained {
			return
		}
	}
}

// serve sends on conn until it breaks, or until shutdown with nothing left
// (drained). It returns the chunk it was sending, if any.
func (s *tcpStream) serve(conn net.Conn, pending *streamChunk) (_ *streamChunk, drained bool) {
	dead := make(chan struct{})
	go func() { // data from the receiver is ignored; EOF or an error ends the connection
		var b [512]byte
		for {
			if _, err := conn.Read(b[:]); err != nil {
				close(dead)
				return
			}
		}
	}()
	stop := context.AfterFunc(s.ctx, func() { conn.SetDeadline(time.Now()) })
	defer func() {
		s.connected.Store(false)
		stop()
		conn.Close()
		<-dead
	}()
	s.connected.Store(true)
	s.wantFlush.Store(true) // units gathered while disconnected
	if s.hook != nil {
		if s.greet = s.hook.greeting(s.greet[:0]); len(s.greet) > 0 {
			if _, err := s.send(conn, s.greet); err != nil {
				return pending, false
			}
		}
	}
	for {
		if pending == nil && len(s.queue) == 0 && s.wantFlush.Swap(false) {
			s.mu.Lock()
			s.push()
			s.mu.Unlock()
		}
		if pending == nil {
			select {
			case pending = <-s.queue:
			case <-dead:
				return nil, false
			case <-s.closing:
				select {
				case pending = <-s.queue:
				default:
					return nil, true
				}
			}
		}
		select {
		case <-dead:
			return pending, false
		default:
		}
		ok := s.write(conn, pending)
		if pending.off == len(pending.buf) {
			s.release(pending)
			pending = nil
		}
		if !ok {
			return pending, false
		}
	}
}

// finished reports whether the stream is closing with nothing left to send.
func (s *tcpStream) finished(pending *streamChunk) bool {
	select {
	case <-s.closing:
		return pending == nil && len(s.queue) == 0
	default:
		return false
	}
}

// send writes b within tcpWriteTimeout and counts an error.
func (s *tcpStream) send(conn net.Conn, b []byte) (int, error) {
	conn.SetWriteDeadline(time.Now().Add(tcpWriteTimeout))
	n, err := conn.Write(b)
	if err != nil {
		s.errs.Add(1)
	}
	return n, err
}

// write sends what is left of c and accounts for it. On an error the units
// written count as sent, a unit cut short is dropped, and c.off moves to the
// next unit boundary, where the next connection starts.
func (s *tcpStream) write(conn net.Conn, c *streamChunk) bool {
	n, err := s.send(conn, c.buf[c.off:])
	written := c.off + n
	sent, cut := 0, 0
	for ; c.next < len(c.units) && int(c.units[c.next].end) <= written; c.next++ {
		u := c.units[c.next]
		if s.hook != nil {
			s.hook.written(c.buf[c.off:u.end], int(u.records), true)
		}
		sent += int(u.records)
		c.off = int(u.end)
	}
	if c.off < written { // only on an error: the next unit is cut
		u := c.units[c.next]
		if s.hook != nil {
			s.hook.written(c.buf[c.off:u.end], int(u.records), false)
		}
		cut = int(u.records)
		c.off = int(u.end)
		c.next++
	}
	s.account(c, sent, cut)
	return err == nil
}

// account counts sent and dropped records of a chunk at the writer.
func (s *tcpStream) account(c *streamChunk, sent, dropped int) {
	c.left -= sent + dropped
	s.sent.Add(uint64(sent))
	s.dropped.Add(uint64(dropped))
	s.qRecords.Add(-int64(sent + dropped))
}

// release returns a chunk the writer is done with to the free list.
func (s *tcpStream) release(c *streamChunk) {
	if c.left != 0 {
		panic("BUG: export: released chunk has unaccounted records")
	}
	s.qBytes.Add(-int64(len(c.buf)))
	c.reset()
	s.free <- c
}

// drop counts what is left of a chunk the writer could not send.
func (s *tcpStream) drop(c *streamChunk) {
	s.dropped.Add(uint64(c.left))
	s.qRecords.Add(-int64(c.left))
	s.qBytes.Add(-int64(len(c.buf)))
	c.reset()
}
