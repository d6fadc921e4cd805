package frontend

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func TestEndToEnd(t *testing.T) {
	r := startRedis(t)
	ts := newTestServer(t, r, 1, nil)

	code, _, body := call(t, "GET", ts.url+"/readyz", "", nil)
	want(t, 200, code, body, nil)

	files := map[string]string{
		"softflowd-ipfix.pcap":      typePcap,
		"softflowd-ipfix-tcp.ipfix": typeIPFIX,
		"pmacct-nfprobe-ipfix.pcap": typePcap,
	}
	ids := map[string]string{}
	for name, typ := range files {
		code, _, body := call(t, "POST", ts.url+"/api/v1/files?name="+name, tokenA, mustOpen(t, captures(name)))
		var v struct {
			ID    string
			Type  string
			Bytes int64
		}
		want(t, 201, code, body, &v)
		st, _ := os.Stat(captures(name))
		if v.Type != typ || v.Bytes != st.Size() {
			t.Fatalf("%s: %+v, want type %s and %d bytes", name, v, typ, st.Size())
		}
		stored, err := os.ReadFile(ts.filePath("tenant-a", v.ID))
		orig, _ := os.ReadFile(captures(name))
		if err != nil || !bytes.Equal(stored, orig) {
			t.Fatalf("%s: stored file differs (%v)", name, err)
		}
		ids[name] = v.ID
	}
	code, _, body = call(t, "GET", ts.url+"/api/v1/files", tokenA, nil)
	var list struct{ Files []fileView }
	want(t, 200, code, body, &list)
	if len(list.Files) != 3 {
		t.Fatalf("files: %s", body)
	}

	id := ts.postJob(t, tokenA, "echo", []string{ids["softflowd-ipfix.pcap"]}, `{"data":{"hello":[1,2,3]},"wait_ms":200}`)
	v := ts.waitJob(t, tokenA, id, nil)
	if v.State != stateDone || v.Progress != 1 || v.Started == nil || v.Finished == nil || v.Attempts != 1 ||
		!slices.Equal(v.Formats, []string{"json"}) {
		t.Fatalf("job: %+v", v)
	}
	code, hdr, body := call(t, "GET", ts.url+"/api/v1/jobs/"+id+"/result", tokenA, nil)
	want(t, 200, code, body, nil)
	if string(body) != `{"hello":[1,2,3]}` || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("result %q (%s)", body, hdr.Get("Content-Type"))
	}
	code, _, body = call(t, "GET", ts.url+"/api/v1/jobs/"+id+"/result?format=png", tokenA, nil)
	want(t, 400, code, body, nil)

	// A result larger than the inline bound is kept in DataDir.
	big := `"` + strings.Repeat("x", 300<<10) + `"`
	id2 := ts.postJob(t, tokenA, "echo", nil, `{"data":`+big+`}`)
	if v := ts.waitJob(t, tokenA, id2, nil); v.State != stateDone {
		t.Fatalf("big: %+v", v)
	}
	code, _, body = call(t, "GET", ts.url+"/api/v1/jobs/"+id2+"/result", tokenA, nil)
	want(t, 200, code, body, nil)
	if string(body) != big {
		t.Fatalf("big result: %d bytes", len(body))
	}
	if _, err := os.Stat(ts.resultPath("tenant-a", id2, "json")); err != nil {
		t.Fatalf("big result not in the data directory: %v", err)
	}

	// A failing job says why.
	id3 := ts.postJob(t, tokenA, "echo", nil, `{"fail":"asked to fail"}`)
	if v := ts.waitJob(t, tokenA, id3, nil); v.State != stateFailed || v.Error != "asked to fail" {
		t.Fatalf("failing job: %+v", v)
	}
	code, _, body = call(t, "GET", ts.url+"/api/v1/jobs/"+id3+"/result", tokenA, nil)
	want(t, 409, code, body, nil)

	// Listing, newest first, paged.
	code, _, body = call(t, "GET", ts.url+"/api/v1/jobs?limit=2", tokenA, nil)
	var jobs struct {
		Jobs  []jobView
		Total int
		Next  *int
	}
	want(t, 200, code, body, &jobs)
	if jobs.Total != 3 || len(jobs.Jobs) != 2 || jobs.Jobs[0].ID != id3 || jobs.Jobs[1].ID != id2 || jobs.Next == nil || *jobs.Next != 2 {
		t.Fatalf("list: %s", body)
	}

	// The completion log has one line per finished job.
	waitFor(t, "three completion lines", func() bool { return len(ts.completion.lines()) == 3 })
	var line completionLine
	if err := json.Unmarshal([]byte(ts.completion.lines()[0]), &line); err != nil {
		t.Fatal(err)
	}
	if line.ID != id || line.Tenant != "tenant-a" || line.State != stateDone || line.Type != "echo" || line.RunMS < 200 {
		t.Fatalf("completion line %+v", line)
	}

	// Delete a file.
	code, _, body = call(t, "DELETE", ts.url+"/api/v1/files/"+ids["softflowd-ipfix.pcap"], tokenA, nil)
	want(t, 204, code, body, nil)
	if _, err := os.Stat(ts.filePath("tenant-a", ids["softflowd-ipfix.pcap"])); !os.IsNotExist(err) {
		t.Fatalf("deleted file still there: %v", err)
	}
	code, _, body = ts.postJobRaw(t, tokenA, "echo", []string{ids["softflowd-ipfix.pcap"]}, "")
	want(t, 404, code, body, nil)

	// Metrics.
	code, _, body = call(t, "GET", ts.url+"/metrics", "", nil)
	want(t, 200, code, body, nil)
	for _, s := range []string{`sluice_api_jobs_posted_total{tenant="tenant-a"} 3`, `sluice_api_workers 1`,
		`sluice_api_jobs_finished_total{tenant="tenant-a",state="done"} 2`, `sluice_api_redis_up 1`} {
		if !strings.Contains(string(body), s) {
			t.Errorf("metrics lack %q:\n%s", s, body)
		}
	}
}

func mustOpen(t testing.TB, path string) *os.File {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestWorkerKilled kills a job's worker with SIGKILL: the job completes on
// the other worker and the pool is back to two workers; a job whose two
// workers are killed fails with the reason.
func TestWorkerKilled(t *testing.T) {
	r := startRedis(t)
	ts := newTestServer(t, r, 2, nil)

	id := ts.postJob(t, tokenA, "echo", nil, `{"data":1,"wait_ms":1500}`)
	v := ts.waitJob(t, tokenA, id, func(v jobView) bool { return v.State == stateRunning && v.Worker != "" && v.Progress > 0 })
	killed := workerPID(t, v)
	if err := syscall.Kill(killed, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	v = ts.waitJob(t, tokenA, id, nil)
	if v.State != stateDone || v.Attempts != 2 || workerPID(t, v) == killed {
		t.Fatalf("after the kill: %+v (killed %d)", v, killed)
	}
	waitFor(t, "two workers again", func() bool {
		pids := ts.WorkerPids()
		return len(pids) == 2 && !slices.Contains(pids, killed) && len(ts.Workers()) == 2
	})

	id = ts.postJob(t, tokenA, "echo", nil, `{"data":1,"wait_ms":600000}`)
	for attempt := 1; attempt <= 2; attempt++ {
		v := ts.waitJob(t, tokenA, id, func(v jobView) bool {
			return v.State == stateRunning && v.Attempts == attempt && v.Worker != "" && v.Progress > 0
		})
		if err := syscall.Kill(workerPID(t, v), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	v = ts.waitJob(t, tokenA, id, nil)
	if v.State != stateFailed || !strings.Contains(v.Error, "lost") || v.Attempts != 2 {
		t.Fatalf("after two kills: %+v", v)
	}
	t.Logf("reason: %s", v.Error)
	waitFor(t, "two workers again", func() bool { return len(ts.WorkerPids()) == 2 && len(ts.Workers()) == 2 })
}

// TestReplicas runs two replicas on one Redis: a job posted to one is read
// and canceled through the other, and a job posted to a replica without
// workers runs on the other's.
func TestReplicas(t *testing.T) {
	r := startRedis(t)
	a := newTestServer(t, r, 1, nil)
	b := newTestServer(t, r, -1, nil)

	id := a.postJob(t, tokenA, "echo", nil, `{"wait_ms":600000}`)
	v := b.waitJob(t, tokenA, id, func(v jobView) bool { return v.State == stateRunning && v.Progress > 0 })
	code, _, body := call(t, "DELETE", b.url+"/api/v1/jobs/"+id, tokenA, nil)
	want(t, 200, code, body, &v)
	if v.State != stateCanceled {
		t.Fatalf("canceled through b: %+v", v)
	}
	if v := a.job(t, tokenA, id); v.State != stateCanceled {
		t.Fatalf("read through a: %+v", v)
	}
	// A learns it from Redis and stops the worker: the worker is free again.
	waitFor(t, "a drops the job", func() bool { return a.run.owned() == 0 && a.broker.Free() == 1 })
	code, _, body = call(t, "DELETE", b.url+"/api/v1/jobs/"+id, tokenA, nil)
	want(t, 409, code, body, nil)

	id = b.postJob(t, tokenA, "echo", nil, `{"data":"via b"}`)
	if v := a.waitJob(t, tokenA, id, nil); v.State != stateDone {
		t.Fatalf("job posted to b: %+v", v)
	}
	code, _, body = call(t, "GET", b.url+"/api/v1/jobs/"+id+"/result", tokenA, nil)
	want(t, 200, code, body, nil)
	if string(body) != `"via b"` {
		t.Fatalf("result %q", body)
	}
}

// TestBusy: with the queue full, posts get 429 with Retry-After.
func TestBusy(t *testing.T) {
	r := startRedis(t)
	ts := newTestServer(t, r, -1, func(c *Config) { c.MaxQueued = 2 })
	ts.postJob(t, tokenA, "echo", nil, "")
	ts.postJob(t, tokenB, "echo", nil, "")
	code, hdr, body := ts.postJobRaw(t, tokenA, "echo", nil, "")
	want(t, 429, code, body, nil)
	if hdr.Get("Retry-After") != "5" || strings.TrimSpace(string(body)) != `{"error":"server_busy"}` {
		t.Fatalf("429: Retry-After %q, body %s", hdr.Get("Retry-After"), body)
	}
}

func TestIdempotency(t *testing.T) {
	r := startRedis(t)
	ts := newTestServer(t, r, -1, nil)
	first := ts.postJob(t, tokenA, "echo", nil, `{"data":1}`, "Idempotency-Key", "k1")
	again := ts.postJob(t, tokenA, "echo", nil, `{"data":1}`, "Idempotency-Key", "k1")
	other := ts.postJob(t, tokenA, "echo", nil, `{"data":1}`, "Idempotency-Key", "k2")
	otherTenant := ts.postJob(t, tokenB, "echo", nil, `{"data":1}`, "Idempotency-Key", "k1")
	if first != again || first == other || first == otherTenant {
		t.Fatalf("ids %s %s %s %s", first, again, other, otherTenant)
	}
	code, _, body := call(t, "GET", ts.url+"/api/v1/jobs", tokenA, nil)
	var list struct{ Total int }
	want(t, 200, code, body, &list)
	if list.Total != 2 {
		t.Fatalf("tenant-a has %d jobs, want 2", list.Total)
	}
}

// TestTenants: another tenant's files and jobs are 404 everywhere.
func TestTenants(t *testing.T) {
	r := startRedis(t)
	ts := newTestServer(t, r, 1, nil)
	file := ts.upload(t, tokenA, captures("softflowd-ipfix.pcap"))
	job := ts.postJob(t, tokenA, "echo", []string{file}, `{"data":"secret"}`)
	ts.waitJob(t, tokenA, job, nil)

	for _, c := range []struct{ method, path string }{
		{"GET", "/api/v1/files/" + file},
		{"DELETE", "/api/v1/files/" + file},
		{"GET", "/api/v1/jobs/" + job},
		{"GET", "/api/v1/jobs/" + job + "/result"},
		{"DELETE", "/api/v1/jobs/" + job},
	} {
		code, _, body := call(t, c.method, ts.url+c.path, tokenB, nil)
		want(t, 404, code, body, nil)
	}
	code, _, body := ts.postJobRaw(t, tokenB, "echo", []string{file}, "")
	want(t, 404, code, body, nil)
	for _, path := range []string{"/api/v1/files", "/api/v1/jobs"} {
		code, _, body := call(t, "GET", ts.url+path, tokenB, nil)
		want(t, 200, code, body, nil)
		if strings.Contains(string(body), file) || strings.Contains(string(body), job) {
			t.Fatalf("tenant-b's %s shows tenant-a's: %s", path, body)
		}
	}
	// Still there for its owner.
	if v := ts.job(t, tokenA, job); v.State != stateDone {
		t.Fatalf("%+v", v)
	}
}

func TestTokensReload(t *testing.T) {
	r := startRedis(t)
	ts := newTestServer(t, r, -1, nil)
	const tokenC = "token-of-tenant-c-0123456789"
	if err := os.WriteFile(ts.cfg.TokensFile, []byte(tokenC+" tenant-c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ts.Reload(); err != nil {
		t.Fatal(err)
	}
	code, _, body := call(t, "GET", ts.url+"/api/v1/jobs", tokenC, nil)
	want(t, 200, code, body, nil)
	code, _, body = call(t, "GET", ts.url+"/api/v1/jobs", tokenA, nil)
	want(t, 401, code, body, nil)
	// A broken file keeps the tokens in force.
	if err := os.WriteFile(ts.cfg.TokensFile, []byte("short tenant-d\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ts.Reload(); err == nil {
		t.Fatal("a short token was accepted")
	}
	code, _, body = call(t, "GET", ts.url+"/api/v1/jobs", tokenC, nil)
	want(t, 200, code, body, nil)
}
