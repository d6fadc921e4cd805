package export

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
)

// parseJSONLTCPSpec parses "jsonl+tcp://host:port[?queue=16MiB]".
func parseJSONLTCPSpec(spec string) (addr string, queue int64, err error) {
	addr, q, err := splitQuery(spec, strings.TrimPrefix(spec, "jsonl+tcp://"), "queue")
	if err != nil {
		return "", 0, err
	}
	if err := checkHostPort(spec, addr); err != nil {
		return "", 0, err
	}
	if queue, err = optSize(spec, q, "queue", DefaultTCPQueueBytes); err != nil {
		return "", 0, err
	}
	if queue < 2*tcpChunkBytes {
		return "", 0, fmt.Errorf("export: %q: queue must be at least %d KiB", spec, 2*tcpChunkBytes>>10)
	}
	return addr, queue, nil
}

// lineChunk is a run of whole JSON lines handed to the writer.
type lineChunk struct {
	buf     []byte
	records int // lines in buf
	// Writer side: buf[off:] is still to send and holds left lines; off
	// is always at a line boundary.
	off, left int
}

func (c *lineChunk) reset() { c.buf, c.records, c.off, c.left = c.buf[:0], 0, 0, 0 }

// JSONLTCP sends records as newline-delimited JSON over TCP (for Logstash,
// Vector or Fluent Bit tcp inputs). Record never blocks: it appends the line
// to a chunk queued for a writer goroutine that owns the connection; when
// the queue is full, records are dropped and counted. The writer reconnects
// with exponential backoff. Records count as sent once written to the
// socket. A line cut by a broken connection is dropped (counted), and each
// new connection starts at a line boundary, so a receiver sees at most a
// truncated last line on a broken connection, never two lines run together.
// Record, Flush and Close are called by one goroutine (the mediator's);
// Stats, Queued and Reconnects are safe from any goroutine.
type JSONLTCP struct {
	name, addr string

	// mu guards cur: the mediator appends lines, the writer may queue cur
	// when it runs out of work after a Flush.
	mu         sync.Mutex
	cur        *lineChunk
	wantFlush  atomic.Bool
	queue      chan *lineChunk
	free       chan *lineChunk
	limit      int64
	qBytes     atomic.Int64
	qRecords   atomic.Int64
	connected  atomic.Bool
	closed     bool // mediator side: Close was called
	closing    chan struct{}
	ctx        context.Context
	cancel     context.CancelFunc
	done       chan struct{}
	closeOnce  sync.Once
	closeGrace time.Duration
	sent       atomic.Uint64
	dropped    atomic.Uint64
	errs       atomic.Uint64
	reconnects atomic.Uint64
}

// NewJSONLTCP starts an output sending to addr ("host:port") with a queue of
// at most queueBytes octets (0: DefaultTCPQueueBytes; at least two chunks of
// 256 KiB).
func NewJSONLTCP(name, addr string, queueBytes int64) *JSONLTCP {
	if queueBytes <= 0 {
		queueBytes = DefaultTCPQueueBytes
	}
	queueBytes = max(queueBytes, 2*tcpChunkBytes)
	maxChunks := int(queueBytes / tcpChunkBytes)
	ctx, cancel := context.WithCancel(context.Background())
	t := &JSONLTCP{
		name: name, addr: addr,
		queue: make(chan *lineChunk, maxChunks), free: make(chan *lineChunk, maxChunks+2),
		limit:   queueBytes,
		closing: make(chan struct{}), ctx: ctx, cancel: cancel, done: make(chan struct{}),
		closeGrace: tcpCloseGrace,
	}
	t.cur = t.chunk()
	go t.run()
	return t
}

// chunk returns a free chunk. The caller holds mu, or is the constructor.
func (t *JSONLTCP) chunk() *lineChunk {
	select {
	case c := <-t.free:
		return c
	default:
	}
	// Chunks in use: at most maxChunks queued, one at the writer, one
	// current, so free never overflows.
	return &lineChunk{buf: make([]byte, 0, tcpChunkBytes+16<<10)}
}

// Record implements Output.
func (t *JSONLTCP) Record(m *jsonl.Meta, r *ipfix.Record) {
	if t.closed {
		t.dropped.Add(1)
		return
	}
	t.mu.Lock()
	c := t.cur
	n := len(c.buf)
	c.buf = jsonl.AppendRecord(c.buf, m, r)
	switch {
	case len(c.buf) < tcpChunkBytes:
		c.records++
	case len(c.buf) == tcpChunkBytes || n == 0:
		c.records++
		t.push()
	default:
		// Chunks stay within tcpChunkBytes (unless one line is larger),
		// so a queue of N chunks' octets holds N chunks: the line opens
		// the next chunk.
		line := c.buf[n:]
		c.buf = c.buf[:n]
		t.push()
		t.cur.buf = append(t.cur.buf, line...)
		t.cur.records++
	}
	t.mu.Unlock()
}

// push queues the current chunk, or drops its records if the queue is
// full. The caller holds mu.
func (t *JSONLTCP) push() {
	c := t.cur
	if len(c.buf) == 0 {
		return
	}
	if t.qBytes.Load()+int64(len(c.buf)) <= t.limit {
		// Count before the writer can see the chunk.
		t.qBytes.Add(int64(len(c.buf)))
		t.qRecords.Add(int64(c.records))
		c.off, c.left = 0, c.records
		select {
		case t.queue <- c:
			t.cur = t.chunk()
			return
		default:
			t.qBytes.Add(-int64(len(c.buf)))
			t.qRecords.Add(-int64(c.records))
		}
	}
	t.dropped.Add(uint64(c.records))
	c.reset()
}

// Flush implements Output: the current chunk is queued when the writer is
// idle, else the writer queues it when it runs out of work. While
// disconnected lines gather into full chunks instead, so small flushes do
// not use up the queue's slots.
func (t *JSONLTCP) Flush() error {
	t.mu.Lock()
	if t.connected.Load() {
		if len(t.queue) == 0 {
			t.push()
		} else {
			t.wantFlush.Store(true)
		}
	}
	t.mu.Unlock()
	return nil
}

// Close implements Output: queued records get a few seconds (tcpCloseGrace)
// to go out; what is left is counted as dropped. Records given after Close
// are dropped.
func (t *JSONLTCP) Close() error {
	t.closeOnce.Do(func() {
		t.closed = true
		t.mu.Lock()
		t.push()
		t.mu.Unlock()
		close(t.closing)
		timer := time.AfterFunc(t.closeGrace, t.cancel)
		<-t.done
		timer.Stop()
		t.cancel()
	})
	return nil
}

func (t *JSONLTCP) Name() string { return t.name }

func (t *JSONLTCP) Stats() Stats {
	return Stats{Sent: t.sent.Load(), Dropped: t.dropped.Load(), Errors: t.errs.Load()}
}

// Queued implements QueueStats: records handed to the writer and not yet
// sent or dropped.
func (t *JSONLTCP) Queued() int { return int(t.qRecords.Load()) }

// Reconnects implements QueueStats.
func (t *JSONLTCP) Reconnects() uint64 { return t.reconnects.Load() }

// run is the writer goroutine; it owns the connection.
func (t *JSONLTCP) run() {
	defer close(t.done)
	var pending *lineChunk
	defer func() {
		t.connected.Store(false)
		if pending != nil {
			t.drop(pending)
		}
		for {
			select {
			case c := <-t.queue:
				t.drop(c)
			default:
				return
			}
		}
	}()
	backoff := tcpBackoffMin
	dialer := net.Dialer{Timeout: 5 * time.Second}
	first := true
	for {
		if t.finished(pending) {
			return
		}
		conn, err := dialer.DialContext(t.ctx, "tcp", t.addr)
		if err != nil {
			if t.ctx.Err() != nil {
				return
			}
			t.errs.Add(1)
			var wake <-chan struct{} // Close with nothing to send ends the wait
			if pending == nil && len(t.queue) == 0 {
				wake = t.closing
			}
			timer := time.NewTimer(backoff)
			select {
			case <-timer.C:
			case <-wake:
			case <-t.ctx.Done():
				timer.Stop()
				return
			}
			timer.Stop()
			backoff = min(2*backoff, tcpBackoffMax)
			continue
		}
		if !first {
			t.reconnects.Add(1)
		}
		first = false
		backoff = tcpBackoffMin
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
		stop := context.AfterFunc(t.ctx, func() { conn.SetDeadline(time.Now()) })
		t.connected.Store(true)
		t.wantFlush.Store(true) // lines gathered while disconnected
		for ok := true; ok; {
			if pending == nil && len(t.queue) == 0 && t.wantFlush.Swap(false) {
				t.mu.Lock()
				t.push()
				t.mu.Unlock()
			}
			if pending == nil {
				select {
				case pending = <-t.queue:
				case <-dead:
					ok = false
					continue
				case <-t.closing:
					select {
					case pending = <-t.queue:
					default:
						stop()
						conn.Close()
						<-dead
						return
					}
				}
			}
			select {
			case <-dead:
				ok = false
				continue
			default:
			}
			ok = t.write(conn, pending)
			if pending.off == len(pending.buf) {
				t.release(pending)
				pending = nil
			}
		}
		t.connected.Store(false)
		stop()
		conn.Close()
		<-dead
	}
}

// finished reports whether the output is closing with nothing left to send.
func (t *JSONLTCP) finished(pending *lineChunk) bool {
	select {
	case <-t.closing:
		return pending == nil && len(t.queue) == 0
	default:
		return false
	}
}

// write sends what is left of c and accounts for it. On an error the lines
// written count as sent, a line cut short is dropped, and c.off moves to
// the next line boundary, where the next connection starts.
func (t *JSONLTCP) write(conn net.Conn, c *lineChunk) bool {
	conn.SetWriteDeadline(time.Now().Add(tcpWriteTimeout))
	n, err := conn.Write(c.buf[c.off:])
	if err == nil {
		t.account(c, c.left, 0)
		c.off = len(c.buf)
		return true
	}
	t.errs.Add(1)
	written := c.buf[c.off : c.off+n]
	lines := bytes.Count(written, newline)
	c.off += n
	cut := 0
	if n > 0 && written[n-1] != '\n' {
		i := bytes.IndexByte(c.buf[c.off:], '\n')
		if i < 0 {
			panic("BUG: export: JSON line without newline in chunk")
		}
		c.off += i + 1
		cut = 1
	}
	t.account(c, lines, cut)
	return false
}

var newline = []byte{'\n'}

// account counts sent and dropped lines of a chunk at the writer.
func (t *JSONLTCP) account(c *lineChunk, sent, dropped int) {
	c.left -= sent + dropped
	t.sent.Add(uint64(sent))
	t.dropped.Add(uint64(dropped))
	t.qRecords.Add(-int64(sent + dropped))
}

// release returns a chunk the writer is done with to the free list.
func (t *JSONLTCP) release(c *lineChunk) {
	if c.left != 0 {
		panic("BUG: export: released chunk has unaccounted lines")
	}
	t.qBytes.Add(-int64(len(c.buf)))
	c.reset()
	t.free <- c
}

// drop counts what is left of a chunk the writer could not send.
func (t *JSONLTCP) drop(c *lineChunk) {
	t.dropped.Add(uint64(c.left))
	t.qRecords.Add(-int64(c.left))
	t.qBytes.Add(-int64(len(c.buf)))
	c.reset()
}
