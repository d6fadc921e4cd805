package meter

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// rec is one flow record, from the meter or from another meter's export.
type rec struct {
	proto            uint8
	src, dst         netip.Addr
	sport, dport     uint16
	icmp             uint16
	packets, octets  uint64
	rpackets, roctet uint64
	start, end       int64 // ms
	reason           uint8
	flags            uint16
	vlan             uint16
	mpls             []byte
	method, host     string
	sni, qname       string
	qtype            uint16
	initFlags        uint8
}

func (r rec) String() string {
	return fmt.Sprintf("%d %v:%d > %v:%d icmp %#x: %d pkts %d oct, rev %d/%d", r.proto, r.src, r.sport, r.dst, r.dport, r.icmp, r.packets, r.octets, r.rpackets, r.roctet)
}

// collector decodes IPFIX messages (the meter's, softflowd's) into recs.
// Templates are kept per domain; options records are left out.
type collector struct {
	layouts map[[2]uint32]*ipfix.Layout
	recs    []rec
	msgs    int
	seq     map[uint32]uint32 // next expected sequence number per domain
	seqErrs int
	times   []uint32 // export times, in order
}

func newCollector() *collector {
	return &collector{layouts: map[[2]uint32]*ipfix.Layout{}, seq: map[uint32]uint32{}}
}

func (c *collector) message(t testing.TB, b []byte) {
	t.Helper()
	var m ipfix.Message
	if err := m.Decode(b); err != nil {
		t.Fatalf("message: %v", err)
	}
	c.msgs++
	c.times = append(c.times, m.ExportTime)
	if want, ok := c.seq[m.DomainID]; ok && want != m.Sequence {
		c.seqErrs++
	}
	n := uint32(0)
	it := m.Sets()
	var s ipfix.Set
	for it.Next(&s) {
		switch s.Kind {
		case ipfix.SetTemplate, ipfix.SetOptionsTemplate:
			ti := s.Templates()
			var tr ipfix.TemplateRecord
			for ti.Next(&tr) {
				if tr.Withdrawal() {
					continue
				}
				l, err := ipfix.Compile(&tr)
				if err != nil {
					t.Fatalf("template: %v", err)
				}
				c.layouts[[2]uint32{m.DomainID, uint32(tr.ID)}] = l
			}
		case ipfix.SetData:
			l := c.layouts[[2]uint32{m.DomainID, uint32(s.ID)}]
			if l == nil {
				t.Fatalf("data set %d without template", s.ID)
			}
			di := s.Records(l)
			var r ipfix.Record
			for di.Next(&r) {
				n++
				if l.Options {
					continue
				}
				c.recs = append(c.recs, toRec(l, &r))
			}
			if err := di.Err(); err != nil {
				t.Fatalf("records: %v", err)
			}
		}
	}
	if err := it.Err(); err != nil {
		t.Fatalf("sets: %v", err)
	}
	c.seq[m.DomainID] = m.Sequence + n
}

func toRec(l *ipfix.Layout, r *ipfix.Record) rec {
	var x rec
	u := func(pen uint32, id uint16) uint64 {
		if i := l.Index(pen, id); i >= 0 {
			return r.Uint(i)
		}
		return 0
	}
	s := func(pen uint32, id uint16) string {
		if i := l.Index(pen, id); i >= 0 {
			return string(r.Bytes(i))
		}
		return ""
	}
	a := func(id4, id6 uint16) netip.Addr {
		if i := l.Index(0, id4); i >= 0 {
			return r.Addr(i)
		}
		if i := l.Index(0, id6); i >= 0 {
			return r.Addr(i)
		}
		return netip.Addr{}
	}
	x.src, x.dst = a(8, 27), a(12, 28)
	x.proto = uint8(u(0, 4))
	x.sport, x.dport = uint16(u(0, 7)), uint16(u(0, 11))
	x.icmp = uint16(u(0, 32) | u(0, 139))
	if x.proto == protoICMP || x.proto == protoICMPv6 {
		if x.icmp == 0 && x.dport != 0 { // softflowd puts type<<8|code in the port
			x.icmp = x.dport
		}
		x.sport, x.dport = 0, 0
	}
	x.packets, x.octets = u(0, 2), u(0, 1)
	x.rpackets, x.roctet = u(PENReverse, 2), u(PENReverse, 1)
	if i := l.Index(0, 152); i >= 0 {
		x.start = r.UnixNano(i) / 1e6
	}
	if i := l.Index(0, 153); i >= 0 {
		x.end = r.UnixNano(i) / 1e6
	}
	x.reason = uint8(u(0, 136))
	x.flags = uint16(u(0, 6))
	x.vlan = uint16(u(0, 58))
	if i := l.Index(0, 70); i >= 0 {
		x.mpls = append([]byte(nil), r.Bytes(i)...)
	}
	x.initFlags = uint8(u(PENCERT, certInitialTCPFlags))
	x.method, x.host = s(0, 459), s(0, 460)
	x.sni, x.qname = s(PENCERT, certSSLServerName), s(PENCERT, certDNSQName)
	x.qtype = uint16(u(PENCERT, certDNSQRType))
	return x
}

// collectSink is a Sink that decodes what the meter makes.
type collectSink struct {
	t      testing.TB
	c      *collector
	raw    bytes.Buffer
	closed bool
}

func (s *collectSink) Message(b []byte) error {
	s.raw.Write(b)
	s.c.message(s.t, b)
	return nil
}

func (s *collectSink) Close() error { s.closed = true; return nil }

// meterRun meters the captures with cfg and returns the records.
func meterRun(t testing.TB, cfg Config, paths ...string) (*collector, Stats, []byte) {
	t.Helper()
	sink := &collectSink{t: t, c: newCollector()}
	m, err := New(cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if err := m.ReadFile(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	return sink.c, m.Stats(), sink.raw.Bytes()
}

var (
	trafficMu    sync.Mutex
	trafficFiles = map[string]string{}
	trafficDir   string
)

// traffic returns the path of a capture made by testdata's trafficpcap
// generator (TCP with handshakes and teardown, DNS, other UDP, ICMP and
// ICMPv6 echo, IPv4 and IPv6), made once per test binary.
func traffic(t testing.TB, seed, flows int) string {
	t.Helper()
	trafficMu.Lock()
	defer trafficMu.Unlock()
	key := fmt.Sprintf("traffic-%d-%d.pcap", seed, flows)
	if p, ok := trafficFiles[key]; ok {
		return p
	}
	if trafficDir == "" {
		d, err := os.MkdirTemp("", "sluice-meter-test")
		if err != nil {
			t.Fatal(err)
		}
		trafficDir = d
	}
	gen := filepath.Join(trafficDir, "trafficpcap")
	if _, err := os.Stat(gen); err != nil {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		cmd := exec.Command("go", "build", "-o", gen, "./testdata/exporters/trafficpcap")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building trafficpcap: %v\n%s", err, out)
		}
	}
	p := filepath.Join(trafficDir, key)
	if out, err := exec.Command(gen, "-out", p, "-seed", fmt.Sprint(seed), "-flows", fmt.Sprint(flows)).CombinedOutput(); err != nil {
		t.Fatalf("trafficpcap: %v\n%s", err, out)
	}
	trafficFiles[key] = p
	return p
}

func TestMain(m *testing.M) {
	code := m.Run()
	if trafficDir != "" {
		os.RemoveAll(trafficDir)
	}
	os.Exit(code)
}

// flowID is what two meters agree a flow is: protocol, endpoints, and for
// ICMP the type and code.
type flowID struct {
	proto        uint8
	src, dst     netip.Addr
	sport, dport uint16
	icmp         uint16
}

type counts struct{ packets, octets, records uint64 }

// byFlow sums the records of each direction of each flow (biflow records
// are split into their two directions).
func byFlow(recs []rec) map[flowID]counts {
	m := map[flowID]counts{}
	for _, r := range recs {
		id := flowID{r.proto, r.src, r.dst, r.sport, r.dport, r.icmp}
		c := m[id]
		c.packets += r.packets
		c.octets += r.octets
		c.records++
		m[id] = c
		if r.rpackets > 0 {
			rid := flowID{r.proto, r.dst, r.src, r.dport, r.sport, icmpReply(r.icmp, r.proto == protoICMPv6)}
			if r.proto != protoICMP && r.proto != protoICMPv6 {
				rid.icmp = 0
			}
			c := m[rid]
			c.packets += r.rpackets
			c.octets += r.roctet
			m[rid] = c
		}
	}
	return m
}

func totals(recs []rec) (packets, octets uint64) {
	for _, r := range recs {
		packets += r.packets + r.rpackets
		octets += r.octets + r.roctet
	}
	return
}

// Header values the tests build packets with.
const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	etherTypeVLAN = 0x8100 // 802.1Q
	etherTypeQinQ = 0x88a8 // 802.1ad
	etherTypeMPLS = 0x8847

	protoHopByHop = 0
	protoRouting  = 43
	protoFragment = 44
	protoDestOpts = 60
)
