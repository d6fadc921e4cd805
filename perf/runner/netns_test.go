//go:build linux

package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/internal/testenv"
)

// needNetns makes sure the test can create network namespaces: root and
// iproute2's ip (make test-deps installs iproute2). Without them the test
// skips, and fails in CI.
func needNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(t, "network namespaces need root (euid %d)", os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		testenv.SkipOrFail(t, "ip (iproute2) not found: %v", err)
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		testenv.SkipOrFail(t, "taskset (util-linux) not found: %v", err)
	}
}

// buildSluice builds the real sluice binary once per test binary.
func buildSluice(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sluice")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/sluice-flow/sluice/cmd/sluice")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build sluice: %v\n%s", err, out)
	}
	return bin
}

func assertNSGone(t *testing.T, v *vethNS) {
	t.Helper()
	if nsExists(v.Name) {
		t.Errorf("namespace %s still exists", v.Name)
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), v.Name) {
		t.Errorf("ip netns list still shows %s:\n%s", v.Name, out)
	}
	for _, dev := range []string{v.HostDev, v.NSDev} {
		if _, err := net.InterfaceByName(dev); err == nil {
			t.Errorf("interface %s still exists in the root namespace", dev)
		}
	}
}

func sysCounter(t *testing.T, dev, name string) float64 {
	t.Helper()
	b, err := os.ReadFile("/sys/class/net/" + dev + "/statistics/" + name)
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestNetnsStep runs one real step the way `make perf-netns` does: sluice
// run in the root namespace on the veth's address, sluice gen in the
// runner's namespace, both pinned where there are two CPUs, at a low rate
// for a second. Every record the generator sent must be decoded, the
// datagrams must have come in through the veth, and the namespace and both
// veth ends must be gone after Close.
func TestNetnsStep(t *testing.T) {
	needNetns(t)
	sluice := buildSluice(t)
	cfg := config{mode: "netns", netns: true, sluice: sluice, gen: sluice, records: 30, exporters: 2,
		// The drain ends as soon as every record is counted; a long settle
		// time only keeps a busy machine's stalls from ending it early.
		step: time.Second, drainTimeout: 30 * time.Second, settle: 10 * time.Second, genBurst: time.Millisecond,
		genShortfall: 0.95, resultsDir: t.TempDir(), readyTimeout: 2 * time.Minute, genSlack: 2 * time.Minute}
	if runtime.NumCPU() >= 2 {
		cfg.genCPUs, cfg.receiverCPUs = "1", "0"
	}
	r := &runner{cfg: cfg, started: time.Now(), logDir: t.TempDir()}
	r.genCPUs, _ = parseCPUList(cfg.genCPUs)
	r.recCPUs, _ = parseCPUList(cfg.receiverCPUs)
	var err error
	if r.ns, err = newVethNS(); err != nil {
		t.Fatal(err)
	}
	v := r.ns
	t.Cleanup(func() { v.Close() })
	if !benchRange.Contains(v.HostAddr) || !benchRange.Contains(v.NSAddr) {
		t.Errorf("addresses %s, %s outside %s", v.HostAddr, v.NSAddr, benchRange)
	}
	rxBefore := sysCounter(t, v.HostDev, "rx_packets")

	s, err := r.runStep(Target{Kind: kindSluice, Output: "discard", Veth: true}, 30000, stepOpts{phase: "ladder"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("step: %s", stepLine(s))
	if s.Path != "veth" {
		t.Errorf("path %q, want veth", s.Path)
	}
	checkDecoded(t, s)
	// The step's datagrams and the warm-up's (16 exporters, one data
	// message and one template each) crossed the veth pair.
	if rx := sysCounter(t, v.HostDev, "rx_packets") - rxBefore; rx < float64(s.GenMessages+s.GenTemplates) {
		t.Errorf("%s received %.0f packets; the generator sent %d messages", v.HostDev, rx, s.GenMessages+s.GenTemplates)
	}
	if s.GenCPU <= 0 || s.CPUSeconds <= 0 {
		t.Errorf("CPU seconds: generator %.3f, sluice %.3f; want both above 0", s.GenCPU, s.CPUSeconds)
	}
	if s.SystemCPUSeconds > s.CPUSeconds {
		t.Errorf("system CPU %.3f s above the total %.3f s", s.SystemCPUSeconds, s.CPUSeconds)
	}
	if len(r.recCPUs) > 0 && s.RecvCPUBusy <= 0 {
		t.Errorf("receiver CPU busy %.3f cores: /proc/stat of CPU %s not read", s.RecvCPUBusy, cfg.receiverCPUs)
	}

	// With RPS the root namespace's end hands its packets to the
	// receiver's CPU.
	if len(r.recCPUs) > 0 {
		s, err := r.runStep(Target{Kind: kindSluice, Output: "discard", Veth: true, RPS: true}, 30000, stepOpts{phase: "ladder"})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("step with RPS: %s", stepLine(s))
		checkDecoded(t, s)
		b, err := os.ReadFile("/sys/class/net/" + v.HostDev + "/queues/rx-0/rps_cpus")
		if err != nil {
			t.Fatal(err)
		}
		if m := strings.TrimLeft(strings.TrimSpace(string(b)), "0,"); m != "1" {
			t.Errorf("rps_cpus %q, want CPU 0's mask 1", b)
		}
	}

	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	assertNSGone(t, v)
}

// checkDecoded: every record the generator sent in the step was decoded.
// On a machine too busy for the warm-up to be counted within its 3 s, its
// 16 messages may be counted in the step too.
func checkDecoded(t *testing.T, s *Step) {
	t.Helper()
	const warmUp = 16 * 30
	if s.GenRecords == 0 || s.DecodedRecords < float64(s.GenRecords) || s.DecodedRecords > float64(s.GenRecords+warmUp) {
		t.Errorf("%s: generator sent %d records, sluice decoded %.0f", s.Path, s.GenRecords, s.DecodedRecords)
	}
}

// TestNetnsInterrupt runs the runner's signal handling in a child process
// that made a namespace: SIGINT must remove it.
func TestNetnsInterrupt(t *testing.T) {
	if os.Getenv("NETNS_CHILD") != "" {
		r := &runner{}
		var err error
		if r.ns, err = newVethNS(); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		r.handleSignals()
		fmt.Printf("%s %s %s\n", r.ns.Name, r.ns.HostDev, r.ns.NSDev)
		select {}
	}
	needNetns(t)
	cmd := exec.Command(os.Args[0], "-test.run", "^TestNetnsInterrupt$")
	cmd.Env = append(os.Environ(), "NETNS_CHILD=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 3 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child printed %q (%v)", line, err)
	}
	v := &vethNS{Name: f[0], HostDev: f[1], NSDev: f[2]}
	t.Cleanup(func() { v.Close() })
	if !nsExists(v.Name) {
		t.Fatalf("child's namespace %s does not exist", v.Name)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Errorf("child exit: %v, want status 130", err)
	}
	assertNSGone(t, v)
}

// TestRemoveStaleNS: a namespace and a veth pair named for a runner that no
// longer runs are removed; those of a running one (this process) are not.
func TestRemoveStaleNS(t *testing.T) {
	needNetns(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadPID := dead.Process.Pid
	if pidAlive(strconv.Itoa(deadPID)) {
		t.Skipf("pid %d was taken again at once", deadPID)
	}
	mk := func(pid int) *vethNS {
		seq := 90000 + int(nsSeq.Add(1))
		v := &vethNS{Name: fmt.Sprintf("%s%d-%d", nsPrefix, pid, seq),
			HostDev: fmt.Sprintf("sp%d-%dh", pid, seq), NSDev: fmt.Sprintf("sp%d-%dg", pid, seq)}
		t.Cleanup(func() { v.Close() })
		if err := ipCmd("netns", "add", v.Name); err != nil {
			t.Fatal(err)
		}
		// The pair stays in the root namespace: a runner that died before
		// moving one end leaves both there.
		if err := ipCmd("link", "add", v.HostDev, "type", "veth", "peer", "name", v.NSDev); err != nil {
			t.Fatal(err)
		}
		return v
	}
	stale, live := mk(deadPID), mk(os.Getpid())
	removeStaleNS()
	assertNSGone(t, stale)
	if !nsExists(live.Name) {
		t.Errorf("namespace %s of a running process was removed", live.Name)
	}
	if _, err := net.InterfaceByName(live.HostDev); err != nil {
		t.Errorf("veth %s of a running process was removed: %v", live.HostDev, err)
	}
}

func TestParseCPUList(t *testing.T) {
	f := func(in string, want string) {
		t.Helper()
		got, err := parseCPUList(in)
		if g := fmt.Sprint(got, err); g != want {
			t.Errorf("parseCPUList(%q) = %s, want %s", in, g, want)
		}
	}
	f("", "[] <nil>")
	f("1", "[1] <nil>")
	f("0,2", "[0 2] <nil>")
	f("0-2,5", "[0 1 2 5] <nil>")
	f("2-1", `[] bad CPU list "2-1"`)
	f("x", `[] bad CPU list "x"`)
}

func TestFreeBenchSubnet(t *testing.T) {
	for range 200 {
		h, p, err := freeBenchSubnet()
		if err != nil {
			t.Fatal(err)
		}
		b := h.As4()
		if !benchRange.Contains(h) || !benchRange.Contains(p) || b[3]%4 != 1 || p != h.Next() {
			t.Fatalf("got %s and %s: want .1 and .2 of a /30 in %s", h, p, benchRange)
		}
	}
}

// TestVethTargets: in netns mode only the targets marked Veth use the
// pair; with --netns in another mode every target does; without a
// namespace none.
func TestVethTargets(t *testing.T) {
	r := &runner{cfg: config{mode: "netns"}, ns: &vethNS{}}
	if !r.veth(Target{Veth: true}) || r.veth(Target{}) {
		t.Error("netns mode: want veth for Veth targets only")
	}
	r.cfg.mode = "run"
	if !r.veth(Target{}) {
		t.Error("run --netns: want veth for every target")
	}
	r.ns = nil
	if r.veth(Target{Veth: true}) {
		t.Error("no namespace: want loopback")
	}
}
