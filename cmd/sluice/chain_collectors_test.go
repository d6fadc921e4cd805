package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	time.Sleep(500 * time.Millisecond) // it logs nothing once it listens

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
	time.Sleep(2500 * time.Millisecond) // the last datagrams reach nfcapd; nfacctd writes every second
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

	trunc := func(a string, v4bits, v6bits int) string {
		p, _ := netipPrefix(a, v4bits, v6bits)
		return p
	}
	protoName := map[uint8]string{6: "TCP", 17: "UDP"}
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
	type sums struct{ pkts, bytes uint64 }
	wantSums := map[string]*sums{}
	for _, f := range flows {
		if f.proto != 6 && f.proto != 17 {
			continue
		}
		k := fmt.Sprintf("%s %s %d %d %s", trunc(f.src.String(), 16, 48), trunc(f.dst.String(), 16, 48), f.sport, f.dport, strings.ToLower(protoName[f.proto]))
		if wantSums[k] == nil {
			wantSums[k] = &sums{}
		}
		wantSums[k].pkts += f.pkts
		wantSums[k].bytes += f.octets
	}
	b, err := os.ReadFile(pmOut)
	if err != nil {
		t.Fatalf("nfacctd wrote nothing: %v\n%s", err, nfacctd.tail())
	}
	pmRows, err := csv.NewReader(strings.NewReader(string(b))).ReadAll()
	if err != nil {
		t.Fatalf("nfacctd csv: %v", err)
	}
	gotSums := map[string]*sums{}
	for _, r := range pmRows {
		if len(r) != 7 || r[0] == "SRC_IP" {
			continue
		}
		var p, o uint64
		fmt.Sscan(r[5], &p)
		fmt.Sscan(r[6], &o)
		k := strings.Join(r[:5], " ")
		if gotSums[k] == nil {
			gotSums[k] = &sums{}
		}
		gotSums[k].pkts += p
		gotSums[k].bytes += o
	}
	if len(gotSums) != len(wantSums) {
		t.Errorf("nfacctd: %d 5-tuples, want %d", len(gotSums), len(wantSums))
	}
	for k, w := range wantSums {
		if g := gotSums[k]; g == nil || *g != *w {
			t.Errorf("nfacctd %s: %+v, want %+v", k, g, *w)
			break
		}
	}
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
