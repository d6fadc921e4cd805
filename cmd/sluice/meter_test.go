package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/internal/tsharktest"
)

// meterTraffic writes the traffic generator's capture (seed 1) to dir.
func meterTraffic(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "traffic.pcap")
	cmd := exec.Command("go", "run", "./testdata/exporters/trafficpcap", "-out", p, "-seed", "1")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("trafficpcap: %v\n%s", err, out)
	}
	return p
}

// TestMeterCommand runs sluice meter over the generator's traffic to an
// IPFIX file, to JSON lines and to an ipfix+tcp collector, and has sluice
// decode, tshark and ipfixDump read the file.
func TestMeterCommand(t *testing.T) {
	dir := t.TempDir()
	capPath := meterTraffic(t, dir)
	out := filepath.Join(dir, "flows.ipfix")
	var stdout, stderr bytes.Buffer
	if code := mainExit([]string{"meter", "--biflow", "--dpi", "-o", out, capPath}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	summary := stderr.String()
	if !strings.Contains(summary, "4907 packets (4907 metered, 2438747 IP octets)") || !strings.Contains(summary, "skipped: none") {
		t.Errorf("summary: %s", summary)
	}

	// sluice decode: every record, no errors.
	stdout.Reset()
	stderr.Reset()
	if code := mainExit([]string{"decode", out}, &stdout, &stderr); code != 0 {
		t.Fatalf("decode: exit %d: %s", code, stderr.String())
	}
	var packets, octets uint64
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	for _, l := range lines {
		var r struct {
			Packets  uint64 `json:"packetDeltaCount"`
			Octets   uint64 `json:"octetDeltaCount"`
			RPackets uint64 `json:"reversePacketDeltaCount"`
			ROctets  uint64 `json:"reverseOctetDeltaCount"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("decode output %q: %v", l, err)
		}
		packets += r.Packets + r.RPackets
		octets += r.Octets + r.ROctets
	}
	if packets != 4907 || octets != 2438747 {
		t.Errorf("decoded %d packets %d octets in %d records", packets, octets, len(lines))
	}
	if strings.Contains(stderr.String(), "errors") && !strings.Contains(stderr.String(), "errors: none") {
		t.Logf("decode summary: %s", stderr.String())
	}

	t.Run("tshark", func(t *testing.T) {
		if _, err := exec.LookPath("tshark"); err != nil {
			t.Skip("tshark not installed")
		}
		// tshark reads an RFC 5655 file as one IPFIX message per frame.
		b, err := exec.Command("tshark", "-r", out, "-V").CombinedOutput()
		if err != nil {
			t.Fatalf("tshark: %v\n%.2000s", err, b)
		}
		s := string(b)
		for _, l := range strings.Split(s, "\n") {
			if strings.Contains(l, "Malformed") || (strings.Contains(l, "Expert Info") && !tsharktest.Benign(l) && !strings.Contains(l, "Chat")) {
				t.Errorf("tshark: %s", l)
			}
		}
		if n := strings.Count(s, "Octets: "); n == 0 && !strings.Contains(s, "Cisco NetFlow/IPFIX") {
			t.Errorf("tshark did not dissect IPFIX:\n%.1500s", s)
		}
	})
	t.Run("ipfixDump", func(t *testing.T) {
		if _, err := exec.LookPath("ipfixDump"); err != nil {
			t.Skip("ipfixDump not installed")
		}
		b, err := exec.Command("ipfixDump", "--yaf", "--in", out).CombinedOutput()
		if err != nil {
			t.Fatalf("ipfixDump: %v\n%.2000s", err, b)
		}
		s := string(b)
		for _, want := range []string{"initialTCPFlags", "reverseOctetDeltaCount", "httpRequestHost", "sslServerName", "dnsQName", "flowEndReason"} {
			if !strings.Contains(s, want) {
				t.Errorf("ipfixDump output lacks %s", want)
			}
		}
		if strings.Contains(strings.ToLower(s), "error") || strings.Contains(s, "malformed") {
			t.Errorf("ipfixDump: %.2000s", s)
		}
	})

	// -o -: JSON lines on stdout, one per record.
	stdout.Reset()
	stderr.Reset()
	if code := mainExit([]string{"meter", "--quiet", "--biflow", "--dpi", "-o", "-", capPath}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("--quiet wrote %q", stderr.String())
	}
	if n := len(strings.Split(strings.TrimSpace(stdout.String()), "\n")); n != len(lines) {
		t.Errorf("-o -: %d lines, the file %d records", n, len(lines))
	}

	// --output ipfix+tcp: a collector reads the same records.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		b, _ := io.ReadAll(c) // until the meter closes the output
		got <- b
	}()
	stderr.Reset()
	if code := mainExit([]string{"meter", "--quiet", "--output", "ipfix+tcp://" + ln.Addr().String(), capPath}, io.Discard, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	stream := <-got
	streamPath := filepath.Join(dir, "tcp.ipfix")
	os.WriteFile(streamPath, stream, 0o644)
	stdout.Reset()
	if code := mainExit([]string{"decode", streamPath}, &stdout, io.Discard); code != 0 {
		t.Fatal("decode of the TCP stream failed")
	}
	if n := strings.Count(stdout.String(), "\n"); n != 600 {
		t.Errorf("ipfix+tcp: %d records, want 600 (uniflows)", n)
	}

	// Usage errors.
	if code := mainExit([]string{"meter", capPath}, io.Discard, io.Discard); code != 2 {
		t.Errorf("no output: exit %d", code)
	}
	if code := mainExit([]string{"meter", "-o", "-", filepath.Join(dir, "missing.pcap")}, io.Discard, io.Discard); code != 1 {
		t.Errorf("missing capture: exit %d", code)
	}
}
