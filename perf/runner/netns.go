//go:build linux

package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// vethNS is a network namespace of its own for the generator, joined to
// the root namespace (where the receiver runs) by a veth pair: the
// generator's traffic crosses a network device, as a pod's does, instead of
// loopback, and it can be pinned to a CPU apart from the receiver's.
//
// Names carry the creating process's PID (nsPrefix+"PID-SEQ", veth
// "spPID-SEQh" in the root namespace and "...g" inside), so parallel runs
// do not collide and a later run removes only what a dead runner left.
// Addresses are a /30 from 198.18.0.0/15, the range RFC 2544 sets aside for
// benchmarks, chosen at random and skipped if the host already has one.
type vethNS struct {
	Name     string     // network namespace (ip netns)
	HostDev  string     // veth end in the root namespace
	NSDev    string     // veth end in Name
	HostAddr netip.Addr // the receiver listens here
	NSAddr   netip.Addr // the generator sends from here
}

const nsPrefix = "sluice-perf-ns-"

var (
	nsSeq       atomic.Int32
	staleNSName = regexp.MustCompile(`^` + nsPrefix + `(\d+)-\d+$`)
	staleDev    = regexp.MustCompile(`^sp(\d+)-\d+[hg]$`)
	benchRange  = netip.MustParsePrefix("198.18.0.0/15")
)

// newVethNS creates the namespace and the veth pair, addressed and up.
// What a dead runner left is removed first. On error nothing is left.
func newVethNS() (*vethNS, error) {
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("netns: ip (iproute2) not found: %w", err)
	}
	removeStaleNS()
	pid, seq := os.Getpid(), nsSeq.Add(1)
	v := &vethNS{Name: fmt.Sprintf("%s%d-%d", nsPrefix, pid, seq),
		HostDev: fmt.Sprintf("sp%d-%dh", pid, seq), NSDev: fmt.Sprintf("sp%d-%dg", pid, seq)}
	if len(v.HostDev) > 15 {
		return nil, fmt.Errorf("netns: interface name %q too long", v.HostDev)
	}
	var err error
	if v.HostAddr, v.NSAddr, err = freeBenchSubnet(); err != nil {
		return nil, err
	}
	if err := v.setUp(); err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
}

func (v *vethNS) setUp() error {
	hostCIDR, nsCIDR := v.HostAddr.String()+"/30", v.NSAddr.String()+"/30"
	for _, args := range [][]string{
		{"netns", "add", v.Name},
		{"link", "add", v.HostDev, "type", "veth", "peer", "name", v.NSDev, "netns", v.Name},
		// No IPv6 link-local addresses: no router solicitations or MLD
		// reports on the pair while it is measured.
		{"link", "set", v.HostDev, "addrgenmode", "none"},
		{"-n", v.Name, "link", "set", v.NSDev, "addrgenmode", "none"},
		{"addr", "add", hostCIDR, "dev", v.HostDev},
		{"-n", v.Name, "addr", "add", nsCIDR, "dev", v.NSDev},
		{"link", "set", v.HostDev, "up"},
		{"-n", v.Name, "link", "set", v.NSDev, "up"},
		{"-n", v.Name, "link", "set", "lo", "up"},
	} {
		if err := ipCmd(args...); err != nil {
			return err
		}
	}
	// A permanent neighbour entry: no ARP exchange at the start of a step
	// or when the entry would go stale during one.
	ifc, err := net.InterfaceByName(v.HostDev)
	if err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	return ipCmd("-n", v.Name, "neigh", "replace", v.HostAddr.String(), "lladdr", ifc.HardwareAddr.String(),
		"dev", v.NSDev, "nud", "permanent")
}

// Close stops what still runs in the namespace (only the runner's
// generators run there), deletes the veth pair and then the namespace.
// The pair goes first because deleting one end deletes both at once, while
// a deleted namespace takes its devices with it only later, from a kernel
// work queue.
func (v *vethNS) Close() error {
	if v == nil {
		return nil
	}
	killNSPids(v.Name)
	var errs []error
	if _, err := net.InterfaceByName(v.HostDev); err == nil {
		errs = append(errs, ipCmd("link", "del", v.HostDev))
	}
	if nsExists(v.Name) {
		errs = append(errs, ipCmd("netns", "del", v.Name))
	}
	return errors.Join(errs...)
}

// command returns the command that runs bin with args inside the namespace
// on cpus. `ip netns exec` and taskset both exec what they run, so the PID
// and the resource usage are the generator's own.
func (v *vethNS) command(cpus, bin string, args []string) (string, []string) {
	bin, args = pinned(cpus, bin, args)
	return "ip", append([]string{"netns", "exec", v.Name, bin}, args...)
}

// setRPS sets the CPUs that deliver the packets arriving on the root
// namespace's end (RPS on its receive queue). Without RPS (cpus empty) the
// CPU that sent a packet also delivers it into the receiver's socket, in
// its softirq, as over loopback; with it a NIC's receive interrupt on the
// receiver's CPU is imitated, and that CPU pays for the delivery.
func (v *vethNS) setRPS(cpus []int) error {
	var mask uint64
	for _, c := range cpus {
		if c >= 64 {
			return fmt.Errorf("netns: RPS to CPU %d: only CPUs 0-63", c)
		}
		mask |= 1 << c
	}
	path := "/sys/class/net/" + v.HostDev + "/queues/rx-0/rps_cpus"
	if err := os.WriteFile(path, []byte(strconv.FormatUint(mask, 16)+"\n"), 0o644); err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	return nil
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("netns: ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func nsExists(name string) bool {
	_, err := os.Stat("/run/netns/" + name)
	return err == nil
}

// killNSPids kills the processes left in namespace name.
func killNSPids(name string) {
	out, _ := exec.Command("ip", "netns", "pids", name).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// removeStaleNS deletes the veth ends and namespaces a runner (or test)
// created and did not remove because it died: those named with the veth
// pattern or nsPrefix whose PID is no longer running. An end that is
// already gone (deleted with its peer) is no error.
func removeStaleNS() {
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		if m := staleDev.FindStringSubmatch(ifc.Name); m != nil && !pidAlive(m[1]) {
			_ = ipCmd("link", "del", ifc.Name)
		}
	}
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			if m := staleNSName.FindStringSubmatch(f[0]); m != nil && !pidAlive(m[1]) {
				killNSPids(f[0])
				_ = ipCmd("netns", "del", f[0])
			}
		}
	}
}

func pidAlive(s string) bool {
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 {
		return true // not ours to judge
	}
	err = syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// freeBenchSubnet picks a random /30 of benchRange none of whose addresses
// the host has, and returns its two usable addresses.
func freeBenchSubnet() (host, peer netip.Addr, err error) {
	var used []netip.Prefix
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return host, peer, fmt.Errorf("netns: %w", err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			used = append(used, p)
		}
	}
	base := benchRange.Addr().As4()
	for range 64 {
		var b [2]byte
		if _, err := rand.Read(b[:]); err != nil {
			return host, peer, err
		}
		off := ((int(b[0])<<8 | int(b[1])) % (1 << 15)) * 4 // a /30 of the /15
		a := base
		a[1] += byte(off >> 16)
		a[2], a[3] = byte(off>>8), byte(off)
		sub := netip.PrefixFrom(netip.AddrFrom4(a), 30)
		clash := false
		for _, u := range used {
			if u.Overlaps(sub) {
				clash = true
				break
			}
		}
		if !clash {
			host = sub.Addr().Next()
			return host, host.Next(), nil
		}
	}
	return host, peer, errors.New("netns: no free /30 in 198.18.0.0/15")
}
