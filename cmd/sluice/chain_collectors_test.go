package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestChainOtherCollectors: other collectors read what Sluice re-exports.
// Sluice runs select + project + anonymise and sends IPFIX over UDP to
// nfdump's nfcapd and to pmacct's nfacctd. nfdump then lists exactly the
// records the pipeline should give, and nfcapd counts no sequence error and
// no bad packet; nfacctd's packets and bytes per 5-tuple equal the sums of
// those records. The pipeline drops
// options records: nfcapd would scale the counters by the sampling rate
// they announce, and its sequence check leaves options data records out
// where RFC 7011 section 3.1 (and tshark) count them.
func TestChainOtherCollectors(t *testing.T) {
	e2eNeed(t, "/usr/bin/nfcapd", "/usr/bin/nfdump", "/usr/sbin/nfacctd")
	env := chainEnv(t)
	flows := chainFlows(2000, 5)

	c := env.newRun(t, "nfcapd", false)
	dataDir := filepath.Join(c.dir, "flows")
	if err := os.Mkdir(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	nfcapd := c.start("nfcapd", "nfcapd", "-b", "127.0.0.1", "-p", fmt.Sprint(port), "-w", dataDir, "-t", "3600")
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(nfcapd.output(), "Startup"); time.Sleep(20 * time.Millisecond) {
		if nfcapd.exited() || time.Now().After(deadline) {
			t.Fatalf("nfcapd did not start:\n%s", nfcapd.tail())
		}
	}

	// pmacct's nfacctd too: it sums packets and bytes per 5-tuple.
	pc, err = net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pmPort := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	pmOut := filepath.Join(c.dir, "pmacct.csv")
	pmConf := filepath.Join(c.dir, "nfacctd.conf")
	if err := os.WriteFile(pmConf, []byte(fmt.Sprintf(`daemonize: false
nfacctd_ip: 127.0.0.1
nfacctd_port: %d
plugins: print[out]
aggregate[out]: src_host, dst_host, src_port, dst_port, proto
print_output[out]: csv
print_output_file[out]: %s
print_output_file_append[out]: true
print_refresh_time[out]: 1
`, pmPort, pmOut)), 0o644); err != nil {
		t.Fatal(err)
	}
	nfacctd := c.start("nfacctd", "nfacctd", "-f", pmConf)
	// It logs nothing once it listens: look for its socket.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if bound, _ := udpSocket(t, pmPort); bound {
			break
		}
		if nfacctd.exited() || time.Now().After(deadline) {
			t.Fatalf("nfacctd did not listen on udp port %d:\n%s", pmPort, nfacctd.tail())
		}
	}

	a, aPort, _ := startChainSource(t, env, fmt.Sprintf(`pipelines:
  - stages:
      - select: protocolIdentifier in [6, 17]
      - project: {keep: [sourceIPv4Address, destinationIPv4Address, sourceIPv6Address, destinationIPv6Address, sourceTransportPort, destinationTransportPort, protocolIdentifier, octetDeltaCount, packetDeltaCount, flowStartMilliseconds, flowEndMilliseconds]}
      - anonymise: {method: truncate, ipv4_prefix: 16, ipv6_prefix: 48}
    outputs: ["ipfix+udp://127.0.0.1:%d", "ipfix+udp://127.0.0.1:%d"]
    options: drop
`, port, pmPort))
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", aPort), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(chainMessages(flows)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	waitRecords(t, a, len(flows)+1)
	a.sluice.signal(syscall.SIGTERM)
	if !a.sluice.wait(20 * time.Second) {
		t.Fatal("sluice did not stop")
	}
	// Sluice has sent everything: wait until both collectors have read it
	// from their sockets, and nfacctd (which writes every second) has
	// written the sums of all of it.
	trunc := func(a string, v4bits, v6bits int) string {
		p, _ := netipPrefix(a, v4bits, v6bits)
		return p
	}
	protoName := map[uint8]string{6: "TCP", 17: "UDP"}
	wantSums := map[string]pmSums{}
	for _, f := range flows {
		if f.proto != 6 && f.proto != 17 {
			continue
		}
		k := fmt.Sprintf("%s %s %d %d %s", trunc(f.src.String(), 16, 48), trunc(f.dst.String(), 16, 48), f.sport, f.dport, strings.ToLower(protoName[f.proto]))
		wantSums[k] = pmSums{wantSums[k].pkts + f.pkts, wantSums[k].bytes + f.octets}
	}
	for _, p := range []int{port, pmPort} {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if _, queued := udpSocket(t, p); queued == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("udp port %d: datagrams left unread", p)
			}
		}
	}
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if b, err := os.ReadFile(pmOut); err == nil && maps.Equal(readPmSums(t, b), wantSums) {
			break
		}
	}
	// nfacctd stops on SIGINT (SIGTERM leaves its core running).
	nfacctd.signal(syscall.SIGINT)
	nfcapd.signal(syscall.SIGTERM)
	if !nfcapd.wait(15 * time.Second) {
		t.Fatal("nfcapd did not stop")
	}
	log := nfcapd.output()
	m := regexp.MustCompile(`Flows: (\d+).*Sequence Errors: (\d+), Bad Packets: (\d+)`).FindStringSubmatch(log)
	if m == nil || m[2] != "0" || m[3] != "0" {
		t.Errorf("nfcapd reports errors or no statistics:\n%s", log)
	}

	var want []string
	for _, f := range flows {
		if f.proto != 6 && f.proto != 17 {
			continue
		}
		want = append(want, fmt.Sprintf("%s %s %d %d %s %d %d", trunc(f.src.String(), 16, 48), trunc(f.dst.String(), 16, 48),
			f.sport, f.dport, protoName[f.proto], f.pkts, f.octets))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nfdump", "-R", dataDir, "-o", "csv", "-q").Output()
	if err != nil {
		t.Fatalf("nfdump: %v\n%s", err, out)
	}
	rows, err := csv.NewReader(strings.NewReader(string(out))).ReadAll()
	if err != nil {
		t.Fatalf("nfdump csv: %v\n%.2000s", err, out)
	}
	var got []string
	for _, r := range rows {
		if len(r) < 13 || r[0] == "ts" {
			continue
		}
		// ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,...
		got = append(got, strings.Join([]string{r[3], r[4], r[5], r[6], strings.TrimSpace(r[7]), r[11], r[12]}, " "))
	}
	sameMultiset(t, "nfdump", got, want)

	// nfacctd: packets and bytes summed per 5-tuple.
	if !nfacctd.wait(15 * time.Second) {
		t.Fatal("nfacctd did not stop")
	}
	b, err := os.ReadFile(pmOut)
	if err != nil {
		t.Fatalf("nfacctd wrote nothing: %v\n%s", err, nfacctd.tail())
	}
	gotSums := readPmSums(t, b)
	if len(gotSums) != len(wantSums) {
		t.Errorf("nfacctd: %d 5-tuples, want %d", len(gotSums), len(wantSums))
	}
	for k, w := range wantSums {
		if g, ok := gotSums[k]; !ok || g != w {
			t.Errorf("nfacctd %s: %+v, want %+v", k, g, w)
			break
		}
	}
}

// pmSums are nfacctd's packets and bytes for one 5-tuple.
type pmSums struct{ pkts, bytes uint64 }

// readPmSums sums nfacctd's CSV rows (appended every refresh) per 5-tuple.
// A row cut short by a write in progress is left out.
func readPmSums(t *testing.T, b []byte) map[string]pmSums {
	t.Helper()
	r := csv.NewReader(strings.NewReader(string(b)))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		t.Fatalf("nfacctd csv: %v", err)
	}
	sums := map[string]pmSums{}
	for _, r := range rows {
		if len(r) != 7 || r[0] == "SRC_IP" {
			continue
		}
		var p, o uint64
		fmt.Sscan(r[5], &p)
		fmt.Sscan(r[6], &o)
		k := strings.Join(r[:5], " ")
		sums[k] = pmSums{sums[k].pkts + p, sums[k].bytes + o}
	}
	return sums
}

// udpSocket reports whether a UDP socket of this network namespace is
// bound to port, and how many bytes wait in the receive queues of those
// that are (from /proc/net/udp and udp6).
func udpSocket(t *testing.T, port int) (bound bool, queued int) {
	t.Helper()
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 5 {
				continue
			}
			_, hexPort, _ := strings.Cut(fs[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); err != nil || int(p) != port {
				continue
			}
			_, rx, _ := strings.Cut(fs[4], ":")
			n, err := strconv.ParseUint(rx, 16, 64)
			if err != nil {
				t.Fatalf("%s: %q", f, line)
			}
			bound, queued = true, queued+int(n)
		}
	}
	return bound, queued
}

// netipPrefix returns address a with only the leading bits of its family
// kept, as truncation anonymises it.
func netipPrefix(a string, v4bits, v6bits int) (string, error) {
	ip := net.ParseIP(a)
	if ip4 := ip.To4(); ip4 != nil {
		return ip4.Mask(net.CIDRMask(v4bits, 32)).String(), nil
	}
	return ip.Mask(net.CIDRMask(v6bits, 128)).String(), nil
}
