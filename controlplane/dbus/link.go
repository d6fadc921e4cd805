package dbus

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/sluice-flow/sluice/dataplane/promtext"
)

// ErrBusDown is returned by calls made while the bus is unreachable.
var ErrBusDown = errors.New("dbus: bus down")

// LinkConfig configures a connection to the pod's bus that reconnects.
type LinkConfig struct {
	// Address is the bus. Default: DefaultAddress.
	Address string
	// Component names the process in logs and in the metrics' component
	// label: "collector", "mediator", "controller".
	Component string
	// MinBackoff and MaxBackoff bound the wait between connection
	// attempts, doubled after each failure. Defaults: 100 ms and 5 s.
	MinBackoff, MaxBackoff time.Duration
}

func (c LinkConfig) withDefaults() LinkConfig {
	if c.Address == "" {
		c.Address = DefaultAddress
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 5 * time.Second
	}
	return c
}

// link keeps one connection to the bus: it connects, calls setup, and when
// the connection closes (the daemon died or restarted) connects again with
// backoff. The run goroutine owns the connection's lifecycle; conn is safe
// for concurrent use and nil while the bus is down.
type link struct {
	cfg   LinkConfig
	log   *slog.Logger
	setup func(ctx context.Context, c *godbus.Conn) error
	cur   atomic.Pointer[godbus.Conn]
	up    chan struct{} // closed at the first successful setup

	connects, failures, drops atomic.Uint64
}

func newLink(cfg LinkConfig, log *slog.Logger, setup func(context.Context, *godbus.Conn) error) *link {
	return &link{cfg: cfg.withDefaults(), log: log, setup: setup, up: make(chan struct{})}
}

// conn returns the live connection or ErrBusDown.
func (l *link) conn() (*godbus.Conn, error) {
	if c := l.cur.Load(); c != nil && c.Connected() {
		return c, nil
	}
	return nil, ErrBusDown
}

// run connects and reconnects until ctx ends, then closes the connection.
// A failure is logged once until the link is up again.
func (l *link) run(ctx context.Context) {
	backoff := l.cfg.MinBackoff
	warned := false
	for ctx.Err() == nil {
		c, err := l.connect(ctx)
		if err != nil {
			l.failures.Add(1)
			if !warned {
				l.log.Warn("bus unreachable; retrying with backoff", "component", l.cfg.Component, "address", l.cfg.Address, "err", err)
				warned = true
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, l.cfg.MaxBackoff)
			continue
		}
		l.connects.Add(1)
		l.cur.Store(c)
		if warned || l.connects.Load() > 1 {
			l.log.Info("bus connected", "component", l.cfg.Component, "address", l.cfg.Address)
		}
		select {
		case <-l.up:
		default:
			close(l.up)
		}
		warned, backoff = false, l.cfg.MinBackoff
		select {
		case <-ctx.Done():
			l.cur.Store(nil)
			c.Close()
			return
		case <-c.Context().Done():
			l.cur.Store(nil)
			l.drops.Add(1)
			l.log.Warn("bus connection lost; reconnecting", "component", l.cfg.Component)
		}
	}
}

func (l *link) connect(ctx context.Context) (*godbus.Conn, error) {
	c, err := godbus.Connect(l.cfg.Address, godbus.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	if err := l.setup(ctx, c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

var (
	busUp       = promtext.Gauge("sluice_dbus_up", "1 while the process is connected to the pod's bus.")
	busConnects = promtext.Counter("sluice_dbus_connects_total", "Connections made to the pod's bus (the first and each reconnection).")
	busFailures = promtext.Counter("sluice_dbus_connect_failures_total", "Failed attempts to connect to the pod's bus.")
	busLost     = promtext.Counter("sluice_dbus_connections_lost_total", "Connections to the pod's bus that closed under the process.")
)

func (l *link) appendMetrics(w *promtext.Writer) {
	up := int64(0)
	if _, err := l.conn(); err == nil {
		up = 1
	}
	comp := l.cfg.Component
	w.Int(busUp, up, "component", comp)
	w.Uint(busConnects, l.connects.Load(), "component", comp)
	w.Uint(busFailures, l.failures.Load(), "component", comp)
	w.Uint(busLost, l.drops.Load(), "component", comp)
}
