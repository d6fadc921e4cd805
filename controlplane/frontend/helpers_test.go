package frontend

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The tests run a real redis-server on a free loopback port and real
// worker processes built from cmd/sluice-api. Without redis-server they
// skip, except under CI, where they fail.

var apiBinary struct {
	once sync.Once
	path string
	err  error
	dir  string
}

// workerBinary builds cmd/sluice-api once per test binary.
func workerBinary(t testing.TB) string {
	t.Helper()
	apiBinary.once.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-api-test-")
		if err != nil {
			apiBinary.err = err
			return
		}
		apiBinary.dir = dir
		apiBinary.path = filepath.Join(dir, "sluice-api")
		out, err := exec.Command("go", "build", "-o", apiBinary.path, "github.com/sluice-flow/sluice/cmd/sluice-api").CombinedOutput()
		if err != nil {
			apiBinary.err = fmt.Errorf("go build cmd/sluice-api: %v\n%s", err, out)
		}
	})
	if apiBinary.err != nil {
		t.Fatal(apiBinary.err)
	}
	return apiBinary.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if apiBinary.dir != "" {
		os.RemoveAll(apiBinary.dir)
	}
	os.Exit(code)
}

// redisServer is one redis-server process on a free loopback port.
type redisServer struct {
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

func (r *redisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

func startRedis(t testing.TB) *redisServer {
	t.Helper()
	return startRedisArgs(t, func(port int) []string { return []string{"--port", strconv.Itoa(port)} })
}

// startRedisTLS starts a redis-server that speaks only TLS, with the
// certificate and key given (clients need no certificate).
func startRedisTLS(t testing.TB, certFile, keyFile string) *redisServer {
	t.Helper()
	return startRedisArgs(t, func(port int) []string {
		return []string{"--port", "0", "--tls-port", strconv.Itoa(port), "--tls-cert-file", certFile,
			"--tls-key-file", keyFile, "--tls-ca-cert-file", certFile, "--tls-auth-clients", "no"}
	})
}

// startRedisArgs starts a redis-server listening as listen(port) says.
func startRedisArgs(t testing.TB, listen func(port int) []string) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server not found; `make test-deps` installs it")
		}
		t.Skip("redis-server not found: skipping (`make test-deps` installs it)")
	}
	dir := t.TempDir()
	for range 20 {
		port := 20000 + rand.IntN(20000)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		l.Close()
		r := &redisServer{port: port, done: make(chan struct{})}
		args := append(listen(port), "--bind", "127.0.0.1", "--save", "",
			"--appendonly", "no", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"), "--protected-mode", "no")
		r.cmd = exec.Command("redis-server", args...)
		if err := r.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = r.cmd.Wait(); close(r.done) }()
		t.Cleanup(func() {
			_ = r.cmd.Process.Signal(syscall.SIGCONT)
			_ = r.cmd.Process.Kill()
			<-r.done
		})
		if r.listening(t, filepath.Join(dir, "redis.log")) {
			return r
		}
		// Another process took the port between the probe and the
		// start (parallel test packages): try another.
	}
	t.Fatal("no free port")
	return nil
}

// listening waits until r accepts connections; false if it exited because
// its port was taken, fatal for any other end.
func (r *redisServer) listening(t testing.TB, logFile string) bool {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", r.Addr(), time.Second); err == nil {
			c.Close()
			return true
		}
		select {
		case <-r.done:
			log, _ := os.ReadFile(logFile)
			if strings.Contains(string(log), "in use") {
				return false
			}
			t.Fatalf("redis-server on port %d exited:\n%s", r.port, log)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatal("redis-server did not listen")
	return false
}

// Tokens of the test tenants.
const (
	tokenA = "token-of-tenant-a-0123456789"
	tokenB = "token-of-tenant-b-0123456789"
)

// syncBuffer is a completion log the test can read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Split(strings.TrimSpace(s.b.String()), "\n")
}

type testServer struct {
	*Server
	url        string
	completion *syncBuffer
}

// testHeartbeat is short so lost workers are found quickly.
const testHeartbeat = 100 * time.Millisecond

// newTestServer starts a Server with workers processes (negative: none)
// on r; edit changes the config first.
func newTestServer(t testing.TB, r *redisServer, workers int, edit func(*Config)) *testServer {
	t.Helper()
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("# test tenants\n"+tokenA+" tenant-a\n"+tokenB+" tenant-b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	comp := &syncBuffer{}
	cfg := Config{
		Listen:        "127.0.0.1:0",
		Redis:         RedisConfig{Addrs: []string{r.Addr()}, Timeout: 500 * time.Millisecond},
		DataDir:       filepath.Join(dir, "data"),
		TokensFile:    tokens,
		Broker:        "ipc://" + filepath.Join(dir, "broker.sock"),
		Workers:       workers,
		Heartbeat:     testHeartbeat,
		Lease:         2 * time.Second,
		EchoJobs:      true,
		CompletionLog: comp,
	}
	if workers >= 0 {
		bin := workerBinary(t)
		cfg.WorkerCommand = func(broker string) *exec.Cmd {
			cmd := exec.Command(bin, "worker", "--broker", broker, "--heartbeat", testHeartbeat.String(), "--echo-jobs")
			cmd.Stderr = os.Stderr
			return cmd
		}
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg, Analysis{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	ts := &testServer{Server: s, url: "http://" + s.Addr(), completion: comp}
	if workers > 0 {
		waitFor(t, "workers up", func() bool { return len(s.Workers()) == workers })
	}
	return ts
}

// waitFor polls cond until it holds, failing the test after 20s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// call makes a request and returns the status, headers and body.
func call(t testing.TB, method, url, token string, body io.Reader, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// want checks a status and decodes the JSON body into v (if not nil).
func want(t testing.TB, code int, gotCode int, body []byte, v any) {
	t.Helper()
	if gotCode != code {
		t.Fatalf("status %d, want %d: %s", gotCode, code, body)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("body %q: %v", body, err)
		}
	}
}

func (ts *testServer) upload(t testing.TB, token, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	code, _, body := call(t, "POST", ts.url+"/api/v1/files?name="+filepath.Base(path), token, f)
	var v struct{ ID string }
	want(t, 201, code, body, &v)
	return v.ID
}

func (ts *testServer) postJob(t testing.TB, token, typ string, files []string, params string, hdr ...string) string {
	t.Helper()
	code, _, body := ts.postJobRaw(t, token, typ, files, params, hdr...)
	var v struct{ ID string }
	want(t, 202, code, body, &v)
	return v.ID
}

func (ts *testServer) postJobRaw(t testing.TB, token, typ string, files []string, params string, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	if files == nil {
		files = []string{}
	}
	req, _ := json.Marshal(struct {
		Type   string          `json:"type"`
		Files  []string        `json:"files"`
		Params json.RawMessage `json:"params,omitempty"`
	}{typ, files, json.RawMessage(params)})
	return call(t, "POST", ts.url+"/api/v1/jobs", token, bytes.NewReader(req), hdr...)
}

func (ts *testServer) job(t testing.TB, token, id string) jobView {
	t.Helper()
	code, _, body := call(t, "GET", ts.url+"/api/v1/jobs/"+id, token, nil)
	var v jobView
	want(t, 200, code, body, &v)
	return v
}

// waitJob waits until job id is in a final state, or cond holds.
func (ts *testServer) waitJob(t testing.TB, token, id string, cond func(jobView) bool) jobView {
	t.Helper()
	var v jobView
	waitFor(t, "job "+id, func() bool {
		v = ts.job(t, token, id)
		if cond != nil {
			return cond(v)
		}
		return v.State == stateDone || v.State == stateFailed || v.State == stateCanceled
	})
	return v
}

// workerPID is the pid in a job's worker field ("host/pid").
func workerPID(t testing.TB, v jobView) int {
	t.Helper()
	_, p, _ := strings.Cut(v.Worker, "/")
	pid, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("worker %q: %v", v.Worker, err)
	}
	return pid
}

func captures(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "captures", name)
}
