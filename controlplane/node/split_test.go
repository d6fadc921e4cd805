package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/controlplane/admin"
	"github.com/sluice-flow/sluice/dataplane/collector"
)

// fakeBus stands for the D-Bus side: it gets the processes and drives
// them through their Go API as the D-Bus objects would.
type fakeBus struct {
	col chan *CollectorProcess
	med chan *MediatorProcess
}

func (b *fakeBus) ServeCollector(ctx context.Context, address string, p *CollectorProcess) error {
	b.col <- p
	<-ctx.Done()
	return nil
}

func (b *fakeBus) ServeMediator(ctx context.Context, address string, p *MediatorProcess) error {
	b.med <- p
	<-ctx.Done()
	return nil
}

func freeUDPTCP(t *testing.T) string {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := pc.LocalAddr().String()
		ln, err := net.Listen("tcp4", addr)
		pc.Close()
		if err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no free port")
	return ""
}

// TestSplitProcesses builds both processes from their flags, runs them over
// one ring directory with a registered Bus, and calls the API the D-Bus
// objects use: status, run-time listeners, hooks, pipeline apply (with a
// line-numbered error), flush, drain.
func TestSplitProcesses(t *testing.T) {
	bus := &fakeBus{col: make(chan *CollectorProcess, 1), med: make(chan *MediatorProcess, 1)}
	RegisterBus(bus)
	defer RegisterBus(nil)
	dir := filepath.Join(t.TempDir(), "rings")
	addr := freeUDPTCP(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The configs sluice collector and sluice mediator build from
	// --ring-dir DIR --bus ADDR --listen URL --loops 1 --ring-size 1MiB and
	// --output discard (cmd/sluice's splitFlags).
	split := func(c Config) SplitConfig {
		c.Admin = "off"
		return SplitConfig{Config: c, RingDir: dir, Bus: "unix:path=/nonexistent"}
	}
	ccfg := split(Config{Listen: []string{"udp://" + addr}, Collector: collector.Config{Loops: 1, RingSize: 1 << 20}})
	if ccfg.Bus != "unix:path=/nonexistent" || ccfg.RingDir != dir {
		t.Fatalf("config %+v", ccfg)
	}
	cp, err := NewCollectorProcess(ccfg, log)
	if err != nil {
		t.Fatal(err)
	}
	mp, err := NewMediatorProcess(split(Config{Outputs: []string{"discard"}}), io.Discard, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cdone, mdone := make(chan error, 1), make(chan error, 1)
	go func() { cdone <- cp.Run(ctx) }()
	go func() { mdone <- mp.Run(ctx) }()
	if got := <-bus.col; got != cp {
		t.Fatal("bus got another collector")
	}
	if got := <-bus.med; got != mp {
		t.Fatal("bus got another mediator")
	}
	wait := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	wait("both ready", func() bool { return cp.Ready() && mp.Ready() })
	if st := mp.Status(); st.Generation != cp.Status().Generation || st.Rings != 1 {
		t.Fatalf("mediator %+v, collector %+v", st, cp.Status())
	}
	seen := make(chan collector.ExporterEvent, 1)
	cp.SetHooks(collector.Hooks{ExporterSeen: func(e collector.ExporterEvent) { seen <- e }})
	added := freeUDPTCP(t)
	if err := cp.AddListener("tcp://" + added); err != nil {
		t.Fatal(err)
	}
	if l := cp.Listeners(); len(l) != 2 || !strings.HasSuffix(l[1], added[strings.LastIndexByte(added, ':'):]) {
		t.Fatalf("listeners %v", l)
	}
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte{0, 10, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7}) // an empty IPFIX message, domain 7
	conn.Close()
	select {
	case e := <-seen:
		if e.Domain != 7 {
			t.Fatalf("exporter event %+v", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no ExporterSeen")
	}

	applied := make(chan uint64, 1)
	mp.OnPipelineApplied(func(v uint64) { applied <- v })
	_, err = mp.ApplyPipeline(ctx, []byte("pipelines:\n  - name: a\n    outputs: [discard]\n    bogus: 1\n"))
	var ie *admin.InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "line 4") {
		t.Fatalf("bad pipeline: %v", err)
	}
	v, err := mp.ApplyPipeline(ctx, []byte("pipelines:\n  - name: a\n    outputs: [discard]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := <-applied; got != v {
		t.Fatalf("hook version %d, applied %d", got, v)
	}
	if pv, file := mp.Pipeline(); pv != v || !strings.Contains(string(file), "name: a") {
		t.Fatalf("Pipeline() = %d, %q", pv, file)
	}
	fctx, fcancel := context.WithTimeout(ctx, 5*time.Second)
	defer fcancel()
	if err := mp.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	if err := cp.Drain(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if st := cp.Status(); st.Ready || !st.Draining {
		t.Fatalf("after drain %+v", st)
	}
	cancel()
	for _, c := range []chan error{cdone, mdone} {
		select {
		case err := <-c:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("process did not stop")
		}
	}
}
