package collector

import (
	"context"
	"time"
)

// Status is a summary of the collector for a control plane (the split
// pod's D-Bus object, the admin API): cheap to take, safe for concurrent
// use.
type Status struct {
	// Ready is true while the listeners are open and the collector is not
	// draining or stopped.
	Ready    bool `json:"ready"`
	Draining bool `json:"draining"`
	// Stopped is true once Run has returned (after Drain or Stop).
	Stopped   bool     `json:"stopped"`
	Listeners []string `json:"listeners"`
	Loops     int      `json:"loops"`
	// RingDir and Generation name the file rings; empty and 0 when the
	// rings are in process memory.
	RingDir    string `json:"ring_dir,omitempty"`
	Generation uint64 `json:"generation,omitempty"`
	// RingBytes is what the rings hold now, RingCapacity their total
	// size.
	RingBytes    int64  `json:"ring_bytes"`
	RingCapacity int64  `json:"ring_capacity"`
	Packets      uint64 `json:"packets"`
	// Records counts data records put into the rings; DroppedRecords
	// those lost after decoding (ring full, shutdown, ...).
	Records        uint64 `json:"records"`
	DroppedRecords uint64 `json:"dropped_records"`
	TCPSessions    int64  `json:"tcp_sessions"`
	Templates      int    `json:"templates"`
	// HookEventsDropped counts events the hooks were too slow to take.
	HookEventsDropped uint64 `json:"hook_events_dropped"`
}

// Status returns the collector's summary. Safe for concurrent use.
func (c *Collector) Status() Status {
	s := Status{
		Ready: c.Ready(), Draining: c.draining.Load(), Listeners: c.Listeners(), Loops: len(c.loops),
		RingDir: c.cfg.RingDir, TCPSessions: c.tcpOpen.Load(), Templates: c.shared.Len(),
		HookEventsDropped: c.hooks.dropped.Load(),
	}
	select {
	case <-c.stopped:
		s.Stopped = true
	default:
	}
	s.Generation = c.Generation()
	for _, l := range c.loops {
		st := l.stats
		s.RingBytes += int64(l.ring.Len())
		s.RingCapacity += int64(l.ring.Cap())
		s.Packets += st.packets[0].Load() + st.packets[1].Load()
		s.Records += st.records.Load()
		for r := range numDropReasons {
			s.DroppedRecords += st.droppedRecs[r].Load()
		}
	}
	return s
}

// Ready reports whether the collector is serving: booted, neither draining
// nor stopped. Safe for concurrent use.
func (c *Collector) Ready() bool { return c.running.Load() && !c.draining.Load() }

// Generation returns the generation of the file rings (0 without RingDir).
func (c *Collector) Generation() uint64 {
	if c.rdir == nil {
		return 0
	}
	return c.rdir.gen
}

// Drain is the graceful end of a collector: it reports not ready at once,
// closes the run-time listeners, waits (within timeout) until TCP
// exporters pause, reads what the UDP sockets hold, and stops the event
// loops, so that Run returns and everything accepted is in the rings, which
// are then marked closed for the mediator. It returns when the loops have
// stopped, or with ctx's error. Safe for concurrent use; a second Drain
// waits like the first.
func (c *Collector) Drain(timeout time.Duration) error {
	c.draining.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		return err
	}
	select {
	case <-c.loopsDone:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close releases the ring directory's lock, so that another collector may
// take the directory; call it after Run has returned. The files stay for
// the mediator, and the mappings until the process exits (Status and the
// metrics read them).
func (c *Collector) Close() error {
	if c.rdir != nil {
		c.rdir.unlock()
	}
	return nil
}
