package controller

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/controlplane/admin"
	"github.com/sluice-flow/sluice/controlplane/dbus"
	"github.com/sluice-flow/sluice/dataplane/collector"
	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/pipeline"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func fastLink() dbus.LinkConfig {
	return dbus.LinkConfig{MinBackoff: 5 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
}

// startController runs a controller with its own dbus-daemon in a
// temporary directory until the test ends.
func startController(t *testing.T, cfg Config) *Controller {
	t.Helper()
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		t.Skip("dbus-daemon not installed (apt-get install dbus-daemon)")
	}
	if cfg.BusDir == "" {
		cfg.BusDir = t.TempDir()
	}
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	cfg.API, cfg.Token, cfg.Link = "127.0.0.1:0", "tok", fastLink()
	cfg.ShutdownTimeout = 2 * time.Second
	c, err := New(cfg, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	c.bridge.heartbeat = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-c.Started():
	case err := <-done:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("controller did not start")
	}
	return c
}

// process is a data process on the pod's bus: a service with its object,
// stopped at the end of the test or by stop.
type process struct {
	svc  *dbus.Service
	stop func()
}

func startProcess(t *testing.T, addr, component, name string, obj dbus.Object) *process {
	t.Helper()
	lc := fastLink()
	lc.Address, lc.Component = addr, component
	s := dbus.NewService(lc, name, quietLog(), obj)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	var once sync.Once
	p := &process{svc: s, stop: func() { once.Do(func() { cancel(); <-done }) }}
	t.Cleanup(p.stop)
	select {
	case <-s.Up():
	case <-time.After(10 * time.Second):
		t.Fatal(component, " never got on the bus")
	}
	return p
}

// memCollector is a small real dbus.Collector.
type memCollector struct {
	mu        sync.Mutex
	listeners []string
	draining  bool
}

func (m *memCollector) Status() dbus.CollectorStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	return dbus.CollectorStatus{Ready: !m.draining, Draining: m.draining, Listeners: slices.Clone(m.listeners), Exporters: 1, Templates: 1, Records: 42}
}
func (m *memCollector) Exporters() []collector.ExporterStatus {
	return []collector.ExporterStatus{{Exporter: "192.0.2.1", Records: 7, Transport: "udp"}}
}
func (m *memCollector) Templates() []collector.TemplateStatus {
	return []collector.TemplateStatus{{Exporter: "192.0.2.1", TemplateID: 256, Transport: "udp"}}
}
func (m *memCollector) AddListener(_ context.Context, u string) error {
	if !strings.HasPrefix(u, "udp://") && !strings.HasPrefix(u, "tcp://") {
		return &admin.InputError{Err: errors.New("listener: want udp:// or tcp://, got " + u)}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.listeners = append(m.listeners, u)
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
func (m *memCollector) Drain(context.Context) error {
	m.mu.Lock()
	m.draining = true
	m.mu.Unlock()
	return nil
}
func (m *memCollector) Ready() bool { return m.Status().Ready }
func (m *memCollector) Listeners() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.listeners)
}
func (m *memCollector) AppendMetrics(b []byte) []byte {
	return append(b, "# HELP sluice_records_total Decoded data records.\n# TYPE sluice_records_total counter\nsluice_records_total 42\n"...)
}

// pipeMediator compiles pipelines for real, without rings.
type pipeMediator struct {
	mu      sync.Mutex
	outs    *pipeline.OutputSet
	version uint64
	file    []byte
	flushed bool
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
func (m *pipeMediator) Status() dbus.MediatorStatus {
	v, _ := m.Pipeline()
	return dbus.MediatorStatus{Ready: true, PipelineVersion: v, Rings: 1, RingsAttached: 1}
}
func (m *pipeMediator) Flush(context.Context) error {
	m.mu.Lock()
	m.flushed = true
	m.mu.Unlock()
	return nil
}
func (m *pipeMediator) Ready() bool { return true }
func (m *pipeMediator) AppendMetrics(b []byte) []byte {
	// sluice_records_total again: a series both processes report is
	// counted once.
	return append(b, "# HELP sluice_records_total Decoded data records.\n# TYPE sluice_records_total counter\nsluice_records_total 42\n# HELP sluice_output_records_total Records.\n# TYPE sluice_output_records_total counter\nsluice_output_records_total{outcome=\"sent\"} 40\n"...)
}

// api is an HTTP client of the controller's API.
type api struct {
	t      *testing.T
	base   string
	client *http.Client // nil: http.DefaultClient
}

func (a api) do(method, path, token, body string) (int, string) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.base+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := a.client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
