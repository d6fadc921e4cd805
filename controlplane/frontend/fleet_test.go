package frontend

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/sluice-flow/sluice/controlplane/fleet"
)

// pipelineFile is a valid pipeline whose outputs are its argument.
func pipelineFile(outputs string) string {
	return "pipelines:\n  - name: all\n    outputs: [" + outputs + "]\n"
}

type rolloutView struct {
	Name     string
	Version  uint64
	Complete bool
	Pods     []fleet.PushResult
}

type pipelineView struct {
	Version   uint64
	Pipeline  string
	History   []fleet.Version
	Pods      []fleet.PushResult
	Converged bool
}

func (ts *testServer) putPipeline(t testing.TB, name, file string) (int, []byte) {
	t.Helper()
	code, _, body := call(t, "PUT", ts.url+"/api/v1/pipelines/"+name, tokenA, strings.NewReader(file))
	return code, body
}

func (ts *testServer) pipelineView(t testing.TB, name string) pipelineView {
	t.Helper()
	code, _, body := call(t, "GET", ts.url+"/api/v1/pipelines/"+name, tokenA, nil)
	var v pipelineView
	want(t, 200, code, body, &v)
	return v
}

func podStates(pods []fleet.PushResult) map[string]string {
	m := map[string]string{}
	for _, p := range pods {
		m[p.Pod] = p.State
	}
	return m
}

// waitPods waits until every pod runs file, read from the pods themselves,
// and returns how long that took from start.
func waitPods(t testing.TB, start time.Time, file string, cs ...*collector) time.Duration {
	t.Helper()
	var last time.Duration
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(10 * time.Second)
			for {
				if got, err := c.pipeline(); err == nil && got == file {
					mu.Lock()
					last = max(last, time.Since(start))
					mu.Unlock()
					return
				}
				if time.Now().After(deadline) {
					t.Errorf("pod %s did not get the pipeline within 10 s", c.name())
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return last
}

// TestFleetPipelineRollout runs three real `sluice run` pods behind the
// frontend: a pipeline PUT reaches all three within 1 s, a bad file is
// refused with its line and pushes nothing, a killed pod is reported
// unreachable while the others converge and gets the current version
// when it comes back, a pod that refuses a version is shown per pod, and
// a rollback restores an earlier version everywhere.
func TestFleetPipelineRollout(t *testing.T) {
	r := startRedis(t)
	a, b, c := startCollector(t, ""), startCollector(t, ""), startCollector(t, "")
	ts := fleetServer(t, r, staticOf(a, b, c), nil)

	var fv fleet.FleetView
	waitFor(t, "three reachable pods", func() bool {
		code, _, body := call(t, "GET", ts.url+"/api/v1/collectors", tokenA, nil)
		want(t, 200, code, body, &fv)
		n := 0
		for _, p := range fv.Collectors {
			if p.Reachable && p.Ready {
				n++
			}
		}
		return n == 3
	})

	// Convergence: each PUT, timed from before the request until the last
	// pod answers with the new file.
	var times []time.Duration
	for i := range 10 {
		file := pipelineFile("discard") + fmt.Sprintf("# rollout %d\n", i)
		start := time.Now()
		code, body := ts.putPipeline(t, "default", file)
		var ro rolloutView
		want(t, 200, code, body, &ro)
		if !ro.Complete || len(ro.Pods) != 3 || ro.Version != uint64(i+1) {
			t.Fatalf("rollout %d: %s", i, body)
		}
		times = append(times, waitPods(t, start, file, a, b, c))
	}
	slices.Sort(times)
	// perf/RESULTS.md ("Fleet") records this line.
	t.Logf("pipeline PUT -> in force on all 3 pods: min %v, median %v, max %v over %d PUTs", times[0], times[len(times)/2], times[len(times)-1], len(times))
	if times[len(times)-1] > time.Second {
		t.Fatalf("convergence took %v, want under 1 s", times[len(times)-1])
	}
	v := ts.pipelineView(t, "default")
	if v.Version != 10 || !v.Converged || len(v.History) != 10 || len(v.Pods) != 3 {
		t.Fatalf("view after 10 PUTs: %+v", v)
	}
	for _, p := range v.Pods {
		if p.State != fleet.PodApplied || p.Version != 10 {
			t.Fatalf("pod %+v", p)
		}
	}
	// The key the controllers read holds the current file and version.
	rc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{r.Addr()}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	raw, err := rc.Do(context.Background(), rc.B().Get().Key("sluice:pipeline:default").Build()).AsBytes()
	if err != nil {
		t.Fatal(err)
	}
	var cur struct {
		Version  uint64
		Pipeline string
	}
	if err := json.Unmarshal(raw, &cur); err != nil || cur.Version != 10 || cur.Pipeline != v.Pipeline {
		t.Fatalf("sluice:pipeline:default = %s (%v)", raw, err)
	}

	// A bad file: 400 with its line; nothing stored, nothing pushed.
	bad := "pipelines:\n  - name: x\n    stages:\n      - select: \"nonsense ==\"\n    outputs: [discard]\n"
	code, body := ts.putPipeline(t, "default", bad)
	var e apiError
	want(t, 400, code, body, &e)
	if e.Error != "invalid_pipeline" || e.Line != 4 {
		t.Fatalf("bad file: %s", body)
	}
	code, body = ts.putPipeline(t, "default", "pipelines: [\n")
	want(t, 400, code, body, &e)
	if v2 := ts.pipelineView(t, "default"); v2.Version != 10 || !v2.Converged {
		t.Fatalf("after bad files: %+v", v2)
	}

	// One pod down: reported unreachable, the other two converge, and the
	// answer does not wait for it beyond the per-pod timeout.
	b.kill()
	fileB := pipelineFile("discard") + "# while b is down\n"
	start := time.Now()
	code, body = ts.putPipeline(t, "default", fileB)
	var ro rolloutView
	want(t, 200, code, body, &ro)
	states := podStates(ro.Pods)
	if ro.Complete || states[a.name()] != fleet.PodApplied || states[c.name()] != fleet.PodApplied || states[b.name()] != fleet.PodUnreachable {
		t.Fatalf("rollout with b down: %s", body)
	}
	waitPods(t, start, fileB, a, c)
	code, _, body = call(t, "GET", ts.url+"/api/v1/collectors", tokenA, nil)
	want(t, 200, code, body, &fv)
	for _, p := range fv.Collectors {
		if (p.Name == b.name()) == p.Reachable {
			t.Fatalf("collectors with b down: %+v", p)
		}
		if p.Name == b.name() && p.Error == "" {
			t.Fatalf("unreachable pod without a reason: %+v", p)
		}
	}
	// b comes back (with the built-in pipeline): it is given the current one.
	b.restart()
	waitPods(t, time.Now(), fileB, b)
	waitFor(t, "converged after b came back", func() bool { return ts.pipelineView(t, "default").Converged })

	// A pod that refuses a version: c runs where the relative output's
	// directory does not exist, so opening the output fails there.
	for _, x := range []*collector{a, b} {
		if err := os.Mkdir(filepath.Join(x.dir, "out"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	fileC := pipelineFile(`"jsonl:out/records.jsonl"`)
	code, body = ts.putPipeline(t, "default", fileC)
	want(t, 200, code, body, &ro)
	states = podStates(ro.Pods)
	if ro.Complete || states[a.name()] != fleet.PodApplied || states[b.name()] != fleet.PodApplied || states[c.name()] != fleet.PodRefused {
		t.Fatalf("rollout refused by c: %s", body)
	}
	v = ts.pipelineView(t, "default")
	states = podStates(v.Pods)
	if v.Converged || states[c.name()] != fleet.PodRefused || states[a.name()] != fleet.PodApplied {
		t.Fatalf("view with c refusing: %+v", v)
	}
	for _, p := range v.Pods {
		if p.Pod == c.name() && (p.Version != 11 || !strings.Contains(p.Error, "out/records.jsonl")) {
			t.Fatalf("c keeps version 11 and says why: %+v", p)
		}
	}
	// c keeps the version before; reconciliation does not hammer it.
	if got, _ := c.pipeline(); got != fileB {
		t.Fatalf("c runs %q, want the previous version", got)
	}

	// Rollback to the version before: all three run fileB again.
	code, _, body = call(t, "POST", ts.url+"/api/v1/pipelines/default/rollback", tokenA, nil)
	want(t, 200, code, body, &ro)
	if !ro.Complete || ro.Version != 13 {
		t.Fatalf("rollback: %s", body)
	}
	waitPods(t, time.Now(), fileB, a, b, c)
	v = ts.pipelineView(t, "default")
	if !v.Converged || v.History[0].RollbackOf != 11 {
		t.Fatalf("after rollback: %+v", v)
	}
	code, _, body = call(t, "POST", ts.url+"/api/v1/pipelines/default/rollback", tokenA, strings.NewReader(`{"version": 1}`))
	want(t, 404, code, body, nil) // only the last 10 are kept
}

// TestFleetBadCollectors puts a pod that answers garbage and one that
// never answers beside a real one: the real one is shown at once, the
// others as unreachable with their reason; unknown names are 404 and
// scaling outside Kubernetes or out of bounds is refused.
func TestFleetBadCollectors(t *testing.T) {
	r := startRedis(t)
	real := startCollector(t, "")
	garbage, hang := garbageServer(t), hangServer(t)
	disc, err := fleet.ParseStatic(real.url() + "," + garbage + "," + hang)
	if err != nil {
		t.Fatal(err)
	}
	ts := fleetServer(t, r, disc, nil)
	waitFor(t, "members", func() bool { return len(ts.Fleet().Members()) == 3 })

	start := time.Now()
	code, _, body := call(t, "GET", ts.url+"/api/v1/collectors", tokenA, nil)
	took := time.Since(start)
	var fv fleet.FleetView
	want(t, 200, code, body, &fv)
	if took > 3*time.Second {
		t.Fatalf("GET /api/v1/collectors took %v with a hanging pod (per-pod timeout 500ms)", took)
	}
	reach := map[string]fleet.PodView{}
	for _, p := range fv.Collectors {
		reach[p.Name] = p
	}
	if p := reach[real.name()]; !p.Reachable || !p.Ready {
		t.Fatalf("real pod: %+v", p)
	}
	for _, u := range []string{garbage, hang} {
		p := reach[strings.TrimPrefix(u, "http://")]
		if p.Reachable || p.Error == "" {
			t.Fatalf("%s: %+v", u, p)
		}
	}

	// Pass-throughs.
	code, hdr, body := call(t, "GET", ts.url+"/api/v1/collectors/"+real.name()+"/exporters", tokenA, nil)
	if code != 200 || !json.Valid(body) || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("exporters: %d %s", code, body)
	}
	code, _, body = call(t, "GET", ts.url+"/api/v1/collectors/"+real.name()+"/metrics", tokenA, nil)
	if code != 200 || !strings.Contains(string(body), "sluice_records_total") {
		t.Fatalf("metrics: %d %.200s", code, body)
	}
	code, _, body = call(t, "GET", ts.url+"/api/v1/collectors/"+real.name()+"/templates", tokenA, nil)
	want(t, 200, code, body, nil)
	var e apiError
	code, _, body = call(t, "GET", ts.url+"/api/v1/collectors/nosuchpod/exporters", tokenA, nil)
	want(t, 404, code, body, &e)
	if e.Error != "unknown_collector" {
		t.Fatalf("unknown pod: %s", body)
	}
	for _, u := range []string{garbage, hang} {
		code, _, body = call(t, "GET", ts.url+"/api/v1/collectors/"+strings.TrimPrefix(u, "http://")+"/exporters", tokenA, nil)
		want(t, 502, code, body, &e)
	}
	code, _, body = call(t, "GET", ts.url+"/api/v1/pipelines/nosuch", tokenA, nil)
	want(t, 404, code, body, nil)
	code, _, body = call(t, "PUT", ts.url+"/api/v1/pipelines/Bad:Name", tokenA, strings.NewReader(pipelineFile("discard")))
	want(t, 400, code, body, nil)

	// A rollout with the two bad pods: the real one applies it.
	code, body = ts.putPipeline(t, "default", pipelineFile("discard"))
	var ro rolloutView
	want(t, 200, code, body, &ro)
	if st := podStates(ro.Pods); ro.Complete || st[real.name()] != fleet.PodApplied ||
		st[strings.TrimPrefix(garbage, "http://")] != fleet.PodUnreachable || st[strings.TrimPrefix(hang, "http://")] != fleet.PodUnreachable {
		t.Fatalf("rollout: %s", body)
	}

	// Scaling: bounds first, then "not in Kubernetes".
	for _, tc := range []struct {
		body string
		code int
		kind string
	}{
		{`{"replicas": -1}`, 400, "out_of_bounds"},
		{`{"replicas": 6}`, 400, "out_of_bounds"},
		{`{}`, 400, "bad_request"},
		{`{"replicas": 2}`, 409, "not_kubernetes"},
	} {
		code, _, body = call(t, "PUT", ts.url+"/api/v1/collectors/scale", tokenA, strings.NewReader(tc.body))
		want(t, tc.code, code, body, &e)
		if e.Error != tc.kind {
			t.Fatalf("scale %s: %s", tc.body, body)
		}
	}

	// Listeners: the real pod opens one, the bad ones are reported.
	port := freeUDPPort(t)
	code, _, body = call(t, "POST", ts.url+"/api/v1/listeners", tokenA, strings.NewReader(fmt.Sprintf(`{"url": "udp://127.0.0.1:%d"}`, port)))
	var lr struct {
		Complete bool
		Pods     []fleet.ListenerResult
	}
	want(t, 200, code, body, &lr)
	okPods := []string{}
	for _, p := range lr.Pods {
		if p.OK {
			okPods = append(okPods, p.Pod)
		}
	}
	sort.Strings(okPods)
	if lr.Complete || !slices.Equal(okPods, []string{real.name()}) {
		t.Fatalf("listeners: %s", body)
	}
	waitFor(t, "the pod's new listener", func() bool {
		code, _, body := call(t, "GET", ts.url+"/api/v1/collectors", tokenA, nil)
		want(t, 200, code, body, &fv)
		for _, p := range fv.Collectors {
			if p.Name == real.name() {
				return slices.ContainsFunc(p.Listeners, func(l string) bool { return strings.Contains(l, fmt.Sprint(port)) })
			}
		}
		return false
	})

	// Without a token the fleet routes are refused unless PublicStatus.
	code, _, _ = call(t, "GET", ts.url+"/api/v1/collectors", "", nil)
	want(t, 401, code, nil, nil)
	code, _, _ = call(t, "GET", ts.url+"/", "", nil)
	want(t, 401, code, nil, nil)
}

// garbageServer answers every request 200 with bytes that are not JSON.
func garbageServer(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, _ = c.Read(buf)
				_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\nConnection: close\r\n\r\n\x00\xffgarbage{[\n"))
			}()
		}
	}()
	return "http://" + l.Addr().String()
}

// hangServer accepts connections and never answers.
func hangServer(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return "http://" + l.Addr().String()
}

// TestFleetPodPullsAtStart: a pod started with --redis-pipeline puts the
// stored version in force before it listens, without the frontend's help
// (its reconciliation is slowed to an hour here).
func TestFleetPodPullsAtStart(t *testing.T) {
	r := startRedis(t)
	pull := []string{"--redis", r.Addr(), "--redis-pipeline", "default"}
	a, b := startCollector(t, "", pull...), startCollector(t, "", pull...)
	ts := fleetServer(t, r, staticOf(a, b), func(c *Config) { c.Fleet.Reconcile = time.Hour })
	waitFor(t, "members", func() bool { return len(ts.Fleet().Members()) == 2 })

	b.kill()
	file := pipelineFile("discard") + "# stored while b was down\n"
	code, body := ts.putPipeline(t, "default", file)
	var ro rolloutView
	want(t, 200, code, body, &ro)
	if st := podStates(ro.Pods); st[b.name()] != fleet.PodUnreachable || st[a.name()] != fleet.PodApplied {
		t.Fatalf("rollout with b down: %s", body)
	}
	b.restart() // returns once /readyz answers 200
	got, err := b.pipeline()
	if err != nil {
		t.Fatal(err)
	}
	if got != file {
		t.Fatalf("restarted pod runs %q, want the stored version", got)
	}
	if !strings.Contains(strings.Join(b.out.lines(), "\n"), "stored pipeline put in force") {
		t.Fatalf("the pod did not say it pulled the pipeline:\n%s", strings.Join(b.out.lines(), "\n"))
	}
	if v := ts.pipelineView(t, "default"); !v.Converged {
		t.Fatalf("not converged: %+v", v)
	}
}

// TestStatusPageJobs: the status page lists the recent jobs of the tenant
// whose token asks for it, newest first, and no tenant's jobs when the
// public page is asked for without a token.
func TestStatusPageJobs(t *testing.T) {
	r := startRedis(t)
	ts := newTestServer(t, r, -1, func(c *Config) { c.PublicStatus = true })
	var ids []string
	for i := range 3 {
		// Jobs are ordered by their creation millisecond: give each its own.
		for ms := time.Now().UnixMilli(); time.Now().UnixMilli() == ms; {
			runtime.Gosched()
		}
		ids = append(ids, ts.postJob(t, tokenA, "echo", nil, `{"data":`+strconv.Itoa(i)+`}`))
	}
	other := ts.postJob(t, tokenB, "echo", nil, `{"data":"b"}`)

	code, _, body := call(t, "GET", ts.url+"/", tokenA, nil)
	want(t, 200, code, body, nil)
	page := string(body)
	last := -1
	for i := len(ids) - 1; i >= 0; i-- { // newest first
		at := strings.Index(page, `data-job="`+ids[i]+`"`)
		if at < 0 || at < last {
			t.Fatalf("job %s missing or out of order in the page:\n%s", ids[i], page)
		}
		last = at
	}
	if strings.Contains(page, other) {
		t.Fatal("the page shows another tenant's job")
	}
	code, _, body = call(t, "GET", ts.url+"/", "", nil) // public, no token
	want(t, 200, code, body, nil)
	if strings.Contains(string(body), `class="job"`) || !strings.Contains(string(body), `id="jobs-hidden"`) {
		t.Fatalf("public page without a token lists jobs:\n%s", body)
	}
}
