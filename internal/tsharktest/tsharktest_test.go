package tsharktest

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/offline/pcap"
	"github.com/sluice-flow/sluice/internal/testenv"
)

func TestBenign(t *testing.T) {
	f := func(line string, want bool) {
		t.Helper()
		if got := Benign(line); got != want {
			t.Errorf("Benign(%q) = %v, want %v", line, got, want)
		}
	}
	f("[Expert Info (Chat/Sequence): Possible traceroute: hop #1, attempt #1]", true)
	f("[Expert Info (Chat/Sequence): Connection establish request (SYN): server port 4739]", true)
	f("[Expert Info (Warning/Sequence): Unexpected flow sequence for domain ID 1 (expected 20, got 40)]", false)
	f("[Expert Info (Error/Malformed): Malformed Packet (Exception occurred)]", false)
	f("[Expert Info (Warning/Sequence): Previous segment(s) not captured (common at capture start)]", false)
}

func TestListenUDP(t *testing.T) {
	for range 20 {
		pc := ListenUDP(t, "udp4", "127.0.0.1")
		if p := pc.LocalAddr().(*net.UDPAddr).Port; InTracerouteRange(p) {
			t.Fatalf("port %d in the traceroute range", p)
		}
	}
}

// TestTracerouteRange checks the range against the installed tshark: it
// flags no port outside it.
func TestTracerouteRange(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		testenv.SkipOrFail(t, "tshark not installed (make test-deps installs it)")
	}
	path := filepath.Join(t.TempDir(), "ports.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := pcap.NewWriter(f, pcap.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	const first, last = TracerouteLow - 100, TracerouteHigh + 100
	for p := first; p <= last; p++ {
		src := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 50000)
		dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(p))
		if err := w.WriteUDP(time.Unix(1700000000, 0), src, dst, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tshark, "-r", path, "-T", "fields", "-e", "udp.dstport", "-e", "_ws.expert.message").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	flagged := 0
	for _, m := range regexp.MustCompile(`(?m)^(\d+)\t.*Possible traceroute`).FindAllStringSubmatch(string(out), -1) {
		p, _ := strconv.Atoi(m[1])
		if !InTracerouteRange(p) {
			t.Errorf("tshark flags port %d, outside %d-%d", p, TracerouteLow, TracerouteHigh)
		}
		flagged++
	}
	if flagged == 0 {
		t.Errorf("tshark flags no port as traceroute: this test no longer checks anything\n%.2000s", out)
	}
	t.Logf("tshark flags %d ports of %d-%d", flagged, first, last)
}

// TestProbe stands in for dumpcap with a listener that appends what it
// receives to the "capture" file.
func TestProbe(t *testing.T) {
	pc := ListenUDP(t, "udp4", "127.0.0.1")
	path := filepath.Join(t.TempDir(), "capture")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return
			}
			f.Write(buf[:n])
			f.Close()
		}
	}()
	conn, err := net.Dial("udp4", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	p := ProbeOver(conn)
	if p.Port() != pc.LocalAddr().(*net.UDPAddr).Port || p.Filter() != "udp port "+strconv.Itoa(p.Port()) {
		t.Fatalf("port %d, filter %q", p.Port(), p.Filter())
	}
	p.WaitCaptured(t, path, 10*time.Second)
	p.WaitCaptured(t, path, 10*time.Second) // a new marker each time
	b, _ := os.ReadFile(path)
	markers := map[string]bool{}
	for _, m := range regexp.MustCompile(`sluice-capture-probe-\d+-\d+`).FindAll(b, -1) {
		markers[string(m)] = true
	}
	if len(markers) != 2 {
		t.Errorf("capture holds %q, want two markers", b)
	}
	NewProbe(t) // opens and is closed at the end
}
