package pipeline_test

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/pipeline"
)

func TestEnrichExporter(t *testing.T) {
	s, out := stages(t, "enrich: {exporter: true}")
	l := mkLayout(t, 300, spec(idSrc4, 4), spec(idOctets, 8))
	r := mkRecord(t, l, encode(t, l, addr("10.0.0.1"), 5))
	for _, m := range []struct {
		exp  string
		dom  uint32
		want string
	}{
		{"192.0.2.1:4739", 7, "originalExporterIPv4Address"},
		{"[2001:db8::9]:4739", 8, "originalExporterIPv6Address"},
		{"198.51.100.2:2055", 0xffffffff, "originalExporterIPv4Address"},
		{"[::ffff:192.0.2.3]:4739", 9, "originalExporterIPv6Address"},
	} {
		out.recs = nil
		s.Process(mkMeta(m.exp, m.dom), r)
		if len(out.recs) != 1 {
			t.Fatal(len(out.recs))
		}
		g := out.recs[0]
		want := "sourceIPv4Address:4 octetDeltaCount:8 " + m.want + ":" + map[bool]string{true: "16", false: "4"}[strings.Contains(m.want, "IPv6")] + " originalObservationDomainId:4"
		if got := fieldOrder(g.Layout); got != want {
			t.Errorf("%s: %s, want %s", m.exp, got, want)
		}
		if g.Fields[m.want] != netip.MustParseAddrPort(m.exp).Addr() || g.Fields["originalObservationDomainId"] != uint64(m.dom) ||
			g.Fields["sourceIPv4Address"] != addr("10.0.0.1") || g.Fields["octetDeltaCount"] != uint64(5) {
			t.Errorf("%s: %v", m.exp, g.Fields)
		}
		if g.Layout.Index(0, idOrigExp4) >= 0 == (m.want == "originalExporterIPv6Address") {
			t.Errorf("%s: %v", m.exp, g.Layout)
		}
	}
}

// A record without an exporter (an aggregate) gets the zero address.
func TestEnrichExporterAfterAggregate(t *testing.T) {
	s, out := stages(t, "aggregate: {keys: [protocolIdentifier], observation_domain: 12, max_keys: 10}", "enrich: {exporter: true}")
	l := mkLayout(t, 300, spec(idProto, 1), spec(idOctets, 8))
	s.Process(mkMeta("192.0.2.1:4739", 1), mkRecord(t, l, encode(t, l, 6, 100)))
	s.Retire()
	if len(out.recs) != 1 {
		t.Fatal(len(out.recs))
	}
	g := out.recs[0]
	if g.Fields["originalExporterIPv4Address"] != addr("0.0.0.0") || g.Fields["originalObservationDomainId"] != uint64(12) || g.Fields["octetDeltaCount"] != uint64(100) {
		t.Errorf("%v", g.Fields)
	}
}

const netsCSV = `# test table
prefix, asn, site
10.0.0.0/8,64500,ten
10.1.0.0/16,64501,ten-one
10.1.2.0/24,64502,
10.1.2.3/32,64503,host
10.0.0.0/8,64599,ten-again
192.168.1.77/16,64510,"masked, quoted"
2001:db8::/32,64600,doc
2001:db8:1::/48,64601,doc-one
2001:db8:1::/64,64602,doc-one-zero
::/0,1,v6-default
`

func TestEnrichNetworks(t *testing.T) {
	nets := writeFile(t, "nets.csv", netsCSV)
	s, out := stages(t, "enrich: {networks: [{file: "+nets+", address: [sourceIPv6Address, sourceIPv4Address], columns: {site: interfaceName, asn: bgpSourceAsNumber}}]}")
	l4 := mkLayout(t, 300, spec(idSrc4, 4), spec(idOctets, 8))
	l6 := mkLayout(t, 301, spec(idSrc6, 16), spec(idSrc4, 4))
	lNone := mkLayout(t, 302, spec(idOctets, 8))
	m := mkMeta("192.0.2.1:4739", 1)
	f := func(l *ipfix.Layout, a string, asn uint64, site string) {
		t.Helper()
		out.recs = nil
		var vals []any
		switch l {
		case l4:
			vals = []any{addr(a), 1}
		case l6:
			vals = []any{addr(a), addr("10.1.2.3")} // the IPv6 field comes first in the list
		default:
			vals = []any{1}
		}
		s.Process(m, mkRecord(t, l, encode(t, l, vals...)))
		if len(out.recs) != 1 {
			t.Fatal(len(out.recs))
		}
		g := out.recs[0]
		if g.Fields["bgpSourceAsNumber"] != asn || g.Fields["interfaceName"] != site {
			t.Errorf("%s: asn %v site %q, want %d %q", a, g.Fields["bgpSourceAsNumber"], g.Fields["interfaceName"], asn, site)
		}
		if k := keys(g.Layout); k[len(k)-2] != "interfaceName" || k[len(k)-1] != "bgpSourceAsNumber" {
			t.Errorf("fields %v", k)
		}
	}
	f(l4, "10.1.2.3", 64503, "host")
	f(l4, "10.1.2.4", 64502, "")
	f(l4, "10.1.9.9", 64501, "ten-one")
	f(l4, "10.200.0.1", 64599, "ten-again")
	f(l4, "192.168.200.1", 64510, "masked, quoted")
	f(l4, "11.0.0.1", 0, "")
	f(l4, "9.255.255.255", 0, "")
	f(l6, "2001:db8:1::5", 64602, "doc-one-zero")
	f(l6, "2001:db8:1:1::5", 64601, "doc-one")
	f(l6, "2001:db8:2::1", 64600, "doc")
	f(l6, "2001:db9::1", 1, "v6-default")
	f(lNone, "", 0, "")
}

// Two tables, one after the other, and a sampled record order.
func TestEnrichTwoTables(t *testing.T) {
	a := writeFile(t, "a.csv", "prefix,as\n10.0.0.0/8,100\n")
	b := writeFile(t, "b.csv", "prefix,as,vlan\n10.0.0.0/24,200,7\n0.0.0.0/0,300,8\n")
	s, out := stages(t, "enrich: {exporter: true, networks: [{file: "+a+", address: sourceIPv4Address, columns: {as: bgpSourceAsNumber}}, "+
		"{file: "+b+", address: destinationIPv4Address, columns: {as: bgpDestinationAsNumber, vlan: vlanId}}]}")
	l := mkLayout(t, 300, spec(idSrc4, 4), spec(idDst4, 4))
	s.Process(mkMeta("192.0.2.1:4739", 1), mkRecord(t, l, encode(t, l, addr("10.9.9.9"), addr("10.0.0.9"))))
	s.Process(mkMeta("192.0.2.1:4739", 1), mkRecord(t, l, encode(t, l, addr("11.9.9.9"), addr("10.0.1.9"))))
	if len(out.recs) != 2 {
		t.Fatal(len(out.recs))
	}
	if got := fieldOrder(out.recs[0].Layout); got != "sourceIPv4Address:4 destinationIPv4Address:4 originalExporterIPv4Address:4 originalObservationDomainId:4 bgpSourceAsNumber:4 bgpDestinationAsNumber:4 vlanId:2" {
		t.Errorf("fields %s", got)
	}
	for i, want := range [][3]uint64{{100, 200, 7}, {0, 300, 8}} {
		g := out.recs[i].Fields
		if got := [3]uint64{g["bgpSourceAsNumber"].(uint64), g["bgpDestinationAsNumber"].(uint64), g["vlanId"].(uint64)}; got != want {
			t.Errorf("record %d: %v, want %v", i, got, want)
		}
	}
}

func TestEnrichTableErrors(t *testing.T) {
	f := func(text, substr string) {
		t.Helper()
		p := writeFile(t, "t.csv", text)
		src := "pipelines:\n  - outputs: [discard]\n    stages:\n      - enrich: {networks: [{file: " + p + ", address: sourceIPv4Address, columns: {asn: bgpSourceAsNumber}}]}\n"
		c, err := pipeline.Parse([]byte(src))
		if err != nil {
			t.Fatal(err)
		}
		o := newOutputs()
		set := pipeline.NewOutputSet(o.open)
		_, err = pipeline.Compile(c, set)
		errLine(t, src, err, 4, substr)
		if err != nil && !strings.Contains(err.Error(), p) {
			t.Errorf("%v: want the file name", err)
		}
		set.Wait()
		if o.openCount() != 0 {
			t.Error("output left open")
		}
	}
	f("prefix,asn\n10.0.0.0/8,1\n10.0.0.0/33,2\n", "t.csv:3: netip.ParsePrefix")
	f("prefix,asn\n# comment\n\n10.0.0.0/8,1\nnot-a-prefix,2\n", "t.csv:5:")
	f("prefix,asn\n10.0.0.0,1\n", "t.csv:2:")
	f("asn,prefix\n1,10.0.0.0/8\n", "the first line must be a header")
	f("10.0.0.0/8,1\n", "the first line must be a header")
	f("prefix\n10.0.0.0/8\n", "the first line must be a header")
	f("", "empty file")
	f("# nothing\n", "empty file")
	f("prefix,as\n10.0.0.0/8,1\n", `no column "asn"`)
	f("prefix,asn\n10.0.0.0/8,1,2\n", "line 2")
	f("prefix,asn\n\"10.0.0.0/8,1\n", "extraneous or missing")
	f("prefix,asn\n10.0\"0.0/8,1\n", "bare \"")
	f("prefix,asn\n10.0.0.0/8,x\n", "row 1: bgpSourceAsNumber")
	f("prefix,asn\n10.0.0.0/8,4294967296\n", "row 1")
}

// optionsRecord builds an options record announcing a sampling rate.
func samplingOptions(t *testing.T, sampler, rate int) *ipfix.Record {
	l := mkOptionsLayout(t, 400, 1, spec(idSamplerID, 1), spec(idSamplingInt, 4))
	return mkRecord(t, l, encode(t, l, sampler, rate))
}

func TestEnrichSampling(t *testing.T) {
	s, o := compileSrc(t, "pipelines:\n"+
		"  - name: p\n    outputs: [\"jsonl:/pass\"]\n    stages:\n      - select: protocolIdentifier == 6\n      - enrich: {sampling: true}\n"+
		"  - name: q\n    outputs: [\"jsonl:/drop\"]\n    options: drop\n    stages:\n      - enrich: {sampling: true}\n")
	pass, drop := o.get(t, "jsonl:/pass"), o.get(t, "jsonl:/drop")
	withID := mkLayout(t, 300, spec(idProto, 1), spec(idSamplerID, 1))
	noID := mkLayout(t, 301, spec(idProto, 1))
	own := mkLayout(t, 302, spec(idProto, 1), spec(idSamplingInt, 4))
	m := mkMeta("192.0.2.1:4739", 5)
	rate := func(l *ipfix.Layout, exporter string, sampler int) uint64 {
		t.Helper()
		mm := m
		if exporter != "" {
			mm = mkMeta(exporter, 5)
		}
		var r *ipfix.Record
		switch l {
		case withID:
			r = mkRecord(t, l, encode(t, l, 6, sampler))
		case noID:
			r = mkRecord(t, l, encode(t, l, 6))
		default:
			r = mkRecord(t, l, encode(t, l, 6, 1234))
		}
		n := len(pass.recs)
		s.Process(mm, r)
		if len(pass.recs) != n+1 {
			t.Fatalf("%d records", len(pass.recs)-n)
		}
		g := pass.recs[n]
		if l == own && g.Layout != l {
			t.Errorf("a record with its own samplingInterval was changed: %v", g.Layout)
		}
		if k := keys(g.Layout); k[len(k)-1] != "samplingInterval" {
			t.Errorf("fields %v", k)
		}
		return g.Fields["samplingInterval"].(uint64)
	}
	if r := rate(withID, "", 1); r != 0 {
		t.Errorf("rate %d before any options record", r)
	}
	opt := samplingOptions(t, 1, 100)
	s.Process(m, opt)
	if len(pass.recs) != 2 || pass.recs[1].RawPtr != &opt.Raw()[0] || pass.recs[1].Layout != opt.Layout {
		t.Errorf("options record not passed unchanged: %+v", pass.recs[1:])
	}
	if len(drop.recs) != 1 {
		t.Errorf("options: drop passed %d records", len(drop.recs))
	}
	if r := rate(withID, "", 1); r != 100 {
		t.Errorf("rate %d, want 100", r)
	}
	if r := rate(noID, "", 0); r != 100 {
		t.Errorf("without sampler ID: rate %d, want 100", r)
	}
	if r := rate(withID, "", 2); r != 100 {
		t.Errorf("unknown sampler: rate %d, want the exporter's latest 100", r)
	}
	if r := rate(own, "", 0); r != 1234 {
		t.Errorf("own rate %d", r)
	}
	if r := rate(withID, "192.0.2.2:4739", 1); r != 0 {
		t.Errorf("another exporter: rate %d", r)
	}
	s.Process(mkMeta("192.0.2.1:4739", 6), samplingOptions(t, 1, 7)) // another domain
	s.Process(m, samplingOptions(t, 2, 50))
	if r := rate(withID, "", 2); r != 50 {
		t.Errorf("sampler 2: rate %d, want 50", r)
	}
	if r := rate(withID, "", 1); r != 100 {
		t.Errorf("sampler 1: rate %d, want 100", r)
	}
	if r := rate(noID, "", 0); r != 50 {
		t.Errorf("without sampler ID: rate %d, want the latest 50", r)
	}

	// samplingPacketInterval and samplingPacketSpace: 1 in 1+space.
	pl := mkOptionsLayout(t, 401, 1, spec(idSamplerID, 1), spec(idPktInterval, 4), spec(idPktSpace, 4))
	s.Process(m, mkRecord(t, pl, encode(t, pl, 3, 1, 999)))
	if r := rate(withID, "", 3); r != 1000 {
		t.Errorf("packet interval: rate %d, want 1000", r)
	}
	// The selected-out records never reach enrich; options records skip
	// the select.
	n := len(pass.recs)
	s.Process(m, mkRecord(t, noID, encode(t, noID, 17)))
	if len(pass.recs) != n {
		t.Error("select did not apply")
	}
	if len(drop.recs) != 11 {
		t.Errorf("drop pipeline: %d records, want the 11 data records", len(drop.recs))
	}
	for _, g := range drop.recs {
		if g.Layout.Options {
			t.Error("an options record reached a pipeline that drops them")
		}
	}
}

// Options records of other kinds (no sampling element) change nothing, and
// a pipeline without enrich passes them unchanged too.
func TestOptionsPassUnchanged(t *testing.T) {
	s, out := stages(t, "project: {keep: [octetDeltaCount]}", "enrich: {sampling: true}")
	ol := mkOptionsLayout(t, 400, 1, spec(idIngress, 4), spec(idIfName, ipfix.VarLen))
	r := mkRecord(t, ol, encode(t, ol, 3, "eth3"))
	s.Process(mkMeta("192.0.2.1:4739", 1), r)
	if len(out.recs) != 1 || out.recs[0].RawPtr != &r.Raw()[0] || !reflect.DeepEqual(out.recs[0].Fields, map[string]any{"ingressInterface": uint64(3), "interfaceName": "eth3"}) {
		t.Errorf("%+v", out.recs)
	}
}
