package frontend

import (
	"strings"
	"syscall"
	"testing"
)

// TestRedisDown stops Redis (SIGSTOP: unreachable, its data kept) while a
// job runs: new files and jobs get 503, health and metrics still answer,
// and the job's outcome is written once Redis answers again.
func TestRedisDown(t *testing.T) {
	r := startRedis(t)
	ts := newTestServer(t, r, 1, nil)
	file := ts.upload(t, tokenA, captures("softflowd-ipfix.pcap"))
	id := ts.postJob(t, tokenA, "echo", []string{file}, `{"data":"kept","wait_ms":1000}`)
	ts.waitJob(t, tokenA, id, func(v jobView) bool { return v.State == stateRunning && v.Progress > 0 })

	if err := r.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			_ = r.cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	waitFor(t, "readyz to see redis down", func() bool {
		code, _, body := call(t, "GET", ts.url+"/readyz", "", nil)
		return code == 503 && strings.Contains(string(body), `"redis":false`)
	})
	code, _, body := ts.postJobRaw(t, tokenA, "echo", nil, "")
	want(t, 503, code, body, nil)
	code, _, body = call(t, "POST", ts.url+"/api/v1/files", tokenA, mustOpen(t, captures("softflowd-ipfix.pcap")))
	want(t, 503, code, body, nil)
	code, _, body = call(t, "GET", ts.url+"/healthz", "", nil)
	want(t, 200, code, body, nil)
	code, _, body = call(t, "GET", ts.url+"/metrics", "", nil)
	if want(t, 200, code, body, nil); !strings.Contains(string(body), "sluice_api_redis_up 0") {
		t.Fatalf("metrics: %s", body)
	}
	// The job ends on the worker (it is idle again) while Redis is away.
	waitFor(t, "the worker to finish", func() bool { return ts.broker.Free() == 1 })
	if ts.run.owned() != 1 {
		t.Fatalf("owned %d: the outcome should wait for Redis", ts.run.owned())
	}

	if err := r.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	v := ts.waitJob(t, tokenA, id, nil)
	if v.State != stateDone {
		t.Fatalf("after redis came back: %+v", v)
	}
	code, _, body = call(t, "GET", ts.url+"/api/v1/jobs/"+id+"/result", tokenA, nil)
	if want(t, 200, code, body, nil); string(body) != `"kept"` {
		t.Fatalf("result %q", body)
	}
	waitFor(t, "ready again", func() bool {
		code, _, _ := call(t, "GET", ts.url+"/readyz", "", nil)
		return code == 200
	})
	ts.postJob(t, tokenA, "echo", nil, "")
}
