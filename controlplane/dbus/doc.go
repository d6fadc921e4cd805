// Package dbus is the split pod's private D-Bus: the dbus-daemon the
// controller starts and supervises (Daemon), the objects the data processes
// publish on it (io.sluice.Collector1, io.sluice.Mediator1, over a Service
// that reconnects with backoff), and the client the controller calls them
// with. The data processes hand it small interfaces (Collector, Mediator);
// nothing on their hot path waits on the bus: signals are queued without
// blocking, coalesced and sent from the Service's own goroutine.
package dbus
