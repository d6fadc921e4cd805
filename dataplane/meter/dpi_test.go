package meter

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/internal/tsharktest"
)

// dnsQuery builds a DNS query for name and type.
func dnsQuery(id uint16, name string, qtype uint16) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = append(b, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0) // RD, one question
	for _, l := range strings.Split(name, ".") {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	b = append(b, 0)
	b = binary.BigEndian.AppendUint16(b, qtype)
	return binary.BigEndian.AppendUint16(b, 1)
}

// TestMeterDPI captures real clients on loopback with dumpcap (curl over
// HTTP and over TLS against local servers, a DNS query to a local UDP
// port) and checks the fields the meter reads from the first packets.
func TestMeterDPI(t *testing.T) {
	need(t, "dumpcap", "curl")
	hsrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") }))
	defer hsrv.Close()
	tsrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") }))
	defer tsrv.Close()
	dns := tsharktest.ListenUDP(t, "udp4", "127.0.0.1")
	hport := hsrv.Listener.Addr().(*net.TCPAddr).Port
	tport := tsrv.Listener.Addr().(*net.TCPAddr).Port
	dport := dns.LocalAddr().(*net.UDPAddr).Port

	probe := tsharktest.NewProbe(t)
	dir := t.TempDir()
	capPath := filepath.Join(dir, "dpi.pcapng")
	filter := fmt.Sprintf("tcp port %d or tcp port %d or udp port %d or %s", hport, tport, dport, probe.Filter())
	dc := exec.Command("dumpcap", "-q", "-i", "lo", "-f", filter, "-w", capPath)
	if out, err := dc.StderrPipe(); err == nil {
		go func() {
			b := make([]byte, 4096)
			for {
				if _, err := out.Read(b); err != nil {
					return
				}
			}
		}()
	}
	if err := dc.Start(); err != nil {
		t.Skipf("dumpcap: %v", err)
	}
	defer func() { dc.Process.Kill(); dc.Wait() }()
	probe.WaitCaptured(t, capPath, 20*time.Second)

	curl := func(args ...string) {
		out, err := exec.Command("curl", append([]string{"-s", "-S", "-o", "/dev/null", "--max-time", "10"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
	}
	curl("-X", "POST", "-d", "x=1", "-H", "Host: www.example.test", "http://127.0.0.1:"+strconv.Itoa(hport)+"/form")
	curl("-k", "--resolve", "tls.example.test:"+strconv.Itoa(tport)+":127.0.0.1", "https://tls.example.test:"+strconv.Itoa(tport)+"/")
	// DNS over UDP to port 53 is what the meter inspects; the capture's
	// port is rewritten to 53 below, so the query goes to the test's port.
	c, err := net.Dial("udp4", dns.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write(dnsQuery(0x1234, "flows.example.test", 28))
	c.Close()
	probe.WaitCaptured(t, capPath, 20*time.Second)
	dc.Process.Signal(os.Interrupt)
	dc.Wait()

	// The DNS query went to an ephemeral port; meter it as the port 53 it
	// stands for by reading the capture through a rewriting sink.
	col, st := meterRun2(t, Config{DPI: true, Biflow: true}, rewritePort(t, capPath, uint16(dport), 53))
	if st.SkippedTotal() != 0 {
		t.Errorf("skipped: %+v", st.Skipped)
	}
	var http, tls, dnsRec bool
	for _, r := range col.recs {
		switch {
		case r.dport == uint16(hport):
			http = true
			if r.method != "POST" || r.host != "www.example.test" {
				t.Errorf("HTTP: method %q host %q", r.method, r.host)
			}
		case r.dport == uint16(tport):
			tls = true
			if r.sni != "tls.example.test" {
				t.Errorf("TLS: server name %q", r.sni)
			}
		case r.dport == 53:
			dnsRec = true
			if r.qname != "flows.example.test" || r.qtype != 28 {
				t.Errorf("DNS: %q type %d", r.qname, r.qtype)
			}
		}
	}
	if !http || !tls || !dnsRec {
		t.Errorf("records: HTTP %v, TLS %v, DNS %v: %v", http, tls, dnsRec, col.recs)
	}
}

// rewritePort writes a classic pcap copy of the capture at path in which
// UDP port from is 53.
func rewritePort(t *testing.T, path string, from, to uint16) string {
	t.Helper()
	out := path + ".53.pcap"
	cmd := exec.Command("tshark", "-r", path, "-F", "pcap", "-w", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("tshark: %v %s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// Ports sit after the IP header; find UDP headers naively by pattern
	// (source or destination port equal to from) in each record.
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 {
		t.Skip("tshark wrote a pcap that is not little-endian microsecond")
	}
	var fb [2]byte
	binary.BigEndian.PutUint16(fb[:], from)
	for i := 24; i+16 <= len(b); {
		caplen := int(binary.LittleEndian.Uint32(b[i+8:]))
		rec := b[i+16 : i+16+caplen]
		// loopback on Linux is Ethernet: 14 + IPv4 header
		if len(rec) > 14+20+8 && rec[12] == 8 && rec[13] == 0 && rec[14+9] == protoUDP {
			hl := int(rec[14]&0xf) * 4
			u := rec[14+hl:]
			for _, off := range []int{0, 2} {
				if u[off] == fb[0] && u[off+1] == fb[1] {
					binary.BigEndian.PutUint16(u[off:], to)
				}
			}
		}
		i += 16 + caplen
	}
	if err := os.WriteFile(out, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}
