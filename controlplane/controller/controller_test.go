package controller

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/sluice-flow/sluice/controlplane/admin"
	"github.com/sluice-flow/sluice/controlplane/dbus"
	"github.com/sluice-flow/sluice/dataplane/promtext/promtexttest"
)

// pod is a controller with a collector and a mediator on its bus.
type pod struct {
	c      *Controller
	col    *memCollector
	colObj *dbus.CollectorObject
	med    *pipeMediator
	medP   *process
	api    api
}

func startPod(t *testing.T, cfg Config) *pod {
	p := &pod{c: startController(t, cfg), col: &memCollector{}, med: newPipeMediator()}
	p.colObj = dbus.NewCollectorObject(p.col)
	startProcess(t, p.c.BusAddress(), "collector", dbus.CollectorName, p.colObj)
	p.medP = startProcess(t, p.c.BusAddress(), "mediator", dbus.MediatorName, dbus.NewMediatorObject(p.med))
	p.api = api{t: t, base: "http://" + p.c.APIAddr()}
	waitFor(t, "/readyz", func() bool { code, _ := p.api.do("GET", "/readyz", "", ""); return code == 200 })
	return p
}

const goodPipeline = "pipelines:\n  - name: all\n    outputs: [discard]\n"

// The pod's API over D-Bus: the same path set as sluice run's, each view
// and operation a call to the collector or the mediator.
func TestAPIOverBus(t *testing.T) {
	p := startPod(t, Config{})
	a := p.api
	code, body := a.do("GET", "/api/v1/status", "", "")
	var st admin.Status
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || !st.Ready || len(st.Components) != 3 || !st.Components[1].Up || st.Components[1].Owner == "" {
		t.Fatalf("status: %d %s", code, body)
	}
	if code, body := a.do("GET", "/api/v1/exporters", "", ""); code != 200 || !strings.Contains(body, `"records":7`) {
		t.Errorf("exporters: %d %s", code, body)
	}
	if code, body := a.do("GET", "/api/v1/templates", "", ""); code != 200 || !strings.Contains(body, `"template_id":256`) {
		t.Errorf("templates: %d %s", code, body)
	}
	// Pipelines: behind the token, refused with the line, stored.
	if code, _ := a.do("PUT", "/api/v1/pipeline", "", goodPipeline); code != 401 {
		t.Errorf("PUT without a token: %d", code)
	}
	if code, body := a.do("PUT", "/api/v1/pipeline", "tok", goodPipeline); code != 200 || !strings.Contains(body, `"version":1`) {
		t.Fatalf("PUT: %d %s", code, body)
	}
	bad := "pipelines:\n  - name: all\n    stages:\n      - nosuch: {}\n    outputs: [discard]\n"
	if code, body := a.do("PUT", "/api/v1/pipeline", "tok", bad); code != 400 || !strings.Contains(body, "line 4") || !strings.Contains(body, `"error":"invalid_pipeline"`) {
		t.Errorf("PUT bad: %d %s", code, body)
	}
	if code, body := a.do("GET", "/api/v1/pipeline", "tok", ""); code != 200 || !strings.Contains(body, `"version":1`) || !strings.Contains(body, "discard") {
		t.Errorf("GET pipeline: %d %s", code, body)
	}
	// Listeners.
	if code, body := a.do("POST", "/api/v1/listeners", "tok", `{"url":"udp://:2055"}`); code != 200 {
		t.Errorf("POST listener: %d %s", code, body)
	}
	if code, body := a.do("POST", "/api/v1/listeners", "tok", `{"url":"sctp://:2055"}`); code != 400 || !strings.Contains(body, "want udp://") {
		t.Errorf("POST bad listener: %d %s", code, body)
	}
	if code, body := a.do("POST", "/api/v1/listeners", "tok", `not json`); code != 400 {
		t.Errorf("POST malformed body: %d %s", code, body)
	}
	if got := p.col.Listeners(); len(got) != 1 || got[0] != "udp://:2055" {
		t.Errorf("listeners %v", got)
	}
	if code, body := a.do("DELETE", "/api/v1/listeners?url=udp://:2055", "tok", ""); code != 200 {
		t.Errorf("DELETE listener: %d %s", code, body)
	}
	// Metrics: the controller's, the collector's and the mediator's, each
	// family once, parsed by Prometheus's own parser.
	code, body = a.do("GET", "/metrics", "", "")
	fams := promtexttest.Parse(t, []byte(body))
	if code != 200 || len(fams["sluice_records_total"].GetMetric()) != 1 || fams["sluice_records_total"].GetMetric()[0].GetCounter().GetValue() != 42 {
		t.Errorf("metrics: %d\n%s", code, body)
	}
	if fams["sluice_output_records_total"] == nil || fams["process_resident_memory_bytes"] == nil || fams["sluice_dbus_daemon_restarts_total"] == nil {
		t.Errorf("metrics lack a family:\n%s", body)
	}

	// The mediator restarts: the controller gives it the stored pipeline.
	p.medP.stop()
	waitFor(t, "/readyz to fail without the mediator", func() bool { code, _ := a.do("GET", "/readyz", "", ""); return code == 503 })
	if code, body := a.do("GET", "/api/v1/pipeline", "tok", ""); code != 200 || !strings.Contains(body, "discard") {
		t.Errorf("GET pipeline with the mediator away: %d %s", code, body)
	}
	med2 := newPipeMediator()
	startProcess(t, p.c.BusAddress(), "mediator", dbus.MediatorName, dbus.NewMediatorObject(med2))
	waitFor(t, "the stored pipeline back in the new mediator", func() bool { _, f := med2.Pipeline(); return string(f) == goodPipeline })
	if p.c.reapplied.Load() != 1 {
		t.Errorf("reapplied %d", p.c.reapplied.Load())
	}

	// Drain: the collector drains, the mediator flushes, the pod is no
	// longer ready.
	if code, body := a.do("POST", "/api/v1/drain", "tok", `{"timeout_ms": 5000}`); code != 200 || !strings.Contains(body, `"drained":true`) {
		t.Errorf("drain: %d %s", code, body)
	}
	med2.mu.Lock()
	flushed := med2.flushed
	med2.mu.Unlock()
	if !p.col.Status().Draining || !flushed {
		t.Error("drain did not reach the processes")
	}
	if code, _ := a.do("GET", "/readyz", "", ""); code != 503 {
		t.Errorf("/readyz after drain: %d", code)
	}
}

// The bus daemon killed: the controller restarts it, the processes and the
// controller reconnect, the API answers again.
func TestDaemonKilled(t *testing.T) {
	p := startPod(t, Config{})
	pid := p.c.Daemon().PID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the daemon restarted", func() bool { return p.c.Daemon().Restarts() == 1 })
	waitFor(t, "/readyz after the restart", func() bool { code, _ := p.api.do("GET", "/readyz", "", ""); return code == 200 })
	if code, body := p.api.do("GET", "/api/v1/status", "", ""); code != 200 || !strings.Contains(body, `"ready":true`) {
		t.Errorf("status: %d %s", code, body)
	}
	code, body := p.api.do("GET", "/metrics", "", "")
	if code != 200 || !strings.Contains(body, "sluice_dbus_daemon_restarts_total 1") || !strings.Contains(body, `sluice_dbus_connections_lost_total{component="controller"} 1`) {
		t.Errorf("metrics:\n%s", body)
	}
}

// The bridge: services, the object tree, typed calls, properties and a
// signal streamed as Server-Sent Events; clear errors for bad input.
func TestBridge(t *testing.T) {
	p := startPod(t, Config{})
	a := p.api
	code, body := a.do("GET", "/api/v1/bus/services", "tok", "")
	var svcs []Service
	if code != 200 || json.Unmarshal([]byte(body), &svcs) != nil || len(svcs) != 3 || svcs[0].Name != dbus.CollectorName || !strings.HasPrefix(svcs[0].Owner, ":") {
		t.Fatalf("services: %d %s", code, body)
	}
	if code, _ := a.do("GET", "/api/v1/bus/services", "", ""); code != 403 && code != 401 {
		t.Errorf("services without a token: %d", code)
	}
	code, body = a.do("GET", "/api/v1/bus/services/io.sluice.Collector1/objects?recursive=true", "tok", "")
	var objs []Object
	if code != 200 || json.Unmarshal([]byte(body), &objs) != nil {
		t.Fatalf("objects: %d %s", code, body)
	}
	var paths []string
	for _, o := range objs {
		paths = append(paths, o.Path)
	}
	if strings.Join(paths, " ") != "/ /io /io/sluice /io/sluice/Collector1" || len(objs[3].Interfaces) != 4 {
		t.Errorf("object tree %v: %s", paths, body)
	}
	code, body = a.do("GET", "/api/v1/bus/services/io.sluice.Collector1/interfaces/io.sluice.Collector1", "tok", "")
	if code != 200 || !strings.Contains(body, `"name":"TemplateLearned","args":[{"name":"exporter","type":"s"},{"name":"domain","type":"u"},{"name":"id","type":"q"}]`) {
		t.Errorf("interface: %d %s", code, body)
	}
	call := func(method, args string) (int, string) {
		return a.do("POST", "/api/v1/bus/services/io.sluice.Collector1/interfaces/io.sluice.Collector1/methods/"+method, "tok", args)
	}
	code, body = call("Status", "")
	var res struct{ Result []map[string]any }
	if code != 200 || json.Unmarshal([]byte(body), &res) != nil || len(res.Result) != 1 || res.Result[0]["records"] != 42.0 || res.Result[0]["ready"] != true {
		t.Errorf("Status through the bridge: %d %s", code, body)
	}
	if code, body := call("AddListener", `{"args":["udp://:9995"]}`); code != 200 || p.col.Listeners()[0] != "udp://:9995" {
		t.Errorf("AddListener: %d %s", code, body)
	}
	if code, body := call("Drain", `{"args":[1e3]}`); code != 400 || !strings.Contains(body, "uint32") {
		t.Errorf("a float for a u: %d %s", code, body)
	}
	if code, body := call("Drain", `{"args":[-1]}`); code != 400 {
		t.Errorf("-1 for a u: %d %s", code, body)
	}
	if code, body := call("AddListener", `{"args":[5]}`); code != 400 || !strings.Contains(body, "string (s)") {
		t.Errorf("a number for an s: %d %s", code, body)
	}
	if code, body := call("AddListener", `{"args":[]}`); code != 400 || !strings.Contains(body, "takes 1 arguments") {
		t.Errorf("missing argument: %d %s", code, body)
	}
	if code, body := call("AddListener", `{"args":["bogus"]}`); code != 400 || !strings.Contains(body, "want udp://") {
		t.Errorf("refused by the collector: %d %s", code, body)
	}
	if code, body := call("AddListener", `{"args":`); code != 400 {
		t.Errorf("malformed JSON: %d %s", code, body)
	}
	// The daemon's own methods, with a typed argument.
	code, body = a.do("POST", "/api/v1/bus/services/org.freedesktop.DBus/interfaces/org.freedesktop.DBus/methods/NameHasOwner", "tok", `{"args":["io.sluice.Mediator1"]}`)
	if code != 200 || strings.TrimSpace(body) != `{"result":[true]}` {
		t.Errorf("NameHasOwner: %d %s", code, body)
	}
	f := func(name, method, path string, want int, body string) {
		t.Helper()
		code, got := a.do(method, path, "tok", body)
		var e struct{ Error, Message string }
		if code != want || json.Unmarshal([]byte(got), &e) != nil || e.Error == "" || e.Message == "" {
			t.Errorf("%s: %d %s, want %d with {error, message}", name, code, got, want)
		}
	}
	base := "/api/v1/bus/services/io.sluice.Collector1/interfaces/io.sluice.Collector1"
	f("unknown service", "GET", "/api/v1/bus/services/io.sluice.Nope1/objects", 404, "")
	f("name outside the allowed set", "GET", "/api/v1/bus/services/org.example.Other/objects", 403, "")
	f("not a bus name", "GET", "/api/v1/bus/services/..x/objects", 400, "")
	f("unknown path", "GET", base+"?path=/io/sluice/Nope", 404, "")
	f("bad path", "GET", base+"?path=no/slash", 400, "")
	f("unknown interface", "GET", "/api/v1/bus/services/io.sluice.Collector1/interfaces/io.sluice.Nope1", 404, "")
	f("unknown member", "POST", base+"/methods/Nope", 404, "")
	f("unknown property", "GET", base+"/properties/Nope", 404, "")
	f("read-only property", "PUT", base+"/properties/Ready", 400, `{"value":false}`)
	f("property of the wrong type", "PUT", base+"/properties/SignalIntervalMs", 400, `{"value":"fast"}`)
	f("value refused by the object", "PUT", base+"/properties/SignalIntervalMs", 400, `{"value":0}`)
	f("unknown route", "GET", "/api/v1/bus/nope", 404, "")
	f("wrong method", "GET", base+"/methods/Status", 405, "")
	f("signals of an unknown service", "GET", "/api/v1/bus/signals?service=io.sluice.Nope1", 404, "")
	if code, body := a.do("GET", base+"/properties/Ready", "tok", ""); code != 200 || strings.TrimSpace(body) != `{"value":true}` {
		t.Errorf("get Ready: %d %s", code, body)
	}
	if code, body := a.do("PUT", base+"/properties/SignalIntervalMs", "tok", `{"value":10}`); code != 200 {
		t.Errorf("set SignalIntervalMs: %d %s", code, body)
	}
	if code, body := a.do("GET", base+"/properties/SignalIntervalMs", "tok", ""); code != 200 || strings.TrimSpace(body) != `{"value":10}` {
		t.Errorf("get SignalIntervalMs: %d %s", code, body)
	}

	// A TemplateLearned signal streamed as an event; the match rule goes
	// when the client does.
	req, _ := http.NewRequest("GET", a.base+"/api/v1/bus/signals?service=io.sluice.Collector1&interface=io.sluice.Collector1&member=TemplateLearned", nil)
	req.Header.Set("Authorization", "Bearer tok")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("signals: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	rd := bufio.NewReader(resp.Body)
	if l, err := rd.ReadString('\n'); err != nil || !strings.HasPrefix(l, ": subscribed") {
		t.Fatalf("first line %q %v", l, err)
	}
	// Subscribed: the signal sent now reaches the stream.
	p.colObj.ExporterSeen(netip.MustParseAddrPort("192.0.2.9:0")) // filtered out by member
	p.colObj.TemplateLearned(netip.MustParseAddrPort("192.0.2.9:0"), 3, 300)
	var event, data string
	for data == "" {
		l, err := rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasPrefix(l, "event: "):
			event = strings.TrimSpace(l[7:])
		case strings.HasPrefix(l, "data: "):
			data = l[6:]
		}
	}
	var ev struct {
		Member, Signature string
		Args              []any
	}
	if event != "TemplateLearned" || json.Unmarshal([]byte(data), &ev) != nil || ev.Signature != "suq" || ev.Args[0] != "192.0.2.9" || ev.Args[1] != 3.0 || ev.Args[2] != 300.0 {
		t.Errorf("event %s: %s", event, data)
	}
	if p.c.bridge.subscribers.Load() != 1 {
		t.Errorf("subscribers %d", p.c.bridge.subscribers.Load())
	}
	cancel()
	resp.Body.Close()
	waitFor(t, "the stream to end with its client", func() bool { return p.c.bridge.subscribers.Load() == 0 })
}

// With the bus away the bridge answers 503.
func TestBridgeBusDown(t *testing.T) {
	lc := fastLink()
	lc.Address = "unix:path=" + t.TempDir() + "/nobus"
	b := NewBridge(dbus.NewClient(lc, quietLog()), nil, quietLog())
	s := admin.New(admin.Config{Addr: "127.0.0.1:0", Token: "tok", Mounts: []admin.Mount{b.Mount()}}, nil, quietLog())
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	defer s.Shutdown(context.Background())
	a := api{t: t, base: "http://" + s.Addr()}
	for _, path := range []string{"/api/v1/bus/services", "/api/v1/bus/services/io.sluice.Collector1/objects", "/api/v1/bus/signals?service=io.sluice.Collector1"} {
		if code, body := a.do("GET", path, "tok", ""); code != 503 || !strings.Contains(body, `"error":"bus_down"`) {
			t.Errorf("%s: %d %s", path, code, body)
		}
	}
}

// The controller's /openapi.json describes exactly the routes it serves,
// the bridge's included, and every route is really served.
func TestOpenAPI(t *testing.T) {
	p := startPod(t, Config{})
	code, body := p.api.do("GET", "/openapi.json", "", "")
	var doc struct {
		Paths map[string]map[string]json.RawMessage
	}
	if code != 200 || json.Unmarshal([]byte(body), &doc) != nil {
		t.Fatalf("%d %s", code, body)
	}
	var spec, routes []string
	for path, ops := range doc.Paths {
		for m := range ops {
			if m != "parameters" {
				spec = append(spec, strings.ToUpper(m)+" "+path)
			}
		}
	}
	for _, r := range p.c.api.Routes() {
		routes = append(routes, r.Method+" "+r.Path)
	}
	sort.Strings(spec)
	sort.Strings(routes)
	if strings.Join(spec, "\n") != strings.Join(routes, "\n") {
		t.Fatalf("spec:\n%s\nroutes:\n%s", strings.Join(spec, "\n"), strings.Join(routes, "\n"))
	}
	fill := strings.NewReplacer("{service}", "io.sluice.Mediator1", "{interface}", "io.sluice.Mediator1", "{method}", "Flush", "{property}", "Ready")
	for _, r := range p.c.api.Routes() {
		path := fill.Replace(r.Path)
		if path == "/api/v1/drain" || r.Method == "PUT" || strings.HasSuffix(path, "/signals") {
			continue // changes the pod, or streams; covered above
		}
		code, body := p.api.do(r.Method, path, "tok", "{}")
		if code == 405 || strings.Contains(body, `"no_route"`) {
			t.Errorf("%s %s: %d %s", r.Method, path, code, body)
		}
	}
}

// The pipeline survives a controller restart too: it is kept in the
// controller's volume and given to the mediator when it appears.
func TestPipelineFileStore(t *testing.T) {
	state := t.TempDir()
	store := FileStore{Path: state + "/pipeline.json"}
	if err := store.Save(context.Background(), []byte(goodPipeline), 3); err != nil {
		t.Fatal(err)
	}
	p := startPod(t, Config{StateDir: state})
	waitFor(t, "the stored pipeline in the mediator", func() bool { _, f := p.med.Pipeline(); return string(f) == goodPipeline })
	// Put again: the mediator runs it already, so it is not applied twice.
	if v, _ := p.med.Pipeline(); v != 1 {
		t.Errorf("version %d", v)
	}
}
