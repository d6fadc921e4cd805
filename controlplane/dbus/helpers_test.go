package dbus

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/controlplane/admin"
	"github.com/sluice-flow/sluice/dataplane/collector"
	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/pipeline"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startDaemon starts Debian's dbus-daemon with the generated policy in a
// temporary directory and supervises it until the test ends.
func startDaemon(t testing.TB) *Daemon {
	t.Helper()
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		t.Skip("dbus-daemon not installed (apt-get install dbus-daemon)")
	}
	d, err := NewDaemon(DaemonConfig{Dir: t.TempDir(), RestartBackoff: 10 * time.Millisecond}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return d
}

// fastLink reconnects quickly, so tests of the bus going away are short.
func fastLink(addr, component string) LinkConfig {
	return LinkConfig{Address: addr, Component: component, MinBackoff: 5 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
}

// startService runs a service until the test ends and waits until it holds
// its name.
func startService(t testing.TB, addr, component, name string, objs ...Object) *Service {
	t.Helper()
	s := NewService(fastLink(addr, component), name, quietLog(), objs...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-s.Up():
	case <-time.After(10 * time.Second):
		t.Fatal("service never got on the bus")
	}
	return s
}

func startClient(t testing.TB, addr string) *Client {
	t.Helper()
	c := NewClient(fastLink(addr, "controller"), quietLog())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-c.Up():
	case <-time.After(10 * time.Second):
		t.Fatal("client never connected")
	}
	return c
}

// memCollector is a small real Collector: listeners kept in a set, the
// views given by the test.
type memCollector struct {
	mu        sync.Mutex
	listeners []string
	draining  bool
	exporters []collector.ExporterStatus
}

func (m *memCollector) Status() CollectorStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	return CollectorStatus{Ready: !m.draining, Draining: m.draining, Listeners: slices.Clone(m.listeners), Exporters: uint32(len(m.exporters)), Records: 42, Started: time.Unix(1_700_000_000, 0)}
}
func (m *memCollector) Exporters() []collector.ExporterStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.exporters)
}
func (m *memCollector) Templates() []collector.TemplateStatus {
	return []collector.TemplateStatus{{Exporter: "192.0.2.1", TemplateID: 256, Transport: "udp"}}
}
func (m *memCollector) AddListener(_ context.Context, u string) error {
	if _, err := url.Parse(u); err != nil || (len(u) < 6 || (u[:6] != "udp://" && u[:6] != "tcp://")) {
		return &admin.InputError{Err: errors.New("listener: want udp://HOST:PORT or tcp://HOST:PORT, got " + u)}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !slices.Contains(m.listeners, u) {
		m.listeners = append(m.listeners, u)
	}
	return nil
}
func (m *memCollector) RemoveListener(_ context.Context, u string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := slices.Index(m.listeners, u)
	if i < 0 {
		return &admin.InputError{Err: errors.New("listener: " + u + " is not open")}
	}
	m.listeners = slices.Delete(m.listeners, i, i+1)
	return nil
}
func (m *memCollector) Drain(ctx context.Context) error {
	m.mu.Lock()
	m.draining = true
	m.mu.Unlock()
	return nil
}
func (m *memCollector) Ready() bool { return !m.Status().Draining }
func (m *memCollector) Listeners() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.listeners)
}
func (m *memCollector) AppendMetrics(b []byte) []byte {
	return append(b, "# HELP sluice_records_total Records.\n# TYPE sluice_records_total counter\nsluice_records_total 42\n"...)
}

// pipeMediator compiles pipelines for real (pipeline.Parse and Compile,
// outputs opened by export.Parse), without rings.
type pipeMediator struct {
	mu      sync.Mutex
	outs    *pipeline.OutputSet
	version uint64
	file    []byte
	flushes int
}

func newPipeMediator() *pipeMediator {
	return &pipeMediator{outs: pipeline.NewOutputSet(func(spec string) (export.Output, error) { return export.Parse(spec, io.Discard) })}
}

func (m *pipeMediator) ApplyPipeline(_ context.Context, file []byte) (uint64, error) {
	cfg, err := pipeline.Parse(file)
	if err == nil {
		_, err = pipeline.Compile(cfg, m.outs)
	}
	if err != nil {
		return 0, &admin.InputError{Err: err}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.version++
	m.file = slices.Clone(file)
	return m.version, nil
}
func (m *pipeMediator) Pipeline() (uint64, []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.version, m.file
}
func (m *pipeMediator) Status() MediatorStatus {
	v, _ := m.Pipeline()
	return MediatorStatus{Ready: true, PipelineVersion: v, Rings: 2, RingsAttached: 2}
}
func (m *pipeMediator) Flush(context.Context) error {
	m.mu.Lock()
	m.flushes++
	m.mu.Unlock()
	return nil
}
func (m *pipeMediator) Ready() bool { return true }
func (m *pipeMediator) AppendMetrics(b []byte) []byte {
	return append(b, "# HELP sluice_pipeline_version Pipeline.\n# TYPE sluice_pipeline_version gauge\nsluice_pipeline_version 1\n"...)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
