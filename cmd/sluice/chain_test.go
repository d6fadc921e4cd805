package main

// Sluice chained to Sluice: records go over TCP into sluice A, which runs a
// pipeline and re-exports IPFIX over TCP to sluice B (one per pipeline),
// which writes JSON lines. What B writes must be, record by record, what
// the test computes independently from the input for each stage type. A
// also writes each pipeline to an IPFIX file that libfixbuf's ipfixDump
// must read without error.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/anon"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/offline/pcap"
	"github.com/sluice-flow/sluice/internal/tsharktest"
)

var (
	chainBuildOnce sync.Once
	chainBinary    string
	chainBuildErr  error
)

// chainEnv builds the sluice binary once per test process.
func chainEnv(t *testing.T) *e2eEnv {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	chainBuildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-chain-")
		if err != nil {
			chainBuildErr = err
			return
		}
		chainBinary = filepath.Join(dir, "sluice")
		goCmd, err := exec.LookPath("go")
		if err != nil {
			goCmd = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		cmd := exec.Command(goCmd, "build", "-o", chainBinary, "./cmd/sluice")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			chainBuildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if chainBuildErr != nil {
		t.Fatal(chainBuildErr)
	}
	return &e2eEnv{root: root, dir: filepath.Dir(chainBinary), sluice: chainBinary}
}

// chainFlow is one input record.
type chainFlow struct {
	src, dst     netip.Addr
	sport, dport uint16
	proto        uint8
	octets, pkts uint64
	start, end   uint64 // ms
}

const (
	chainDomain   = 7
	chainSampling = 100 // announced in the options record
	chainKeyHex   = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
)

var (
	chainV4 = []ipfix.FieldSpec{{ID: 8, Length: 4}, {ID: 12, Length: 4}, {ID: 7, Length: 2}, {ID: 11, Length: 2},
		{ID: 4, Length: 1}, {ID: 1, Length: 8}, {ID: 2, Length: 8}, {ID: 152, Length: 8}, {ID: 153, Length: 8}}
	chainV6 = []ipfix.FieldSpec{{ID: 27, Length: 16}, {ID: 28, Length: 16}, {ID: 7, Length: 2}, {ID: 11, Length: 2},
		{ID: 4, Length: 1}, {ID: 1, Length: 8}, {ID: 2, Length: 8}, {ID: 152, Length: 8}, {ID: 153, Length: 8}}
	// Options: scope samplerId, then samplingInterval.
	chainOpts = []ipfix.FieldSpec{{ID: 48, Length: 1}, {ID: 34, Length: 4}}
)

func chainFlows(n int, seed uint64) []chainFlow {
	rng := rand.New(rand.NewPCG(seed, 1))
	base := uint64(time.Now().Add(-time.Minute).UnixMilli())
	ports := []uint16{80, 443, 53, 22, 8080}
	protos := []uint8{6, 6, 17, 1}
	out := make([]chainFlow, n)
	for i := range out {
		f := chainFlow{sport: uint16(1024 + rng.IntN(60000)), dport: ports[rng.IntN(len(ports))], proto: protos[rng.IntN(len(protos))],
			octets: uint64(40 + rng.IntN(1_000_000)), pkts: uint64(1 + rng.IntN(1000))}
		f.start = base + uint64(rng.IntN(30_000))
		f.end = f.start + uint64(rng.IntN(20_000))
		if i%5 == 4 {
			f.src = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(rng.IntN(4)), 14: byte(rng.IntN(256)), 15: byte(rng.IntN(256))})
			f.dst = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xff, 0, 15: byte(rng.IntN(256))})
		} else {
			f.src = netip.AddrFrom4([4]byte{10, byte(rng.IntN(3)), byte(rng.IntN(256)), byte(rng.IntN(256))})
			f.dst = netip.AddrFrom4([4]byte{192, 0, 2, byte(rng.IntN(256))})
		}
		out[i] = f
	}
	return out
}

// chainMessages encodes the flows: templates and the options record first,
// then data messages of up to 20 records, one set per address family run.
func chainMessages(flows []chainFlow) []byte {
	var w ipfix.MessageWriter
	w.DomainID = chainDomain
	now := uint32(time.Now().Unix())
	b := w.Begin(nil, now)
	b = w.BeginSet(b, ipfix.TemplateSetID)
	b = ipfix.AppendTemplateRecord(b, 256, chainV4)
	b = ipfix.AppendTemplateRecord(b, 257, chainV6)
	b = w.EndSet(b)
	b = w.BeginSet(b, ipfix.OptionsTemplateSetID)
	b = ipfix.AppendOptionsTemplateRecord(b, 258, 1, chainOpts)
	b = w.EndSet(b)
	b = w.BeginSet(b, 258)
	b = append(b, 1)
	b = binary.BigEndian.AppendUint32(b, chainSampling)
	w.AddRecords(1)
	b = w.EndSet(b)
	b, _ = w.Finish(b)
	for i := 0; i < len(flows); i += 20 {
		b = w.Begin(b, now)
		set := -1
		for _, f := range flows[i:min(i+20, len(flows))] {
			id := 256
			if f.src.Is6() {
				id = 257
			}
			if id != set {
				if set >= 0 {
					b = w.EndSet(b)
				}
				b = w.BeginSet(b, uint16(id))
				set = id
			}
			b = ipfix.AppendAddr(b, f.src)
			b = ipfix.AppendAddr(b, f.dst)
			b = binary.BigEndian.AppendUint16(b, f.sport)
			b = binary.BigEndian.AppendUint16(b, f.dport)
			b = append(b, f.proto)
			b = binary.BigEndian.AppendUint64(b, f.octets)
			b = binary.BigEndian.AppendUint64(b, f.pkts)
			b = binary.BigEndian.AppendUint64(b, f.start)
			b = binary.BigEndian.AppendUint64(b, f.end)
			w.AddRecords(1)
		}
		b = w.EndSet(b)
		b, _ = w.Finish(b)
	}
	return b
}

// chainSink is a downstream sluice B writing JSON lines.
type chainSink struct {
	r    *e2eRun
	port int
	out  string
	got  int // records written, after records()
}

func startChainSink(t *testing.T, env *e2eEnv, name string) *chainSink {
	r := env.newRun(t, name, false)
	port, adminPort := e2eFreePorts(t)
	r.admin = adminPort
	s := &chainSink{r: r, port: port, out: filepath.Join(r.dir, "b.jsonl")}
	p := r.start(name, env.sluice, "run", "--listen", fmt.Sprintf("tcp://127.0.0.1:%d", port),
		"--admin", fmt.Sprintf("127.0.0.1:%d", adminPort), "--output", "jsonl:"+s.out)
	r.sluice = p
	waitReady(t, r)
	return s
}

func waitReady(t *testing.T, r *e2eRun) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && !r.sluice.exited() {
		if code, _, err := r.get("/readyz"); err == nil && code == http.StatusOK {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not ready:\n%s", r.name, r.sluice.tail())
}

// records waits until sluice B has decoded want records (options
// included) and all that was sent to it, stops it and returns its JSON
// lines, decoded. All that was sent (the marker for the check that no more
// than want came) is known from the sender: with sent nil, the sender has
// closed its connections (B has no TCP session left) and B's mediator has
// every record B's collector took; else B decoded sent() records.
func (s *chainSink) records(t *testing.T, want int, sent func() float64) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	got := -1.0
	for time.Now().Before(deadline) {
		m := s.r.metrics()
		got, _ = m.sum("sluice_records_total")
		collected, _ := m.sum("sluice_collected_records_total")
		sessions, _ := m.sum("sluice_tcp_sessions")
		all := sessions == 0 && collected == got
		if sent != nil {
			all = got == sent()
		}
		if int(got) >= want && all {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.r.sluice.signal(syscall.SIGTERM)
	if !s.r.sluice.wait(15 * time.Second) {
		t.Fatalf("%s did not stop", s.r.name)
	}
	b, err := os.ReadFile(s.out)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range e2eLines(b) {
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(line))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("%s: bad line %q: %v", s.r.name, line, err)
		}
		// A record carries when B read it (aggregates, made by A's
		// pipeline, carry none); the checks below are about the fields A
		// sent.
		if v, ok := m["time_received_ns"]; ok {
			if n, err := v.(json.Number).Int64(); err != nil || n <= 0 {
				t.Fatalf("%s: bad time_received_ns in %q", s.r.name, line)
			}
			delete(m, "time_received_ns")
		}
		out = append(out, m)
	}
	if len(out) != want {
		t.Errorf("%s: %d records arrived, want %d (metric said %v)", s.r.name, len(out), want, got)
	}
	s.got = len(out)
	return out
}

// chainData drops options records.
func chainData(recs []map[string]any) (data []map[string]any, opts int) {
	for _, m := range recs {
		if m["options"] == true {
			opts++
			continue
		}
		data = append(data, m)
	}
	return data, opts
}

// canon renders the named fields of a record as one comparable string.
func canon(m map[string]any, keys ...string) string {
	var sb strings.Builder
	for _, k := range keys {
		v, ok := m[k]
		if !ok {
			v = "<absent>"
		}
		fmt.Fprintf(&sb, "%s=%v ", k, v)
	}
	return sb.String()
}

func flowCanon(f chainFlow, src, dst netip.Addr) string {
	sk, dk := "sourceIPv4Address", "destinationIPv4Address"
	if f.src.Is6() {
		sk, dk = "sourceIPv6Address", "destinationIPv6Address"
	}
	return fmt.Sprintf("%s=%v %s=%v sourceTransportPort=%d destinationTransportPort=%d protocolIdentifier=%d octetDeltaCount=%d packetDeltaCount=%d ",
		sk, src, dk, dst, f.sport, f.dport, f.proto, f.octets, f.pkts)
}

func recCanon(m map[string]any) string {
	sk, dk := "sourceIPv4Address", "destinationIPv4Address"
	if _, ok := m["sourceIPv6Address"]; ok {
		sk, dk = "sourceIPv6Address", "destinationIPv6Address"
	}
	return canon(m, sk, dk, "sourceTransportPort", "destinationTransportPort", "protocolIdentifier", "octetDeltaCount", "packetDeltaCount")
}

func sameMultiset(t *testing.T, what string, got, want []string) {
	t.Helper()
	sort.Strings(got)
	sort.Strings(want)
	if len(got) != len(want) {
		t.Errorf("%s: %d records, want %d", what, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Errorf("%s: first difference at %d:\n got %s\nwant %s", what, i, got[i], want[i])
			return
		}
	}
}

// udpCapture receives the datagrams of an ipfix+udp output and writes
// them into a pcap for tshark, as a capture on the wire would hold them.
type udpCapture struct {
	pc   net.PacketConn
	path string
	done chan error
}

func startUDPCapture(t *testing.T, dir, name string) *udpCapture {
	pc := tsharktest.ListenUDP(t, "udp4", "127.0.0.1")
	if u, ok := pc.(*net.UDPConn); ok {
		u.SetReadBuffer(8 << 20)
	}
	c := &udpCapture{pc: pc, path: filepath.Join(dir, name+".pcap"), done: make(chan error, 1)}
	f, err := os.Create(c.path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := pcap.NewWriter(f, pcap.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				c.done <- f.Close()
				return
			}
			src := from.(*net.UDPAddr).AddrPort()
			if err := w.WriteUDP(time.Now(), src, pc.LocalAddr().(*net.UDPAddr).AddrPort(), buf[:n]); err != nil {
				f.Close()
				c.done <- err
				return
			}
		}
	}()
	return c
}

func (c *udpCapture) port() int { return c.pc.LocalAddr().(*net.UDPAddr).Port }

// tshark closes the capture and has tshark decode it: no malformed packet
// or expert warning (sequence numbers included), want flows. It returns
// tshark's verbose output.
func (c *udpCapture) tshark(t *testing.T, want int) string {
	t.Helper()
	c.pc.Close()
	if err := <-c.done; err != nil {
		t.Fatal(err)
	}
	return tsharkFlows(t, c.path, "udp", c.port(), want)
}

// tsharkFlows has tshark decode the IPFIX on one port of a capture: no
// malformed packet or expert warning (sequence numbers included; notes on
// the transport aside, see tsharktest.Benign), want flows. It returns
// tshark's verbose output.
func tsharkFlows(t *testing.T, path, transport string, port, want int) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, "/usr/bin/tshark", "-r", path, "-d", fmt.Sprintf("%s.port==%d,cflow", transport, port),
		"-Y", fmt.Sprintf("%s.dstport==%d", transport, port), "-V").CombinedOutput()
	out := string(b)
	if err != nil {
		t.Fatalf("tshark %s: %v\n%.2000s", path, err, out)
	}
	flows := 0
	for _, line := range strings.Split(out, "\n") {
		l := strings.TrimSpace(line)
		if strings.HasPrefix(l, "Flow ") && !strings.Contains(l, ":") {
			flows++
		}
		if (strings.Contains(l, "Expert Info") && !tsharktest.Benign(l)) || strings.Contains(l, "Malformed") {
			t.Errorf("tshark %s port %d: %s", filepath.Base(path), port, l)
		}
	}
	if flows != want {
		t.Errorf("tshark %s %s port %d: %d flows, want %d", filepath.Base(path), transport, port, flows, want)
	}
	return out
}

// tcpStreamSaver keeps the bytes of every TCP connection it accepts: an
// IPFIX stream over TCP, which ipfixDump reads as a file.
type tcpStreamSaver struct {
	ln   net.Listener
	mu   sync.Mutex
	data []byte
	wg   sync.WaitGroup
}

func startTCPStreamSaver(t *testing.T) *tcpStreamSaver {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &tcpStreamSaver{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				b, _ := io.ReadAll(c)
				s.mu.Lock()
				s.data = append(s.data, b...)
				s.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

func (s *tcpStreamSaver) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// save waits for the connections to end (the sender closed them) and
// writes what came to path.
func (s *tcpStreamSaver) save(t *testing.T, path string) {
	t.Helper()
	s.ln.Close()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("TCP stream did not end")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.WriteFile(path, s.data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// tsharkLabelValues collects the values tshark prints for a field label.
func tsharkLabelValues(out, label string) []string {
	var vals []string
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), label+": "); ok {
			vals = append(vals, v)
		}
	}
	return vals
}

func TestChainStages(t *testing.T) {
	e2eNeed(t, "/usr/bin/ipfixDump", "/usr/bin/tshark", "/usr/bin/dumpcap")
	env := chainEnv(t)
	flows := chainFlows(3000, 42)

	type pipe struct {
		name, stages string
		sink         *chainSink
		udp          *udpCapture
		stream       *tcpStreamSaver
	}
	pipes := []*pipe{
		{name: "select", stages: `
      - select: protocolIdentifier == 6 and destinationTransportPort in [80, 443]`},
		{name: "project", stages: `
      - project: {keep: [sourceIPv4Address, destinationIPv4Address, octetDeltaCount]}
      - rename: {octetDeltaCount: postOctetDeltaCount}
      - set: {observationPointId: 42, interfaceName: edge1}`},
		{name: "anonymise", stages: `
      - anonymise: {method: cryptopan, key: ` + chainKeyHex + `}`},
		{name: "enrich", stages: `
      - enrich:
          exporter: true
          sampling: true
          networks:
            - file: NETS
              address: [sourceIPv4Address, sourceIPv6Address]
              columns: {asn: bgpSourceAsNumber}`},
		{name: "sample", stages: `
      - sample: {rate: 7}`},
		{name: "aggregate", stages: `
      - aggregate: {keys: [protocolIdentifier, destinationTransportPort], interval: 1h}`},
	}
	var wg sync.WaitGroup
	for _, p := range pipes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.sink = startChainSink(t, env, "b-"+p.name)
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	a := env.newRun(t, "a", false)
	probe := tsharktest.NewProbe(t)
	filter := []string{probe.Filter()}
	for _, p := range pipes {
		p.udp = startUDPCapture(t, a.dir, p.name)
		p.stream = startTCPStreamSaver(t)
		filter = append(filter, fmt.Sprintf("tcp port %d", p.sink.port))
	}
	// The TCP re-export to each sluice B, as tshark sees it on the wire.
	capPath := filepath.Join(a.dir, "tcp.pcap")
	capture := a.start("dumpcap", "dumpcap", "-i", "lo", "-f", strings.Join(filter, " or "), "-P", "-w", capPath)
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(capture.output(), "File:"); time.Sleep(50 * time.Millisecond) {
		if capture.exited() || time.Now().After(deadline) {
			e2eUnavailable(t, "dumpcap did not start capturing on lo: %s", capture.tail())
		}
	}
	// "File:" comes a little before the capture does.
	probe.WaitCaptured(t, capPath, 15*time.Second)
	nets := filepath.Join(a.dir, "nets.csv")
	if err := os.WriteFile(nets, []byte("prefix,asn\n10.0.0.0/8,64500\n10.1.0.0/16,64501\n2001:db8::/32,64510\n2001:db8:0:1::/64,64511\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var yml strings.Builder
	yml.WriteString("pipelines:\n")
	for _, p := range pipes {
		fmt.Fprintf(&yml, "  - name: %s\n    stages:%s\n    outputs: [\"ipfix+tcp://127.0.0.1:%d\", \"ipfix-file:%s\", \"ipfix+udp://127.0.0.1:%d\", \"ipfix+tcp://127.0.0.1:%d\"]\n",
			p.name, strings.ReplaceAll(p.stages, "NETS", nets), p.sink.port, filepath.Join(a.dir, p.name+".ipfix"), p.udp.port(), p.stream.port())
	}
	pipeFile := filepath.Join(a.dir, "pipeline.yaml")
	if err := os.WriteFile(pipeFile, []byte(yml.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	port, adminPort := e2eFreePorts(t)
	a.admin = adminPort
	a.sluice = a.start("a", env.sluice, "run", "--listen", fmt.Sprintf("tcp://127.0.0.1:%d", port),
		"--admin", fmt.Sprintf("127.0.0.1:%d", adminPort), "--pipeline", pipeFile)
	waitReady(t, a)

	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(chainMessages(flows)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if n, _ := a.metrics().sum("sluice_records_total"); int(n) >= len(flows)+1 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.sluice.signal(syscall.SIGTERM) // emits the aggregates, flushes the outputs
	if !a.sluice.wait(20 * time.Second) {
		t.Fatalf("sluice A did not stop:\n%s", a.sluice.tail())
	}
	if t.Failed() {
		return
	}
	for _, p := range pipes {
		p.stream.save(t, filepath.Join(a.dir, p.name+".tcp.ipfix"))
	}

	byName := map[string]*pipe{}
	for _, p := range pipes {
		byName[p.name] = p
	}
	cp, err := anon.NewCryptoPAn([32]byte(mustHex(t, chainKeyHex)))
	if err != nil {
		t.Fatal(err)
	}

	// select
	var want []string
	for _, f := range flows {
		if f.proto == 6 && (f.dport == 80 || f.dport == 443) {
			want = append(want, flowCanon(f, f.src, f.dst))
		}
	}
	recs, opts := chainData(byName["select"].sink.records(t, len(want)+1, nil))
	var got []string
	for _, m := range recs {
		got = append(got, recCanon(m))
	}
	sameMultiset(t, "select", got, want)
	if opts != 1 {
		t.Errorf("select: %d options records passed, want 1", opts)
	}
	chainIPFIXDump(t, filepath.Join(a.dir, "select.ipfix"), len(want)+1)
	byName["select"].udp.tshark(t, len(want)+1)

	// project + rename + set
	want = want[:0]
	for _, f := range flows {
		if f.src.Is4() {
			want = append(want, fmt.Sprintf("sourceIPv4Address=%v destinationIPv4Address=%v postOctetDeltaCount=%d observationPointId=42 interfaceName=edge1 ", f.src, f.dst, f.octets))
		} else {
			want = append(want, fmt.Sprintf("sourceIPv4Address=<absent> destinationIPv4Address=<absent> postOctetDeltaCount=%d observationPointId=42 interfaceName=edge1 ", f.octets))
		}
	}
	recs, _ = chainData(byName["project"].sink.records(t, len(flows)+1, nil))
	got = got[:0]
	for _, m := range recs {
		if len(m) != 5+5 && len(m) != 3+5 { // 5 header keys
			t.Errorf("project: unexpected fields in %v", m)
		}
		got = append(got, canon(m, "sourceIPv4Address", "destinationIPv4Address", "postOctetDeltaCount", "observationPointId", "interfaceName"))
	}
	sameMultiset(t, "project", got, want)
	chainIPFIXDump(t, filepath.Join(a.dir, "project.ipfix"), len(flows)+1)
	byName["project"].udp.tshark(t, len(flows)+1)

	// anonymise
	want = want[:0]
	for _, f := range flows {
		want = append(want, flowCanon(f, cp.Anonymize(f.src), cp.Anonymize(f.dst)))
	}
	recs, _ = chainData(byName["anonymise"].sink.records(t, len(flows)+1, nil))
	got = got[:0]
	for _, m := range recs {
		got = append(got, recCanon(m))
	}
	sameMultiset(t, "anonymise", got, want)
	// tshark sees the anonymised source addresses, not the original ones.
	out := byName["anonymise"].udp.tshark(t, len(flows)+1)
	want = want[:0]
	for _, f := range flows {
		want = append(want, cp.Anonymize(f.src).String())
	}
	sameMultiset(t, "anonymise (tshark)", tsharkLabelValues(out, "SrcAddr"), want)

	// enrich
	asn := func(a netip.Addr) int {
		switch {
		case netip.MustParsePrefix("10.1.0.0/16").Contains(a):
			return 64501
		case netip.MustParsePrefix("10.0.0.0/8").Contains(a):
			return 64500
		case netip.MustParsePrefix("2001:db8:0:1::/64").Contains(a):
			return 64511
		case netip.MustParsePrefix("2001:db8::/32").Contains(a):
			return 64510
		}
		return 0
	}
	want = want[:0]
	for _, f := range flows {
		want = append(want, flowCanon(f, f.src, f.dst)+fmt.Sprintf("originalExporterIPv4Address=127.0.0.1 originalObservationDomainId=%d samplingInterval=%d bgpSourceAsNumber=%d ", chainDomain, chainSampling, asn(f.src)))
	}
	recs, _ = chainData(byName["enrich"].sink.records(t, len(flows)+1, nil))
	got = got[:0]
	for _, m := range recs {
		got = append(got, recCanon(m)+canon(m, "originalExporterIPv4Address", "originalObservationDomainId", "samplingInterval", "bgpSourceAsNumber"))
	}
	sameMultiset(t, "enrich", got, want)
	chainIPFIXDump(t, filepath.Join(a.dir, "enrich.ipfix"), len(flows)+1)
	byName["enrich"].udp.tshark(t, len(flows)+1)

	// sample: the first data record, then every 7th, in arrival order.
	want = want[:0]
	for i, f := range flows {
		if i%7 == 0 {
			want = append(want, flowCanon(f, f.src, f.dst))
		}
	}
	recs, _ = chainData(byName["sample"].sink.records(t, len(want)+1, nil))
	got = got[:0]
	for _, m := range recs {
		got = append(got, recCanon(m))
	}
	sameMultiset(t, "sample", got, want)
	byName["sample"].udp.tshark(t, len(want)+1)

	// aggregate, against a reference computed here.
	type agg struct{ octets, pkts, flows, start, end uint64 }
	ref := map[string]*agg{}
	for _, f := range flows {
		k := fmt.Sprintf("protocolIdentifier=%d destinationTransportPort=%d ", f.proto, f.dport)
		a := ref[k]
		if a == nil {
			a = &agg{start: ^uint64(0)}
			ref[k] = a
		}
		a.octets += f.octets
		a.pkts += f.pkts
		a.flows++
		a.start = min(a.start, f.start)
		a.end = max(a.end, f.end)
	}
	want = want[:0]
	for k, a := range ref {
		want = append(want, k+fmt.Sprintf("octetDeltaCount=%d packetDeltaCount=%d deltaFlowCount=%d flowStartMilliseconds=%s flowEndMilliseconds=%s ",
			a.octets, a.pkts, a.flows, msRFC3339(a.start), msRFC3339(a.end)))
	}
	recs, _ = chainData(byName["aggregate"].sink.records(t, len(ref)+1, nil))
	got = got[:0]
	for _, m := range recs {
		got = append(got, canon(m, "protocolIdentifier", "destinationTransportPort", "octetDeltaCount", "packetDeltaCount", "deltaFlowCount", "flowStartMilliseconds", "flowEndMilliseconds"))
	}
	sameMultiset(t, "aggregate", got, want)
	chainIPFIXDump(t, filepath.Join(a.dir, "aggregate.ipfix"), len(ref)+1)
	byName["aggregate"].udp.tshark(t, len(ref)+1)

	// The TCP re-export: the stream read as a file by ipfixDump, and the
	// capture of the connection to each sluice B decoded by tshark, carry
	// as many records as sluice B decoded.
	probe.WaitCaptured(t, capPath, 15*time.Second) // the capture has all sent before
	capture.signal(syscall.SIGTERM)
	if !capture.wait(15 * time.Second) {
		t.Fatalf("dumpcap did not stop")
	}
	for _, p := range pipes {
		chainIPFIXDump(t, filepath.Join(a.dir, p.name+".tcp.ipfix"), p.sink.got)
		tsharkFlows(t, capPath, "tcp", p.sink.port, p.sink.got)
	}
}

func msRFC3339(ms uint64) string {
	return time.UnixMilli(int64(ms)).UTC().Format(time.RFC3339Nano)
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	k, err := anon.ParseKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k[:]
}

// chainIPFIXDump has libfixbuf's ipfixDump read an IPFIX file: it must
// succeed and count want data records.
func chainIPFIXDump(t *testing.T, path string, want int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/bin/ipfixDump", "-s", "-i", path).CombinedOutput()
	if err != nil {
		t.Errorf("ipfixDump %s: %v\n%.2000s", path, err, out)
		return
	}
	m := regexp.MustCompile(`(\d+) Data Records`).FindSubmatch(out)
	n := -1
	if m != nil {
		n, _ = strconv.Atoi(string(m[1]))
	}
	if n != want {
		t.Errorf("ipfixDump %s: %d data records, want %d\n%.3000s", path, n, want, out)
	}
}
