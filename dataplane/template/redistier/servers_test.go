package redistier_test

import (
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The tests run real redis-server processes on free loopback ports, each in
// a temporary directory, and stop them afterwards. Without redis-server
// they skip, except under CI, where they fail.

func needRedis(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s not found; `make test-deps` installs it", bin)
			}
			t.Skipf("%s not found: skipping the Redis tests (`make test-deps` installs it)", bin)
		}
	}
}

// redisServer is one redis-server process that can be stopped and started
// again on the same port (with an empty database: nothing is persisted).
type redisServer struct {
	dir  string
	port int
	tls  *tls.Config // set when the port speaks TLS
	args []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func (r *redisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// pickPort returns a loopback port free for TCP, with port+10000 (the
// cluster bus) free too.
func pickPort() (int, error) {
	for range 100 {
		p := 20000 + rand.IntN(20000)
		ok := true
		for _, q := range []int{p, p + 10000} {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(q))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free port")
}

// newRedisServer starts redis-server in dir with extra arguments; with tc
// set, its port speaks TLS (and extra must name the certificate files).
func newRedisServer(dir string, tc *tls.Config, extra ...string) (*redisServer, error) {
	port, err := pickPort()
	if err != nil {
		return nil, err
	}
	r := &redisServer{dir: dir, port: port, tls: tc}
	r.args = append([]string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"), "--protected-mode", "no",
	}, extra...)
	return r, r.Start()
}

// startRedis starts a server for one test and stops it when the test ends.
func startRedis(t testing.TB, tc *tls.Config, extra ...string) *redisServer {
	t.Helper()
	needRedis(t)
	r, err := newRedisServer(t.TempDir(), tc, extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

// Start starts the process and waits until it answers PING.
func (r *redisServer) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return nil
	}
	args := r.args
	if r.tls != nil {
		args = append([]string{"--port", "0", "--tls-port", strconv.Itoa(r.port)}, args[2:]...)
	}
	cmd := exec.Command("redis-server", args...)
	if err := cmd.Start(); err != nil {
		return err
	}
	r.cmd, r.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(r.done)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if r.ping() == nil {
			return nil
		}
		select {
		case <-r.done:
			log, _ := os.ReadFile(filepath.Join(r.dir, "redis.log"))
			r.cmd = nil
			return fmt.Errorf("redis-server exited at start:\n%s", log)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("redis-server on %d did not answer", r.port)
}

func (r *redisServer) ping() error {
	var c net.Conn
	var err error
	if r.tls != nil {
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", r.Addr(), r.tls)
	} else {
		c, err = net.DialTimeout("tcp", r.Addr(), time.Second)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if s := string(buf[:n]); !strings.HasPrefix(s, "+PONG") && !strings.HasPrefix(s, "-NOAUTH") {
		return fmt.Errorf("ping: %q", s)
	}
	return nil
}

// Stop ends the process (SIGTERM, then SIGKILL) and waits for it.
func (r *redisServer) Stop() { r.signal(syscall.SIGTERM) }

// Kill ends the process at once, as a crash would.
func (r *redisServer) Kill() { r.signal(syscall.SIGKILL) }

func (r *redisServer) signal(sig syscall.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(sig)
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
	r.cmd = nil
}

// cli runs redis-cli against r.
func (r *redisServer) cli(args ...string) (string, error) {
	all := append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(r.port)}, args...)
	out, err := exec.Command("redis-cli", all...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// redisCluster is three masters (no replicas) made into a Redis Cluster by
// redis-cli --cluster create.
type redisCluster struct {
	nodes []*redisServer
}

func newRedisCluster(dir string) (*redisCluster, error) {
	rc := &redisCluster{}
	var addrs []string
	for i := range 3 {
		d := filepath.Join(dir, "node"+strconv.Itoa(i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		n, err := newRedisServer(d, nil, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "3000")
		if err != nil {
			rc.Stop()
			return nil, err
		}
		rc.nodes = append(rc.nodes, n)
		addrs = append(addrs, n.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		rc.Stop()
		return nil, fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range rc.nodes {
		for {
			info, _ := n.cli("cluster", "info")
			if strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				rc.Stop()
				return nil, fmt.Errorf("cluster not ok on %s:\n%s", n.Addr(), info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return rc, nil
}

func (rc *redisCluster) Addrs() []string {
	var out []string
	for _, n := range rc.nodes {
		out = append(out, n.Addr())
	}
	return out
}

func (rc *redisCluster) Stop() {
	for _, n := range rc.nodes {
		n.Stop()
	}
}

// Servers shared by the tests that only read and write templates: started
// on first use, stopped by TestMain.
var fixtures struct {
	mu      sync.Mutex
	dir     string
	single  *redisServer
	cluster *redisCluster
}

func sharedRedis(t testing.TB) *redisServer {
	t.Helper()
	needRedis(t)
	fixtures.mu.Lock()
	defer fixtures.mu.Unlock()
	if fixtures.single == nil {
		r, err := newRedisServer(fixtureDir(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		fixtures.single = r
	}
	return fixtures.single
}

func sharedCluster(t testing.TB) *redisCluster {
	t.Helper()
	needRedis(t)
	fixtures.mu.Lock()
	defer fixtures.mu.Unlock()
	if fixtures.cluster == nil {
		dir := filepath.Join(fixtureDir(t), "cluster")
		rc, err := newRedisCluster(dir)
		if err != nil {
			t.Fatal(err)
		}
		fixtures.cluster = rc
	}
	return fixtures.cluster
}

func fixtureDir(t testing.TB) string {
	if fixtures.dir == "" {
		d, err := os.MkdirTemp("", "sluice-redis-")
		if err != nil {
			t.Fatal(err)
		}
		fixtures.dir = d
	}
	d, err := os.MkdirTemp(fixtures.dir, "srv-")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixtures.single != nil {
		fixtures.single.Stop()
	}
	if fixtures.cluster != nil {
		fixtures.cluster.Stop()
	}
	if fixtures.dir != "" {
		os.RemoveAll(fixtures.dir)
	}
	os.Exit(code)
}

// flushAll empties a shared server between tests.
func flushAll(t testing.TB, addrs ...*redisServer) {
	t.Helper()
	for _, r := range addrs {
		if out, err := r.cli("flushall"); err != nil {
			t.Fatalf("flushall: %v: %s", err, out)
		}
	}
}
