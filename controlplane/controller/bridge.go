package controller

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
	"github.com/valyala/fasthttp"

	"github.com/sluice-flow/sluice/controlplane/admin"
	"github.com/sluice-flow/sluice/controlplane/dbus"
	"github.com/sluice-flow/sluice/dataplane/promtext"
)

// BridgePrefix is where the bus bridge is mounted.
const BridgePrefix = "/api/v1/bus/"

// DefaultAllow is the names the bridge reaches by default: Sluice's and the
// bus daemon's. An entry ending in ".*" is a prefix.
var DefaultAllow = []string{"io.sluice.*", "org.freedesktop.DBus"}

// BridgeRoutes are the bridge's routes, for /openapi.json.
var BridgeRoutes = []admin.Route{
	{Method: "GET", Path: "/api/v1/bus/services"},
	{Method: "GET", Path: "/api/v1/bus/services/{service}/objects"},
	{Method: "GET", Path: "/api/v1/bus/services/{service}/interfaces/{interface}"},
	{Method: "POST", Path: "/api/v1/bus/services/{service}/interfaces/{interface}/methods/{method}"},
	{Method: "GET", Path: "/api/v1/bus/services/{service}/interfaces/{interface}/properties/{property}"},
	{Method: "PUT", Path: "/api/v1/bus/services/{service}/interfaces/{interface}/properties/{property}"},
	{Method: "GET", Path: "/api/v1/bus/signals"},
}

// Bridge is the generic HTTP bridge to the pod's bus that a D-Bus sidecar
// offers: services, introspection, typed method calls, properties and
// signals over Server-Sent Events. Its handlers run on the HTTP server's
// goroutines and are safe for concurrent use.
type Bridge struct {
	client    *dbus.Client
	allow     []string
	log       *slog.Logger
	heartbeat time.Duration
	done      chan struct{} // closed by Close: event streams end
	closed    atomic.Bool

	calls, failures, streams atomic.Uint64
	subscribers              atomic.Int64
}

// NewBridge returns a bridge over client's connection reaching the names
// allow lists (DefaultAllow when nil).
func NewBridge(client *dbus.Client, allow []string, log *slog.Logger) *Bridge {
	if allow == nil {
		allow = DefaultAllow
	}
	return &Bridge{client: client, allow: allow, log: log, heartbeat: 15 * time.Second, done: make(chan struct{})}
}

// Close ends the open event streams, so the HTTP server can shut down.
func (b *Bridge) Close() {
	if b.closed.CompareAndSwap(false, true) {
		close(b.done)
	}
}

// Mount is the bridge as the admin server mounts it, behind the token.
func (b *Bridge) Mount() admin.Mount {
	return admin.Mount{Prefix: BridgePrefix, Auth: true, Handler: b.handle, Routes: BridgeRoutes}
}

func (b *Bridge) allowed(name string) bool {
	for _, a := range b.allow {
		if p, ok := strings.CutSuffix(a, "*"); ok {
			if strings.HasPrefix(name, p) {
				return true
			}
		} else if name == a {
			return true
		}
	}
	return false
}

// httpError is an error with its HTTP status and code.
type httpError struct {
	status int
	kind   string
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errf(status int, kind, format string, args ...any) *httpError {
	return &httpError{status, kind, fmt.Sprintf(format, args...)}
}

func (b *Bridge) fail(ctx *fasthttp.RequestCtx, err error) {
	b.failures.Add(1)
	var he *httpError
	if !errors.As(err, &he) {
		he = dbusHTTPError(err)
	}
	admin.WriteError(ctx, he.status, he.kind, he.msg)
}

// dbusHTTPError maps a bus error to its HTTP answer.
func dbusHTTPError(err error) *httpError {
	if errors.Is(err, dbus.ErrBusDown) || errors.Is(err, godbus.ErrClosed) {
		return errf(fasthttp.StatusServiceUnavailable, "bus_down", "the pod's bus is not reachable")
	}
	var de godbus.Error
	if !errors.As(err, &de) {
		var pde *godbus.Error
		if !errors.As(err, &pde) {
			return errf(fasthttp.StatusBadGateway, "dbus_error", "%v", err)
		}
		de = *pde
	}
	msg := de.Name
	if len(de.Body) > 0 {
		if s, ok := de.Body[0].(string); ok {
			msg += ": " + s
		}
	}
	switch de.Name {
	case "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner",
		"org.freedesktop.DBus.Error.UnknownObject", "org.freedesktop.DBus.Error.UnknownInterface",
		"org.freedesktop.DBus.Error.UnknownMethod", "org.freedesktop.DBus.Error.UnknownProperty":
		return errf(fasthttp.StatusNotFound, "not_found", "%s", msg)
	case "org.freedesktop.DBus.Error.InvalidArgs", "org.freedesktop.DBus.Error.PropertyReadOnly",
		dbus.ErrInvalidInput, dbus.ErrInvalidPipeline, dbus.ErrTooLarge:
		return errf(fasthttp.StatusBadRequest, "invalid_input", "%s", msg)
	case "org.freedesktop.DBus.Error.AccessDenied":
		return errf(fasthttp.StatusForbidden, "not_allowed", "%s", msg)
	case "org.freedesktop.DBus.Error.NoReply", "org.freedesktop.DBus.Error.Timeout":
		return errf(fasthttp.StatusGatewayTimeout, "timeout", "%s", msg)
	}
	return errf(fasthttp.StatusBadGateway, "dbus_error", "%s", msg)
}

// callWait bounds a bridge call; ?timeout_ms= changes it (at most 10 min).
const callWait = 10 * time.Second

func (b *Bridge) handle(ctx *fasthttp.RequestCtx) {
	rest := strings.TrimPrefix(string(ctx.Path()), BridgePrefix)
	parts := strings.Split(rest, "/")
	method := string(ctx.Method())
	if method == "HEAD" {
		method = "GET"
	}
	route := func(want string) bool {
		if method == want {
			return true
		}
		ctx.Response.Header.Set("Allow", want)
		admin.WriteError(ctx, fasthttp.StatusMethodNotAllowed, "method_not_allowed", method+" is not allowed here")
		return false
	}
	c, cancel := context.WithTimeout(context.Background(), callWait)
	if ms := ctx.QueryArgs().GetUintOrZero("timeout_ms"); ms > 0 {
		cancel()
		c, cancel = context.WithTimeout(context.Background(), min(time.Duration(ms)*time.Millisecond, 10*time.Minute))
	}
	defer cancel()
	switch {
	case len(parts) == 1 && parts[0] == "services":
		if route("GET") {
			b.services(c, ctx)
		}
	case len(parts) == 1 && parts[0] == "signals":
		if route("GET") {
			b.signals(ctx)
		}
	case len(parts) == 3 && parts[0] == "services" && parts[2] == "objects":
		if route("GET") {
			b.objects(c, ctx, parts[1])
		}
	case len(parts) == 4 && parts[0] == "services" && parts[2] == "interfaces":
		if route("GET") {
			b.iface(c, ctx, parts[1], parts[3])
		}
	case len(parts) == 6 && parts[0] == "services" && parts[2] == "interfaces" && parts[4] == "methods":
		if route("POST") {
			b.call(c, ctx, parts[1], parts[3], parts[5])
		}
	case len(parts) == 6 && parts[0] == "services" && parts[2] == "interfaces" && parts[4] == "properties":
		switch method {
		case "GET":
			b.getProperty(c, ctx, parts[1], parts[3], parts[5])
		case "PUT":
			b.setProperty(c, ctx, parts[1], parts[3], parts[5])
		default:
			ctx.Response.Header.Set("Allow", "GET, PUT")
			admin.WriteError(ctx, fasthttp.StatusMethodNotAllowed, "method_not_allowed", method+" is not allowed here")
		}
	default:
		admin.WriteError(ctx, fasthttp.StatusNotFound, "no_route", "no route "+string(ctx.Path()))
	}
}

// Service is one entry of GET /api/v1/bus/services.
type Service struct {
	Name  string `json:"name"`
	Owner string `json:"owner"`
}

func (b *Bridge) services(c context.Context, ctx *fasthttp.RequestCtx) {
	conn, err := b.client.Conn()
	if err != nil {
		b.fail(ctx, err)
		return
	}
	var names []string
	if err := conn.BusObject().CallWithContext(c, "org.freedesktop.DBus.ListNames", 0).Store(&names); err != nil {
		b.fail(ctx, err)
		return
	}
	out := []Service{}
	for _, n := range names {
		if strings.HasPrefix(n, ":") || !b.allowed(n) {
			continue
		}
		owner := n // the daemon owns its own name
		if n != "org.freedesktop.DBus" {
			if err := conn.BusObject().CallWithContext(c, "org.freedesktop.DBus.GetNameOwner", 0, n).Store(&owner); err != nil {
				continue // gone meanwhile
			}
		}
		out = append(out, Service{n, owner})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	admin.WriteJSON(ctx, out)
}

// service checks that name is allowed and owned, and returns the
// connection.
func (b *Bridge) service(c context.Context, name string) (*godbus.Conn, error) {
	if !godbusValidName(name) {
		return nil, errf(fasthttp.StatusBadRequest, "invalid_input", "%q is not a bus name", name)
	}
	if !b.allowed(name) {
		return nil, errf(fasthttp.StatusForbidden, "not_allowed", "the bridge does not reach %s (allowed: %s)", name, strings.Join(b.allow, ", "))
	}
	conn, err := b.client.Conn()
	if err != nil {
		return nil, err
	}
	if name == "org.freedesktop.DBus" {
		return conn, nil
	}
	var has bool
	if err := conn.BusObject().CallWithContext(c, "org.freedesktop.DBus.NameHasOwner", 0, name).Store(&has); err != nil {
		return nil, err
	}
	if !has {
		return nil, errf(fasthttp.StatusNotFound, "not_found", "no service %s on the bus", name)
	}
	return conn, nil
}

func godbusValidName(name string) bool {
	if name == "" || len(name) > 255 || strings.HasPrefix(name, ":") || !strings.Contains(name, ".") {
		return false
	}
	for _, el := range strings.Split(name, ".") {
		if el == "" || el[0] >= '0' && el[0] <= '9' {
			return false
		}
		for _, r := range el {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
				return false
			}
		}
	}
	return true
}

// objectPath reads ?path=, defaulting to def.
func objectPath(ctx *fasthttp.RequestCtx, def string) (godbus.ObjectPath, error) {
	p := string(ctx.QueryArgs().Peek("path"))
	if p == "" {
		p = def
	}
	if !godbus.ObjectPath(p).IsValid() {
		return "", errf(fasthttp.StatusBadRequest, "invalid_input", "%q is not an object path", p)
	}
	return godbus.ObjectPath(p), nil
}

// defaultPath is the conventional path of a service's main object.
func defaultPath(service string) string { return "/" + strings.ReplaceAll(service, ".", "/") }

// introspectNode introspects path; an object that has neither interfaces
// nor children does not exist.
func introspectNode(c context.Context, conn *godbus.Conn, service string, path godbus.ObjectPath) (*introspect.Node, error) {
	var s string
	if err := conn.Object(service, path).CallWithContext(c, "org.freedesktop.DBus.Introspectable.Introspect", 0).Store(&s); err != nil {
		return nil, err
	}
	var n introspect.Node
	if err := xml.Unmarshal([]byte(s), &n); err != nil {
		return nil, errf(fasthttp.StatusBadGateway, "dbus_error", "%s %s: bad introspection data: %v", service, path, err)
	}
	if len(n.Interfaces) == 0 && len(n.Children) == 0 {
		return nil, errf(fasthttp.StatusNotFound, "not_found", "no object %s on %s", path, service)
	}
	return &n, nil
}

// Object is one object of GET .../objects.
type Object struct {
	Path       string      `json:"path"`
	Interfaces []Interface `json:"interfaces"`
	Children   []string    `json:"children"`
}

// Interface describes one interface.
type Interface struct {
	Name       string     `json:"name"`
	Methods    []Method   `json:"methods"`
	Properties []Property `json:"properties"`
	Signals    []Signal   `json:"signals"`
}

// Method, Property, Signal and Arg describe an interface's members.
type (
	Method struct {
		Name string `json:"name"`
		In   []Arg  `json:"in"`
		Out  []Arg  `json:"out"`
	}
	Property struct {
		Name   string `json:"name"`
		Type   string `json:"type"`
		Access string `json:"access"`
	}
	Signal struct {
		Name string `json:"name"`
		Args []Arg  `json:"args"`
	}
	Arg struct {
		Name string `json:"name,omitempty"`
		Type string `json:"type"`
	}
)

func describeInterface(i introspect.Interface) Interface {
	out := Interface{Name: i.Name, Methods: []Method{}, Properties: []Property{}, Signals: []Signal{}}
	for _, m := range i.Methods {
		mm := Method{Name: m.Name, In: []Arg{}, Out: []Arg{}}
		for _, a := range m.Args {
			if a.Direction == "out" {
				mm.Out = append(mm.Out, Arg{a.Name, a.Type})
			} else {
				mm.In = append(mm.In, Arg{a.Name, a.Type})
			}
		}
		out.Methods = append(out.Methods, mm)
	}
	for _, p := range i.Properties {
		out.Properties = append(out.Properties, Property{p.Name, p.Type, p.Access})
	}
	for _, s := range i.Signals {
		ss := Signal{Name: s.Name, Args: []Arg{}}
		for _, a := range s.Args {
			ss.Args = append(ss.Args, Arg{a.Name, a.Type})
		}
		out.Signals = append(out.Signals, ss)
	}
	return out
}

// maxObjects bounds a recursive walk.
const maxObjects = 1000

func (b *Bridge) objects(c context.Context, ctx *fasthttp.RequestCtx, service string) {
	conn, err := b.service(c, service)
	if err != nil {
		b.fail(ctx, err)
		return
	}
	path, err := objectPath(ctx, "/")
	if err != nil {
		b.fail(ctx, err)
		return
	}
	recursive := ctx.QueryArgs().GetBool("recursive")
	var out []Object
	queue := []godbus.ObjectPath{path}
	for len(queue) > 0 && len(out) < maxObjects {
		p := queue[0]
		queue = queue[1:]
		n, err := introspectNode(c, conn, service, p)
		if err != nil {
			if p != path {
				continue // a child that went away, or an empty one
			}
			b.fail(ctx, err)
			return
		}
		o := Object{Path: string(p), Interfaces: []Interface{}, Children: []string{}}
		for _, i := range n.Interfaces {
			o.Interfaces = append(o.Interfaces, describeInterface(i))
		}
		for _, ch := range n.Children {
			cp := string(p) + "/" + ch.Name
			if p == "/" {
				cp = "/" + ch.Name
			}
			o.Children = append(o.Children, cp)
			if recursive {
				queue = append(queue, godbus.ObjectPath(cp))
			}
		}
		out = append(out, o)
	}
	admin.WriteJSON(ctx, out)
}

// lookup introspects the object and finds the interface.
func (b *Bridge) lookup(c context.Context, ctx *fasthttp.RequestCtx, service, iface string) (*godbus.Conn, godbus.ObjectPath, *introspect.Interface, error) {
	conn, err := b.service(c, service)
	if err != nil {
		return nil, "", nil, err
	}
	path, err := objectPath(ctx, defaultPath(service))
	if err != nil {
		return nil, "", nil, err
	}
	n, err := introspectNode(c, conn, service, path)
	if err != nil {
		return nil, "", nil, err
	}
	for i := range n.Interfaces {
		if n.Interfaces[i].Name == iface {
			return conn, path, &n.Interfaces[i], nil
		}
	}
	return nil, "", nil, errf(fasthttp.StatusNotFound, "not_found", "object %s of %s has no interface %s", path, service, iface)
}

func (b *Bridge) iface(c context.Context, ctx *fasthttp.RequestCtx, service, iface string) {
	_, _, i, err := b.lookup(c, ctx, service, iface)
	if err != nil {
		b.fail(ctx, err)
		return
	}
	admin.WriteJSON(ctx, describeInterface(*i))
}

func (b *Bridge) call(c context.Context, ctx *fasthttp.RequestCtx, service, iface, member string) {
	b.calls.Add(1)
	conn, path, i, err := b.lookup(c, ctx, service, iface)
	if err != nil {
		b.fail(ctx, err)
		return
	}
	var m *introspect.Method
	for k := range i.Methods {
		if i.Methods[k].Name == member {
			m = &i.Methods[k]
		}
	}
	if m == nil {
		b.fail(ctx, errf(fasthttp.StatusNotFound, "not_found", "%s has no method %s", iface, member))
		return
	}
	var body struct {
		Args []json.RawMessage `json:"args"`
	}
	if raw := ctx.PostBody(); len(raw) > 0 {
		if err := json.Unmarshal(raw, &body); err != nil {
			b.fail(ctx, errf(fasthttp.StatusBadRequest, "invalid_input", `want {"args": [...]}: %v`, err))
			return
		}
	}
	var in []introspect.Arg
	for _, a := range m.Args {
		if a.Direction != "out" {
			in = append(in, a)
		}
	}
	if len(body.Args) != len(in) {
		b.fail(ctx, errf(fasthttp.StatusBadRequest, "invalid_input", "%s.%s takes %d arguments (%s), got %d", iface, member, len(in), argTypes(in), len(body.Args)))
		return
	}
	args := make([]any, len(in))
	for k, a := range in {
		v, err := fromJSON(body.Args[k], a.Type)
		if err != nil {
			b.fail(ctx, errf(fasthttp.StatusBadRequest, "invalid_input", "argument %d (%s %s): %v", k, a.Name, a.Type, err))
			return
		}
		args[k] = v
	}
	call := conn.Object(service, path).CallWithContext(c, iface+"."+member, 0, args...)
	if call.Err != nil {
		b.fail(ctx, call.Err)
		return
	}
	out := make([]any, len(call.Body))
	for k, v := range call.Body {
		out[k] = toJSON(v)
	}
	admin.WriteJSON(ctx, struct {
		Result []any `json:"result"`
	}{out})
}

func argTypes(args []introspect.Arg) string {
	var s strings.Builder
	for _, a := range args {
		s.WriteString(a.Type)
	}
	return s.String()
}

func (b *Bridge) property(c context.Context, ctx *fasthttp.RequestCtx, service, iface, name string) (*godbus.Conn, godbus.ObjectPath, *introspect.Property, error) {
	conn, path, i, err := b.lookup(c, ctx, service, iface)
	if err != nil {
		return nil, "", nil, err
	}
	for k := range i.Properties {
		if i.Properties[k].Name == name {
			return conn, path, &i.Properties[k], nil
		}
	}
	return nil, "", nil, errf(fasthttp.StatusNotFound, "not_found", "%s has no property %s", iface, name)
}

func (b *Bridge) getProperty(c context.Context, ctx *fasthttp.RequestCtx, service, iface, name string) {
	conn, path, _, err := b.property(c, ctx, service, iface, name)
	if err != nil {
		b.fail(ctx, err)
		return
	}
	var v godbus.Variant
	if err := conn.Object(service, path).CallWithContext(c, "org.freedesktop.DBus.Properties.Get", 0, iface, name).Store(&v); err != nil {
		b.fail(ctx, err)
		return
	}
	admin.WriteJSON(ctx, struct {
		Value any `json:"value"`
	}{toJSON(v)})
}

func (b *Bridge) setProperty(c context.Context, ctx *fasthttp.RequestCtx, service, iface, name string) {
	conn, path, p, err := b.property(c, ctx, service, iface, name)
	if err != nil {
		b.fail(ctx, err)
		return
	}
	if !strings.Contains(p.Access, "write") {
		b.fail(ctx, errf(fasthttp.StatusBadRequest, "invalid_input", "property %s is read-only", name))
		return
	}
	var body struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(ctx.PostBody(), &body); err != nil || body.Value == nil {
		b.fail(ctx, errf(fasthttp.StatusBadRequest, "invalid_input", `want {"value": ...}`))
		return
	}
	v, err := fromJSON(body.Value, p.Type)
	if err != nil {
		b.fail(ctx, errf(fasthttp.StatusBadRequest, "invalid_input", "%s (%s): %v", name, p.Type, err))
		return
	}
	variant := godbus.MakeVariantWithSignature(v, godbus.ParseSignatureMust(p.Type))
	if call := conn.Object(service, path).CallWithContext(c, "org.freedesktop.DBus.Properties.Set", 0, iface, name, variant); call.Err != nil {
		b.fail(ctx, call.Err)
		return
	}
	admin.WriteJSON(ctx, struct {
		Value any `json:"value"`
	}{toJSON(v)})
}

// signals streams the signals of a service as Server-Sent Events until the
// client goes, the bus goes or the bridge closes; the match rule goes with
// it.
func (b *Bridge) signals(ctx *fasthttp.RequestCtx) {
	q := ctx.QueryArgs()
	service := string(q.Peek("service"))
	c, cancel := context.WithTimeout(context.Background(), callWait)
	defer cancel()
	conn, err := b.service(c, service)
	if err != nil {
		b.fail(ctx, err)
		return
	}
	opts := []godbus.MatchOption{godbus.WithMatchSender(service)}
	path := godbus.ObjectPath(q.Peek("path"))
	if path != "" {
		if !path.IsValid() {
			b.fail(ctx, errf(fasthttp.StatusBadRequest, "invalid_input", "%q is not an object path", path))
			return
		}
		opts = append(opts, godbus.WithMatchObjectPath(path))
	}
	iface, member := string(q.Peek("interface")), string(q.Peek("member"))
	if iface != "" {
		opts = append(opts, godbus.WithMatchInterface(iface))
	}
	if member != "" {
		opts = append(opts, godbus.WithMatchMember(member))
	}
	owner := service
	if service != "org.freedesktop.DBus" {
		if err := conn.BusObject().CallWithContext(c, "org.freedesktop.DBus.GetNameOwner", 0, service).Store(&owner); err != nil {
			b.fail(ctx, err)
			return
		}
	}
	ownerOpts := []godbus.MatchOption{godbus.WithMatchSender("org.freedesktop.DBus"), godbus.WithMatchMember("NameOwnerChanged"), godbus.WithMatchArg(0, service)}
	if err := conn.AddMatchSignalContext(c, opts...); err != nil {
		b.fail(ctx, err)
		return
	}
	if err := conn.AddMatchSignalContext(c, ownerOpts...); err != nil {
		_ = conn.RemoveMatchSignal(opts...)
		b.fail(ctx, err)
		return
	}
	ch := make(chan *godbus.Signal, 256)
	conn.Signal(ch)
	b.streams.Add(1)
	b.subscribers.Add(1)
	ctx.SetContentType("text/event-stream")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer func() {
			conn.RemoveSignal(ch)
			if conn.Connected() {
				_ = conn.RemoveMatchSignal(opts...)
				_ = conn.RemoveMatchSignal(ownerOpts...)
			}
			b.subscribers.Add(-1)
		}()
		// The match rule is in place: say so, so a client can act on it.
		fmt.Fprintf(w, ": subscribed to %s\n\n", service)
		if w.Flush() != nil {
			return
		}
		tick := time.NewTicker(b.heartbeat)
		defer tick.Stop()
		var id uint64
		for {
			select {
			case s, ok := <-ch:
				if !ok {
					w.WriteString("event: error\ndata: {\"error\":\"bus_down\",\"message\":\"the pod's bus went away\"}\n\n")
					w.Flush()
					return
				}
				if s.Name == "org.freedesktop.DBus.NameOwnerChanged" && s.Sender == "org.freedesktop.DBus" && len(s.Body) == 3 && s.Body[0] == service {
					owner, _ = s.Body[2].(string)
					if service == "org.freedesktop.DBus" || !matches(s, path, iface, member) {
						continue
					}
				}
				if s.Sender != owner && s.Sender != service || !matches(s, path, iface, member) {
					continue
				}
				id++
				if writeEvent(w, id, s) != nil || w.Flush() != nil {
					return
				}
			case <-tick.C:
				if _, err := w.WriteString(": keepalive\n\n"); err != nil || w.Flush() != nil {
					return
				}
			case <-b.done:
				return
			}
		}
	})
}

func matches(s *godbus.Signal, path godbus.ObjectPath, iface, member string) bool {
	i := strings.LastIndexByte(s.Name, '.')
	if i < 0 {
		return false
	}
	return (path == "" || s.Path == path) && (iface == "" || s.Name[:i] == iface) && (member == "" || s.Name[i+1:] == member)
}

func writeEvent(w *bufio.Writer, id uint64, s *godbus.Signal) error {
	i := strings.LastIndexByte(s.Name, '.')
	args := make([]any, len(s.Body))
	for k, v := range s.Body {
		args[k] = toJSON(v)
	}
	data, err := json.Marshal(struct {
		Sender    string `json:"sender"`
		Path      string `json:"path"`
		Interface string `json:"interface"`
		Member    string `json:"member"`
		Signature string `json:"signature"`
		Args      []any  `json:"args"`
	}{s.Sender, string(s.Path), s.Name[:i], s.Name[i+1:], godbus.SignatureOf(s.Body...).String(), args})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", id, s.Name[i+1:], data)
	return err
}

var (
	bridgeCalls       = promtext.Counter("sluice_bus_bridge_calls_total", "Method calls made through the bus bridge.")
	bridgeFailures    = promtext.Counter("sluice_bus_bridge_errors_total", "Bus bridge requests answered with an error.")
	bridgeStreams     = promtext.Counter("sluice_bus_bridge_streams_total", "Signal streams opened through the bus bridge.")
	bridgeSubscribers = promtext.Gauge("sluice_bus_bridge_subscribers", "Signal streams open now.")
)

// AppendMetrics appends the bridge's metrics.
func (b *Bridge) AppendMetrics(dst []byte) []byte {
	w := promtext.NewWriter(dst)
	w.Uint(bridgeCalls, b.calls.Load())
	w.Uint(bridgeFailures, b.failures.Load())
	w.Uint(bridgeStreams, b.streams.Load())
	w.Int(bridgeSubscribers, b.subscribers.Load())
	return w.Bytes()
}
