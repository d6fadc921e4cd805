// Package controller is the split pod's controller: it starts and
// supervises the pod's dbus-daemon, serves the pod's HTTP API (the same
// path set as `sluice run`'s admin API, backed by D-Bus calls to the
// collector and the mediator, plus the generic bus bridge under
// /api/v1/bus/), keeps the pipeline in force in Redis or a file, and puts
// it back when the mediator (re)starts.
package controller
