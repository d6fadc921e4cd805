package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/sluice-flow/sluice/internal/testenv"
)

// The kernel (6.18 here) has no BPF_PROG_TEST_RUN for sk_reuseport
// programs, so these tests run the program where it works: attached to a
// real reuseport group of UDP sockets on loopback, with crafted datagrams
// sent from real sockets. Each datagram must reach the socket hash.go's
// Pick names, or be dropped by the allow-list and counted.

func loadOrSkip(t *testing.T) *Steering {
	t.Helper()
	s, err := LoadSteering()
	if errors.Is(err, ErrNotPermitted) {
		testenv.SkipOrFail(t, "needs CAP_BPF and CAP_NET_ADMIN (run as root, as CI does): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestSteerTestRun records what BPF_PROG_TEST_RUN does with the program:
// today the kernel refuses it for this program type, which is why the
// tests below go through sockets. Should a kernel run it, the verdict must
// be a pass.
func TestSteerTestRun(t *testing.T) {
	s := loadOrSkip(t)
	ret, err := s.Program().Run(&ebpf.RunOptions{Data: ipfixHeader(1)})
	switch {
	case errors.Is(err, ebpf.ErrNotSupported):
		t.Logf("BPF_PROG_TEST_RUN: %v (proof by sockets instead)", err)
	case err != nil:
		t.Fatalf("test run: %v", err)
	case ret != 1: // SK_PASS
		t.Fatalf("test run verdict %d, want SK_PASS", ret)
	}
}

// group is a reuseport group of n UDP sockets bound to one address.
type group struct {
	fds  []int
	addr netip.AddrPort
}

func newGroup(t *testing.T, bind netip.Addr, n int) *group {
	t.Helper()
	g := &group{}
	port := 0
	for range n {
		fd := udpSocket(t, bind)
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			t.Fatal(err)
		}
		if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(bind, uint16(port)))); err != nil {
			t.Fatal(err)
		}
		if port == 0 {
			sa, err := unix.Getsockname(fd)
			if err != nil {
				t.Fatal(err)
			}
			port = portOf(sa)
		}
		g.fds = append(g.fds, fd)
	}
	g.addr = netip.AddrPortFrom(bind, uint16(port))
	return g
}

func udpSocket(t *testing.T, a netip.Addr) int {
	t.Helper()
	family := unix.AF_INET
	if a.Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

func portOf(sa unix.Sockaddr) int {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return sa.Port
	case *unix.SockaddrInet6:
		return sa.Port
	}
	return 0
}

// sender returns a socket bound to src (port chosen by the kernel).
func sender(t *testing.T, src netip.Addr) int {
	t.Helper()
	fd := udpSocket(t, src)
	if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(src, 0))); err != nil {
		t.Fatal(err)
	}
	return fd
}

// deliver sends payload from fd to the group and returns the index of the
// socket that received it.
func (g *group) deliver(t *testing.T, from int, payload []byte) int {
	t.Helper()
	if err := unix.Sendto(from, payload, 0, sockaddr(g.addr)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for i, fd := range g.fds {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err == unix.EAGAIN {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(buf[:n]) != string(payload) {
				t.Fatalf("socket %d received %x, want %x", i, buf[:n], payload)
			}
			return i
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("datagram %x not received", payload)
	return -1
}

// empty fails if any socket of the group holds a datagram.
func (g *group) empty(t *testing.T) {
	t.Helper()
	buf := make([]byte, 2048)
	for i, fd := range g.fds {
		if n, _, err := unix.Recvfrom(fd, buf, 0); err != unix.EAGAIN {
			t.Fatalf("socket %d holds a datagram (%d bytes, err %v)", i, n, err)
		}
	}
}

func (s *Steering) stats(t *testing.T) Stats {
	t.Helper()
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// craftedPayloads are the datagram kinds the program must tell apart; the
// bool says whether it carries a domain.
func craftedPayloads(domain uint32) []struct {
	name    string
	payload []byte
	domain  bool
} {
	garbage := []byte("\x47\x45\x54 garbage that is no flow export at all")
	return []struct {
		name    string
		payload []byte
		domain  bool
	}{
		{"ipfix", append(ipfixHeader(domain), 0, 2, 0, 4), true},
		{"ipfix header to the domain", ipfixHeader(domain), true},
		{"ipfix cut in the domain", ipfixHeader(domain)[:14], false},
		{"v9", append(v9Header(domain), 0, 0, 0, 0), true},
		{"v9 cut in the source id", v9Header(domain)[:18], false},
		{"v5", append(v5Header(), make([]byte, 48)...), false},
		{"garbage", garbage, false},
		{"one byte", []byte{10}, false},
		{"empty", []byte{}, false},
	}
}

func TestSteerPicksByExporterAndDomain(t *testing.T) {
	for _, c := range []struct {
		bind    netip.Addr
		sources []netip.Addr
	}{
		{netip.MustParseAddr("127.0.0.1"), loopbackSources(12)},
		{netip.MustParseAddr("::1"), []netip.Addr{netip.MustParseAddr("::1")}},
	} {
		for _, loops := range []int{2, 4} {
			t.Run(fmt.Sprintf("%v/%d", c.bind, loops), func(t *testing.T) {
				s := loadOrSkip(t)
				g := newGroup(t, c.bind, loops)
				if err := s.Attach(g.fds[0]); err != nil {
					t.Fatal(err)
				}
				if err := s.SetSockets(g.fds); err != nil {
					t.Fatal(err)
				}
				sent, addrOnly := 0, 0
				hit := make([]int, loops)
				for _, src := range c.sources {
					// Several source ports per exporter: the kernel's
					// own hash would spread them.
					for range 3 {
						from := sender(t, src)
						for d := range uint32(4) {
							for _, p := range craftedPayloads(d * 1000) {
								got := g.deliver(t, from, p.payload)
								want := Pick(src, p.payload, loops)
								if got != want {
									t.Fatalf("%s from %v domain %d: socket %d, want %d", p.name, src, d, got, want)
								}
								if !p.domain && want != Jump(Hash(src, nil), loops) {
									t.Fatalf("%s: not steered by address alone", p.name)
								}
								hit[got]++
								sent++
								if !p.domain {
									addrOnly++
								}
							}
						}
					}
				}
				st := s.stats(t)
				if st.Steered != uint64(sent) || st.AddrOnly != uint64(addrOnly) || st.Denied != 0 || st.Fallback != 0 {
					t.Errorf("stats %+v; want %d steered, %d by address alone", st, sent, addrOnly)
				}
				if len(c.sources) > 1 {
					for i, n := range hit {
						if n == 0 {
							t.Errorf("socket %d received nothing of %d datagrams", i, sent)
						}
					}
				}
			})
		}
	}
}

// loopbackSources returns n addresses of 127.0.0.0/8 (all on lo).
func loopbackSources(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{127, 0, byte(1 + i/200), byte(1 + i%200)})
	}
	return out
}

// TestSteerBeforeSockets: attached with an empty array, the program leaves
// the choice to the kernel and counts it.
func TestSteerBeforeSockets(t *testing.T) {
	s := loadOrSkip(t)
	g := newGroup(t, netip.MustParseAddr("127.0.0.1"), 2)
	if err := s.Attach(g.fds[0]); err != nil {
		t.Fatal(err)
	}
	from := sender(t, netip.MustParseAddr("127.0.0.1"))
	for d := range uint32(8) {
		g.deliver(t, from, ipfixHeader(d))
	}
	if st := s.stats(t); st.Fallback != 8 || st.Steered != 0 {
		t.Errorf("stats %+v; want 8 left to the kernel", st)
	}
}

func TestSteerAllowList(t *testing.T) {
	for _, c := range []struct {
		bind    netip.Addr
		allow   []string
		admit   []string
		deny    []string
		useIPv6 bool
	}{
		{
			bind:  netip.MustParseAddr("127.0.0.1"),
			allow: []string{"127.0.0.0/30", "127.0.1.0/24", "2001:db8::/32"},
			admit: []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.1.9", "127.0.1.255"},
			deny:  []string{"127.0.0.4", "127.0.0.200", "127.0.2.1", "127.1.1.1"},
		},
		{
			bind:  netip.MustParseAddr("::1"),
			allow: []string{"::1/128"},
			admit: []string{"::1"},
		},
		{
			bind:  netip.MustParseAddr("::1"),
			allow: []string{"2001:db8::/32", "127.0.0.0/8"},
			deny:  []string{"::1"},
		},
	} {
		t.Run(fmt.Sprint(c.allow), func(t *testing.T) {
			s := loadOrSkip(t)
			g := newGroup(t, c.bind, 2)
			if err := s.Attach(g.fds[0]); err != nil {
				t.Fatal(err)
			}
			if err := s.SetSockets(g.fds); err != nil {
				t.Fatal(err)
			}
			var prefixes []netip.Prefix
			for _, p := range c.allow {
				prefixes = append(prefixes, netip.MustParsePrefix(p))
			}
			if err := s.SetAllow(prefixes); err != nil {
				t.Fatal(err)
			}
			for i, a := range c.admit {
				src := netip.MustParseAddr(a)
				g.deliver(t, sender(t, src), ipfixHeader(uint32(i)))
			}
			for i, a := range c.deny {
				from := sender(t, netip.MustParseAddr(a))
				if err := unix.Sendto(from, ipfixHeader(uint32(i)), 0, sockaddr(g.addr)); err != nil {
					t.Fatal(err)
				}
				waitFor(t, func() bool { return s.stats(t).Denied == uint64(i+1) }, "denied count %d", i+1)
				g.empty(t)
			}
			st := s.stats(t)
			if st.Denied != uint64(len(c.deny)) || st.Steered != uint64(len(c.admit)) {
				t.Errorf("stats %+v; want %d denied, %d steered", st, len(c.deny), len(c.admit))
			}
			// A new list replaces the old one; an empty one admits all.
			if len(c.admit) > 0 && len(c.deny) > 0 {
				if err := s.SetAllow([]netip.Prefix{mustPrefix(c.deny[0])}); err != nil {
					t.Fatal(err)
				}
				g.deliver(t, sender(t, netip.MustParseAddr(c.deny[0])), v5Header())
				if err := unix.Sendto(sender(t, netip.MustParseAddr(c.admit[0])), v5Header(), 0, sockaddr(g.addr)); err != nil {
					t.Fatal(err)
				}
				waitFor(t, func() bool { return s.stats(t).Denied == uint64(len(c.deny)+1) }, "the old list's prefix refused")
				g.empty(t)
			}
			if err := s.SetAllow(nil); err != nil {
				t.Fatal(err)
			}
			for _, a := range append(c.deny, c.admit...) {
				g.deliver(t, sender(t, netip.MustParseAddr(a)), v5Header())
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for "+format, args...)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSetSocketsBounds(t *testing.T) {
	s := loadOrSkip(t)
	if err := s.SetSockets(nil); err == nil {
		t.Error("no sockets accepted")
	}
	if err := s.SetSockets(make([]int, MaxLoops+1)); err == nil {
		t.Error("more sockets than the array holds accepted")
	}
	// A socket not in any reuseport group is refused by the kernel.
	fd := udpSocket(t, netip.MustParseAddr("127.0.0.1"))
	if err := s.SetSockets([]int{fd}); err == nil {
		t.Error("an unbound socket went into the array")
	}
}

// mustPrefix is the host prefix of address a.
func mustPrefix(a string) netip.Prefix {
	addr := netip.MustParseAddr(a)
	return netip.PrefixFrom(addr, addr.BitLen())
}
