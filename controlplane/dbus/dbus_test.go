package dbus

import (
	"bufio"
	"context"
	"encoding/xml"
	"errors"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	godbus "github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/sluice-flow/sluice/controlplane/admin"
)

// pod is a bus daemon with the collector's and the mediator's services on
// it, and a client, as the split pod has them.
type pod struct {
	d        *Daemon
	col      *memCollector
	med      *pipeMediator
	colObj   *CollectorObject
	medObj   *MediatorObject
	colSvc   *Service
	medSvc   *Service
	client   *Client
	colOwner string
}

func startPod(t testing.TB) *pod {
	p := &pod{d: startDaemon(t), col: &memCollector{}, med: newPipeMediator()}
	p.colObj, p.medObj = NewCollectorObject(p.col), NewMediatorObject(p.med)
	p.colSvc = startService(t, p.d.Address(), "collector", CollectorName, p.colObj)
	p.medSvc = startService(t, p.d.Address(), "mediator", MediatorName, p.medObj)
	p.client = startClient(t, p.d.Address())
	return p
}

// busctl runs busctl on the pod's bus.
func busctl(t *testing.T, addr string, args ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("busctl"); err != nil {
		t.Skip("busctl not installed")
	}
	out, err := exec.Command("busctl", append([]string{"--address=" + addr}, args...)...).CombinedOutput()
	return string(out), err
}

// The committed introspection data is what the objects export: the Go
// methods with their signatures, the properties with their types, and (read
// back by busctl from the live objects) the whole interface.
func TestIntrospectionMatchesObjects(t *testing.T) {
	p := startPod(t)
	for _, o := range []objectSpec{p.colObj.spec(), p.medObj.spec()} {
		t.Run(o.iface, func(t *testing.T) {
			var committed introspect.Node
			if err := xml.Unmarshal([]byte(o.xml), &committed); err != nil {
				t.Fatal(err)
			}
			if len(committed.Interfaces) != 1 || committed.Interfaces[0].Name != o.iface {
				t.Fatalf("committed XML holds %+v", committed.Interfaces)
			}
			want := committed.Interfaces[0]
			got := introspect.Methods(o.methods)
			if len(got) != len(want.Methods) {
				t.Errorf("Go exports %d methods, XML lists %d", len(got), len(want.Methods))
			}
			for _, wm := range want.Methods {
				var gm *introspect.Method
				for i := range got {
					if got[i].Name == wm.Name {
						gm = &got[i]
					}
				}
				if gm == nil {
					t.Errorf("method %s in the XML is not exported", wm.Name)
					continue
				}
				if a, b := argSig(gm.Args, "in"), argSig(wm.Args, "in"); a != b {
					t.Errorf("%s in: Go %q, XML %q", wm.Name, a, b)
				}
				if a, b := argSig(gm.Args, "out"), argSig(wm.Args, "out"); a != b {
					t.Errorf("%s out: Go %q, XML %q", wm.Name, a, b)
				}
			}
			var names []string
			for _, wp := range want.Properties {
				names = append(names, wp.Name)
				pr, ok := o.props[wp.Name]
				if !ok {
					t.Errorf("property %s not served", wp.Name)
					continue
				}
				if sig := godbus.SignatureOf(pr.get()).String(); sig != wp.Type {
					t.Errorf("property %s: Go %s, XML %s", wp.Name, sig, wp.Type)
				}
				if (pr.set != nil) != (wp.Access == "readwrite") {
					t.Errorf("property %s: access %s, set %v", wp.Name, wp.Access, pr.set != nil)
				}
			}
			if len(names) != len(o.props) {
				t.Errorf("XML properties %v, served %v", names, o.propNames())
			}
			// An independent client reads the live object.
			out, err := busctl(t, p.d.Address(), "introspect", "--xml-interface", o.iface, string(o.path))
			if err != nil {
				t.Fatalf("busctl introspect: %v\n%s", err, out)
			}
			var live introspect.Node
			if err := xml.Unmarshal([]byte(out), &live); err != nil {
				t.Fatal(err)
			}
			found := false
			for _, li := range live.Interfaces {
				if li.Name == o.iface {
					found = true
					if len(li.Methods) != len(want.Methods) || len(li.Signals) != len(want.Signals) || len(li.Properties) != len(want.Properties) {
						t.Errorf("live interface differs from the XML: %+v", li)
					}
				}
			}
			if !found {
				t.Errorf("busctl does not see %s:\n%s", o.iface, out)
			}
		})
	}
}

func argSig(args []introspect.Arg, dir string) string {
	var b strings.Builder
	for _, a := range args {
		d := a.Direction
		if d == "" {
			d = "in"
		}
		if d == dir {
			b.WriteString(a.Type)
		}
	}
	return b.String()
}

// Signals arrive with the signatures the XML gives, coalesced, through an
// independent monitor (gdbus) and through godbus.
func TestSignals(t *testing.T) {
	p := startPod(t)
	var committed introspect.Node
	if err := xml.Unmarshal([]byte(collectorXML), &committed); err != nil {
		t.Fatal(err)
	}
	wantSig := map[string]string{}
	for _, s := range committed.Interfaces[0].Signals {
		wantSig[s.Name] = argSig(s.Args, "in")
	}
	conn, err := godbus.Connect(p.d.Address())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.AddMatchSignal(godbus.WithMatchSender(CollectorName), godbus.WithMatchInterface(CollectorInterface)); err != nil {
		t.Fatal(err)
	}
	ch := make(chan *godbus.Signal, 64)
	conn.Signal(ch)

	// The monitor: an independent client, started first; signals are sent
	// until it shows one (the match rule is in place from then on).
	mon := exec.Command("gdbus", "monitor", "-a", p.d.Address(), "-d", CollectorName)
	stdout, _ := mon.StdoutPipe()
	if err := mon.Start(); err != nil {
		t.Skip("gdbus:", err)
	}
	defer func() { mon.Process.Kill(); mon.Wait() }()
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	exp := netip.MustParseAddrPort("192.0.2.7:0")
	var seenMon string
	deadline := time.After(10 * time.Second)
	for id := uint16(256); seenMon == ""; id++ {
		p.colObj.TemplateLearned(exp, 1, id)
		select {
		case l := <-lines:
			if strings.Contains(l, "TemplateLearned") {
				seenMon = l
			}
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatal("gdbus monitor saw no TemplateLearned")
		}
	}
	if !strings.Contains(seenMon, "'192.0.2.7'") || !strings.Contains(seenMon, "uint32 1") {
		t.Errorf("gdbus monitor: %s", seenMon)
	}

	// Repeats within the interval coalesce: the object counts them.
	before := p.colObj.sig.coalesced.Load()
	if err := conn.Object(CollectorName, CollectorPath).SetProperty(CollectorInterface+".SignalIntervalMs", godbus.MakeVariant(uint32(60_000))); err != nil {
		t.Fatal(err)
	}
	// The emitter may be between sends; the next queue starts a batch held
	// for the interval, in which repeats coalesce.
	for range 3 {
		p.colObj.ExporterSeen(netip.MustParseAddrPort("198.51.100.1:0"))
	}
	if p.colObj.sig.coalesced.Load() < before+1 {
		t.Errorf("coalesced %d, want more than %d", p.colObj.sig.coalesced.Load(), before)
	}
	if err := conn.Object(CollectorName, CollectorPath).SetProperty(CollectorInterface+".SignalIntervalMs", godbus.MakeVariant(uint32(10))); err != nil {
		t.Fatal(err)
	}
	p.colObj.Draining()
	got := map[string]bool{}
	deadline = time.After(10 * time.Second)
	for !got["ExporterSeen"] || !got["Draining"] || !got["TemplateLearned"] {
		select {
		case s := <-ch:
			name := strings.TrimPrefix(s.Name, CollectorInterface+".")
			if sig := godbus.SignatureOf(s.Body...).String(); sig != wantSig[name] {
				t.Errorf("%s: signature %q, XML %q", name, sig, wantSig[name])
			}
			got[name] = true
		case <-deadline:
			t.Fatalf("signals seen: %v", got)
		}
	}
}

// Methods through the daemon, called by busctl and gdbus (independent
// clients) and by the Client.
func TestMethods(t *testing.T) {
	p := startPod(t)
	addr := p.d.Address()
	ctx := context.Background()

	out, err := busctl(t, addr, "call", CollectorName, string(CollectorPath), CollectorInterface, "Status")
	if err != nil || !strings.HasPrefix(out, "a{sv} 9") || !strings.Contains(out, `"records" t 42`) {
		t.Errorf("busctl Status: %v\n%s", err, out)
	}
	if out, err := busctl(t, addr, "call", CollectorName, string(CollectorPath), CollectorInterface, "AddListener", "s", "udp://:2055"); err != nil {
		t.Errorf("busctl AddListener: %v %s", err, out)
	}
	if out, err := busctl(t, addr, "get-property", CollectorName, string(CollectorPath), CollectorInterface, "Listeners"); err != nil || strings.TrimSpace(out) != `as 1 "udp://:2055"` {
		t.Errorf("busctl Listeners: %v %q", err, out)
	}
	st, err := p.client.Collector().Status(ctx)
	if err != nil || !st.Ready || st.Records != 42 || len(st.Listeners) != 1 || st.Version == "" || st.Started.Unix() != 1_700_000_000 {
		t.Errorf("Status: %+v %v", st, err)
	}
	if ts, err := p.client.Collector().Templates(ctx); err != nil || len(ts) != 1 || ts[0].TemplateID != 256 {
		t.Errorf("Templates: %+v %v", ts, err)
	}
	if ex, err := p.client.Collector().Exporters(ctx); err != nil || ex == nil || len(ex) != 0 {
		t.Errorf("Exporters: %+v %v", ex, err)
	}
	if err := p.client.Collector().RemoveListener(ctx, "udp://:2055"); err != nil {
		t.Error(err)
	}
	var ie *admin.InputError
	if err := p.client.Collector().RemoveListener(ctx, "udp://:2055"); !errors.As(err, &ie) || !strings.Contains(err.Error(), "not open") {
		t.Errorf("removing a closed listener: %v", err)
	}

	good := "pipelines:\n  - name: all\n    outputs: [discard]\n"
	v, err := p.client.Mediator().ApplyPipeline(ctx, []byte(good))
	if err != nil || v != 1 {
		t.Fatalf("ApplyPipeline: %d %v", v, err)
	}
	if v, file, err := p.client.Mediator().Pipeline(ctx); err != nil || v != 1 || string(file) != good {
		t.Errorf("Pipeline: %d %q %v", v, file, err)
	}
	// gdbus reads the error name and the line of a bad pipeline.
	bad := "pipelines:\n  - name: all\n    stages:\n      - nosuchstage: {}\n    outputs: [discard]\n"
	if _, err := exec.LookPath("gdbus"); err != nil {
		t.Skip("gdbus not installed (libglib2.0-bin)")
	}
	gout, err := exec.Command("gdbus", "call", "-a", addr, "-d", MediatorName, "-o", string(MediatorPath), "-m", MediatorInterface+".ApplyPipeline", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(gout), ErrInvalidPipeline) || !strings.Contains(string(gout), "line 4") {
		t.Errorf("gdbus ApplyPipeline(bad): %v\n%s", err, gout)
	}
	if _, err := p.client.Mediator().ApplyPipeline(ctx, []byte(bad)); !errors.As(err, &ie) || !strings.Contains(err.Error(), "line 4") {
		t.Errorf("ApplyPipeline(bad): %v", err)
	}
	if ms, err := p.client.Mediator().Status(ctx); err != nil || ms.PipelineVersion != 1 || ms.RingsAttached != 2 {
		t.Errorf("mediator Status: %+v %v", ms, err)
	}
	err = p.client.Mediator().Flush(ctx)
	p.med.mu.Lock()
	flushes := p.med.flushes
	p.med.mu.Unlock()
	if err != nil || flushes != 1 {
		t.Errorf("Flush: %v (%d)", err, flushes)
	}
	if r, err := p.client.Mediator().Ready(ctx); err != nil || !r {
		t.Errorf("mediator Ready: %v %v", r, err)
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := p.client.Collector().Drain(dctx); err != nil {
		t.Error(err)
	}
	if r, err := p.client.Collector().Ready(ctx); err != nil || r {
		t.Errorf("collector Ready after drain: %v %v", r, err)
	}
	if m, err := p.client.Mediator().Metrics(ctx); err != nil || !strings.Contains(m, "sluice_pipeline_version 1") {
		t.Errorf("Metrics: %q %v", m, err)
	}
}

// Bad input gets D-Bus errors and the services stay up.
func TestBadInput(t *testing.T) {
	p := startPod(t)
	addr := p.d.Address()
	f := func(name string, wantErr string, args ...string) {
		t.Helper()
		out, err := busctl(t, addr, args...)
		if err == nil || !strings.Contains(out, wantErr) {
			t.Errorf("%s: %v\n%s", name, err, out)
		}
	}
	f("wrong argument type", "", "call", CollectorName, string(CollectorPath), CollectorInterface, "AddListener", "u", "5")
	f("malformed listener", "want udp://", "call", CollectorName, string(CollectorPath), CollectorInterface, "AddListener", "s", "bogus")
	f("unknown member", "", "call", CollectorName, string(CollectorPath), CollectorInterface, "NoSuchMethod")
	f("unknown interface", "", "call", CollectorName, string(CollectorPath), "io.sluice.Nope1", "Status")
	f("read-only property", "read-only", "set-property", CollectorName, string(CollectorPath), CollectorInterface, "Ready", "b", "false")
	f("bad interval", "SignalIntervalMs", "set-property", CollectorName, string(CollectorPath), CollectorInterface, "SignalIntervalMs", "u", "0")
	f("unknown property", "", "get-property", CollectorName, string(CollectorPath), CollectorInterface, "Nope")
	f("name outside io.sluice", "ccess denied", "call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "RequestName", "su", "org.example.Other", "4")

	// An oversized pipeline: refused by the object, within the daemon's
	// message bound; and beyond that bound, by the daemon.
	conn, err := godbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	big := strings.Repeat("#", MaxPipelineSize+1)
	call := conn.Object(MediatorName, MediatorPath).Call(MediatorInterface+".ApplyPipeline", 0, big)
	var de godbus.Error
	if !errors.As(call.Err, &de) || de.Name != ErrTooLarge {
		t.Errorf("oversized pipeline: %v", call.Err)
	}
	huge := strings.Repeat("#", 5<<20)
	if call := conn.Object(MediatorName, MediatorPath).Call(MediatorInterface+".ApplyPipeline", 0, huge); call.Err == nil {
		t.Error("a message past the daemon's bound went through")
	}
	// The services are still there.
	if _, err := p.client.Collector().Status(context.Background()); err != nil {
		t.Errorf("collector after bad input: %v", err)
	}
	if _, _, err := p.client.Mediator().Pipeline(context.Background()); err != nil {
		t.Errorf("mediator after bad input: %v", err)
	}
}

// The bus daemon killed: the supervisor restarts it, the services and the
// client reconnect and own their names again; calls meanwhile fail with
// errors and signals are counted as failed, never blocking.
func TestDaemonRestart(t *testing.T) {
	p := startPod(t)
	pid := p.d.PID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the services to see the bus go", func() bool { return !p.colSvc.Connected() || p.colSvc.link.drops.Load() > 0 })
	// Nothing blocks while the bus is away.
	start := time.Now()
	for i := range 10_000 {
		p.colObj.TemplateLearned(netip.MustParseAddrPort("192.0.2.1:0"), 1, uint16(i))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("queueing 10 000 signals took %v", d)
	}
	waitFor(t, "the daemon restarted", func() bool { return p.d.Restarts() >= 1 && p.d.PID() != pid })
	waitFor(t, "the collector back on the bus", func() bool { return p.colSvc.link.connects.Load() >= 2 && p.colSvc.Connected() })
	waitFor(t, "the mediator back on the bus", func() bool { return p.medSvc.link.connects.Load() >= 2 && p.medSvc.Connected() })
	waitFor(t, "the client back on the bus", func() bool { return p.client.link.connects.Load() >= 2 })
	var st CollectorStatus
	waitFor(t, "a call through the new daemon", func() bool {
		var err error
		st, err = p.client.Collector().Status(context.Background())
		return err == nil
	})
	if !st.Ready {
		t.Errorf("status after restart: %+v", st)
	}
	if p.colObj.sig.dropped.Load()+p.colObj.sig.failed.Load()+p.colObj.sig.sent.Load() == 0 {
		t.Error("signals queued while the bus was away were not counted")
	}
	m := string(p.colSvc.AppendMetrics(nil))
	if !strings.Contains(m, `sluice_dbus_connections_lost_total{component="collector"} 1`) || !strings.Contains(m, `sluice_dbus_up{component="collector"} 1`) {
		t.Errorf("metrics:\n%s", m)
	}
}
