package dbus

import godbus "github.com/godbus/dbus/v5"

// DefaultAddress is the pod's bus in the shared volume.
const DefaultAddress = "unix:path=/run/sluice/bus"

// Bus names, object paths and interfaces. Each process owns the bus name
// equal to its interface.
const (
	CollectorName      = "io.sluice.Collector1"
	CollectorInterface = "io.sluice.Collector1"
	CollectorPath      = godbus.ObjectPath("/io/sluice/Collector1")

	MediatorName      = "io.sluice.Mediator1"
	MediatorInterface = "io.sluice.Mediator1"
	MediatorPath      = godbus.ObjectPath("/io/sluice/Mediator1")
)

// D-Bus error names the objects reply with.
const (
	// ErrInvalidInput: a malformed argument (a listener URL that does not
	// parse, a listener that is not open). The message says which.
	ErrInvalidInput = "io.sluice.Error.InvalidInput"
	// ErrInvalidPipeline: a pipeline that does not compile; the message
	// names the line and the reason.
	ErrInvalidPipeline = "io.sluice.Error.InvalidPipeline"
	// ErrTooLarge: an argument past its bound (MaxPipelineSize).
	ErrTooLarge = "io.sluice.Error.TooLarge"
	// ErrFailed: the operation failed for a reason of the process's.
	ErrFailed = "io.sluice.Error.Failed"
)

// MaxPipelineSize bounds ApplyPipeline's YAML, as the HTTP API bounds its
// bodies.
const MaxPipelineSize = 1 << 20
