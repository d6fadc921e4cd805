package pcap

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/internal/testenv"
)

// sharedCaptures returns the captures of the workspace's shared folder
// (shared/captures beside the repository, or $SLUICE_CAPTURES), skipping
// the test when there is none. Files are chosen by name; their format is
// detected by magic number, since some .pcap files are pcapng.
func sharedCaptures(t *testing.T) []string {
	t.Helper()
	dirs := []string{
		os.Getenv("SLUICE_CAPTURES"),
		filepath.Join("..", "..", "..", "..", "shared", "captures"), // from dataplane/offline/pcap in a checkout beside shared/
		"/work/shared/captures",
	}
	for _, dir := range dirs {
		if dir == "" {
			continue
		}
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue
		}
		var files []string
		for _, pat := range []string{"*.pcap", "*.pcapng"} {
			m, _ := filepath.Glob(filepath.Join(dir, pat))
			files = append(files, m...)
		}
		if len(files) == 0 {
			testenv.SkipOrFail(t, "no *.pcap or *.pcapng files in %s", dir)
		}
		slices.Sort(files)
		return files
	}
	testenv.SkipOrFail(t, "shared captures folder absent (looked for $SLUICE_CAPTURES, ../shared/captures beside the repository, /work/shared/captures)")
	return nil
}

// TestSharedCaptures reads every shared capture to its end.
func TestSharedCaptures(t *testing.T) {
	for _, path := range sharedCaptures(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !IsCapture(data) {
				t.Fatalf("IsCapture is false for % x", data[:min(4, len(data))])
			}
			r, err := NewReader(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			links := map[uint32]int{}
			var d Datagram
			for {
				err := r.Next(&d)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("after %d datagrams: %v", r.Stats().Datagrams, err)
				}
				links[r.LinkType()]++
				if !d.Src.IsValid() || !d.Dst.IsValid() || d.Time.IsZero() {
					t.Errorf("datagram %d: %v -> %v at %v", r.Stats().Datagrams, d.Src, d.Dst, d.Time)
				}
			}
			st := r.Stats()
			t.Logf("%s, link types %v, %+v", r.Format(), links, st)
			if st.Datagrams == 0 {
				t.Errorf("no UDP datagrams: %+v", st)
			}
		})
	}
}

// tshark returns the path of tshark, skipping the test when it is absent.
func tshark(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark not installed")
	}
	return p
}

// tsharkLines runs tshark on a capture and returns its output lines.
func tsharkLines(t *testing.T, bin, path string, args ...string) []string {
	t.Helper()
	args = append([]string{"-n", "-r", path}, args...)
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return strings.Fields(string(out))
}

// tsharkUDP selects the packets that carry a UDP datagram as the Reader
// sees them: not ICMP errors quoting a UDP header, not fragments
// (reassembly is off, so later fragments are not dissected as UDP). tshark
// also shows a datagram cut short (which the Reader counts as truncated) as
// UDP, so its count is compared with Datagrams+Truncated.
var tsharkUDP = []string{
	"-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE",
	"-Y", "udp && !icmp && !icmpv6 && !(ip.flags.mf == 1) && !(ipv6.fraghdr.more == 1)",
	"-T", "fields", "-e", "frame.number",
}

// TestTsharkCount checks that the Reader finds as many UDP datagrams in
// each shared capture as tshark does.
func TestTsharkCount(t *testing.T) {
	bin := tshark(t)
	for _, path := range sharedCaptures(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Parallel()
			want := len(tsharkLines(t, bin, path, tsharkUDP...))
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			_, st := readAll(t, data)
			if st.Datagrams+st.Truncated != uint64(want) {
				t.Errorf("%d datagrams (+%d truncated), tshark finds %d; stats %+v", st.Datagrams, st.Truncated, want, st)
			}
		})
	}
}

// TestTsharkWriter checks with tshark that Writer's frames decode with
// valid IPv4 and UDP checksums, and that tshark and the Reader agree on a
// capture of skipped packets.
func TestTsharkWriter(t *testing.T) {
	bin := tshark(t)
	dir := t.TempDir()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2024, 7, 2, 12, 0, 0, 0, time.UTC)
	v4a, v4b := netip.MustParseAddrPort("192.0.2.1:50000"), netip.MustParseAddrPort("192.0.2.2:4739")
	v6a, v6b := netip.MustParseAddrPort("[2001:db8::1]:50000"), netip.MustParseAddrPort("[2001:db8::2]:4739")
	for i, size := range []int{0, 1, 17, 18, 333, 1472} {
		a, b := v4a, v4b
		if i%2 == 1 {
			a, b = v6a, v6b
		}
		if err := w.WriteUDP(ts, a, b, bytes.Repeat([]byte{byte(i)}, size)); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "writer.pcap")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	lines := tsharkLines(t, bin, path, "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
		"-T", "fields", "-E", "separator=,", "-e", "udp.length", "-e", "ip.checksum.status", "-e", "udp.checksum.status")
	// Checksum status 1 is "good"; IPv6 has no header checksum.
	want := []string{"8,1,1", "9,,1", "25,1,1", "26,,1", "341,1,1", "1480,,1"}
	if !slices.Equal(lines, want) {
		t.Errorf("tshark udp.length/ip.checksum.status/udp.checksum.status: %v, want %v", lines, want)
	}

	seeds := seedCaptures(t)
	for _, name := range []string{"skips_le_micro.pcap", "sections.pcapng"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, seeds[name], 0o644); err != nil {
			t.Fatal(err)
		}
		n := len(tsharkLines(t, bin, p, tsharkUDP...))
		if _, st := readAll(t, seeds[name]); st.Datagrams+st.Truncated != uint64(n) {
			t.Errorf("%s: %d datagrams (+%d truncated), tshark finds %d; stats %+v", name, st.Datagrams, st.Truncated, n, st)
		}
	}
}
