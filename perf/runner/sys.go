//go:build linux

package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc CPU times: 100 on every Linux
// architecture Go supports.
const clockTicks = 100.0

// procCPU returns the user+system CPU seconds of process pid.
func procCPU(pid int) (float64, error) {
	u, st, err := procCPUSplit(pid)
	return u + st, err
}

// procStatusKB returns a "VmXxx:" value of /proc/PID/status in bytes.
func procStatusBytes(pid int, key string) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, key+":") {
			f := strings.Fields(line[len(key)+1:])
			if len(f) >= 1 {
				v, err := strconv.ParseFloat(f[0], 64)
				return v * 1024, err
			}
		}
	}
	return 0, fmt.Errorf("%s not in /proc/%d/status", key, pid)
}

// udpSocketDrops sums the kernel drop counters of the UDP sockets bound to
// a local port (last column of /proc/net/udp and udp6).
func udpSocketDrops(port int) float64 {
	var total float64
	want := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		sc.Scan()
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 13 || !strings.HasSuffix(fields[1], want) {
				continue
			}
			if d, err := strconv.ParseFloat(fields[len(fields)-1], 64); err == nil {
				total += d
			}
		}
		fh.Close()
	}
	return total
}

// cpuTimes is the machine-wide line of /proc/stat, in seconds.
type cpuTimes struct {
	user, system, softirq, steal, idle float64
}

func readCPUTimes() cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	v := func(i int) float64 {
		if i >= len(f) {
			return 0
		}
		x, _ := strconv.ParseFloat(f[i], 64)
		return x / clockTicks
	}
	// cpu user nice system idle iowait irq softirq steal
	return cpuTimes{user: v(1) + v(2), system: v(3), idle: v(4) + v(5), softirq: v(6) + v(7), steal: v(8)}
}

func selfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return tv(ru.Utime) + tv(ru.Stime)
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// freePort returns a port free on 127.0.0.1 for network ("udp" or "tcp") at
// the time of the call.
func freePort(network string) (int, error) {
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func httpGet(url string) ([]byte, int, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.StatusCode, err
}

// machineInfo describes where the numbers come from.
type machineInfo struct {
	CPUModel  string `json:"cpu_model"`
	CPUs      int    `json:"cpus"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	Sluice    string `json:"sluice_commit"`
	Goflow2   string `json:"goflow2_version,omitempty"`
	Hostname  string `json:"-"`
}

func readMachineInfo(goflow2 string) machineInfo {
	m := machineInfo{}
	if out, err := exec.Command("lscpu").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			v = strings.TrimSpace(v)
			switch strings.TrimSpace(k) {
			case "Model name":
				m.CPUModel = v
			case "CPU(s)":
				m.CPUs, _ = strconv.Atoi(v)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		m.GoVersion = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.Sluice = strings.TrimSpace(string(out))
		if err := exec.Command("git", "diff", "--quiet", "HEAD", "--", ".", ":!perf").Run(); err != nil {
			m.Sluice += " (with uncommitted changes)"
		}
	}
	if goflow2 != "" {
		// go install leaves goflow2's version string empty; the module
		// version is in the build information.
		if out, err := exec.Command("go", "version", "-m", goflow2).Output(); err == nil {
			for _, line := range strings.Split(string(out), "\n") {
				f := strings.Fields(line)
				if len(f) >= 3 && f[0] == "mod" && strings.HasPrefix(f[1], "github.com/netsampler/goflow2") {
					m.Goflow2 = f[2]
				}
			}
		}
	}
	return m
}

// procCPUSplit returns the user and system CPU seconds of process pid.
func procCPUSplit(pid int) (user, system float64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) may hold spaces; fields after it start
	// after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return ut / clockTicks, st / clockTicks, nil
}

// cpuSet is the summed /proc/stat lines of some CPUs, in seconds. Without
// CONFIG_IRQ_TIME_ACCOUNTING the kernel samples softirq time at each tick
// (a tick that lands in a softirq counts there, not in the process it
// interrupted); with it, the times are exact.
type cpuSet struct {
	busy    float64 // everything but idle and iowait
	softirq float64 // softirq and hardirq
}

// readCPUSet sums the /proc/stat lines of the given CPUs.
func readCPUSet(cpus []int) cpuSet {
	var out cpuSet
	if len(cpus) == 0 {
		return out
	}
	want := map[string]bool{}
	for _, c := range cpus {
		want["cpu"+strconv.Itoa(c)] = true
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || !want[f[0]] {
			continue
		}
		v := func(i int) float64 {
			x, _ := strconv.ParseFloat(f[i], 64)
			return x / clockTicks
		}
		// cpuN user nice system idle iowait irq softirq steal
		out.busy += v(1) + v(2) + v(3) + v(6) + v(7)
		out.softirq += v(6) + v(7)
	}
	return out
}

// parseCPUList reads a taskset CPU list ("1", "0,2", "0-3"); "" is nil.
func parseCPUList(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("bad CPU list %q", s)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("bad CPU list %q", s)
			}
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	return out, nil
}

// backlogDrops sums the packets the kernel dropped because a CPU's input
// backlog (net.core.netdev_max_backlog) was full: the second column of
// /proc/net/softnet_stat, one row per CPU. Loopback and veth both queue
// there.
func backlogDrops() float64 {
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		return 0
	}
	var total float64
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		if d, err := strconv.ParseUint(f[1], 16, 64); err == nil {
			total += float64(d)
		}
	}
	return total
}

// irqTimeAccounting says whether the kernel measures softirq time exactly
// (CONFIG_IRQ_TIME_ACCOUNTING) or samples it at the tick: "yes", "no" or
// "unknown" (no kernel config to read).
func irqTimeAccounting() string {
	rel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	var text string
	if b, err := os.ReadFile("/boot/config-" + strings.TrimSpace(string(rel))); err == nil {
		text = string(b)
	} else if out, err := exec.Command("zcat", "/proc/config.gz").Output(); err == nil {
		text = string(out)
	} else {
		return "unknown"
	}
	if strings.Contains(text, "\nCONFIG_IRQ_TIME_ACCOUNTING=y") {
		return "yes"
	}
	return "no"
}
