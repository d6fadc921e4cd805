package collector

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/sluice-flow/sluice/bpf"
	"github.com/sluice-flow/sluice/dataplane/promtext"
)

// eBPF steering. Each UDP listener is a reuseport group of one socket per
// event loop, which gnet opens. The steering program (package bpf) is
// loaded before the engine starts, attached to the group through loop 0's
// socket in OnBoot (from then on the allow-list holds; the choice stays the
// kernel's while the socket array is empty), and the array is filled once
// every loop is known: socket i is the one loop i reads, so the loop index
// the program picks is the loop the API and metrics name. gnet does not
// say which socket a loop reads; loopSockets finds out from each loop's
// epoll set (steer_linux.go).

// SteeringStatus reports how datagrams are spread over the loops.
type SteeringStatus struct {
	// Mode is "ebpf" or "kernel" (what is in effect, not what was asked).
	Mode string `json:"mode"`
	// Ready is set once the program chooses the socket (ebpf only).
	Ready bool `json:"ready"`
	// Reason says why the mode is kernel when ebpf was possible to ask.
	Reason string `json:"reason,omitempty"`
}

type steering struct {
	mu     sync.Mutex
	mode   string
	reason string
	groups []*steerGroup
	ready  atomic.Bool
	err    error // a failure that must stop the start (--steer ebpf)
	// ctlFD is each loop's control connection fd (by loop index), which
	// tells the loop's epoll set apart.
	ctlFD []int
}

type steerGroup struct {
	l    Listener
	prog *bpf.Steering
}

// Steering returns the steering status. Safe for concurrent use.
func (c *Collector) Steering() SteeringStatus {
	s := &c.steer
	s.mu.Lock()
	defer s.mu.Unlock()
	return SteeringStatus{Mode: s.mode, Ready: s.ready.Load(), Reason: s.reason}
}

// prepareSteering loads one program per UDP listener before the engine
// starts. Without the privilege (or with shared ports) auto falls back to
// the kernel's hashing with one log line; ebpf fails instead.
func (c *Collector) prepareSteering() error {
	s := &c.steer
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode, s.reason, s.err = SteerKernel, "", nil
	s.ready.Store(false)
	s.ctlFD = make([]int, len(c.loops))
	if c.cfg.Steer == SteerKernel {
		return nil
	}
	var reason string
	if c.cfg.SharePort {
		reason = "share_port: the other processes sharing the port would get nothing"
	}
	for _, l := range c.listeners {
		if reason != "" || l.Network != "udp" {
			continue
		}
		p, err := bpf.LoadSteering()
		if err == nil {
			err = p.SetAllow(c.cfg.AllowExporters)
			if err != nil {
				p.Close()
			}
		}
		if err != nil {
			reason = err.Error()
			if errors.Is(err, bpf.ErrNotPermitted) {
				reason = "no privilege to load BPF programs (needs CAP_BPF and CAP_NET_ADMIN)"
			}
			break
		}
		s.groups = append(s.groups, &steerGroup{l: l, prog: p})
	}
	if reason == "" && len(s.groups) == 0 {
		return nil // no UDP listener: nothing to steer
	}
	if reason != "" {
		s.closeLocked()
		if c.cfg.Steer == SteerEBPF {
			return fmt.Errorf("collector: steer ebpf: %s", reason)
		}
		s.reason = reason
		c.log.Info("udp steering: the kernel's hashing (an exporter's source ports may reach several loops)", "reason", reason)
		return nil
	}
	s.mode = SteerEBPF
	return nil
}

// attachSteering runs in OnBoot, when loop 0's sockets exist.
func (c *Collector) attachSteering(eng gnet.Engine) error {
	s := &c.steer
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.groups {
		fd, err := eng.DupListener("udp", strings.TrimPrefix(g.l.URL(), "udp://"))
		if err != nil {
			return c.steerFailedLocked(fmt.Errorf("collector: steering %s: find the socket: %w", g.l.URL(), err))
		}
		err = g.prog.Attach(fd)
		closeFD(fd)
		if err != nil {
			return c.steerFailedLocked(fmt.Errorf("collector: steering %s: %w", g.l.URL(), err))
		}
	}
	return nil
}

// fillSteering puts every loop's socket into the arrays; it runs once all
// loops have their control connection.
func (c *Collector) fillSteering() {
	s := &c.steer
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.groups) == 0 {
		return
	}
	ls := make([]Listener, len(s.groups))
	for i, g := range s.groups {
		ls[i] = g.l
	}
	fds, err := loopSockets(s.ctlFD, ls)
	if err == nil {
		for i, g := range s.groups {
			if err = g.prog.SetSockets(fds[i]); err != nil {
				break
			}
		}
	}
	if err != nil {
		if err := c.steerFailedLocked(fmt.Errorf("collector: steering: %w", err)); err != nil {
			c.log.Error("stopping: udp steering failed", "err", err)
			if eng := c.eng.Load(); eng != nil {
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					_ = eng.Stop(ctx)
				}()
			}
		}
		return
	}
	s.ready.Store(true)
	c.log.Info("udp steering: eBPF, by exporter and observation domain", "loops", len(c.loops),
		"listeners", len(s.groups), "allow_exporters", len(c.cfg.AllowExporters))
}

// steerFailedLocked handles a failure after the program was loaded: auto
// falls back to the kernel's hashing (a program already attached stays
// with its group and its allow-list, and with its array empty leaves the
// choice to the kernel); ebpf records the error for Run and returns it.
func (c *Collector) steerFailedLocked(err error) error {
	s := &c.steer
	if c.cfg.Steer == SteerEBPF {
		s.err = err
		return err
	}
	s.closeLocked()
	s.mode, s.reason = SteerKernel, err.Error()
	c.log.Info("udp steering: the kernel's hashing (an exporter's source ports may reach several loops)", "reason", s.reason)
	return nil
}

func (s *steering) closeLocked() {
	for _, g := range s.groups {
		g.prog.Close()
	}
	s.groups = nil
}

// close releases the programs when the engine has stopped (the sockets,
// and with them the attachment, are gone).
func (s *steering) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked()
	s.ready.Store(false)
}

func (s *steering) setControlFD(loop, fd int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if loop < len(s.ctlFD) {
		s.ctlFD[loop] = fd
	}
}

var steerDatagramsTotal = promtext.Counter("sluice_steer_datagrams_total",
	"UDP datagrams seen by the eBPF steering program, by result: steered (by exporter and domain), address_only (of those, by address alone: v5, short or unknown payloads), denied (dropped in the kernel: source outside allow_exporters), kernel_hash (left to the kernel's hash).")

// appendSteerMetrics writes the program's counters (zero without it).
func (c *Collector) appendSteerMetrics(w *promtext.Writer) {
	var sum bpf.Stats
	c.steer.mu.Lock()
	for _, g := range c.steer.groups {
		if st, err := g.prog.Stats(); err == nil {
			sum.Steered += st.Steered
			sum.AddrOnly += st.AddrOnly
			sum.Denied += st.Denied
			sum.Fallback += st.Fallback
		}
	}
	c.steer.mu.Unlock()
	w.Uint(steerDatagramsTotal, sum.Steered, "result", "steered")
	w.Uint(steerDatagramsTotal, sum.AddrOnly, "result", "address_only")
	w.Uint(steerDatagramsTotal, sum.Denied, "result", "denied")
	w.Uint(steerDatagramsTotal, sum.Fallback, "result", "kernel_hash")
}
