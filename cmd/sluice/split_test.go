package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The split pod's data processes, as real processes: `sluice collector`
// and `sluice mediator` over file rings in a directory, fed by `sluice
// gen`. Each gen run gives every record its own 5-tuple (--keys equal to
// the records sent), so a record lost or repeated shows in the output.

type splitPod struct {
	r        *e2eRun
	ringDir  string
	flow     int
	colAdmin int
	medAdmin int
	col, med *e2eProc
}

func startSplitPod(t *testing.T, ringSize string) *splitPod {
	env := chainEnv(t)
	r := env.newRun(t, "split", false)
	p := &splitPod{r: r, ringDir: filepath.Join(r.dir, "rings")}
	p.flow, p.colAdmin = e2eFreePorts(t)
	_, p.medAdmin = e2eFreePorts(t)
	p.startCollector(ringSize)
	p.startMediator()
	return p
}

func (p *splitPod) startCollector(ringSize string) {
	addr := fmt.Sprintf("127.0.0.1:%d", p.flow)
	p.col = p.r.start("collector", p.r.env.sluice, "collector", "--ring-dir", p.ringDir,
		"--listen", "udp://"+addr, "--listen", "tcp://"+addr, "--loops", "2", "--ring-size", ringSize,
		"--admin", fmt.Sprintf("127.0.0.1:%d", p.colAdmin))
	p.waitReady(p.colAdmin, p.col)
}

func (p *splitPod) startMediator() {
	p.med = p.r.start("mediator", p.r.env.sluice, "mediator", "--ring-dir", p.ringDir,
		"--output", "jsonl:"+p.r.out, "--admin", fmt.Sprintf("127.0.0.1:%d", p.medAdmin))
	p.waitReady(p.medAdmin, p.med)
}

func (p *splitPod) waitReady(admin int, proc *e2eProc) {
	t := p.r.t
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline) && !proc.exited(); time.Sleep(20 * time.Millisecond) {
		if code, _, err := p.get(admin, "/readyz"); err == nil && code == http.StatusOK {
			return
		}
	}
	t.Fatalf("%s not ready (exited %v):\n%s", proc.name, proc.exited(), proc.tail())
}

func (p *splitPod) get(admin int, path string) (int, []byte, error) {
	resp, err := p.r.client.Get(fmt.Sprintf("http://127.0.0.1:%d%s", admin, path))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b := new(strings.Builder)
	_, err = bufio.NewReader(resp.Body).WriteTo(b)
	return resp.StatusCode, []byte(b.String()), err
}

// metric returns a metric of one process summed over its labels (-1 when
// it cannot be read).
func (p *splitPod) metric(admin int, name string) float64 {
	_, b, err := p.get(admin, "/metrics")
	if err != nil {
		return -1
	}
	v := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f, _ := strconv.ParseFloat(rest[strings.LastIndexByte(rest, ' ')+1:], 64)
		v += f
	}
	return v
}

func (p *splitPod) waitFor(what string, d time.Duration, ok func() bool) {
	t := p.r.t
	t.Helper()
	for deadline := time.Now().Add(d); !ok(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			_, cm, _ := p.get(p.colAdmin, "/metrics")
			_, mm, _ := p.get(p.medAdmin, "/metrics")
			t.Fatalf("timed out waiting for %s (%d lines out)\ncollector:\n%s\nmediator:\n%s\n%s\n%s", what, lineCount(p.r.out),
				p.col.tail(), p.med.tail(), grepMetrics(cm), grepMetrics(mm))
		}
	}
}

// gen sends count messages of 10 records, each record its own key.
func (p *splitPod) gen(label string, count int, args ...string) *e2eProc {
	a := append([]string{"gen", "--addr", fmt.Sprintf("127.0.0.1:%d", p.flow), "--count", strconv.Itoa(count),
		"--records", "10", "--keys", strconv.Itoa(count * 10), "--duration", "0"}, args...)
	return p.r.start(label, p.r.env.sluice, a...)
}

// genResult is what sluice gen reports on stdout.
type genResult struct {
	Records   uint64 `json:"records"`
	Exporters []struct {
		FirstSequence uint32 `json:"first_sequence"`
		NextSequence  uint32 `json:"next_sequence"`
	} `json:"exporters"`
}

func (g *e2eProc) genRecords(t *testing.T) uint64 {
	t.Helper()
	return g.genResult(t).Records
}

// genSequenced is the number of records gen numbered: those sent and
// those whose send failed (while nothing listened), which used up their
// sequence numbers all the same.
func (g *e2eProc) genSequenced(t *testing.T) uint64 {
	t.Helper()
	n := uint64(0)
	for _, e := range g.genResult(t).Exporters {
		n += uint64(e.NextSequence - e.FirstSequence)
	}
	return n
}

func (g *e2eProc) genResult(t *testing.T) genResult {
	t.Helper()
	if !g.wait(60 * time.Second) {
		t.Fatalf("%s did not finish", g.name)
	}
	out := g.output()
	var r genResult
	if err := json.Unmarshal([]byte(out[strings.LastIndexByte(strings.TrimSpace(out), '\n')+1:]), &r); err != nil {
		t.Fatalf("%s output %q: %v", g.name, out, err)
	}
	return r
}

// outputKeys reads the mediator's output: records per key (exporter and
// 5-tuple), failing on a line that does not parse.
func (p *splitPod) outputKeys(t *testing.T) (keys map[string]int, lines int) {
	t.Helper()
	f, err := os.Open(p.r.out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys = map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("garbled output line %d %q: %v", lines+1, sc.Text(), err)
		}
		keys[canon(m, "exporter", "sourceIPv4Address", "destinationIPv4Address", "sourceTransportPort", "destinationTransportPort")]++
		lines++
	}
	return keys, lines
}

// settled waits until the mediator has decoded all the collector queued
// and written want lines.
func (p *splitPod) settled(want int) {
	p.waitFor(fmt.Sprintf("%d records out of the mediator", want), 30*time.Second, func() bool {
		return lineCount(p.r.out) >= want && p.metric(p.colAdmin, "sluice_ring_bytes") == 0
	})
}

func lineCount(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\n")
}

// TestSplitPod runs the two data processes: records over UDP and TCP come
// out exactly; the mediator killed with SIGKILL mid-stream over TCP and
// restarted loses nothing (what it repeats is at most what it counts as
// replayed); the collector restarted loses only the UDP sent while it was
// down, and garbles nothing.
func TestSplitPod(t *testing.T) {
	p := startSplitPod(t, "1MiB")
	sent := 0

	// UDP, then TCP: exactly what was sent.
	sent += int(p.gen("gen-udp", 300, "--rate", "100krps").genRecords(t))
	sent += int(p.gen("gen-tcp", 300, "--tcp").genRecords(t))
	if sent != 6000 {
		t.Fatalf("gen sent %d records, want 6000", sent)
	}
	p.settled(sent)
	keys, lines := p.outputKeys(t)
	if len(keys) != sent || lines != sent {
		t.Fatalf("%d lines, %d distinct records; want %d of each", lines, len(keys), sent)
	}

	// The mediator killed mid-stream over TCP: the exporter waits (the
	// rings fill: backpressure) and nothing is lost.
	g := p.gen("gen-tcp-kill", 3000, "--tcp", "--rate", "10krps")
	p.waitFor("the mediator to write part of the stream", 30*time.Second, func() bool { return lineCount(p.r.out) > sent+2000 })
	p.med.signal(syscall.SIGKILL)
	p.med.wait(5 * time.Second)
	p.waitFor("tcp backpressure while the mediator is away", 30*time.Second, func() bool {
		return p.metric(p.colAdmin, "sluice_tcp_backpressure_total") > 0
	})
	if d := p.metric(p.colAdmin, `sluice_dropped_records_total`); d != 0 {
		t.Fatalf("collector dropped %v records while the mediator was away", d)
	}
	p.startMediator()
	sent += int(g.genRecords(t))
	p.settled(sent)
	replayed := int(p.metric(p.medAdmin, "sluice_mediator_replayed_records_total"))
	keys, lines = p.outputKeys(t)
	dups := 0
	for _, n := range keys {
		dups += n - 1
	}
	t.Logf("mediator restart: %d records sent, %d lines, %d repeated, %d counted as replayed", sent, lines, dups, replayed)
	if len(keys) != sent {
		t.Fatalf("%d distinct records out, %d sent: records lost across the mediator's restart", len(keys), sent)
	}
	if dups > replayed || replayed > 256*10*2 {
		t.Fatalf("%d records repeated, %d counted as replayed (bound: 256 entries of 10 records per ring)", dups, replayed)
	}

	// The collector restarted under UDP load: what was sent while it was
	// down is lost (counted here from the keys, in one gap); nothing is
	// garbled or repeated, and the mediator follows the new rings.
	gen1 := p.metric(p.medAdmin, "sluice_mediator_ring_generation")
	before := lineCount(p.r.out)
	// Long enough (about 6 s) that the stream goes on after the restart.
	g = p.gen("gen-udp-restart", 12000, "--rate", "20krps")
	p.waitFor("part of the UDP stream", 30*time.Second, func() bool { return lineCount(p.r.out) > before+5000 })
	oldLoss := p.metric(p.colAdmin, "sluice_sequence_lost_total") + p.metric(p.colAdmin, "sluice_dropped_records_total")
	p.col.signal(syscall.SIGTERM)
	if !p.col.wait(20 * time.Second) {
		t.Fatal("collector did not stop on SIGTERM")
	}
	p.startCollector("1MiB")
	udpSent := int(g.genRecords(t))
	p.waitFor("the mediator to follow the new generation", 10*time.Second, func() bool {
		return p.metric(p.medAdmin, "sluice_mediator_ring_generation") > gen1
	})
	if p.metric(p.colAdmin, "sluice_collected_records_total") <= 0 {
		t.Fatal("the stream ended before the new collector took any of it")
	}
	// The mediator reads the new rings only once it has drained the old.
	p.waitFor("the mediator to take what the new collector queued", 30*time.Second, func() bool {
		return p.metric(p.colAdmin, "sluice_ring_bytes") == 0
	})
	keys2, lines2 := p.outputKeys(t)
	got := lines2 - lines
	lost := udpSent - got
	t.Logf("collector restart: %d UDP records sent, %d out, %d lost while it restarted", udpSent, got, lost)
	if len(keys2) != len(keys)+got {
		t.Fatalf("records repeated across the collector's restart: %d lines, %d distinct", lines2, len(keys2))
	}
	if got <= 5000 || lost < 0 {
		t.Fatalf("%d of %d records out", got, udpSent)
	}
	// The mediator counts the gap by sequence numbers; what either
	// collector lost within its own run it counted itself. Sends that
	// failed while nothing listened (ICMP port unreachable) are lost too:
	// gen numbered them.
	// The mediator counts a gap once it has settled (a second).
	numbered := int(g.genSequenced(t))
	var counted, inRun float64
	deadline := time.Now().Add(10 * time.Second)
	for {
		counted = p.metric(p.medAdmin, "sluice_mediator_restart_sequence_lost_total")
		inRun = oldLoss + p.metric(p.colAdmin, "sluice_sequence_lost_total") + p.metric(p.colAdmin, "sluice_dropped_records_total")
		if int(counted+inRun) == numbered-got || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("collector restart: %d records numbered (%d failed to go), the mediator counted %v lost by sequence numbers, the collectors %v within their runs",
		numbered, numbered-udpSent, counted, inRun)
	if int(counted+inRun) != numbered-got {
		t.Fatalf("%d records numbered, %d out, but %v counted across the restart and %v within the collectors' runs\n%s", numbered, got, counted, inRun, p.med.tail())
	}
	if strings.Contains(p.med.output(), "unknown_template") || p.metric(p.medAdmin, "sluice_mediator_unknown_template_records_total") != 0 {
		t.Fatal("records without their template after the restart")
	}
}

// TestSplitRingRefused puts ring files of the wrong size and version in
// the mediator's directory: it refuses them with the reason and keeps
// running.
func TestSplitRingRefused(t *testing.T) {
	env := chainEnv(t)
	r := env.newRun(t, "split-refused", false)
	dir := filepath.Join(r.dir, "rings")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A 5000-octet file, and a well-sized file that says version 1.
	if err := os.WriteFile(filepath.Join(dir, "ring-000"), make([]byte, 5000), 0o600); err != nil {
		t.Fatal(err)
	}
	v1 := make([]byte, 256+64<<10)
	copy(v1, []byte{0x53, 0x4c, 0x52, 0x47, 1, 0, 0, 0}) // magic "SLRG", version 1
	if err := os.WriteFile(filepath.Join(dir, "ring-001"), v1, 0o600); err != nil {
		t.Fatal(err)
	}
	_, admin := e2eFreePorts(t)
	med := r.start("mediator", env.sluice, "mediator", "--ring-dir", dir, "--output", "discard",
		"--admin", fmt.Sprintf("127.0.0.1:%d", admin))
	p := &splitPod{r: r, medAdmin: admin, med: med, col: med}
	p.waitFor("both files refused", 15*time.Second, func() bool {
		return p.metric(admin, "sluice_mediator_ring_attach_errors_total") >= 2
	})
	out := med.output()
	for _, want := range []string{
		"refusing ring file", "ring-000", "ring: bad memory size: 5000 bytes",
		"ring-001", "ring: unsupported layout version: 1, want 2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("mediator log lacks %q:\n%s", want, out)
		}
	}
	if code, _, _ := p.get(admin, "/readyz"); code == http.StatusOK || med.exited() {
		t.Fatalf("mediator ready (%d) or exited (%v) with only bad ring files", code, med.exited())
	}
}

func grepMetrics(b []byte) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "sluice_") && !strings.HasSuffix(l, " 0") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
