package collector

import (
	"context"
	"encoding/binary"
	"slices"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/sluice-flow/sluice/dataplane/entry"
)

// TCP backpressure without stopping the loop. UDP and TCP sockets share the
// event loops, so a loop that waited for ring room on behalf of a TCP
// exporter would stop reading its UDP sockets too, and the kernel would drop
// their datagrams unseen. Instead a TCP session that finds the ring short of
// room is paused:
//
//   - Before each message, a session checks that the ring has at least
//     tcpReserve bytes free (an eighth of it: the part TCP leaves to UDP).
//     If not, it stops: its unhandled bytes stay in gnet's inbound buffer
//     (at most the partial message before the last read plus that read,
//     ReadBufferCap: 128 KiB per session), the loop stops reading its socket
//     (stopReading), and the kernel's TCP window pushes back on the
//     exporter. The loop goes on serving everything else.
//   - A message is handled whole once begun: entries the ring cannot take
//     go to the loop's spill, a FIFO after the ring's last entry, flushed
//     before anything else enters the ring (UDP entries meanwhile are
//     dropped as ring_full: the ring is full). One message (with the held
//     data its templates release) is the most the spill takes before its
//     session pauses; maxSpill bounds it anyway.
//   - The collector's resumer goroutine polls the rings of loops with
//     paused sessions; once one has resumeFree bytes free, it asks the loop
//     (EventLoop.Execute) to flush its spill and wake its paused sessions
//     (Conn.Wake), which handle what they hold and then read again.
//
// Where reads cannot be paused (see tcphold_linux.go), or the spill would
// pass its bound, the loop waits for room as it did before.

// maxSpill bounds a loop's spill. One message of 64 KiB made of 4-byte
// withdrawals is about 1.3 MB of entries; beyond the bound the loop waits.
const maxSpill = 4 << 20

// spillFrame is the spill's framing: a 4-byte length before each entry.
const spillFrame = 4

// tcpRoom reports whether a TCP session may begin a message: nothing
// spilled and the ring's TCP share not used up. Consumers gone: yes, for
// push to count what is lost.
func (l *loop) tcpRoom() bool {
	if len(l.spill) == l.spillHead && l.ring.Cap()-l.ring.Len() >= l.tcpReserve {
		return true
	}
	return l.consumersGone()
}

func (l *loop) consumersGone() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

// toSpill appends an entry the ring could not take. If the spill is at its
// bound, the loop first waits for room for it.
func (l *loop) toSpill(h *entry.Header, body []byte) {
	n := entry.HeaderLen + len(body)
	if len(l.spill)-l.spillHead+spillFrame+n > maxSpill {
		l.waitRoom(func() bool { return l.flushSpill() })
	}
	l.spill = binary.LittleEndian.AppendUint32(l.spill, uint32(n))
	off := len(l.spill)
	l.spill = slices.Grow(l.spill, n)[:off+n]
	entry.Put(l.spill[off:], h)
	copy(l.spill[off+entry.HeaderLen:], body)
	l.stats.spillBytes.Store(int64(len(l.spill) - l.spillHead))
	l.watch()
}

// flushSpill moves what the spill holds into the ring, oldest first, as far
// as there is room, and reports whether the spill is now empty.
func (l *loop) flushSpill() bool {
	for l.spillHead < len(l.spill) {
		n := int(binary.LittleEndian.Uint32(l.spill[l.spillHead:]))
		e := l.spill[l.spillHead+spillFrame : l.spillHead+spillFrame+n]
		buf := l.prod.Reserve(n)
		if buf == nil {
			l.stats.spillBytes.Store(int64(len(l.spill) - l.spillHead))
			return false
		}
		copy(buf, e)
		l.prod.Commit(n)
		l.spillHead += spillFrame + n
	}
	if cap(l.spill) > 1<<20 {
		l.spill = nil // a rare burst: do not keep its memory
	}
	l.spill, l.spillHead = l.spill[:0], 0
	l.stats.spillBytes.Store(0)
	return true
}

// dropSpill counts what the spill holds as lost for reason and empties it.
func (l *loop) dropSpill(reason DropReason) {
	var h entry.Header
	for l.spillHead < len(l.spill) {
		n := int(binary.LittleEndian.Uint32(l.spill[l.spillHead:]))
		if _, err := entry.Parse(l.spill[l.spillHead+spillFrame:l.spillHead+spillFrame+n], &h); err == nil && h.Kind == entry.KindData {
			l.stats.droppedRecs[reason].Add(uint64(h.Records))
		}
		l.spillHead += spillFrame + n
	}
	l.spill, l.spillHead = l.spill[:0], 0
	l.stats.spillBytes.Store(0)
}

// waitRoom waits on the loop until done reports true or the consumers are
// gone: the way of a loop that cannot pause a session. The wait is counted
// as backpressure.
func (l *loop) waitRoom(done func() bool) {
	if done() {
		return
	}
	start := time.Now()
	l.stats.backpressure.Add(1)
	for !done() && !l.consumersGone() {
		time.Sleep(50 * time.Microsecond)
	}
	l.stats.backpressureNanos.Add(uint64(time.Since(start)))
}

// pause stops reading s until the ring has room, and reports whether it
// could (false: the caller waits instead).
func (l *loop) pause(c gnet.Conn, s *tcpSession) bool {
	if !s.paused {
		if !l.stopReading(c.Fd()) {
			return false
		}
		s.paused, s.pausedAt = true, l.now
		l.stats.backpressure.Add(1)
		l.stats.pausedSessions.Add(1)
	}
	if !s.queued {
		s.queued = true
		l.paused = append(l.paused, s)
	}
	l.watch()
	return true
}

// unpause lets s read again: it has handled everything it held.
func (l *loop) unpause(c gnet.Conn, s *tcpSession) {
	if !s.paused {
		return
	}
	l.startReading(c.Fd())
	l.pauseEnded(s)
}

// pauseEnded ends the accounting of s's pause (it resumed or closed).
func (l *loop) pauseEnded(s *tcpSession) {
	s.paused = false
	l.stats.pausedSessions.Add(-1)
	if d := nowNanos() - s.pausedAt; d > 0 {
		l.stats.backpressureNanos.Add(uint64(d))
	}
	if s.queued {
		s.queued = false
		l.paused = slices.DeleteFunc(l.paused, func(p *tcpSession) bool { return p == s })
	}
}

// watch tells the resumer this loop waits for ring room.
func (l *loop) watch() {
	if l.waiting.Load() {
		return
	}
	l.waiting.Store(true)
	select {
	case l.c.resumeKick <- struct{}{}:
	default:
	}
}

// resume runs on the loop when the resumer saw room: it flushes the spill,
// then wakes the paused sessions, oldest first.
func (l *loop) resume() {
	l.resumeQueued.Store(false)
	if l.consumersGone() {
		l.dropSpill(DropShutdown)
	} else if !l.flushSpill() || l.ring.Cap()-l.ring.Len() < l.resumeFree {
		return // the resumer keeps watching
	}
	for _, s := range l.paused {
		s.queued = false
		_ = s.conn.Wake(nil) // fails only when the engine stops, which closes s
	}
	clear(l.paused)
	l.paused = l.paused[:0]
	l.waiting.Store(false)
}

// resumer watches the rings of loops with paused sessions or a spill, and
// has a loop resume once its ring has room. It returns when done is closed.
func (c *Collector) resumer(done <-chan struct{}) {
	const minWait, maxWait = 50 * time.Microsecond, 2 * time.Millisecond
	for {
		select {
		case <-c.resumeKick:
		case <-done:
			return
		}
		wait := minWait
		timer := time.NewTimer(wait)
		for {
			watching := false
			for _, l := range c.loops {
				if !l.waiting.Load() {
					continue
				}
				watching = true
				room := l.ring.Cap()-l.ring.Len() >= l.resumeFree
				if (!room && !l.consumersGone()) || l.resumeQueued.Load() {
					continue
				}
				l.resumeQueued.Store(true)
				err := l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
					l.resume()
					return nil
				}))
				if err != nil {
					return // the engine is stopping
				}
				wait = minWait
			}
			if !watching {
				break
			}
			timer.Reset(wait)
			select {
			case <-done:
				timer.Stop()
				return
			case <-timer.C:
			}
			wait = min(2*wait, maxWait)
		}
		timer.Stop()
	}
}
