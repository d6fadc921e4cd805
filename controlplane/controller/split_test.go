package controller

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/controlplane/dbus"
	"github.com/sluice-flow/sluice/controlplane/node"
	"github.com/sluice-flow/sluice/dataplane/collector"
)

// freeUDP returns a loopback address whose UDP and TCP ports are free.
func freeUDP(t *testing.T) string {
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

// runProcess runs a split process until stop or the end of the test.
func runProcess(t *testing.T, run func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(20 * time.Second):
			t.Error("process did not stop")
		}
	}
	t.Cleanup(stop)
	return stop
}

// The real split pod in one test process: `sluice collector` and `sluice
// mediator` (node's processes over file rings, with NodeBus as their D-Bus
// side) and the controller. A template sent to the collector comes out of
// the bridge as a TemplateLearned event; a pipeline PUT through the
// controller reaches the mediator and survives its restart.
func TestSplitPod(t *testing.T) {
	node.RegisterBus(dbus.NodeBus{Log: quietLog(), Link: fastLink()})
	defer node.RegisterBus(nil)
	c := startController(t, Config{})
	a := api{t: t, base: "http://" + c.APIAddr()}
	dir := filepath.Join(t.TempDir(), "rings")
	addr := freeUDP(t)
	// The configs sluice collector and sluice mediator build from their
	// flags (cmd/sluice's splitFlags).
	split := func(nc node.Config) node.SplitConfig {
		nc.Admin = "off"
		return node.SplitConfig{Config: nc, RingDir: dir, Bus: c.BusAddress()}
	}
	cp, err := node.NewCollectorProcess(split(node.Config{Listen: []string{"udp://" + addr}, Collector: collector.Config{Loops: 1, RingSize: 1 << 20}}), quietLog())
	if err != nil {
		t.Fatal(err)
	}
	runProcess(t, cp.Run)
	startMediator := func() *node.MediatorProcess {
		mp, err := node.NewMediatorProcess(split(node.Config{Outputs: []string{"discard"}}), io.Discard, quietLog())
		if err != nil {
			t.Fatal(err)
		}
		return mp
	}
	mp := startMediator()
	stopMed := runProcess(t, mp.Run)
	waitFor(t, "/readyz with both processes", func() bool { code, _ := a.do("GET", "/readyz", "", ""); return code == 200 })
	// Each process's own metrics (its /metrics) show its bus link.
	for name, m := range map[string]string{"collector": string(cp.AppendMetrics(nil)), "mediator": string(mp.AppendMetrics(nil))} {
		if !strings.Contains(m, `sluice_dbus_up{component="`+name+`"} 1`) {
			t.Errorf("%s metrics lack its bus link:\n%s", name, m)
		}
	}

	// Subscribe, then send a template.
	req, _ := http.NewRequest("GET", a.base+"/api/v1/bus/signals?service=io.sluice.Collector1&member=TemplateLearned", nil)
	req.Header.Set("Authorization", "Bearer tok")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	if l, err := rd.ReadString('\n'); err != nil || !strings.HasPrefix(l, ": subscribed") {
		t.Fatalf("first line %q %v", l, err)
	}
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	// An IPFIX message, domain 7, with one template: 256 = sourceIPv4Address.
	conn.Write([]byte{0, 10, 0, 28, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 2, 0, 12, 1, 0, 0, 1, 0, 8, 0, 4})
	conn.Close()
	var data string
	for data == "" {
		l, err := rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := strings.CutPrefix(l, "data: "); ok {
			data = d
		}
	}
	var ev struct{ Args []any }
	if json.Unmarshal([]byte(data), &ev) != nil || len(ev.Args) != 3 || ev.Args[0] != "127.0.0.1" || ev.Args[1] != 7.0 || ev.Args[2] != 256.0 {
		t.Errorf("TemplateLearned event: %s", data)
	}
	if code, body := a.do("POST", "/api/v1/bus/services/io.sluice.Collector1/interfaces/io.sluice.Collector1/methods/Status", "tok", ""); code != 200 || !strings.Contains(body, `"ready":true`) {
		t.Errorf("Status through the bridge: %d %s", code, body)
	}
	if code, body := a.do("GET", "/api/v1/templates", "", ""); code != 200 || !strings.Contains(body, `"template_id":256`) {
		t.Errorf("templates: %d %s", code, body)
	}

	// A pipeline through the controller reaches the mediator.
	if code, body := a.do("PUT", "/api/v1/pipeline", "tok", goodPipeline); code != 200 {
		t.Fatalf("PUT pipeline: %d %s", code, body)
	}
	if _, f := mp.Pipeline(); string(f) != goodPipeline {
		t.Fatalf("mediator runs %q", f)
	}
	if code, body := a.do("PUT", "/api/v1/pipeline", "tok", "pipelines:\n  - name: a\n    outputs: [discard]\n    bogus: 1\n"); code != 400 || !strings.Contains(body, "line 4") {
		t.Errorf("bad pipeline: %d %s", code, body)
	}
	// The mediator restarts and gets it back.
	stopMed()
	mp2 := startMediator()
	runProcess(t, mp2.Run)
	waitFor(t, "the pipeline in the new mediator", func() bool { _, f := mp2.Pipeline(); return string(f) == goodPipeline })

	// Metrics of the pod, each family once.
	code, body := a.do("GET", "/metrics", "", "")
	if code != 200 || !strings.Contains(body, `sluice_dbus_up{component="collector"} 1`) || !strings.Contains(body, `sluice_dbus_up{component="mediator"} 1`) || !strings.Contains(body, `sluice_dbus_up{component="controller"} 1`) {
		t.Errorf("metrics:\n%s", body)
	}
	if strings.Count(body, "# TYPE sluice_dbus_up ") != 1 {
		t.Error("sluice_dbus_up's header is not unique")
	}
}
