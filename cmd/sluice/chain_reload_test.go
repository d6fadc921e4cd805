package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startChainSource starts sluice A with a pipeline file and an admin token.
func startChainSource(t *testing.T, env *e2eEnv, pipeline string) (a *e2eRun, port int, pipeFile string) {
	t.Helper()
	a = env.newRun(t, "a", false)
	pipeFile = filepath.Join(a.dir, "pipeline.yaml")
	if err := os.WriteFile(pipeFile, []byte(pipeline), 0o644); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(a.dir, "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port, adminPort := e2eFreePorts(t)
	a.admin = adminPort
	a.sluice = a.start("a", env.sluice, "run", "--listen", fmt.Sprintf("tcp://127.0.0.1:%d", port),
		"--admin", fmt.Sprintf("127.0.0.1:%d", adminPort), "--pipeline", pipeFile, "--admin-token-file", tokenFile)
	waitReady(t, a)
	return a, port, pipeFile
}

// putPipeline sends PUT /api/v1/pipeline and returns the status and body.
func putPipeline(t *testing.T, r *e2eRun, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, fmt.Sprintf("http://127.0.0.1:%d/api/v1/pipeline", r.admin), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitRecords waits until sluice A has decoded n records.
func waitRecords(t *testing.T, r *e2eRun, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if got, _ := r.metrics().sum("sluice_records_total"); int(got) >= n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	got, _ := r.metrics().sum("sluice_records_total")
	t.Fatalf("%s decoded %v records, want %d", r.name, got, n)
}

// pipelineVersion returns the version of the pipeline r runs, from
// GET /api/v1/pipeline.
func pipelineVersion(t *testing.T, r *e2eRun) uint64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/api/v1/pipeline", r.admin), nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var cur struct {
		Version uint64 `json:"version"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&cur); err != nil {
		t.Fatalf("GET pipeline: %v", err)
	}
	return cur.Version
}

// waitMetric waits until r's metric name, summed over its labels,
// satisfies ok.
func waitMetric(t *testing.T, r *e2eRun, name string, ok func(float64) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, _ := r.metrics().sum(name)
		if ok(v) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s is %v", r.name, name, v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestChainHotReload replaces the pipeline many times (API and SIGHUP)
// while records stream through: every record arrives downstream exactly
// once, and records show that several versions ran.
func TestChainHotReload(t *testing.T) {
	env := chainEnv(t)
	b := startChainSink(t, env, "b")
	pipe := func(v int) string {
		return fmt.Sprintf("outputs:\n  down: ipfix+tcp://127.0.0.1:%d\npipelines:\n  - name: p\n    stages:\n      - select: octetDeltaCount > 0\n      - set: {observationPointId: %d}\n    outputs: [down]\n", b.port, v)
	}
	a, port, pipeFile := startChainSource(t, env, pipe(1))

	// Refusals first: no token, a wrong token, a bad file (the line is named).
	if code, _ := putPipeline(t, a, "", pipe(9)); code != http.StatusUnauthorized {
		t.Errorf("PUT without token: %d, want 401", code)
	}
	if code, _ := putPipeline(t, a, "wrong", pipe(9)); code != http.StatusUnauthorized {
		t.Errorf("PUT with a wrong token: %d, want 401", code)
	}
	bad := strings.Replace(pipe(9), "select: octetDeltaCount > 0", "select: octetDeltaCount >", 1)
	if code, body := putPipeline(t, a, "s3cret", bad); code != http.StatusBadRequest || !strings.Contains(body, "line 6") {
		t.Errorf("PUT of a bad pipeline: %d %s, want 400 naming line 6", code, body)
	}

	const total = 60000
	flows := chainFlows(total, 7)
	for i := range flows {
		flows[i].octets = uint64(i + 1) // the record's identity downstream
	}
	msgs := chainMessages(flows)
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// The stream goes in twelve parts (at message boundaries), part v-1
	// once version v runs. For an even v (applied by PUT, which returns once
	// it runs) A decodes the whole part before the next swap, so version v
	// shows in the records; for an odd v the next swap comes while A is
	// still decoding the part: mid-stream.
	const parts = 12
	cuts := append(msgBoundaries(msgs), len(msgs))
	versions := 1
	for v := 1; v <= parts; v++ {
		lo, hi := cuts[(v-1)*(len(cuts)-1)/parts], cuts[v*(len(cuts)-1)/parts]
		conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write(msgs[lo:hi]); err != nil {
			t.Fatal(err)
		}
		if v%2 == 0 {
			waitRecords(t, a, countRecords(msgs[:hi]))
		}
		if v == parts {
			break
		}
		if next := v + 1; next == 7 {
			if err := os.WriteFile(pipeFile, []byte(pipe(next)), 0o644); err != nil {
				t.Fatal(err)
			}
			a.sluice.signal(syscall.SIGHUP)
			// The reload is asynchronous: wait until it runs, so the next
			// PUT does not supersede it.
			for deadline := time.Now().Add(20 * time.Second); pipelineVersion(t, a) != uint64(next); time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("SIGHUP reload to version %d not applied:\n%s", next, a.sluice.tail())
				}
			}
		} else if code, body := putPipeline(t, a, "s3cret", pipe(next)); code != http.StatusOK {
			t.Fatalf("PUT version %d: %d %s", next, code, body)
		}
		versions++
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	waitRecords(t, a, total+1)
	code, _, err := a.get("/api/v1/pipeline")
	if err != nil || code != http.StatusUnauthorized {
		t.Errorf("GET pipeline without token: %d %v", code, err)
	}
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/api/v1/pipeline", a.admin), nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	if resp, err := a.client.Do(req); err != nil {
		t.Error(err)
	} else {
		var cur struct {
			Version  uint64 `json:"version"`
			Pipeline string `json:"pipeline"`
		}
		err := json.NewDecoder(resp.Body).Decode(&cur)
		resp.Body.Close()
		// Version 1 at start, then 11 replacements (the failed PUT made none).
		if err != nil || cur.Version != 12 || cur.Pipeline != pipe(12) {
			t.Errorf("GET pipeline: %v version %d\n%s", err, cur.Version, cur.Pipeline)
		}
	}
	a.sluice.signal(syscall.SIGTERM)
	if !a.sluice.wait(20 * time.Second) {
		t.Fatalf("sluice A did not stop")
	}
	if !strings.Contains(a.sluice.output(), "pipeline reloaded") {
		t.Errorf("SIGHUP reload not logged:\n%s", a.sluice.tail())
	}

	// Options records pass once per running snapshot? No: once, as sent.
	recs, opts := chainData(b.records(t, total+1, nil))
	if opts != 1 {
		t.Errorf("%d options records downstream, want 1", opts)
	}
	seen := make([]int, total+1)
	byVersion := map[string]int{}
	for _, m := range recs {
		id, err := m["octetDeltaCount"].(json.Number).Int64()
		if err != nil || id < 1 || id > total {
			t.Fatalf("record with unexpected id: %v", m)
		}
		seen[id]++
		byVersion[fmt.Sprint(m["observationPointId"])]++
	}
	for id := 1; id <= total; id++ {
		if seen[id] != 1 {
			t.Errorf("record %d arrived %d times", id, seen[id])
			break
		}
	}
	for v := 2; v <= 12; v += 2 {
		if byVersion[fmt.Sprint(v)] == 0 {
			t.Errorf("no record carries pipeline version %d: %v", v, byVersion)
		}
	}
	t.Logf("%d records across %d reloads; per version: %v", len(recs), versions-1, byVersion)
}

// TestChainDownstreamRestart stops the downstream sluice, keeps sending,
// and starts it again on the same port: with room in the queue nothing is
// lost; past it the overflow is counted exactly.
func TestChainDownstreamRestart(t *testing.T) {
	env := chainEnv(t)
	for _, tc := range []struct {
		name  string
		queue string
		lossy bool
	}{{"room", "16MiB", false}, {"overflow", "512KiB", true}} {
		t.Run(tc.name, func(t *testing.T) {
			b := startChainSink(t, env, "b1")
			a, port, _ := startChainSource(t, env, fmt.Sprintf(
				"pipelines:\n  - stages:\n      - select: octetDeltaCount > 0\n    outputs: [\"ipfix+tcp://127.0.0.1:%d?queue=%s\"]\n", b.port, tc.queue))
			const total = 30000
			flows := chainFlows(total, 11)
			for i := range flows {
				flows[i].octets = uint64(i + 1)
			}
			msgs := chainMessages(flows)
			// Split at message boundaries: a third, then the rest.
			cuts := msgBoundaries(msgs)
			third := cuts[len(cuts)/3]
			conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			write := func(b []byte) {
				conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
				if _, err := conn.Write(b); err != nil {
					t.Fatal(err)
				}
			}
			write(msgs[:third])
			firstN := countRecords(msgs[:third])
			// sent is how many records A wrote toward B so far.
			sent := func() float64 {
				v, _ := a.metrics().sum(`sluice_output_records_total{output="ipfix+tcp://127.0.0.1:` + fmt.Sprint(b.port) + `?queue=` + tc.queue + `",outcome="sent"}`)
				return v
			}
			first := b.records(t, firstN, sent) // waits for them, then stops B
			waitRecords(t, a, firstN)
			write(msgs[third:])
			waitRecords(t, a, total+1)
			// A notices the peer is gone and queues: a dial to the stopped
			// B failed.
			waitMetric(t, a, "sluice_output_errors_total", func(v float64) bool { return v >= 1 })
			b2 := &chainSink{r: env.newRun(t, "b2", false), port: b.port}
			b2.out = filepath.Join(b2.r.dir, "b.jsonl")
			_, adminPort := e2eFreePorts(t)
			b2.r.admin = adminPort
			b2.r.sluice = b2.r.start("b2", env.sluice, "run", "--listen", fmt.Sprintf("tcp://127.0.0.1:%d", b.port),
				"--admin", fmt.Sprintf("127.0.0.1:%d", adminPort), "--output", "jsonl:"+b2.out)
			waitReady(t, b2.r)
			// A drains its queue into B2; then stop A so its counters are final.
			deadline := time.Now().Add(20 * time.Second)
			var queued float64 = -1
			for time.Now().Before(deadline) {
				m := a.metrics()
				queued, _ = m.sum("sluice_output_queued_records")
				if queued == 0 {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			m := a.metrics()
			dropped := m[`sluice_output_records_total{output="ipfix+tcp://127.0.0.1:`+fmt.Sprint(b.port)+`?queue=`+tc.queue+`",outcome="dropped"}`]
			reconnects, _ := m.sum("sluice_output_reconnects_total")
			rest := total + 1 - firstN - int(dropped)
			second := b2.records(t, rest, func() float64 { return sent() - float64(len(first)) })
			seen := map[string]int{}
			for _, r := range append(first, second...) {
				if r["options"] == true {
					continue
				}
				seen[fmt.Sprint(r["octetDeltaCount"])]++
			}
			for k, n := range seen {
				if n != 1 {
					t.Errorf("record %s arrived %d times", k, n)
				}
			}
			if got := len(first) + len(second) + int(dropped); got != total+1 {
				t.Errorf("arrived %d + %d, dropped %v: %d, want %d", len(first), len(second), dropped, got, total+1)
			}
			if tc.lossy != (dropped > 0) {
				t.Errorf("dropped %v with a %s queue", dropped, tc.queue)
			}
			if reconnects < 1 {
				t.Errorf("reconnects %v, want at least 1", reconnects)
			}
			t.Logf("first %d, second %d, dropped %v, reconnects %v", len(first), len(second), dropped, reconnects)
		})
	}
}

// msgBoundaries returns the offsets where messages start in a stream.
func msgBoundaries(b []byte) []int {
	var out []int
	for off := 0; off+4 <= len(b); {
		out = append(out, off)
		off += int(b[off+2])<<8 | int(b[off+3])
	}
	return out
}

// countRecords counts data records (options included) in an IPFIX stream
// made by chainMessages: data sets have IDs >= 256 and fixed records.
func countRecords(b []byte) int {
	n := 0
	for off := 0; off+16 <= len(b); {
		end := off + (int(b[off+2])<<8 | int(b[off+3]))
		for s := off + 16; s+4 <= end; {
			id := int(b[s])<<8 | int(b[s+1])
			l := int(b[s+2])<<8 | int(b[s+3])
			switch id {
			case 256:
				n += (l - 4) / 45
			case 257:
				n += (l - 4) / 69
			case 258:
				n += (l - 4) / 5
			}
			s += l
		}
		off = end
	}
	return n
}
