package export

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
)

// IPFIXTCP options.
const (
	DefaultTCPQueueBytes = 16 << 20
	tcpChunkBytes        = 256 << 10
	tcpBackoffMin        = 100 * time.Millisecond
	tcpBackoffMax        = 10 * time.Second
	tcpWriteTimeout      = 10 * time.Second
	tcpCloseGrace        = 5 * time.Second
)

// tcpChunk is a run of whole messages handed to the writer.
type tcpChunk struct {
	buf     []byte
	msgs    []tcpMsg
	records int
}

type tcpMsg struct{ end, records int }

func (c *tcpChunk) reset() { c.buf, c.msgs, c.records = c.buf[:0], c.msgs[:0], 0 }

// IPFIXTCP re-exports records as IPFIX over TCP. Record never blocks: it
// encodes into chunks queued for a writer goroutine that owns the
// connection; when the queue is full, records are dropped and counted. The
// writer reconnects with exponential backoff and sends every template first
// on each new connection. Records count as sent once written to the socket.
type IPFIXTCP struct {
	name, addr string
	enc        *ipfixEncoder

	// mu guards cur (and allocated): the mediator appends messages, the
	// writer may queue cur when it runs out of work after a Flush.
	mu         sync.Mutex
	cur        *tcpChunk
	wantFlush  atomic.Bool
	queue      chan *tcpChunk
	free       chan *tcpChunk
	allocated  int
	maxChunks  int
	limit      int64
	qBytes     atomic.Int64
	qRecords   atomic.Int64
	connected  atomic.Bool
	closing    chan struct{}
	ctx        context.Context
	cancel     context.CancelFunc
	done       chan struct{}
	closeOnce  sync.Once
	track      *tplTracker
	sent       atomic.Uint64
	dropped    atomic.Uint64
	errs       atomic.Uint64
	reconnects atomic.Uint64
}

// NewIPFIXTCP starts an output sending to addr ("host:port") with a queue of
// at most queueBytes octets.
func NewIPFIXTCP(name, addr string, queueBytes int64) *IPFIXTCP {
	if queueBytes <= 0 {
		queueBytes = DefaultTCPQueueBytes
	}
	maxChunks := int(max(queueBytes/tcpChunkBytes, 2))
	ctx, cancel := context.WithCancel(context.Background())
	t := &IPFIXTCP{
		name: name, addr: addr,
		queue: make(chan *tcpChunk, maxChunks), free: make(chan *tcpChunk, maxChunks+2),
		maxChunks: maxChunks, limit: queueBytes,
		closing: make(chan struct{}), ctx: ctx, cancel: cancel, done: make(chan struct{}),
		track: newTplTracker(),
	}
	t.enc = newIPFIXEncoder(maxTCPMessage, t.message)
	t.enc.withdraw = true
	t.cur = t.chunk()
	go t.run()
	return t
}

func (t *IPFIXTCP) chunk() *tcpChunk {
	select {
	case c := <-t.free:
		return c
	default:
	}
	// Chunks in use: at most maxChunks queued, one at the writer, one
	// current, so this never exceeds maxChunks+2.
	t.allocated++
	return &tcpChunk{buf: make([]byte, 0, tcpChunkBytes+ipfix.MaxMessageLen), msgs: make([]tcpMsg, 0, 256)}
}

// message is the encoder's sink.
func (t *IPFIXTCP) message(msg []byte, records int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.cur
	c.buf = append(c.buf, msg...)
	c.records += records
	c.msgs = append(c.msgs, tcpMsg{len(c.buf), records})
	if len(c.buf) >= tcpChunkBytes {
		t.push()
	}
}

// push queues the current chunk, or drops its records if the queue is
// full. The caller holds mu.
func (t *IPFIXTCP) push() {
	c := t.cur
	if len(c.buf) == 0 {
		return
	}
	if t.qBytes.Load()+int64(len(c.buf)) <= t.limit {
		// Count before the writer can see the chunk.
		t.qBytes.Add(int64(len(c.buf)))
		t.qRecords.Add(int64(c.records))
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
	// The dropped messages may have carried templates.
	t.enc.forget.Store(true)
	c.reset()
}

// Record implements Output.
func (t *IPFIXTCP) Record(m *jsonl.Meta, r *ipfix.Record) {
	t.enc.record(m, r)
}

// Flush implements Output: the open message is closed and queued when the
// writer is idle, else the writer queues it when it runs out of work. While
// disconnected records gather into full chunks instead, so small flushes do
// not use up the queue's slots.
func (t *IPFIXTCP) Flush() error {
	t.enc.finish()
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

// Close implements Output: queued records get a few seconds to go out;
// what is left is counted as dropped.
func (t *IPFIXTCP) Close() error {
	t.closeOnce.Do(func() {
		t.enc.finish()
		t.mu.Lock()
		t.push()
		t.mu.Unlock()
		close(t.closing)
		timer := time.AfterFunc(tcpCloseGrace, t.cancel)
		<-t.done
		timer.Stop()
		t.cancel()
	})
	return nil
}

func (t *IPFIXTCP) Name() string { return t.name }

func (t *IPFIXTCP) Stats() Stats {
	return Stats{Sent: t.sent.Load(), Dropped: t.dropped.Load() + t.enc.tooLarge.Load(), Errors: t.errs.Load()}
}

// Queued implements QueueStats: records waiting for the writer.
func (t *IPFIXTCP) Queued() int { return int(t.qRecords.Load()) }

// Reconnects implements QueueStats.
func (t *IPFIXTCP) Reconnects() uint64 { return t.reconnects.Load() }

// run is the writer goroutine.
func (t *IPFIXTCP) run() {
	defer close(t.done)
	var pending *tcpChunk
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
	var tpl []byte
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
			select {
			case <-time.After(backoff):
			case <-wake:
			case <-t.ctx.Done():
				return
			}
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
		t.wantFlush.Store(true) // records gathered while disconnected
		ok := true
		if tpl = t.track.appendAll(tpl[:0], maxTCPMessage, uint32(time.Now().Unix())); len(tpl) > 0 {
			ok = t.write(conn, tpl)
		}
		for ok {
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
			if !t.write(conn, pending.buf) {
				ok = false
				continue
			}
			start := 0
			for _, m := range pending.msgs {
				t.track.update(pending.buf[start:m.end], m.records)
				start = m.end
			}
			t.sent.Add(uint64(pending.records))
			t.qBytes.Add(-int64(len(pending.buf)))
			t.qRecords.Add(-int64(pending.records))
			pending.reset()
			t.free <- pending
			pending = nil
		}
		t.connected.Store(false)
		stop()
		conn.Close()
		<-dead
	}
}

// finished reports whether the output is closing with nothing left to send.
func (t *IPFIXTCP) finished(pending *tcpChunk) bool {
	select {
	case <-t.closing:
		return pending == nil && len(t.queue) == 0
	default:
		return false
	}
}

func (t *IPFIXTCP) write(conn net.Conn, b []byte) bool {
	conn.SetWriteDeadline(time.Now().Add(tcpWriteTimeout))
	if _, err := conn.Write(b); err != nil {
		t.errs.Add(1)
		return false
	}
	return true
}

// drop counts a chunk the writer could not send.
func (t *IPFIXTCP) drop(c *tcpChunk) {
	t.dropped.Add(uint64(c.records))
	t.qBytes.Add(-int64(len(c.buf)))
	t.qRecords.Add(-int64(c.records))
	c.reset()
}
