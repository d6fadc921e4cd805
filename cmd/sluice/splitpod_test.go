package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The split pod as the issue asks for it: the three real processes
// (`sluice controller` with its real dbus-daemon, `sluice collector`,
// `sluice mediator`), each its own OS process, talking over the
// controller's private bus and the file rings. Everything is driven
// through what a user has: `sluice gen` exporters, the controller's HTTP
// API and bus bridge, signals to the processes.

type podRun struct {
	*splitPod
	t        *testing.T
	busDir   string
	bus      string
	api      int
	token    string
	ctl      *e2eProc
	selected string // the PUT pipeline's output
	meds     int    // mediators started
}

// podSelect keeps the records whose destination is in 192.0.2.0/25: gen's
// record n goes to 192.0.2.(n mod 256), so a run of k keys keeps
// podSelected(k) of them, spread over the whole run.
const podSelect = "destinationIPv4Address in 192.0.2.0/25"

func podSelected(keys int) int {
	n := 0
	for k := range keys {
		if k%256 < 128 {
			n++
		}
	}
	return n
}

func startPod(t *testing.T) *podRun {
	env := chainEnv(t)
	r := env.newRun(t, "splitpod", false)
	p := &podRun{splitPod: &splitPod{r: r, ringDir: filepath.Join(r.dir, "rings")}, t: t,
		busDir: filepath.Join(r.dir, "bus-dir"), token: "pod-secret", selected: filepath.Join(r.dir, "selected.jsonl")}
	p.bus = "unix:path=" + filepath.Join(p.busDir, "bus")
	p.flow, p.api = e2eFreePorts(t)
	_, p.colAdmin = e2eFreePorts(t)
	_, p.medAdmin = e2eFreePorts(t)
	tokenFile := filepath.Join(r.dir, "token")
	if err := os.WriteFile(tokenFile, []byte(p.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.ctl = r.start("controller", env.sluice, "controller", "--bus-dir", p.busDir,
		"--api", fmt.Sprintf("127.0.0.1:%d", p.api), "--state-dir", filepath.Join(r.dir, "state"), "--token-file", tokenFile)
	// The processes before the bus exists would only retry: wait for the
	// socket so that a failing controller is reported as such.
	sock := filepath.Join(p.busDir, "bus")
	p.until("the bus socket", 15*time.Second, func() bool {
		fi, err := os.Stat(sock)
		return err == nil && fi.Mode()&os.ModeSocket != 0
	})
	addr := fmt.Sprintf("127.0.0.1:%d", p.flow)
	p.col = r.start("collector", env.sluice, "collector", "--ring-dir", p.ringDir, "--bus", p.bus,
		"--listen", "udp://"+addr, "--listen", "tcp://"+addr, "--loops", "2", "--ring-size", "1MiB",
		"--admin", fmt.Sprintf("127.0.0.1:%d", p.colAdmin))
	p.startMediator()
	p.waitPodReady("the pod ready (collector and mediator on the bus)")
	return p
}

func (p *podRun) startMediator() {
	p.meds++
	// Pipelines put through the API may write into the test's directory
	// (api_files; the default is /var/lib/sluice).
	conf := filepath.Join(p.r.dir, "mediator.yaml")
	if err := os.WriteFile(conf, []byte("api_files: {write_dir: "+strconv.Quote(p.r.dir)+"}\n"), 0o644); err != nil {
		p.fail("mediator config: %v", err)
	}
	p.med = p.r.start(fmt.Sprintf("mediator-%d", p.meds), p.r.env.sluice, "mediator", "--config", conf, "--ring-dir", p.ringDir,
		"--bus", p.bus, "--output", "jsonl:"+p.r.out, "--admin", fmt.Sprintf("127.0.0.1:%d", p.medAdmin))
}

// killMediator SIGKILLs the mediator and waits for it to be gone.
func (p *podRun) killMediator() {
	p.t.Helper()
	p.med.signal(syscall.SIGKILL)
	if !p.med.wait(5 * time.Second) {
		p.fail("mediator did not die on SIGKILL")
	}
	p.med = nil
}

// until waits for ok, failing with every process's log on the deadline or
// when one of the pod's processes exits.
func (p *podRun) until(what string, d time.Duration, ok func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		for _, proc := range []*e2eProc{p.ctl, p.col, p.med} {
			if proc != nil && proc.exited() {
				p.fail("%s exited while waiting for %s", proc.name, what)
			}
		}
		if time.Now().After(deadline) {
			p.fail("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *podRun) fail(format string, args ...any) {
	p.t.Helper()
	var sb strings.Builder
	fmt.Fprintf(&sb, format, args...)
	fmt.Fprintf(&sb, " (%d lines out, %d selected)", lineCount(p.r.out), lineCount(p.selected))
	for _, proc := range []*e2eProc{p.ctl, p.col, p.med} {
		if proc != nil {
			fmt.Fprintf(&sb, "\n--- %s (exited %v):\n%s", proc.name, proc.exited(), proc.tail())
		}
	}
	_, cm, _ := p.get(p.colAdmin, "/metrics")
	_, mm, _ := p.get(p.medAdmin, "/metrics")
	fmt.Fprintf(&sb, "\n--- collector metrics:\n%s\n--- mediator metrics:\n%s", grepMetrics(cm), grepMetrics(mm))
	p.t.Fatal(sb.String())
}

// do makes a request to the controller's API, with the token when auth.
func (p *podRun) do(method, path string, auth bool, body string) (int, string) {
	req, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", p.api, path), strings.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	resp, err := p.r.client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (p *podRun) waitPodReady(what string) {
	p.t.Helper()
	p.until(what, 20*time.Second, func() bool { code, _ := p.do("GET", "/readyz", false, ""); return code == http.StatusOK })
}

// pipeline is GET /api/v1/pipeline through the controller.
func (p *podRun) pipeline() (version uint64, file string, ok bool) {
	code, body := p.do("GET", "/api/v1/pipeline", true, "")
	var v struct {
		Version  uint64 `json:"version"`
		Pipeline string `json:"pipeline"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &v) != nil {
		return 0, "", false
	}
	return v.Version, v.Pipeline, true
}

// settledPod waits until the mediator has taken everything the collector
// queued and the named file has want lines.
func (p *podRun) settledPod(path string, want int) {
	p.t.Helper()
	p.until(fmt.Sprintf("%d lines in %s", want, filepath.Base(path)), 30*time.Second, func() bool {
		return lineCount(path) >= want && p.metric(p.colAdmin, "sluice_ring_bytes") == 0
	})
}

// fileKeys is outputKeys for any of the pod's JSON lines files.
func (p *podRun) fileKeys(path string) (map[string]int, int) {
	saved := p.r.out
	p.r.out = path
	defer func() { p.r.out = saved }()
	return p.outputKeys(p.t)
}

// series reads one series of the pod's metrics (the controller's
// /metrics), -1 when absent.
func (p *podRun) series(name string) float64 {
	_, body := p.do("GET", "/metrics", false, "")
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// busDaemonPID finds the controller's dbus-daemon child in /proc.
func (p *podRun) busDaemonPID() int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		j := strings.IndexByte(s, '(')
		if i < 0 || j < 0 || s[j+1:i] != "dbus-daemon" {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 2 && f[1] == strconv.Itoa(p.ctl.cmd.Process.Pid) && f[0] != "Z" {
			return pid
		}
	}
	return 0
}

func TestSplitPodProcesses(t *testing.T) {
	if _, err := os.Stat("/usr/bin/dbus-daemon"); err != nil {
		e2eUnavailable(t, "dbus-daemon: %v", err)
	}
	began := time.Now()
	p := startPod(t)
	t.Logf("pod ready after %v", time.Since(began).Round(time.Millisecond))

	// --- The bus bridge: Collector1.Status, and a TemplateLearned event
	// while a fresh exporter (the first UDP run) sends its templates.
	code, body := p.do("POST", "/api/v1/bus/services/io.sluice.Collector1/interfaces/io.sluice.Collector1/methods/Status", true, "")
	if code != http.StatusOK || !strings.Contains(body, `"ready":true`) {
		p.fail("Collector1.Status through the bridge: %d %s", code, body)
	}
	if code, _ := p.do("POST", "/api/v1/bus/services/io.sluice.Collector1/interfaces/io.sluice.Collector1/methods/Status", false, ""); code != http.StatusUnauthorized {
		p.fail("bridge call without the token: %d", code)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(sctx, "GET", fmt.Sprintf("http://127.0.0.1:%d/api/v1/bus/signals?service=io.sluice.Collector1&member=TemplateLearned", p.api), nil)
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		p.fail("signals: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		p.fail("signals: %s", resp.Status)
	}
	events := make(chan string, 16)
	go func() {
		defer close(events)
		rd := bufio.NewReader(resp.Body)
		for {
			l, err := rd.ReadString('\n')
			if err != nil {
				return
			}
			events <- strings.TrimRight(l, "\n")
		}
	}()
	readEvent := func(what string) string {
		for {
			select {
			case l, ok := <-events:
				if !ok {
					p.fail("the signal stream ended before %s", what)
				}
				if d, ok := strings.CutPrefix(l, "data: "); ok || strings.HasPrefix(l, ": subscribed") {
					return d
				}
			case <-sctx.Done():
				p.fail("no %s on the signal stream", what)
			}
		}
	}
	readEvent("the subscription") // the match rule is in place

	sent := int(p.gen("gen-udp", 300, "--rate", "100krps").genRecords(t))
	data := readEvent("TemplateLearned")
	var ev struct {
		Member string `json:"member"`
		Args   []any  `json:"args"`
	}
	if json.Unmarshal([]byte(data), &ev) != nil || ev.Member != "TemplateLearned" || len(ev.Args) != 3 || ev.Args[0] != "127.0.0.1" || ev.Args[2] != 256.0 {
		p.fail("TemplateLearned event: %s", data)
	}
	cancel()

	// --- UDP and TCP: exactly what was sent.
	sent += int(p.gen("gen-tcp", 300, "--tcp").genRecords(t))
	if sent != 6000 {
		p.fail("gen sent %d records, want 6000", sent)
	}
	p.settledPod(p.r.out, sent)
	keys, lines := p.outputKeys(t)
	if len(keys) != sent || lines != sent {
		p.fail("%d lines, %d distinct records; want %d of each", lines, len(keys), sent)
	}
	t.Logf("UDP and TCP exact after %v", time.Since(began).Round(time.Millisecond))

	// --- The mediator SIGKILLed mid-stream over TCP: backpressure, no loss.
	g := p.gen("gen-tcp-kill", 4000, "--tcp", "--rate", "20krps")
	p.until("the mediator to write part of the stream", 30*time.Second, func() bool { return lineCount(p.r.out) > sent+2000 })
	p.killMediator()
	p.until("the controller to see the mediator gone", 10*time.Second, func() bool {
		code, _ := p.do("GET", "/readyz", false, "")
		return code != http.StatusOK
	})
	p.until("tcp backpressure while the mediator is away", 30*time.Second, func() bool {
		return p.metric(p.colAdmin, "sluice_tcp_backpressure_total") > 0
	})
	if d := p.metric(p.colAdmin, "sluice_dropped_records_total"); d != 0 {
		p.fail("collector dropped %v records while the mediator was away", d)
	}
	p.startMediator()
	p.waitPodReady("the pod ready again with the new mediator")
	sent += int(g.genRecords(t))
	p.settledPod(p.r.out, sent)
	replayed := int(p.metric(p.medAdmin, "sluice_mediator_replayed_records_total"))
	keys, lines = p.outputKeys(t)
	dups := 0
	for _, n := range keys {
		dups += n - 1
	}
	t.Logf("mediator SIGKILL: %d records sent, %d lines, %d repeated, %d counted as replayed (after %v)",
		sent, lines, dups, replayed, time.Since(began).Round(time.Millisecond))
	if len(keys) != sent {
		p.fail("%d distinct records out, %d sent: records lost across the mediator's SIGKILL", len(keys), sent)
	}
	if dups > replayed || replayed > 256*10*2 {
		p.fail("%d records repeated, %d counted as replayed (bound: 256 entries of 10 records per ring, 2 rings)", dups, replayed)
	}

	// --- A pipeline PUT through the controller reaches the mediator.
	pipe := fmt.Sprintf("pipelines:\n  - name: half\n    stages:\n      - select: %s\n    outputs: [%q]\n", podSelect, "jsonl:"+p.selected)
	if code, body := p.do("PUT", "/api/v1/pipeline", false, pipe); code != http.StatusUnauthorized {
		p.fail("PUT without the token: %d %s", code, body)
	}
	code, body = p.do("PUT", "/api/v1/pipeline", true, pipe)
	var put struct {
		Version uint64 `json:"version"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &put) != nil || put.Version == 0 {
		p.fail("PUT pipeline: %d %s", code, body)
	}
	if v, f, ok := p.pipeline(); !ok || v != put.Version || f != pipe {
		p.fail("the mediator runs version %d (ok %v), want %d:\n%s", v, ok, put.Version, f)
	}
	before := lineCount(p.r.out)
	n := int(p.gen("gen-tcp-select", 100, "--tcp").genRecords(t))
	want := podSelected(n)
	p.settledPod(p.selected, want)
	if sk, sl := p.fileKeys(p.selected); sl != want || len(sk) != want {
		p.fail("the pipeline kept %d lines (%d distinct) of %d, want %d", sl, len(sk), n, want)
	}
	if after := lineCount(p.r.out); after != before {
		p.fail("--output took %d records with the pipeline in force", after-before)
	}

	// --- The mediator SIGKILLed again: the controller puts the pipeline back.
	reapplied := p.metric(p.api, "sluice_controller_pipeline_reapplied_total")
	p.killMediator()
	p.startMediator()
	p.waitPodReady("the pod ready with the third mediator")
	p.until("the controller to re-apply the pipeline", 15*time.Second, func() bool {
		v, f, ok := p.pipeline()
		return ok && v == put.Version && f == pipe
	})
	if r := p.metric(p.api, "sluice_controller_pipeline_reapplied_total"); r != reapplied+1 {
		p.fail("sluice_controller_pipeline_reapplied_total went from %v to %v, want one more", reapplied, r)
	}
	n2 := int(p.gen("gen-tcp-select-2", 100, "--tcp").genRecords(t))
	want += podSelected(n2)
	p.settledPod(p.selected, want)
	if sk, sl := p.fileKeys(p.selected); sl != want || len(sk) != want {
		p.fail("after the restart the pipeline output has %d lines (%d distinct), want %d", sl, len(sk), want)
	}
	t.Logf("pipeline version %d re-applied after the mediator's restart (after %v)", put.Version, time.Since(began).Round(time.Millisecond))

	// --- The bus daemon killed: restarted, both processes back on the
	// bus, and the data path never waited for it.
	old := p.busDaemonPID()
	if old == 0 {
		p.fail("no dbus-daemon child of the controller (pid %d)", p.ctl.cmd.Process.Pid)
	}
	restarts := p.metric(p.api, "sluice_dbus_daemon_restarts_total")
	// The processes' bus metrics are read over the bus, in the pod's
	// metrics (their own --admin has only the data path's).
	lostCol := `sluice_dbus_connections_lost_total{component="collector"}`
	lostMed := `sluice_dbus_connections_lost_total{component="mediator"}`
	lost := [2]float64{p.series(lostCol), p.series(lostMed)}
	if lost[0] < 0 || lost[1] < 0 {
		p.fail("no %s or %s in the pod's metrics", lostCol, lostMed)
	}
	g = p.gen("gen-tcp-busdown", 2000, "--tcp", "--rate", "10krps")
	base := lineCount(p.selected)
	p.until("the stream to start", 15*time.Second, func() bool { return lineCount(p.selected) > base })
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		p.fail("killing dbus-daemon %d: %v", old, err)
	}
	atKill := lineCount(p.selected)
	p.until("the bus daemon restarted", 15*time.Second, func() bool {
		pid := p.busDaemonPID()
		return pid != 0 && pid != old && p.metric(p.api, "sluice_dbus_daemon_restarts_total") > restarts
	})
	p.waitPodReady("the pod ready after the bus daemon's restart")
	atBack := lineCount(p.selected)
	p.until("both processes back on the new bus, each having lost the old one", 10*time.Second, func() bool {
		return p.series(lostCol) > lost[0] && p.series(lostMed) > lost[1]
	})
	for _, c := range []string{"collector", "mediator", "controller"} {
		if code, body := p.do("GET", "/metrics", false, ""); code != http.StatusOK || !strings.Contains(body, `sluice_dbus_up{component="`+c+`"} 1`) {
			p.fail("%s not back on the bus in the pod's metrics: %d", c, code)
		}
	}
	n3 := int(g.genRecords(t))
	want += podSelected(n3)
	p.settledPod(p.selected, want)
	sk, sl := p.fileKeys(p.selected)
	t.Logf("bus daemon %d killed: %d selected lines at the kill, %d when the pod was ready again; %d of %d records kept (after %v)",
		old, atKill, atBack, sl, want, time.Since(began).Round(time.Millisecond))
	if sl != want || len(sk) != want {
		p.fail("across the bus outage the pipeline output has %d lines (%d distinct), want %d", sl, len(sk), want)
	}
	if atBack <= atKill {
		p.fail("no record out while the bus was down (%d lines at the kill, %d after)", atKill, atBack)
	}
	if v, f, ok := p.pipeline(); !ok || v != put.Version || f != pipe {
		p.fail("after the bus outage the mediator runs version %d (ok %v)", v, ok)
	}
	// Nothing lost or repeated on the default output meanwhile.
	if k, l := p.outputKeys(t); len(k) != sent || l-len(k) > replayed {
		p.fail("--output: %d lines, %d distinct, %d sent", l, len(k), sent)
	}

	// --- SIGTERM the controller: it drains the pod, stops its bus daemon
	// and exits cleanly.
	daemon := p.busDaemonPID()
	p.ctl.signal(syscall.SIGTERM)
	if !p.ctl.wait(20*time.Second) || p.ctl.err != nil {
		p.fail("controller did not stop cleanly on SIGTERM: %v", p.ctl.err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", daemon))
		if err != nil || strings.Contains(string(b), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dbus-daemon %d still runs after the controller stopped", daemon)
		}
	}
	t.Logf("done in %v", time.Since(began).Round(time.Millisecond))
}
