package pipeline_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/anon"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/pipeline"
)

// metric returns the value of the sample whose line starts with prefix
// (name and labels) after a Tick published the counters.
func metric(t *testing.T, s *pipeline.Snapshot, prefix string) uint64 {
	t.Helper()
	s.Tick(time.Now())
	sc := bufio.NewScanner(bytes.NewReader(s.AppendMetrics(nil)))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), prefix+" "); ok {
			v, err := strconv.ParseUint(rest, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("no metric %s in\n%s", prefix, s.AppendMetrics(nil))
	return 0
}

func stageMetric(t *testing.T, s *pipeline.Snapshot, stage, dir string) uint64 {
	t.Helper()
	if dir == "errors" {
		return metric(t, s, `sluice_pipeline_stage_errors_total{pipeline="p",stage="`+stage+`"}`)
	}
	return metric(t, s, `sluice_pipeline_stage_records_total{pipeline="p",stage="`+stage+`",direction="`+dir+`"}`)
}

// fieldOrder lists a layout's field keys and lengths.
func fieldOrder(l *ipfix.Layout) string {
	var parts []string
	for _, f := range l.Fields {
		n := "v"
		if f.Length != ipfix.VarLen {
			n = strconv.Itoa(int(f.Length))
		}
		parts = append(parts, f.Key+":"+n)
	}
	return strings.Join(parts, " ")
}

func TestSelect(t *testing.T) {
	s, out := stages(t, "select: protocolIdentifier == 6 and destinationTransportPort in [80, 443]")
	l := mkLayout(t, 300, spec(idProto, 1), spec(idDstPort, 2), spec(idOctets, 8))
	m := mkMeta("192.0.2.1:4739", 1)
	in := [][3]int{{6, 80, 1}, {17, 80, 2}, {6, 443, 3}, {6, 22, 4}, {6, 443, 5}}
	for _, v := range in {
		s.Process(m, mkRecord(t, l, encode(t, l, v[0], v[1], v[2])))
	}
	var got []uint64
	for _, g := range out.recs {
		got = append(got, g.Fields["octetDeltaCount"].(uint64))
		if g.Layout != l {
			t.Error("select changed the layout")
		}
	}
	if !reflect.DeepEqual(got, []uint64{1, 3, 5}) {
		t.Errorf("passed %v", got)
	}
	// A layout without the fields: nothing matches, no error.
	l2 := mkLayout(t, 301, spec(idOctets, 8))
	s.Process(m, mkRecord(t, l2, encode(t, l2, 9)))
	if len(out.recs) != 3 {
		t.Errorf("%d records", len(out.recs))
	}
	if in, o, e := stageMetric(t, s, "1:select", "in"), stageMetric(t, s, "1:select", "out"), stageMetric(t, s, "1:select", "errors"); in != 6 || o != 3 || e != 0 {
		t.Errorf("in %d out %d errors %d", in, o, e)
	}
	if n := metric(t, s, `sluice_pipeline_stage_records_total{pipeline="p",stage="outputs",direction="in"}`); n != 3 {
		t.Errorf("outputs in %d", n)
	}
}

func TestSelectCompileError(t *testing.T) {
	// An unregistered element is an octetArray: comparing it with a
	// number compiles for no template.
	s, out := stages(t, "select: protocolIdentifier == 6 or _ipfix_1000 == 5")
	l := mkLayout(t, 300, spec(idProto, 1), spec(1000, 2))
	m := mkMeta("192.0.2.1:4739", 1)
	for range 3 {
		s.Process(m, mkRecord(t, l, encode(t, l, 6, 5)))
	}
	if len(out.recs) != 0 {
		t.Errorf("%d records passed", len(out.recs))
	}
	if e, o := stageMetric(t, s, "1:select", "errors"), stageMetric(t, s, "1:select", "out"); e != 3 || o != 0 {
		t.Errorf("errors %d out %d", e, o)
	}
}

func TestProject(t *testing.T) {
	fixed := mkLayout(t, 300, spec(idSrc4, 4), spec(idDst4, 4), spec(idProto, 1), spec(idOctets, 8), spec(idPackets, 4))
	varlen := mkLayout(t, 301, spec(idSrc4, 4), spec(idIfName, ipfix.VarLen), spec(idProto, 1), spec(idOctets, 8), spec(idPackets, 4))
	long := strings.Repeat("x", 300)
	m := mkMeta("192.0.2.1:4739", 1)
	f := func(stage string, wantLayout func(l *ipfix.Layout) string) {
		t.Helper()
		for _, l := range []*ipfix.Layout{fixed, varlen} {
			for _, name := range []string{"eth0", long, ""} {
				s, out := stages(t, stage)
				vals := []any{addr("10.1.2.3"), addr("10.4.5.6"), 6, uint64(1 << 40), 77}
				if l == varlen {
					vals[1] = name
				}
				r := mkRecord(t, l, encode(t, l, vals...))
				s.Process(m, r)
				if len(out.recs) != 1 {
					t.Fatalf("%s: %d records", stage, len(out.recs))
				}
				g := out.recs[0]
				if got, want := fieldOrder(g.Layout), wantLayout(l); got != want {
					t.Errorf("%s on %v: fields %s, want %s", stage, l, got, want)
				}
				if g.Layout.ID != l.ID {
					t.Errorf("template ID %d, want %d", g.Layout.ID, l.ID)
				}
				in := decodeFields(r)
				for k, v := range g.Fields {
					if in[k] != v {
						t.Errorf("%s: %s = %v, want %v", stage, k, v, in[k])
					}
				}
				if l == fixed {
					break
				}
			}
		}
	}
	second := func(l *ipfix.Layout) string {
		if l.RecordLen < 0 {
			return "interfaceName:v"
		}
		return "destinationIPv4Address:4"
	}
	f("project: {keep: [octetDeltaCount, sourceIPv4Address, packetDeltaCount]}",
		func(*ipfix.Layout) string { return "octetDeltaCount:8 sourceIPv4Address:4 packetDeltaCount:4" })
	f("project: {keep: [packetDeltaCount, destinationIPv4Address, interfaceName, octetDeltaCount_2]}",
		func(l *ipfix.Layout) string { return "packetDeltaCount:4 " + second(l) })
	f("project: {drop: [sourceIPv4Address, octetDeltaCount]}",
		func(l *ipfix.Layout) string { return second(l) + " protocolIdentifier:1 packetDeltaCount:4" })
	// Listing a field twice keeps it once.
	f("project: {keep: [protocolIdentifier, protocolIdentifier, sourceIPv4Address]}",
		func(*ipfix.Layout) string { return "protocolIdentifier:1 sourceIPv4Address:4" })
	// An empty keep list next to a drop list: the drop list applies.
	f("project: {keep: [], drop: [protocolIdentifier]}",
		func(l *ipfix.Layout) string {
			return "sourceIPv4Address:4 " + second(l) + " octetDeltaCount:8 packetDeltaCount:4"
		})
}

func keys(l *ipfix.Layout) []string {
	var k []string
	for _, f := range l.Fields {
		k = append(k, f.Key)
	}
	return k
}

// A projection that keeps everything in order passes the record itself.
func TestProjectIdentity(t *testing.T) {
	for _, stage := range []string{
		"project: {keep: [sourceIPv4Address, interfaceName, octetDeltaCount]}",
		"project: {drop: [packetDeltaCount]}",
	} {
		s, out := stages(t, stage)
		l := mkLayout(t, 300, spec(idSrc4, 4), spec(idIfName, ipfix.VarLen), spec(idOctets, 8))
		r := mkRecord(t, l, encode(t, l, addr("10.0.0.1"), "eth1", 5))
		s.Process(mkMeta("192.0.2.1:4739", 1), r)
		if len(out.recs) != 1 || out.recs[0].RawPtr != &r.Raw()[0] || out.recs[0].Layout != l {
			t.Errorf("%s: not passed through: %+v", stage, out.recs)
		}
	}
}

// Keeping nothing the template has drops its records as errors.
func TestProjectNothingLeft(t *testing.T) {
	s, out := stages(t, "project: {keep: [sourceIPv6Address]}")
	l := mkLayout(t, 300, spec(idSrc4, 4), spec(idOctets, 8))
	s.Process(mkMeta("192.0.2.1:4739", 1), mkRecord(t, l, encode(t, l, addr("10.0.0.1"), 5)))
	if len(out.recs) != 0 || stageMetric(t, s, "1:project", "errors") != 1 {
		t.Errorf("%d records, %d errors", len(out.recs), stageMetric(t, s, "1:project", "errors"))
	}
}

// Repeated elements are named by their field keys.
func TestProjectRepeated(t *testing.T) {
	s, out := stages(t, "project: {keep: [octetDeltaCount_2, sourceIPv4Address]}")
	l := mkLayout(t, 300, spec(idOctets, 8), spec(idSrc4, 4), spec(idOctets, 4))
	s.Process(mkMeta("192.0.2.1:4739", 1), mkRecord(t, l, encode(t, l, 1, addr("10.0.0.1"), 2)))
	if len(out.recs) != 1 {
		t.Fatal(len(out.recs))
	}
	g := out.recs[0]
	if fieldOrder(g.Layout) != "octetDeltaCount:4 sourceIPv4Address:4" || g.Fields["octetDeltaCount"] != uint64(2) {
		t.Errorf("%s %v", fieldOrder(g.Layout), g.Fields)
	}
}

// NetFlow v9 template IDs below 256 are exported under an IPFIX one.
func TestProjectLowTemplateID(t *testing.T) {
	s, out := stages(t, "project: {keep: [octetDeltaCount]}")
	l := mkLayout(t, 300, spec(idSrc4, 4), spec(idOctets, 8))
	l.ID = 0 // as a v5 layout has
	s.Process(mkMeta("192.0.2.1:4739", 1), mkRecord(t, l, encode(t, l, addr("10.0.0.1"), 5)))
	if len(out.recs) != 1 || out.recs[0].Layout.ID < ipfix.MinDataSetID {
		t.Errorf("%+v", out.recs)
	}
}

func TestRename(t *testing.T) {
	s, out := stages(t, "rename: {sourceIPv4Address: destinationIPv4Address, e9id1: interfaceName, octetDeltaCount_2: postOctetDeltaCount}")
	l := mkLayout(t, 300, spec(idSrc4, 4), spec(idOctets, 8), ipfix.FieldSpec{ID: 1, PEN: 9, Length: ipfix.VarLen}, spec(idOctets, 4))
	r := mkRecord(t, l, encode(t, l, addr("10.0.0.1"), 5, "eth0", 6))
	s.Process(mkMeta("192.0.2.1:4739", 1), r)
	if len(out.recs) != 1 {
		t.Fatal(len(out.recs))
	}
	g := out.recs[0]
	if got := fieldOrder(g.Layout); got != "destinationIPv4Address:4 octetDeltaCount:8 interfaceName:v postOctetDeltaCount:4" {
		t.Errorf("fields %s", got)
	}
	if g.RawPtr != &r.Raw()[0] || !bytes.Equal(g.Raw, r.Raw()) {
		t.Error("rename changed the bytes")
	}
	want := map[string]any{"destinationIPv4Address": addr("10.0.0.1"), "octetDeltaCount": uint64(5), "interfaceName": "eth0", "postOctetDeltaCount": uint64(6)}
	if !reflect.DeepEqual(g.Fields, want) {
		t.Errorf("%v", g.Fields)
	}
	if g.Layout.ID != 300 {
		t.Errorf("template ID %d", g.Layout.ID)
	}
	// A template with nothing to rename passes as it is.
	l2 := mkLayout(t, 301, spec(idProto, 1))
	r2 := mkRecord(t, l2, encode(t, l2, 6))
	s.Process(mkMeta("192.0.2.1:4739", 1), r2)
	if len(out.recs) != 2 || out.recs[1].Layout != l2 {
		t.Errorf("%+v", out.recs)
	}
}

// A field key names no element, so its type is checked per template.
func TestRenameIncompatible(t *testing.T) {
	s, out := stages(t, "rename: {octetDeltaCount_2: sourceIPv4Address}")
	l := mkLayout(t, 300, spec(idOctets, 8), spec(idOctets, 4))
	s.Process(mkMeta("192.0.2.1:4739", 1), mkRecord(t, l, encode(t, l, 1, 2)))
	if len(out.recs) != 0 || stageMetric(t, s, "1:rename", "errors") != 1 {
		t.Errorf("%d records", len(out.recs))
	}
}

func TestSet(t *testing.T) {
	long := strings.Repeat("y", 300)
	s, out := stages(t, `set: {vlanId: 7, interfaceName: eth0, sourceIPv6Address: "2001:db8::1", flowStartMilliseconds: "2024-05-06T07:08:09.123Z", `+
		`flowEndSeconds: "2024-05-06T07:08:10Z", sourceMacAddress: "00:11:22:33:44:55", octetDeltaCount: 99, applicationDescription: `+long+`, `+
		`applicationName: "", flowDirection: 1, isMulticast: 0x10, collectionTimeMilliseconds: "", destinationIPv4Address: ""}`)
	m := mkMeta("192.0.2.1:4739", 1)
	start := time.Date(2024, 5, 6, 7, 8, 9, 123e6, time.UTC)
	want := map[string]any{
		"sourceIPv4Address":          addr("10.0.0.1"),
		"octetDeltaCount":            uint64(99),
		"packetDeltaCount":           uint64(3),
		"vlanId":                     uint64(7),
		"interfaceName":              "eth0",
		"sourceIPv6Address":          addr("2001:db8::1"),
		"flowStartMilliseconds":      start.UnixNano(),
		"flowEndSeconds":             start.Add(877 * time.Millisecond).UnixNano(),
		"sourceMacAddress":           [6]byte{0, 0x11, 0x22, 0x33, 0x44, 0x55},
		"applicationDescription":     long,
		"applicationName":            "",
		"flowDirection":              uint64(1),
		"isMulticast":                uint64(16),
		"collectionTimeMilliseconds": int64(0),
		"destinationIPv4Address":     addr("0.0.0.0"),
	}
	for _, l := range []*ipfix.Layout{
		mkLayout(t, 300, spec(idSrc4, 4), spec(idOctets, 4), spec(idPackets, 8)),
		mkLayout(t, 301, spec(idSrc4, 4), spec(idIfName, ipfix.VarLen), spec(idOctets, 4), spec(idPackets, 8)),
	} {
		out.recs = nil
		vals := []any{addr("10.0.0.1"), 5, 3}
		if len(l.Fields) == 4 {
			vals = []any{addr("10.0.0.1"), "old", 5, 3}
		}
		s.Process(m, mkRecord(t, l, encode(t, l, vals...)))
		if len(out.recs) != 1 {
			t.Fatal(len(out.recs))
		}
		g := out.recs[0]
		if !reflect.DeepEqual(g.Fields, want) {
			for k, v := range want {
				if g.Fields[k] != v {
					t.Errorf("%s = %v, want %v", k, g.Fields[k], v)
				}
			}
			t.Errorf("got %v", g.Fields)
		}
		// Replaced fields keep their place; added ones follow in order.
		order := keys(g.Layout)
		if order[0] != "sourceIPv4Address" || order[len(order)-1] != "destinationIPv4Address" ||
			(len(l.Fields) == 3 && (order[1] != "octetDeltaCount" || order[3] != "vlanId")) ||
			(len(l.Fields) == 4 && (order[1] != "interfaceName" || order[4] != "vlanId")) {
			t.Errorf("order %v", order)
		}
		if g.Layout.Fields[0].Length != 4 || g.Layout.Index(0, idOctets) < 0 || g.Layout.Fields[g.Layout.Index(0, idOctets)].Length != 8 {
			t.Errorf("layout %v", g.Layout)
		}
	}
}

// hexKey is the Crypto-PAn key the tests use.
const hexKey = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

func cryptoPAn(t *testing.T) *anon.CryptoPAn {
	t.Helper()
	k, err := anon.ParseKey(hexKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := anon.NewCryptoPAn(k)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// addrLayout has every kind of address field, and others.
func addrLayout(t *testing.T) *ipfix.Layout {
	return mkLayout(t, 300, spec(idSrc4, 4), spec(idDst4, 4), spec(idSrc6, 16), spec(idDst6, 16), spec(idOctets, 8),
		spec(idIfName, ipfix.VarLen), spec(15, 4)) // ipNextHopIPv4Address
}

func TestAnonymiseTruncate(t *testing.T) {
	f := func(stage string, want ...string) {
		t.Helper()
		s, out := stages(t, stage)
		l := addrLayout(t)
		r := mkRecord(t, l, encode(t, l, addr("192.168.37.200"), addr("10.255.255.255"),
			addr("2001:db8:1234:5678:9abc::1"), addr("2001:db8:ffff:ffff:ffff::1"), 5, "eth0", addr("172.16.99.1")))
		in := append([]byte(nil), r.Raw()...)
		s.Process(mkMeta("192.0.2.1:4739", 1), r)
		if !bytes.Equal(in, r.Raw()) {
			t.Error("the input record changed")
		}
		if len(out.recs) != 1 {
			t.Fatal(len(out.recs))
		}
		g := out.recs[0]
		for i, k := range []string{"sourceIPv4Address", "destinationIPv4Address", "sourceIPv6Address", "destinationIPv6Address", "ipNextHopIPv4Address"} {
			if got := g.Fields[k]; got != addr(want[i]) {
				t.Errorf("%s: %s = %v, want %s", stage, k, got, want[i])
			}
		}
		if g.Fields["octetDeltaCount"] != uint64(5) || g.Fields["interfaceName"] != "eth0" || g.Layout != l {
			t.Errorf("%v", g.Fields)
		}
	}
	f("anonymise: {method: truncate, ipv4_prefix: 16, ipv6_prefix: 48}",
		"192.168.0.0", "10.255.0.0", "2001:db8:1234::", "2001:db8:ffff::", "172.16.0.0")
	f("anonymise: {method: truncate}",
		"192.168.37.0", "10.255.255.0", "2001:db8:1234::", "2001:db8:ffff::", "172.16.99.0")
	f("anonymise: {method: truncate, ipv4_prefix: 20, ipv6_prefix: 52}",
		"192.168.32.0", "10.255.240.0", "2001:db8:1234:5000::", "2001:db8:ffff:f000::", "172.16.96.0")
	f("anonymise: {method: truncate, ipv4_prefix: 0, ipv6_prefix: 128}",
		"0.0.0.0", "0.0.0.0", "2001:db8:1234:5678:9abc::1", "2001:db8:ffff:ffff:ffff::1", "0.0.0.0")
	f("anonymise: {method: truncate, ipv4_prefix: 32, ipv6_prefix: 0}",
		"192.168.37.200", "10.255.255.255", "::", "::", "172.16.99.1")
	f("anonymise: {method: truncate, ipv4_prefix: 8, fields: [destinationIPv4Address, sourceIPv6Address, sourceIPv4Address_2]}",
		"192.168.37.200", "10.0.0.0", "2001:db8:1234::", "2001:db8:ffff:ffff:ffff::1", "172.16.99.1")

	// The exact bytes, on a template of one address.
	s, out := stages(t, "anonymise: {method: truncate, ipv4_prefix: 16}")
	l := mkLayout(t, 300, spec(idSrc4, 4))
	s.Process(mkMeta("192.0.2.1:4739", 1), mkRecord(t, l, []byte{192, 168, 37, 200}))
	if len(out.recs) != 1 || !bytes.Equal(out.recs[0].Raw, []byte{192, 168, 0, 0}) {
		t.Errorf("%+v", out.recs)
	}
	s, out = stages(t, "anonymise: {method: truncate, ipv6_prefix: 48}")
	l = mkLayout(t, 300, spec(idSrc6, 16))
	s.Process(mkMeta("192.0.2.1:4739", 1), mkRecord(t, l, []byte{0x20, 0x01, 0x0d, 0xb8, 0x12, 0x34, 0x56, 0x78, 1, 2, 3, 4, 5, 6, 7, 8}))
	if len(out.recs) != 1 || !bytes.Equal(out.recs[0].Raw, []byte{0x20, 0x01, 0x0d, 0xb8, 0x12, 0x34, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) {
		t.Errorf("%+v", out.recs)
	}
}

// A template without address fields passes as it is.
func TestAnonymiseNoAddress(t *testing.T) {
	s, out := stages(t, "anonymise: {method: truncate}")
	l := mkLayout(t, 300, spec(idOctets, 8), spec(idSrc4, 3)) // a 3-octet "address" is not one
	r := mkRecord(t, l, encode(t, l, 5, []byte{1, 2, 3}))
	s.Process(mkMeta("192.0.2.1:4739", 1), r)
	if len(out.recs) != 1 || out.recs[0].RawPtr != &r.Raw()[0] {
		t.Errorf("%+v", out.recs)
	}
}

func TestAnonymiseCryptoPAn(t *testing.T) {
	cp := cryptoPAn(t)
	keyFile := writeFile(t, "key", "\n"+strings.ToUpper(hexKey)+"\n")
	for _, stage := range []string{
		"anonymise: {method: cryptopan, key: " + hexKey + "}",
		"anonymise: {method: cryptopan, key_file: " + keyFile + "}",
	} {
		s, out := stages(t, stage)
		l := addrLayout(t)
		m := mkMeta("192.0.2.1:4739", 1)
		src4 := []string{"192.168.37.200", "192.168.37.1", "192.168.38.1", "10.0.0.1", "192.168.37.200"}
		src6 := []string{"2001:db8::1", "2001:db8::2", "2001:db8:8000::1", "fe80::1", "2001:db8::1"}
		for i := range src4 {
			s.Process(m, mkRecord(t, l, encode(t, l, addr(src4[i]), addr("10.9.8.7"), addr(src6[i]), addr("::1"), i, "x", addr("0.0.0.0"))))
		}
		if len(out.recs) != len(src4) {
			t.Fatal(len(out.recs))
		}
		for i, g := range out.recs {
			want4 := netip.AddrFrom4(cp.Anonymize4(addr(src4[i]).As4()))
			want6 := netip.AddrFrom16(cp.Anonymize6(addr(src6[i]).As16()))
			if g.Fields["sourceIPv4Address"] != want4 || g.Fields["sourceIPv6Address"] != want6 {
				t.Errorf("%s: record %d: %v %v, want %v %v", stage, i, g.Fields["sourceIPv4Address"], g.Fields["sourceIPv6Address"], want4, want6)
			}
			if g.Fields["destinationIPv4Address"] != netip.AddrFrom4(cp.Anonymize4([4]byte{10, 9, 8, 7})) ||
				g.Fields["destinationIPv6Address"] != netip.AddrFrom16(cp.Anonymize6(addr("::1").As16())) ||
				g.Fields["ipNextHopIPv4Address"] != netip.AddrFrom4(cp.Anonymize4([4]byte{})) {
				t.Errorf("%s: default fields: %v", stage, g.Fields)
			}
			if g.Fields["octetDeltaCount"] != uint64(i) {
				t.Errorf("octets %v", g.Fields["octetDeltaCount"])
			}
		}
		// Prefix preservation across records.
		for i := range src4 {
			for j := range src4 {
				a, b := out.recs[i].Fields["sourceIPv4Address"].(netip.Addr), out.recs[j].Fields["sourceIPv4Address"].(netip.Addr)
				if got, want := commonBits(a, b), commonBits(addr(src4[i]), addr(src4[j])); got != want {
					t.Errorf("%s and %s share %d bits, anonymised %d", src4[i], src4[j], want, got)
				}
				a, b = out.recs[i].Fields["sourceIPv6Address"].(netip.Addr), out.recs[j].Fields["sourceIPv6Address"].(netip.Addr)
				if got, want := commonBits(a, b), commonBits(addr(src6[i]), addr(src6[j])); got != want {
					t.Errorf("%s and %s share %d bits, anonymised %d", src6[i], src6[j], want, got)
				}
			}
		}
	}
}

func commonBits(a, b netip.Addr) int {
	x, y := a.As16(), b.As16()
	n := 0
	for i := range x {
		if x[i] != y[i] {
			n += bits.LeadingZeros8(x[i] ^ y[i])
			break
		}
		n += 8
	}
	if a.Is4() {
		n -= 96
	}
	return n
}

// Many addresses, repeated: the stage's IPv4 cache must never answer for
// another address.
func TestAnonymiseCryptoPAnMany(t *testing.T) {
	cp := cryptoPAn(t)
	s, out := stages(t, "anonymise: {method: cryptopan, key: "+hexKey+", fields: [sourceIPv4Address]}")
	l := mkLayout(t, 300, spec(idSrc4, 4), spec(idDst4, 4))
	m := mkMeta("192.0.2.1:4739", 1)
	rng := rand.New(rand.NewPCG(1, 2))
	pool := make([]uint32, 40000)
	for i := range pool {
		pool[i] = rng.Uint32()
	}
	var in []uint32
	for range 60000 {
		a := pool[rng.IntN(len(pool))]
		in = append(in, a)
		var b [8]byte
		binary.BigEndian.PutUint32(b[:], a)
		binary.BigEndian.PutUint32(b[4:], a)
		s.Process(m, mkRecord(t, l, b[:]))
	}
	for i, g := range out.recs {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], in[i])
		if want := netip.AddrFrom4(cp.Anonymize4(a)); g.Fields["sourceIPv4Address"] != want {
			t.Fatalf("record %d: %v, want %v", i, g.Fields["sourceIPv4Address"], want)
		}
		if g.Fields["destinationIPv4Address"] != netip.AddrFrom4(a) {
			t.Fatalf("record %d: destination changed", i)
		}
	}
}

func TestSampleDeterministic(t *testing.T) {
	for _, rate := range []int{1, 3, 10} {
		s, out := stages(t, "sample: {rate: "+strconv.Itoa(rate)+"}")
		l := mkLayout(t, 300, spec(idOctets, 8))
		m := mkMeta("192.0.2.1:4739", 1)
		const n = 100
		for i := range n {
			s.Process(m, mkRecord(t, l, encode(t, l, i)))
		}
		if len(out.recs) != (n+rate-1)/rate {
			t.Errorf("rate %d: %d of %d", rate, len(out.recs), n)
		}
		for i, g := range out.recs {
			if g.Fields["octetDeltaCount"] != uint64(i*rate) {
				t.Errorf("rate %d: record %d is %v", rate, i, g.Fields["octetDeltaCount"])
			}
		}
	}
}

func TestSampleRandom(t *testing.T) {
	s, out := stages(t, "sample: {rate: 10, mode: random}")
	l := mkLayout(t, 300, spec(idOctets, 8))
	m := mkMeta("192.0.2.1:4739", 1)
	const n = 100000
	for i := range n {
		s.Process(m, mkRecord(t, l, encode(t, l, i)))
	}
	// Binomial(100000, 0.1): sd about 95; 10 sd either side.
	if k := len(out.recs); k < 9000 || k > 11000 {
		t.Errorf("kept %d of %d at 1/10", k, n)
	}
	// Not a fixed stride.
	gaps := map[uint64]bool{}
	for i := 1; i < len(out.recs); i++ {
		gaps[out.recs[i].Fields["octetDeltaCount"].(uint64)-out.recs[i-1].Fields["octetDeltaCount"].(uint64)] = true
	}
	if len(gaps) < 10 {
		t.Errorf("only %d different gaps", len(gaps))
	}
	s, out = stages(t, "sample: {rate: 1, mode: random}")
	for i := range 100 {
		s.Process(m, mkRecord(t, l, encode(t, l, i)))
	}
	if len(out.recs) != 100 {
		t.Errorf("rate 1 kept %d of 100", len(out.recs))
	}
}

// Stages chain: each sees what the previous one left.
func TestChain(t *testing.T) {
	s, out := stages(t,
		"select: protocolIdentifier == 6",
		"set: {vlanId: 5}",
		"rename: {vlanId: postVlanId}",
		"anonymise: {method: truncate, ipv4_prefix: 8}",
		"project: {keep: [postVlanId, sourceIPv4Address]}",
		"sample: {rate: 2}",
	)
	l := mkLayout(t, 300, spec(idSrc4, 4), spec(idProto, 1))
	m := mkMeta("192.0.2.1:4739", 1)
	for i := range 10 {
		s.Process(m, mkRecord(t, l, encode(t, l, addr("10.1.2."+strconv.Itoa(i)), 6+11*(i%2))))
	}
	if len(out.recs) != 3 {
		t.Fatalf("%d records", len(out.recs))
	}
	for _, g := range out.recs {
		if fieldOrder(g.Layout) != "postVlanId:2 sourceIPv4Address:4" || g.Fields["postVlanId"] != uint64(5) || g.Fields["sourceIPv4Address"] != addr("10.0.0.0") {
			t.Errorf("%s %v", fieldOrder(g.Layout), g.Fields)
		}
	}
	for i, want := range []uint64{10, 5, 5, 5, 5, 5} {
		st := strconv.Itoa(i+1) + ":" + []string{"select", "set", "rename", "anonymise", "project", "sample"}[i]
		if got := stageMetric(t, s, st, "in"); got != want {
			t.Errorf("%s in %d, want %d", st, got, want)
		}
	}
}

// Values that make a record longer than an IPFIX message can carry drop
// it (field positions are 16-bit).
func TestSetTooLong(t *testing.T) {
	a, b := strings.Repeat("a", 40000), strings.Repeat("b", 30000)
	s, out := stages(t, "set: {applicationDescription: "+a+", interfaceDescription: "+b+"}")
	l := mkLayout(t, 300, spec(idIfName, ipfix.VarLen), spec(idOctets, 8))
	m := mkMeta("192.0.2.1:4739", 1)
	s.Process(m, mkRecord(t, l, encode(t, l, "eth0", 1)))
	if len(out.recs) != 0 || stageMetric(t, s, "1:set", "errors") != 1 {
		t.Errorf("%d records", len(out.recs))
	}
	// Just below the bound passes.
	s, out = stages(t, "set: {applicationDescription: "+a+", interfaceDescription: "+b[:25000]+"}")
	s.Process(m, mkRecord(t, l, encode(t, l, "eth0", 1)))
	if len(out.recs) != 1 || out.recs[0].Fields["applicationDescription"] != a || out.recs[0].Fields["interfaceDescription"] != b[:25000] {
		t.Errorf("%d records", len(out.recs))
	}
}
