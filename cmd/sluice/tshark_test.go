package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/offline/pcap"
	"github.com/sluice-flow/sluice/internal/tsharktest"
)

// TestTsharkFlowsTracerouteGuess: tshark notes "Possible traceroute" for
// UDP ports in the range traceroute probes use. That note is about the
// port, not the IPFIX, so tsharkFlows must pass a clean capture whose
// ports are there (TestChainStages failed when a random port landed in
// it). Both ports are flagged by every tshark version's range.
func TestTsharkFlowsTracerouteGuess(t *testing.T) {
	needTshark(t)
	const srcPort, dstPort = 33440, 33435
	if !tsharktest.InTracerouteRange(srcPort) || !tsharktest.InTracerouteRange(dstPort) {
		t.Fatal("ports outside tsharktest's traceroute range")
	}
	msgs := chainMessages(chainFlows(50, 3))
	path := filepath.Join(t.TempDir(), "traceroute-ports.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := pcap.NewWriter(f, pcap.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	cuts := append(msgBoundaries(msgs), len(msgs))
	for i := range len(cuts) - 1 {
		err := w.WriteUDP(time.Unix(1700000000, int64(i)), netip.AddrPortFrom(lo, srcPort), netip.AddrPortFrom(lo, dstPort), msgs[cuts[i]:cuts[i+1]])
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	out := tsharkFlows(t, path, "udp", dstPort, countRecords(msgs))
	if !strings.Contains(out, "Possible traceroute") {
		t.Errorf("tshark does not flag ports %d and %d: this test no longer covers the note", srcPort, dstPort)
	}
}
