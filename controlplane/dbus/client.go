package dbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/sluice-flow/sluice/controlplane/admin"
	"github.com/sluice-flow/sluice/dataplane/collector"
	"github.com/sluice-flow/sluice/dataplane/promtext"
)

// Client is the controller's side of the pod's bus: typed calls on the
// collector and the mediator, and the owners of io.sluice.* names as they
// come and go. It reconnects like a Service. Run belongs to one goroutine;
// the calls are safe for concurrent use and return ErrBusDown while the bus
// is away.
type Client struct {
	link *link
	log  *slog.Logger

	mu      sync.Mutex
	watches []func(name, oldOwner, newOwner string)
}

// NewClient returns a client; Run connects it.
func NewClient(cfg LinkConfig, log *slog.Logger) *Client {
	if cfg.Component == "" {
		cfg.Component = "controller"
	}
	c := &Client{log: log}
	c.link = newLink(cfg, log, c.setup)
	return c
}

// WatchOwners calls fn, from the client's signal goroutine, whenever the
// owner of an io.sluice.* name changes, and, at each (re)connection, once
// for each such name already owned (oldOwner ""). fn must not block for
// long. Call it before Run.
func (c *Client) WatchOwners(fn func(name, oldOwner, newOwner string)) {
	c.mu.Lock()
	c.watches = append(c.watches, fn)
	c.mu.Unlock()
}

func (c *Client) setup(ctx context.Context, conn *godbus.Conn) error {
	c.mu.Lock()
	watches := c.watches
	c.mu.Unlock()
	if len(watches) == 0 {
		return nil
	}
	if err := conn.AddMatchSignalContext(ctx, godbus.WithMatchSender("org.freedesktop.DBus"), godbus.WithMatchInterface("org.freedesktop.DBus"),
		godbus.WithMatchMember("NameOwnerChanged"), godbus.WithMatchArg0Namespace("io.sluice")); err != nil {
		return err
	}
	ch := make(chan *godbus.Signal, 64)
	conn.Signal(ch)
	var names []string
	if err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.ListNames", 0).Store(&names); err != nil {
		return err
	}
	owned := map[string]string{}
	for _, n := range names {
		if strings.HasPrefix(n, "io.sluice.") {
			var owner string
			if conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetNameOwner", 0, n).Store(&owner) == nil {
				owned[n] = owner
			}
		}
	}
	go func() {
		for n, o := range owned {
			for _, fn := range watches {
				fn(n, "", o)
			}
		}
		// The channel closes with the connection.
		for s := range ch {
			if s.Name != "org.freedesktop.DBus.NameOwnerChanged" || len(s.Body) != 3 {
				continue
			}
			name, _ := s.Body[0].(string)
			oldOwner, _ := s.Body[1].(string)
			newOwner, _ := s.Body[2].(string)
			if !strings.HasPrefix(name, "io.sluice.") {
				continue
			}
			for _, fn := range watches {
				fn(name, oldOwner, newOwner)
			}
		}
	}()
	return nil
}

// Run keeps the client connected until ctx ends.
func (c *Client) Run(ctx context.Context) { c.link.run(ctx) }

// Up is closed once the client first connected.
func (c *Client) Up() <-chan struct{} { return c.link.up }

// Conn returns the live connection, or ErrBusDown.
func (c *Client) Conn() (*godbus.Conn, error) { return c.link.conn() }

// AppendMetrics appends the client's bus metrics (component "controller").
func (c *Client) AppendMetrics(dst []byte) []byte {
	w := promtext.NewWriter(dst)
	c.link.appendMetrics(&w)
	return w.Bytes()
}

// NameOwner returns the unique name owning name, "" when none does.
func (c *Client) NameOwner(ctx context.Context, name string) (string, error) {
	conn, err := c.Conn()
	if err != nil {
		return "", err
	}
	var owner string
	err = conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetNameOwner", 0, name).Store(&owner)
	var de godbus.Error
	if errors.As(err, &de) && de.Name == "org.freedesktop.DBus.Error.NameHasNoOwner" {
		return "", nil
	}
	return owner, err
}

// call calls a method of a Sluice object and stores its reply in out.
func (c *Client) call(ctx context.Context, name string, path godbus.ObjectPath, method string, out []any, args ...any) error {
	conn, err := c.Conn()
	if err != nil {
		return err
	}
	call := conn.Object(name, path).CallWithContext(ctx, name+"."+method, 0, args...)
	if call.Err != nil {
		return callError(name, method, call.Err)
	}
	if len(out) > 0 {
		if err := call.Store(out...); err != nil {
			return fmt.Errorf("dbus: %s.%s: reply: %w", name, method, err)
		}
	}
	return nil
}

// RemoteError is a D-Bus error a Sluice process replied with.
type RemoteError struct {
	Name    string // the D-Bus error name
	Message string
}

func (e *RemoteError) Error() string { return e.Name + ": " + e.Message }

// callError maps a reply error: InvalidInput and InvalidPipeline become
// *admin.InputError (HTTP 400), a name nobody owns ErrNotRunning.
func callError(name, method string, err error) error {
	var de godbus.Error
	if !errors.As(err, &de) {
		if errors.Is(err, godbus.ErrClosed) {
			return ErrBusDown
		}
		return fmt.Errorf("dbus: %s.%s: %w", name, method, err)
	}
	msg := ""
	if len(de.Body) > 0 {
		msg, _ = de.Body[0].(string)
	}
	re := &RemoteError{Name: de.Name, Message: msg}
	switch de.Name {
	case ErrInvalidInput, ErrInvalidPipeline, ErrTooLarge:
		return &admin.InputError{Err: errors.New(msg)}
	case "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner":
		return fmt.Errorf("%w: %s", ErrNotRunning, name)
	}
	return re
}

// ErrNotRunning is returned by calls to a process that is not on the bus.
var ErrNotRunning = errors.New("dbus: process not on the bus")

// Collector returns the collector's calls.
func (c *Client) Collector() CollectorClient { return CollectorClient{c} }

// Mediator returns the mediator's calls.
func (c *Client) Mediator() MediatorClient { return MediatorClient{c} }

// CollectorClient calls io.sluice.Collector1.
type CollectorClient struct{ c *Client }

func (cc CollectorClient) call(ctx context.Context, method string, out []any, args ...any) error {
	return cc.c.call(ctx, CollectorName, CollectorPath, method, out, args...)
}

// Status calls Status.
func (cc CollectorClient) Status(ctx context.Context) (CollectorStatus, error) {
	var m map[string]godbus.Variant
	if err := cc.call(ctx, "Status", []any{&m}); err != nil {
		return CollectorStatus{}, err
	}
	return parseCollectorStatus(m), nil
}

// Exporters calls Exporters and decodes its JSON.
func (cc CollectorClient) Exporters(ctx context.Context) ([]collector.ExporterStatus, error) {
	var s string
	if err := cc.call(ctx, "Exporters", []any{&s}); err != nil {
		return nil, err
	}
	v := []collector.ExporterStatus{}
	return v, decodeJSON(s, &v)
}

// Templates calls Templates and decodes its JSON.
func (cc CollectorClient) Templates(ctx context.Context) ([]collector.TemplateStatus, error) {
	var s string
	if err := cc.call(ctx, "Templates", []any{&s}); err != nil {
		return nil, err
	}
	v := []collector.TemplateStatus{}
	return v, decodeJSON(s, &v)
}

// Metrics calls Metrics.
func (cc CollectorClient) Metrics(ctx context.Context) (string, error) {
	var s string
	return s, cc.call(ctx, "Metrics", []any{&s})
}

// AddListener calls AddListener.
func (cc CollectorClient) AddListener(ctx context.Context, url string) error {
	return cc.call(ctx, "AddListener", nil, url)
}

// RemoveListener calls RemoveListener.
func (cc CollectorClient) RemoveListener(ctx context.Context, url string) error {
	return cc.call(ctx, "RemoveListener", nil, url)
}

// Drain calls Drain with the time left in ctx (at most 10 min).
func (cc CollectorClient) Drain(ctx context.Context) error {
	return cc.call(ctx, "Drain", nil, timeoutMS(ctx))
}

// Ready reads the Ready property.
func (cc CollectorClient) Ready(ctx context.Context) (bool, error) {
	return readyProp(ctx, cc.c, CollectorName, CollectorPath)
}

// MediatorClient calls io.sluice.Mediator1.
type MediatorClient struct{ c *Client }

func (mc MediatorClient) call(ctx context.Context, method string, out []any, args ...any) error {
	return mc.c.call(ctx, MediatorName, MediatorPath, method, out, args...)
}

// ApplyPipeline calls ApplyPipeline; a file the mediator refuses is an
// *admin.InputError with its line and reason.
func (mc MediatorClient) ApplyPipeline(ctx context.Context, file []byte) (uint64, error) {
	if len(file) > MaxPipelineSize {
		return 0, &admin.InputError{Err: fmt.Errorf("pipeline of %d bytes; at most %d", len(file), MaxPipelineSize)}
	}
	var v uint64
	return v, mc.call(ctx, "ApplyPipeline", []any{&v}, string(file))
}

// Pipeline calls Pipeline.
func (mc MediatorClient) Pipeline(ctx context.Context) (uint64, []byte, error) {
	var v uint64
	var s string
	err := mc.call(ctx, "Pipeline", []any{&v, &s})
	return v, []byte(s), err
}

// Status calls Status.
func (mc MediatorClient) Status(ctx context.Context) (MediatorStatus, error) {
	var m map[string]godbus.Variant
	if err := mc.call(ctx, "Status", []any{&m}); err != nil {
		return MediatorStatus{}, err
	}
	return parseMediatorStatus(m), nil
}

// Flush calls Flush.
func (mc MediatorClient) Flush(ctx context.Context) error { return mc.call(ctx, "Flush", nil) }

// Metrics calls Metrics.
func (mc MediatorClient) Metrics(ctx context.Context) (string, error) {
	var s string
	return s, mc.call(ctx, "Metrics", []any{&s})
}

// Ready reads the Ready property.
func (mc MediatorClient) Ready(ctx context.Context) (bool, error) {
	return readyProp(ctx, mc.c, MediatorName, MediatorPath)
}

func readyProp(ctx context.Context, c *Client, name string, path godbus.ObjectPath) (bool, error) {
	var v godbus.Variant
	conn, err := c.Conn()
	if err != nil {
		return false, err
	}
	call := conn.Object(name, path).CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get", 0, name, "Ready")
	if call.Err != nil {
		return false, callError(name, "Ready", call.Err)
	}
	if err := call.Store(&v); err != nil {
		return false, err
	}
	b, ok := v.Value().(bool)
	if !ok {
		return false, fmt.Errorf("dbus: %s.Ready is %s, not b", name, v.Signature())
	}
	return b, nil
}

func decodeJSON(s string, v any) error {
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("dbus: decoding reply: %w", err)
	}
	return nil
}

// timeoutMS is the time left in ctx in milliseconds, 30 s without a
// deadline.
func timeoutMS(ctx context.Context) uint32 {
	d, ok := ctx.Deadline()
	if !ok {
		return 30_000
	}
	ms := time.Until(d).Milliseconds()
	return uint32(min(max(ms, 1), int64(maxDrain/time.Millisecond)))
}
