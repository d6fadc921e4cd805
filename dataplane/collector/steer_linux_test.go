package collector_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/bpf"
	"github.com/sluice-flow/sluice/dataplane/collector"
	"github.com/sluice-flow/sluice/dataplane/internal/testnet"
	"github.com/sluice-flow/sluice/internal/testenv"
)

// The steering tests run the real program in the real collector: at least
// 32 exporters on loopback (127.0.0.x sources), each sending from several
// source ports, two observation domains each; the API's "loops" says which
// loops saw each (exporter, domain). They need root (CI runs them so).

const (
	steerExporters = 40
	steerPorts     = 4 // source ports per exporter and domain
	steerMsgs      = 3 // data messages per source port
)

var steerDomains = []uint32{7, 1 << 20}

func steerSource(i int) netip.Addr { return netip.AddrFrom4([4]byte{127, 0, 3, byte(10 + i)}) }

type edKey struct {
	exporter string
	domain   uint32
}

func startSteered(t *testing.T, loops int, steer string, allow ...netip.Prefix) *harness {
	t.Helper()
	h := start(t, collector.Config{Loops: loops, Steer: steer, AllowExporters: allow}, true)
	if steer == collector.SteerKernel {
		if st := h.c.Steering(); st.Mode != collector.SteerKernel {
			t.Fatalf("steering %+v, want kernel", st)
		}
		return h
	}
	deadline := time.Now().Add(10 * time.Second)
	for st := h.c.Steering(); !st.Ready; st = h.c.Steering() {
		if st.Mode == collector.SteerKernel {
			testenv.SkipOrFail(t, "eBPF steering unavailable (needs root, as CI runs): %s", st.Reason)
		}
		if time.Now().After(deadline) {
			t.Fatalf("steering not ready: %+v", st)
		}
		time.Sleep(time.Millisecond)
	}
	return h
}

// sendExporters makes every exporter send, from steerPorts source ports per
// domain, a template and steerMsgs data messages of 5 records; it returns
// how many records it sent.
func sendExporters(t *testing.T, h *harness, sources []netip.Addr) uint64 {
	t.Helper()
	dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: h.port}
	var records uint64
	for _, src := range sources {
		for _, d := range steerDomains {
			for range steerPorts {
				conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: src.AsSlice()})
				if err != nil {
					t.Fatal(err)
				}
				tpl, data, _ := exporterMsgs(d, steerMsgs, 5)
				for _, m := range append([][]byte{tpl}, data...) {
					if _, err := conn.WriteToUDP(m, dst); err != nil {
						t.Fatal(err)
					}
				}
				conn.Close()
				records += steerMsgs * 5
			}
		}
	}
	return records
}

// loopsOf returns the loops that saw each (exporter, domain) over UDP.
func loopsOf(h *harness) map[edKey][]int {
	out := map[edKey][]int{}
	for _, e := range h.c.Exporters() {
		if e.Transport == "udp" {
			out[edKey{e.Exporter, e.ObservationDomain}] = e.Loops
		}
	}
	return out
}

func sources(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = steerSource(i)
	}
	return out
}

// runSteered starts a collector, sends the exporters' traffic, waits for
// every record, and returns the loop of each (exporter, domain) (failing
// if one was seen by more than one loop) and the collector.
func runSteered(t *testing.T, loops int) (map[edKey]int, *harness) {
	t.Helper()
	h := startSteered(t, loops, collector.SteerEBPF)
	h.waitRecords(t, sendExporters(t, h, sources(steerExporters)))
	got := map[edKey]int{}
	for k, ls := range loopsOf(h) {
		if len(ls) != 1 {
			t.Errorf("%v seen by loops %v, want one", k, ls)
			continue
		}
		got[k] = ls[0]
		// The loop is the one the Go mirror of the program names.
		hdr := make([]byte, 16)
		hdr[1] = 10
		hdr[12], hdr[13], hdr[14], hdr[15] = byte(k.domain>>24), byte(k.domain>>16), byte(k.domain>>8), byte(k.domain)
		if want := bpf.Pick(netip.MustParseAddr(k.exporter), hdr, loops); ls[0] != want {
			t.Errorf("%v on loop %d, the program's hash says %d", k, ls[0], want)
		}
	}
	if len(got) != steerExporters*len(steerDomains) {
		t.Fatalf("%d (exporter, domain) entries, want %d", len(got), steerExporters*len(steerDomains))
	}
	perLoop := make([]int, loops)
	for _, l := range got {
		perLoop[l]++
	}
	for i, n := range perLoop {
		if n == 0 {
			t.Errorf("loop %d got no exporter of %d", i, len(got))
		}
	}
	t.Logf("%d loops: (exporter, domain) entries per loop %v", loops, perLoop)
	return got, h
}

func TestSteerEBPFOneLoopPerExporterDomain(t *testing.T) {
	for _, loops := range []int{2, 4} {
		t.Run(strconv.Itoa(loops), func(t *testing.T) {
			_, h := runSteered(t, loops)
			// Every datagram went through the program, and the loops'
			// datagrams add up.
			sent := float64(steerExporters * len(steerDomains) * steerPorts * (1 + steerMsgs))
			if v := h.metricValue(`sluice_steer_datagrams_total{result="steered"}`); v != sent {
				t.Errorf("steered %v datagrams, sent %v\n%s", v, sent, h.c.AppendMetrics(nil))
			}
			if v := h.metricValue("sluice_loop_datagrams_total"); v != sent {
				t.Errorf("loops received %v datagrams, sent %v", v, sent)
			}
			// The admin API shows the loops as a JSON list.
			b, err := json.Marshal(h.c.Exporters()[0])
			if err != nil || !regexp.MustCompile(`"loops":\[\d\]`).Match(b) {
				t.Errorf("exporter entry %s (%v) has no one-loop \"loops\" list", b, err)
			}
		})
	}
}

// TestSteerKernelSpreads shows what steering fixes: with the kernel's hash
// an exporter's source ports reach several loops.
func TestSteerKernelSpreads(t *testing.T) {
	for _, loops := range []int{2, 4} {
		t.Run(strconv.Itoa(loops), func(t *testing.T) {
			h := startSteered(t, loops, collector.SteerKernel)
			h.waitRecords(t, sendExporters(t, h, sources(steerExporters)))
			spread := 0
			hist := make([]int, loops+1)
			for _, ls := range loopsOf(h) {
				hist[len(ls)]++
				if len(ls) > 1 {
					spread++
				}
			}
			t.Logf("kernel hashing, %d loops: (exporter, domain) entries by number of loops that saw them %v", loops, hist)
			// From 4 source ports each, all on one loop has probability
			// 1/loops^3 per entry: 80 entries on one loop each would be
			// a broken test, not luck.
			if spread < steerExporters*len(steerDomains)/2 {
				t.Errorf("only %d entries of %d reached more than one loop", spread, steerExporters*len(steerDomains))
			}
		})
	}
}

func TestSteerStableAcrossRestartsAndGrowth(t *testing.T) {
	first, h := runSteered(t, 2)
	h.stop(t)
	again, h := runSteered(t, 2)
	h.stop(t)
	for k, l := range first {
		if again[k] != l {
			t.Errorf("%v moved from loop %d to %d across a restart", k, l, again[k])
		}
	}
	grown, _ := runSteered(t, 4)
	moved := 0
	for k, l := range first {
		if grown[k] != l {
			moved++
			// Jump hash: a key moves only to a new loop.
			if grown[k] < 2 {
				t.Errorf("%v moved from loop %d to old loop %d", k, l, grown[k])
			}
		}
	}
	share := float64(moved) / float64(len(first))
	t.Logf("2 -> 4 loops: %d of %d (exporter, domain) moved (%.2f)", moved, len(first), share)
	if share < 0.3 || share > 0.7 {
		t.Errorf("2 -> 4 loops moved %.2f of the exporters, want about half", share)
	}
}

func TestSteerAllowExporters(t *testing.T) {
	// The first 16 sources (127.0.3.10 .. 127.0.3.25) lie in the list.
	allow := []netip.Prefix{netip.MustParsePrefix("127.0.3.8/29"), netip.MustParsePrefix("127.0.3.16/29"),
		netip.MustParsePrefix("127.0.3.24/31"), netip.MustParsePrefix("2001:db8::/32")}
	h := startSteered(t, 2, collector.SteerEBPF, allow...)
	var in, out []netip.Addr
	for _, s := range sources(steerExporters) {
		if s.As4()[3] < 26 {
			in = append(in, s)
		} else {
			out = append(out, s)
		}
	}
	sendExporters(t, h, out)
	denied := float64(len(out) * len(steerDomains) * steerPorts * (1 + steerMsgs))
	if !h.waitMetric(`sluice_steer_datagrams_total{result="denied"}`, func(v float64) bool { return v == denied }) {
		t.Fatalf("denied %v datagrams, want %v", h.metricValue(`sluice_steer_datagrams_total{result="denied"}`), denied)
	}
	h.waitRecords(t, sendExporters(t, h, in))
	seen := loopsOf(h)
	if len(seen) != len(in)*len(steerDomains) {
		t.Errorf("%d (exporter, domain) entries, want %d (the listed ones)", len(seen), len(in)*len(steerDomains))
	}
	for k := range seen {
		a := netip.MustParseAddr(k.exporter)
		if a.As4()[3] >= 26 {
			t.Errorf("%v is not listed, yet reached the collector", k)
		}
	}
	if v := h.metricValue(`sluice_steer_datagrams_total{result="denied"}`); v != denied {
		t.Errorf("denied %v datagrams, want %v", v, denied)
	}
	metrics := string(h.c.AppendMetrics(nil))
	for _, want := range []string{`sluice_loop_datagrams_total{loop="0"}`, `sluice_loop_datagrams_total{loop="1"}`,
		`sluice_template_cache_lookups_total{loop="1",result="hit"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestSteerConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  collector.Config
		want string
	}{
		{collector.Config{Steer: "bpf"}, "steer"},
		{collector.Config{Steer: collector.SteerEBPF, SharePort: true}, "share_port"},
		{collector.Config{AllowExporters: []netip.Prefix{{}}}, "allow_exporters[0]"},
		{collector.Config{AllowExporters: make([]netip.Prefix, bpf.MaxAllow+1)}, "allow_exporters"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one naming %s", c.cfg, err, c.want)
		}
	}
	for _, s := range []string{"", collector.SteerAuto, collector.SteerEBPF, collector.SteerKernel} {
		if err := (collector.Config{Steer: s}).Validate(); err != nil {
			t.Errorf("steer %q: %v", s, err)
		}
	}
}

// TestSteerAutoWithoutPrivilege: without CAP_BPF and CAP_NET_ADMIN, auto
// falls back to the kernel's hashing with one log line saying why, and
// ebpf refuses to start. As root the test runs itself again as nobody.
func TestSteerAutoWithoutPrivilege(t *testing.T) {
	if os.Geteuid() == 0 && os.Getenv("SLUICE_STEER_UNPRIVILEGED") == "" {
		// The test binary sits in a directory only root may enter.
		dir, err := os.MkdirTemp("", "sluice-steer-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		bin, err := os.ReadFile(os.Args[0])
		if err == nil {
			err = os.WriteFile(dir+"/collector.test", bin, 0o755)
		}
		if err == nil {
			err = os.Chmod(dir, 0o755)
		}
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(dir+"/collector.test", "-test.run=^TestSteerAutoWithoutPrivilege$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "SLUICE_STEER_UNPRIVILEGED=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestSteerAutoWithoutPrivilege") {
			t.Fatalf("as nobody: %v\n%s", err, out)
		}
		return
	}
	// The event loops may still log as they wind down: the buffer is
	// shared.
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	port := testnet.FreePort(t, "127.0.0.1")
	listen := []string{"udp://127.0.0.1:" + strconv.Itoa(port)}
	c, err := collector.New(collector.Config{Listen: listen, Loops: 2}, log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	<-c.Booted()
	st := c.Steering()
	if st.Mode != collector.SteerKernel || !strings.Contains(st.Reason, "privilege") {
		t.Errorf("steering %+v, want kernel for lack of privilege", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(logs.String(), "udp steering"); n != 1 {
		t.Errorf("%d log lines about steering, want 1:\n%s", n, logs.String())
	}
	c, err = collector.New(collector.Config{Listen: listen, Loops: 2, Steer: collector.SteerEBPF}, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "steer ebpf") {
		t.Errorf("steer ebpf without privilege: Run returned %v", err)
	}
}

// lockedBuffer is a log destination safe for concurrent writers and readers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
