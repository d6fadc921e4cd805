package dbus

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/sluice-flow/sluice/dataplane/promtext"
)

// sigKind numbers the signals the objects emit.
type sigKind uint8

const (
	sigTemplateLearned sigKind = iota + 1
	sigExporterSeen
	sigDraining
	sigPipelineApplied
)

// sig is one pending signal, comparable so that repeats within an interval
// coalesce into one.
type sig struct {
	kind     sigKind
	exporter netip.AddrPort // port 0 when templates are not scoped by port
	domain   uint32
	id       uint16
	version  uint64
}

// maxPending bounds the signals waiting for the next send; past it new
// ones are dropped and counted. With the default interval that bounds the
// rate at 10 000 signals a second.
const maxPending = 1024

// emitter queues signals without blocking and sends them, coalesced, from
// its own goroutine once per interval. queue is safe for concurrent use
// and takes a mutex only long enough to insert into a map: the collector's
// event loops call it.
type emitter struct {
	path     godbus.ObjectPath
	iface    string
	interval atomic.Int64 // nanoseconds

	mu      sync.Mutex
	pending map[sig]struct{}
	order   []sig
	wake    chan struct{}
	kick    chan struct{} // the interval changed

	queued, coalesced, dropped, sent, failed atomic.Uint64
}

func newEmitter(path godbus.ObjectPath, iface string) *emitter {
	e := &emitter{path: path, iface: iface, pending: make(map[sig]struct{}, 64), wake: make(chan struct{}, 1), kick: make(chan struct{}, 1)}
	e.interval.Store(int64(100 * time.Millisecond))
	return e
}

func (e *emitter) queue(s sig) {
	e.mu.Lock()
	switch _, dup := e.pending[s]; {
	case dup:
		e.mu.Unlock()
		e.coalesced.Add(1)
		return
	case len(e.order) >= maxPending:
		e.mu.Unlock()
		e.dropped.Add(1)
		return
	}
	e.pending[s] = struct{}{}
	e.order = append(e.order, s)
	e.mu.Unlock()
	e.queued.Add(1)
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// run sends what is pending, at most once per interval, until ctx ends.
// conn returns the live connection or an error; signals queued while the
// bus is down are counted as failed and not kept.
func (e *emitter) run(ctx context.Context, conn func() (*godbus.Conn, error)) {
	var batch []sig
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.wake:
		}
		e.mu.Lock()
		batch = append(batch[:0], e.order...)
		e.order = e.order[:0]
		clear(e.pending)
		e.mu.Unlock()
		c, err := conn()
		for _, s := range batch {
			if err == nil {
				err = e.send(c, s)
			}
			if err != nil {
				e.failed.Add(1)
				continue
			}
			e.sent.Add(1)
		}
		t := time.NewTimer(time.Duration(e.interval.Load()))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-e.kick:
			t.Stop()
		}
	}
}

func (e *emitter) send(c *godbus.Conn, s sig) error {
	switch s.kind {
	case sigTemplateLearned:
		return c.Emit(e.path, e.iface+".TemplateLearned", exporterString(s.exporter), s.domain, s.id)
	case sigExporterSeen:
		return c.Emit(e.path, e.iface+".ExporterSeen", exporterString(s.exporter))
	case sigDraining:
		return c.Emit(e.path, e.iface+".Draining")
	case sigPipelineApplied:
		return c.Emit(e.path, e.iface+".PipelineApplied", s.version)
	}
	panic("BUG: dbus: unknown signal kind")
}

// exporterString formats an exporter scope as the admin views do: the
// address alone, or with the port when templates are scoped by port.
func exporterString(ap netip.AddrPort) string {
	if ap.Port() == 0 {
		return ap.Addr().Unmap().String()
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
}

var busSignals = promtext.Counter("sluice_dbus_signals_total", "Signals by outcome: queued, coalesced (a repeat within the interval), dropped (queue full), sent, failed (bus down).")

func (e *emitter) appendMetrics(w *promtext.Writer, component string) {
	w.Uint(busSignals, e.queued.Load(), "component", component, "result", "queued")
	w.Uint(busSignals, e.coalesced.Load(), "component", component, "result", "coalesced")
	w.Uint(busSignals, e.dropped.Load(), "component", component, "result", "dropped")
	w.Uint(busSignals, e.sent.Load(), "component", component, "result", "sent")
	w.Uint(busSignals, e.failed.Load(), "component", component, "result", "failed")
}
