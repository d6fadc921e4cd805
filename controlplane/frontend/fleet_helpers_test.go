package frontend

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/controlplane/fleet"
)

// The fleet tests run real `sluice run` processes built from cmd/sluice.

var sluiceBin struct {
	once sync.Once
	path string
	err  error
}

func sluiceBinary(t testing.TB) string {
	t.Helper()
	sluiceBin.once.Do(func() {
		workerBinary(t) // makes apiBinary.dir, removed by TestMain
		sluiceBin.path = filepath.Join(apiBinary.dir, "sluice")
		cmd := exec.Command("go", "build", "-o", sluiceBin.path, "github.com/sluice-flow/sluice/cmd/sluice")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			sluiceBin.err = fmt.Errorf("go build cmd/sluice: %v\n%s", err, out)
		}
	})
	if sluiceBin.err != nil {
		t.Fatal(sluiceBin.err)
	}
	return sluiceBin.path
}

// collectorToken is the pods' admin token in the fleet tests.
const collectorToken = "collector-token-0123456789"

// collector is one `sluice run` process: a UDP flow port and an admin port
// on 127.0.0.1, run in its own directory (relative outputs land there).
type collector struct {
	t     testing.TB
	dir   string
	flow  int
	admin int
	extra []string // more `sluice run` flags
	cmd   *exec.Cmd
	done  chan struct{}
	out   *syncBuffer
}

// freeTCPPort returns a loopback TCP port that was free a moment ago.
func freeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func freeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// startCollector starts `sluice run` in dir (a fresh one if "") with
// extra flags and waits for /readyz.
func startCollector(t testing.TB, dir string, extra ...string) *collector {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	c := &collector{t: t, dir: dir, extra: extra}
	for attempt := 0; ; attempt++ {
		c.flow, c.admin = freeUDPPort(t), freeTCPPort(t)
		if err := c.start(); err == nil {
			break
		} else if attempt == 2 {
			t.Fatal(err)
		}
	}
	t.Cleanup(c.kill)
	return c
}

func (c *collector) url() string  { return "http://127.0.0.1:" + strconv.Itoa(c.admin) }
func (c *collector) name() string { return "127.0.0.1:" + strconv.Itoa(c.admin) }

func (c *collector) start() error {
	tokenFile := filepath.Join(c.dir, "token")
	if err := os.WriteFile(tokenFile, []byte(collectorToken+"\n"), 0o600); err != nil {
		return err
	}
	// Pipelines put through the API may write only under the pod's own
	// directory (api_files; the default, /var/lib/sluice, is not there).
	cfgFile := filepath.Join(c.dir, "sluice.yaml")
	if err := os.WriteFile(cfgFile, []byte("api_files:\n  write_dir: "+c.dir+"\n"), 0o600); err != nil {
		return err
	}
	c.out = &syncBuffer{}
	c.cmd = exec.Command(sluiceBinary(c.t), "run", "--config", cfgFile, "--listen", "udp://127.0.0.1:"+strconv.Itoa(c.flow),
		"--admin", "127.0.0.1:"+strconv.Itoa(c.admin), "--admin-token-file", tokenFile,
		"--output", "discard", "--loops", "1", "--log-level", "info")
	c.cmd.Args = append(c.cmd.Args, c.extra...)
	c.cmd.Dir = c.dir
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		return err
	}
	c.done = make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-c.done:
			return fmt.Errorf("sluice run exited:\n%s", strings.Join(c.out.lines(), "\n"))
		default:
		}
		if resp, err := http.Get(c.url() + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.kill()
	return fmt.Errorf("sluice run not ready within 15 s:\n%s", strings.Join(c.out.lines(), "\n"))
}

// kill stops the process at once (SIGKILL: a crash, no drain).
func (c *collector) kill() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// restart starts the process again on the same ports and directory.
func (c *collector) restart() {
	c.t.Helper()
	c.kill()
	var err error
	for range 50 { // the kernel may hold the admin port for a moment
		if err = c.start(); err == nil {
			return
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatal(err)
}

// podPipeline reads the pipeline file a pod has in force, directly.
func (c *collector) pipeline() (string, error) {
	req, _ := http.NewRequest("GET", c.url()+"/api/v1/pipeline", nil)
	req.Header.Set("Authorization", "Bearer "+collectorToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var v struct{ Pipeline string }
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if err := json.Unmarshal(b.Bytes(), &v); err != nil {
		return "", err
	}
	return v.Pipeline, nil
}

// fleetServer starts a frontend (no workers) managing the pods disc finds.
func fleetServer(t testing.TB, r *redisServer, disc fleet.Discovery, edit func(*Config)) *testServer {
	t.Helper()
	return newTestServer(t, r, -1, func(c *Config) {
		c.Collectors = disc
		c.Fleet = fleet.Config{Token: collectorToken, Timeout: 500 * time.Millisecond,
			Reconcile: 100 * time.Millisecond, Sample: 200 * time.Millisecond, MaxReplicas: 5}
		if edit != nil {
			edit(c)
		}
	})
}

func staticOf(cs ...*collector) fleet.Static {
	var urls []string
	for _, c := range cs {
		urls = append(urls, c.url())
	}
	st, err := fleet.ParseStatic(strings.Join(urls, ","))
	if err != nil {
		panic(err)
	}
	return st
}
