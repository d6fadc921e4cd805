package fleet

import (
	"context"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// dnsmasq is a real DNS server (Debian's dnsmasq) on a loopback port,
// answering only for the names its flags give.
type dnsmasq struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

func dnsmasqPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("dnsmasq")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("dnsmasq not found; `make test-deps` installs dnsmasq-base")
		}
		t.Skip("dnsmasq not found: skipping (`make test-deps` installs dnsmasq-base)")
	}
	return p
}

// start runs dnsmasq with records on d.port (a random free one the first
// time) and waits until it answers.
func (d *dnsmasq) start(records ...string) {
	t := d.t
	t.Helper()
	bin := dnsmasqPath(t)
	for attempt := 0; attempt < 20; attempt++ {
		if d.port == 0 || attempt > 0 && d.cmd == nil {
			d.port = 20000 + rand.IntN(20000)
		}
		args := []string{"--keep-in-foreground", "--conf-file=/dev/null", "--port=" + strconv.Itoa(d.port),
			"--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts", "--no-poll",
			"--pid-file=", "--user=" + currentUser(), "--local=/sluice.test/", "--log-facility=-"}
		cmd := exec.Command(bin, append(args, records...)...)
		var out strings.Builder
		cmd.Stderr = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-done:
				if strings.Contains(out.String(), "in use") {
					goto retry
				}
				t.Fatalf("dnsmasq exited: %s", out.String())
			default:
			}
			if _, err := d.resolver().LookupHost(context.Background(), "ready.sluice.test"); err == nil {
				d.cmd, d.done = cmd, done
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("dnsmasq did not answer: %s", out.String())
	retry:
		d.cmd = nil
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no free port for dnsmasq")
}

func (d *dnsmasq) stop() {
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.done
	d.cmd = nil
}

func currentUser() string {
	if os.Geteuid() == 0 {
		return "root"
	}
	return strconv.Itoa(os.Geteuid())
}

func (d *dnsmasq) resolver() *net.Resolver {
	addr := "127.0.0.1:" + strconv.Itoa(d.port)
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, network, addr)
	}}
}

// TestDNSDiscovery resolves a headless Service's SRV records through a
// real DNS server, follows a pod added and one removed when the records
// change, and falls back to A records with the configured port.
func TestDNSDiscovery(t *testing.T) {
	d := &dnsmasq{t: t}
	t.Cleanup(d.stop)
	host := func(name, ip string) string { return "--host-record=" + name + ".collectors.sluice.test," + ip }
	srv := func(name string, port int) string {
		return "--srv-host=_api._tcp.collectors.sluice.test," + name + ".collectors.sluice.test," + strconv.Itoa(port)
	}
	d.start("--host-record=ready.sluice.test,127.0.0.9",
		host("collector-0", "127.0.0.10"), host("collector-1", "127.0.0.11"),
		srv("collector-0", 8080), srv("collector-1", 8081))

	var mu sync.Mutex
	var got [][]Member
	update := func(ms []Member) {
		mu.Lock()
		got = append(got, ms)
		mu.Unlock()
	}
	last := func() []Member {
		mu.Lock()
		defer mu.Unlock()
		if len(got) == 0 {
			return nil
		}
		return got[len(got)-1]
	}
	waitMembers := func(want []Member) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !slices.Equal(last(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("members %+v, want %+v", last(), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = DNS{Name: "_api._tcp.collectors.sluice.test", Interval: 50 * time.Millisecond, Resolver: d.resolver()}.Run(ctx, update)
	}()
	waitMembers([]Member{{Name: "collector-0", URL: "http://127.0.0.10:8080"}, {Name: "collector-1", URL: "http://127.0.0.11:8081"}})

	// The StatefulSet scaled: collector-1 gone, collector-2 added. While
	// the server restarts, lookups fail and the last answer stays.
	d.stop()
	d.start("--host-record=ready.sluice.test,127.0.0.9",
		host("collector-0", "127.0.0.10"), host("collector-2", "127.0.0.12"),
		srv("collector-0", 8080), srv("collector-2", 8082))
	waitMembers([]Member{{Name: "collector-0", URL: "http://127.0.0.10:8080"}, {Name: "collector-2", URL: "http://127.0.0.12:8082"}})
	mu.Lock()
	for _, ms := range got {
		if len(ms) == 0 {
			t.Errorf("an empty set was announced while the server restarted: %+v", got)
		}
	}
	mu.Unlock()
	cancel()
	<-done

	// A records only: every address with the configured port.
	got = nil
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_ = DNS{Name: "collector-0.collectors.sluice.test", Port: 9090, Interval: time.Hour, Resolver: d.resolver()}.Run(ctx, update)
	}()
	waitMembers([]Member{{Name: "127.0.0.10:9090", URL: "http://127.0.0.10:9090"}})
}
