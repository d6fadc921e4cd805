package dbus

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	godbus "github.com/godbus/dbus/v5"

	"github.com/sluice-flow/sluice/dataplane/promtext"
)

// Service publishes objects on the pod's bus under a well-known name and
// keeps them published: when the bus goes away it counts it, logs once and
// reconnects with backoff, then exports the objects and asks for the name
// again. The data process keeps working meanwhile; signals queued while the
// bus is down are counted as failed. Run belongs to one goroutine; the rest
// is safe for concurrent use.
type Service struct {
	name string
	objs []objectSpec
	link *link
}

// NewService returns a service that owns name (CollectorName or
// MediatorName) and publishes objs.
func NewService(cfg LinkConfig, name string, log *slog.Logger, objs ...Object) *Service {
	s := &Service{name: name}
	for _, o := range objs {
		s.objs = append(s.objs, o.spec())
	}
	s.link = newLink(cfg, log, s.setup)
	return s
}

// setup exports the objects before asking for the name, so that a client
// that sees the name appear finds them.
func (s *Service) setup(_ context.Context, c *godbus.Conn) error {
	for _, o := range s.objs {
		if err := o.export(c); err != nil {
			return err
		}
	}
	reply, err := c.RequestName(s.name, godbus.NameFlagDoNotQueue)
	if err != nil {
		return err
	}
	if reply != godbus.RequestNameReplyPrimaryOwner && reply != godbus.RequestNameReplyAlreadyOwner {
		return fmt.Errorf("dbus: name %s: %s", s.name, reply)
	}
	return nil
}

// Run keeps the service on the bus until ctx ends.
func (s *Service) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, o := range s.objs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.emitter.run(ctx, s.link.conn)
		}()
	}
	s.link.run(ctx)
	wg.Wait()
}

// Up is closed once the service first holds its name.
func (s *Service) Up() <-chan struct{} { return s.link.up }

// Connected reports whether the service is on the bus now.
func (s *Service) Connected() bool {
	_, err := s.link.conn()
	return err == nil
}

// AppendMetrics appends the service's bus and signal metrics, labelled
// with the component.
func (s *Service) AppendMetrics(dst []byte) []byte {
	w := promtext.NewWriter(dst)
	s.link.appendMetrics(&w)
	for _, o := range s.objs {
		o.emitter.appendMetrics(&w, s.link.cfg.Component)
	}
	return w.Bytes()
}
