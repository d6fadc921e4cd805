package dbus

import (
	"context"
	_ "embed"
	"errors"
	"sort"
	"strings"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/sluice-flow/sluice/controlplane/admin"
	"github.com/sluice-flow/sluice/controlplane/buildinfo"
)

// The interfaces' introspection data, committed; a test checks it against
// what the objects export.
var (
	//go:embed io.sluice.Collector1.xml
	collectorXML string
	//go:embed io.sluice.Mediator1.xml
	mediatorXML string
)

// Object is an object a Service publishes: *CollectorObject or
// *MediatorObject.
type Object interface {
	spec() objectSpec
}

// objectSpec is what exporting an object takes.
type objectSpec struct {
	path    godbus.ObjectPath
	iface   string
	methods any    // exported with its methods as the interface's
	xml     string // <node><interface .../></node>
	emitter *emitter
	props   map[string]prop
}

// prop is one property: read by get, written by set when it is writable.
type prop struct {
	get func() any
	set func(godbus.Variant) *godbus.Error
}

// export puts the object on c: its methods, org.freedesktop.DBus.Properties
// and Introspectable.
func (s objectSpec) export(c *godbus.Conn) error {
	if err := c.Export(s.methods, s.path, s.iface); err != nil {
		return err
	}
	if err := c.Export(properties{s}, s.path, "org.freedesktop.DBus.Properties"); err != nil {
		return err
	}
	return c.Export(introspect.Introspectable(s.introspection()), s.path, "org.freedesktop.DBus.Introspectable")
}

// introspection is the object's whole introspection: the standard
// interfaces and its own.
func (s objectSpec) introspection() string {
	body := strings.TrimSpace(s.xml)
	body = strings.TrimPrefix(body, "<node>")
	body = strings.TrimSuffix(body, "</node>")
	return `<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<node>` + introspect.IntrospectDataString + `
  <interface name="org.freedesktop.DBus.Properties">
    <method name="Get"><arg name="interface" type="s" direction="in"/><arg name="name" type="s" direction="in"/><arg name="value" type="v" direction="out"/></method>
    <method name="GetAll"><arg name="interface" type="s" direction="in"/><arg name="props" type="a{sv}" direction="out"/></method>
    <method name="Set"><arg name="interface" type="s" direction="in"/><arg name="name" type="s" direction="in"/><arg name="value" type="v" direction="in"/></method>
    <signal name="PropertiesChanged"><arg name="interface" type="s"/><arg name="changed" type="a{sv}"/><arg name="invalidated" type="as"/></signal>
  </interface>
  <interface name="org.freedesktop.DBus.Peer">
    <method name="Ping"/>
    <method name="GetMachineId"><arg name="machine_uuid" type="s" direction="out"/></method>
  </interface>` + body + "</node>\n"
}

// properties serves org.freedesktop.DBus.Properties for one object,
// reading the implementation at each call.
type properties struct{ s objectSpec }

func (p properties) Get(iface, name string) (godbus.Variant, *godbus.Error) {
	if iface != p.s.iface {
		return godbus.Variant{}, godbus.NewError("org.freedesktop.DBus.Error.UnknownInterface", []any{"no interface " + iface})
	}
	pr, ok := p.s.props[name]
	if !ok {
		return godbus.Variant{}, godbus.NewError("org.freedesktop.DBus.Error.UnknownProperty", []any{"no property " + name})
	}
	return godbus.MakeVariant(pr.get()), nil
}

func (p properties) GetAll(iface string) (map[string]godbus.Variant, *godbus.Error) {
	if iface != p.s.iface {
		return nil, godbus.NewError("org.freedesktop.DBus.Error.UnknownInterface", []any{"no interface " + iface})
	}
	m := make(map[string]godbus.Variant, len(p.s.props))
	for name, pr := range p.s.props {
		m[name] = godbus.MakeVariant(pr.get())
	}
	return m, nil
}

func (p properties) Set(iface, name string, v godbus.Variant) *godbus.Error {
	if iface != p.s.iface {
		return godbus.NewError("org.freedesktop.DBus.Error.UnknownInterface", []any{"no interface " + iface})
	}
	pr, ok := p.s.props[name]
	if !ok {
		return godbus.NewError("org.freedesktop.DBus.Error.UnknownProperty", []any{"no property " + name})
	}
	if pr.set == nil {
		return godbus.NewError("org.freedesktop.DBus.Error.PropertyReadOnly", []any{"property " + name + " is read-only"})
	}
	return pr.set(v)
}

// propNames lists an object's properties, sorted (for tests).
func (s objectSpec) propNames() []string {
	names := make([]string, 0, len(s.props))
	for n := range s.props {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// setInterval sets the signal interval from a u property (milliseconds,
// 1..60000).
func (e *emitter) setInterval(v godbus.Variant) *godbus.Error {
	ms, ok := v.Value().(uint32)
	if !ok || ms == 0 || ms > 60_000 {
		return godbus.NewError("org.freedesktop.DBus.Error.InvalidArgs", []any{"SignalIntervalMs is a u from 1 to 60000"})
	}
	e.interval.Store(int64(time.Duration(ms) * time.Millisecond))
	select {
	case e.kick <- struct{}{}:
	default:
	}
	return nil
}

// replyError turns an implementation's error into a D-Bus error: an
// *admin.InputError is InvalidInput, a deadline Failed with "timed out".
func replyError(err error) *godbus.Error {
	if err == nil {
		return nil
	}
	var ie *admin.InputError
	switch {
	case errors.As(err, &ie):
		return godbus.NewError(ErrInvalidInput, []any{err.Error()})
	case errors.Is(err, context.DeadlineExceeded):
		return godbus.NewError(ErrFailed, []any{"timed out: " + err.Error()})
	}
	return godbus.NewError(ErrFailed, []any{err.Error()})
}

func buildVersion() string { return buildinfo.Read().Version }
