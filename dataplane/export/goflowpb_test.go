package export

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-flow/sluice/dataplane/export/internal/goflow2pb"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
	"github.com/sluice-flow/sluice/dataplane/offline/decode"
	"github.com/sluice-flow/sluice/dataplane/offline/pcap"
	"github.com/sluice-flow/sluice/internal/testenv"
)

// goflowCaptures lists the captures the goflow2-pb tests read, in groups
// decoded with one decoder (a template capture before its data capture):
// every capture of testdata/captures (the TCP one as its IPFIX file) and
// every shared one.
func goflowCaptures(t testing.TB) [][]string {
	t.Helper()
	local, _ := filepath.Glob("../../testdata/captures/*.pcap")
	if len(local) == 0 {
		t.Fatal("no captures in testdata/captures")
	}
	var groups [][]string
	for _, f := range local {
		if strings.HasSuffix(f, "-tcp.pcap") {
			f = strings.TrimSuffix(f, ".pcap") + ".ipfix"
		}
		groups = append(groups, []string{f})
	}
	shared, _ := filepath.Glob("../../../shared/captures/*.pcap")
	more, _ := filepath.Glob("../../../shared/captures/*.ipfix")
	shared = append(shared, more...)
	if len(shared) == 0 {
		testenv.SkipOrFail(t, "../shared/captures is missing")
	}
	byStem := map[string]int{}
	pair := regexp.MustCompile(`-(options-)?(template|templates|data)\.pcap$`)
	sort.SliceStable(shared, func(i, j int) bool { // templates first
		return strings.Contains(shared[i], "template") && !strings.Contains(shared[j], "template")
	})
	for _, f := range shared {
		stem := pair.ReplaceAllString(f, "")
		if i, ok := byStem[stem]; ok && stem != f {
			groups[i] = append(groups[i], f)
			continue
		}
		byStem[stem] = len(groups)
		groups = append(groups, []string{f})
	}
	return groups
}

// eachCaptureRecord decodes a capture or an IPFIX file as `sluice decode`
// does (templates kept per exporter address across the files d decodes)
// and calls fn per record, options records included.
func eachCaptureRecord(t testing.TB, d *decode.Decoder, path string, fn func(r *decode.Record)) {
	t.Helper()
	if strings.HasSuffix(path, ".ipfix") {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for len(b) > 0 {
			n, err := d.Decode(netip.MustParseAddrPort("192.0.2.9:4739"), b, fn)
			if n == 0 {
				t.Fatalf("%s: %v", path, err)
			}
			b = b[n:]
		}
		return
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pr, err := pcap.NewReader(bufio.NewReader(f))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var dg pcap.Datagram
	for {
		if err := pr.Next(&dg); err == io.EOF {
			return
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b := dg.Payload
		for len(b) >= 4 {
			n, _ := d.Decode(dg.Src, b, fn)
			if n == 0 || b[1] != ipfix.VersionIPFIX {
				break
			}
			b = b[n:]
		}
	}
}

// refHeader is what a FlowMessage takes from the message header and the
// collector, which the JSON of `sluice decode` leaves out.
type refHeader struct {
	seq              uint32
	exportNanos      uint32
	samplingInterval uint16
	received         int64
}

// kv is one JSON key and value, in order.
type kv struct {
	key string
	val any
}

// orderedJSON parses one JSON object keeping its keys in order.
func orderedJSON(t testing.TB, line []byte) []kv {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", line)
	}
	var out []kv
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, kv{k.(string), v})
	}
	return out
}

var repeatSuffix = regexp.MustCompile(`_[0-9]+$`)

// goflowRef is the slow reference for the goflow2-pb encoding: it builds
// the FlowMessage from the JSON `sluice decode` prints, by element names,
// following the mapping table of README.md. sampling holds the rates
// options records announced, by "exporter address/version/domain".
func goflowRef(t testing.TB, obj []kv, h refHeader, sampling map[string]uint64) *goflow2pb.FlowMessage {
	t.Helper()
	get := func(k string) any {
		for _, p := range obj {
			if p.key == k {
				return p.val
			}
		}
		t.Fatalf("no %q in %v", k, obj)
		return nil
	}
	num := func(v any) uint64 {
		n, err := strconv.ParseUint(string(v.(json.Number)), 10, 64)
		if err != nil {
			t.Fatalf("number %v: %v", v, err)
		}
		return n
	}
	addr := func(v any) []byte { return netip.MustParseAddr(v.(string)).AsSlice() }
	tm := func(v any) uint64 {
		ts, err := time.Parse(time.RFC3339Nano, v.(string))
		if err != nil {
			t.Fatal(err)
		}
		return uint64(ts.UnixNano())
	}
	mac := func(v any) uint64 {
		hw, err := net.ParseMAC(v.(string))
		if err != nil {
			t.Fatal(err)
		}
		var u uint64
		for _, b := range hw {
			u = u<<8 | uint64(b)
		}
		return u
	}
	label := func(v any) uint32 {
		if o, ok := v.(map[string]any); ok { // {"label":..,"exp":..,"bottom_of_stack":..}
			return uint32(num(o["label"]))
		}
		s := v.(string)
		if l, _, ok := strings.Cut(s, "/"); ok { // label/exp/bottom-of-stack
			n, _ := strconv.ParseUint(l, 10, 32)
			return uint32(n)
		}
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatalf("mpls label %q: %v", s, err)
		}
		var u uint32
		for _, x := range b {
			u = u<<8 | uint32(x)
		}
		return u >> 4
	}
	version := num(get("version"))
	exporter := netip.MustParseAddrPort(get("exporter").(string)).Addr()
	domain := num(get("observation_domain"))
	export := tm(get("export_time"))
	if version == 5 {
		export += uint64(h.exportNanos % 1e9)
	}
	want := &goflow2pb.FlowMessage{
		SequenceNum:         h.seq,
		ObservationDomainId: uint32(domain),
		SamplerAddress:      exporter.Unmap().AsSlice(),
		TimeFlowStartNs:     export,
		TimeFlowEndNs:       export,
		TimeReceivedNs:      uint64(h.received),
	}
	switch version {
	case 5:
		want.Type = goflow2pb.FlowMessage_NETFLOW_V5
		want.Etype = 0x800
		want.SamplingRate = uint64(h.samplingInterval & 0x3fff)
	case 9:
		want.Type = goflow2pb.FlowMessage_NETFLOW_V9
	default:
		want.Type = goflow2pb.FlowMessage_IPFIX
	}
	if version != 5 {
		want.SamplingRate = sampling[exporter.String()+"/"+strconv.FormatUint(version, 10)+"/"+strconv.FormatUint(domain, 10)]
	}
	setAddr := func(dst *[]byte, v any, etype uint32) {
		b := addr(v)
		allZero := !bytes.ContainsFunc(b, func(r rune) bool { return r != 0 })
		if len(*dst) != 0 && allZero {
			return
		}
		*dst, want.Etype = b, etype
	}
	var labels []uint32
	setLabel := func(i int, v any) {
		for len(labels) <= i {
			labels = append(labels, 0)
		}
		labels[i] = label(v)
	}
	for _, p := range obj[4:] { // after exporter, version, domain, template
		name := p.key
		if base := repeatSuffix.ReplaceAllString(name, ""); base != name && ipfix.LookupName(base) != nil {
			name = base
		}
		v := p.val
		switch name {
		case "octetDeltaCount", "postOctetDeltaCount":
			want.Bytes = num(v)
		case "packetDeltaCount", "postPacketDeltaCount":
			want.Packets = num(v)
		case "dataLinkFrameSize":
			want.Bytes, want.Packets = num(v), 1
		case "protocolIdentifier":
			want.Proto = uint32(num(v))
		case "ipClassOfService":
			want.IpTos = uint32(num(v))
		case "tcpControlBits":
			want.TcpFlags = uint32(num(v))
		case "sourceTransportPort":
			want.SrcPort = uint32(num(v))
		case "destinationTransportPort":
			want.DstPort = uint32(num(v))
		case "sourceIPv4Address":
			setAddr(&want.SrcAddr, v, 0x800)
		case "destinationIPv4Address":
			setAddr(&want.DstAddr, v, 0x800)
		case "sourceIPv6Address":
			setAddr(&want.SrcAddr, v, 0x86dd)
		case "destinationIPv6Address":
			setAddr(&want.DstAddr, v, 0x86dd)
		case "sourceIPv4PrefixLength", "sourceIPv6PrefixLength":
			want.SrcNet = uint32(num(v))
		case "destinationIPv4PrefixLength", "destinationIPv6PrefixLength":
			want.DstNet = uint32(num(v))
		case "ingressInterface":
			want.InIf = uint32(num(v))
		case "egressInterface":
			want.OutIf = uint32(num(v))
		case "ipNextHopIPv4Address", "ipNextHopIPv6Address":
			want.NextHop = addr(v)
		case "bgpNextHopIPv4Address", "bgpNextHopIPv6Address":
			want.BgpNextHop = addr(v)
		case "bgpSourceAsNumber":
			want.SrcAs = uint32(num(v))
		case "bgpDestinationAsNumber":
			want.DstAs = uint32(num(v))
		case "minimumTTL":
			want.IpTtl = uint32(num(v))
		case "ipVersion":
			switch num(v) {
			case 4:
				want.Etype = 0x800
			case 6:
				want.Etype = 0x86dd
			}
		case "flowLabelIPv6":
			want.Ipv6FlowLabel = uint32(num(v))
		case "icmpTypeCodeIPv4", "icmpTypeCodeIPv6":
			n := num(v)
			want.IcmpType, want.IcmpCode = uint32(n>>8&0xff), uint32(n&0xff)
		case "icmpTypeIPv4", "icmpTypeIPv6":
			want.IcmpType = uint32(num(v))
		case "icmpCodeIPv4", "icmpCodeIPv6":
			want.IcmpCode = uint32(num(v))
		case "sourceMacAddress", "postSourceMacAddress":
			want.SrcMac = mac(v)
		case "destinationMacAddress", "postDestinationMacAddress":
			want.DstMac = mac(v)
		case "vlanId":
			want.VlanId = uint32(num(v))
			want.SrcVlan = want.VlanId
		case "postVlanId":
			want.DstVlan = uint32(num(v))
		case "fragmentIdentification":
			want.FragmentId = uint32(num(v))
		case "fragmentOffset":
			want.FragmentOffset = uint32(num(v))
		case "fragmentFlags":
			want.IpFlags = uint32(num(v)) >> 5
		case "forwardingStatus":
			want.ForwardingStatus = uint32(num(v))
		case "observationPointId":
			want.ObservationPointId = uint32(num(v))
		case "mplsTopLabelStackSection":
			setLabel(0, v)
		case "mplsLabelStackSection2":
			setLabel(1, v)
		case "mplsLabelStackSection3":
			setLabel(2, v)
		case "mplsTopLabelIPv4Address", "mplsTopLabelIPv6Address":
			want.MplsIp = append(want.MplsIp, addr(v))
		case "flowStartSeconds", "flowStartMilliseconds", "flowStartMicroseconds", "flowStartNanoseconds":
			want.TimeFlowStartNs = tm(v)
		case "flowEndSeconds", "flowEndMilliseconds", "flowEndMicroseconds", "flowEndNanoseconds":
			want.TimeFlowEndNs = tm(v)
		case "flowStartSysUpTime":
			if version != 10 {
				want.TimeFlowStartNs = tm(v)
			}
		case "flowEndSysUpTime":
			if version != 10 {
				want.TimeFlowEndNs = tm(v)
			}
		case "flowStartDeltaMicroseconds":
			want.TimeFlowStartNs = export - num(v)*1000
		case "flowEndDeltaMicroseconds":
			want.TimeFlowEndNs = export - num(v)*1000
		}
	}
	want.MplsLabel = labels
	return want
}

// TestGoflowPBMatchesDecode encodes every record of the captures as
// goflow2-pb, decodes the messages with goflow2's FlowMessage (generated
// from its .proto) and compares each with what a reference builds from the
// JSON `sluice decode` prints for the same record.
func TestGoflowPBMatchesDecode(t *testing.T) {
	for _, group := range goflowCaptures(t) {
		t.Run(filepath.Base(group[len(group)-1]), func(t *testing.T) {
			enc := newGoflowEncoder()
			sampling := map[string]uint64{}
			d := decode.New()
			var line, pb []byte
			records, options, mapped := 0, 0, 0
			for _, path := range group {
				eachCaptureRecord(t, d, path, func(r *decode.Record) {
					m := jsonl.Meta{Exporter: r.Exporter, Msg: r.Msg, Resolve: r.Resolver, Received: 1700000000123456789}
					line = jsonl.AppendRecord(line[:0], &jsonl.Meta{Exporter: r.Exporter, Msg: r.Msg, Resolve: r.Resolver}, r.Rec)
					obj := orderedJSON(t, line)
					var ok bool
					pb, ok = enc.appendRecord(pb[:0], &m, r.Rec)
					if r.Rec.Layout.Options {
						options++
						if ok {
							t.Fatalf("options record encoded: %s", line)
						}
						for _, name := range []string{"samplingInterval", "samplerRandomInterval", "samplingPacketInterval"} {
							for _, p := range obj {
								if p.key == name { // the last one found wins, as in goflow2's order of preference
									sampling[r.Exporter.Addr().String()+"/"+strconv.Itoa(int(r.Msg.Version))+"/"+strconv.Itoa(int(r.Msg.DomainID))], _ = strconv.ParseUint(string(p.val.(json.Number)), 10, 64)
								}
							}
						}
						return
					}
					records++
					if !ok {
						t.Fatalf("data record not encoded: %s", line)
					}
					got := &goflow2pb.FlowMessage{}
					br := bytes.NewReader(pb)
					if err := protodelim.UnmarshalFrom(br, got); err != nil {
						t.Fatalf("unmarshal %x: %v", pb, err)
					}
					if br.Len() != 0 {
						t.Fatalf("%d octets after the message", br.Len())
					}
					want := goflowRef(t, obj, refHeader{r.Msg.Sequence, r.Msg.ExportNanos, r.Msg.SamplingInterval, m.Received}, sampling)
					if !proto.Equal(got, want) {
						t.Fatalf("record %d: %s\n got %s\nwant %s", records, line, prototext.Format(got), prototext.Format(want))
					}
					if len(got.SrcAddr) > 0 && got.Bytes > 0 {
						mapped++
					}
				})
			}
			if records == 0 {
				t.Fatal("no data records")
			}
			t.Logf("%d data records (%d with addresses and octets), %d options records", records, mapped, options)
		})
	}
}

// TestGoflowPBSampling checks the sampling rate of an exporter's options
// records reaches its data records, and only its own.
func TestGoflowPBSampling(t *testing.T) {
	enc := newGoflowEncoder()
	msgs := genIPFIX(false, 8, 20)
	d := decode.New()
	rates := map[uint64]int{}
	for i, b := range msgs {
		exp := netip.MustParseAddrPort("192.0.2.1:2055")
		if i%2 == 1 {
			exp = netip.MustParseAddrPort("192.0.2.2:2055")
		}
		if _, err := d.Decode(exp, b, func(r *decode.Record) {
			m := jsonl.Meta{Exporter: r.Exporter, Msg: r.Msg}
			pb, ok := enc.appendRecord(nil, &m, r.Rec)
			if !ok {
				return
			}
			got := &goflow2pb.FlowMessage{}
			if err := protodelim.UnmarshalFrom(bytes.NewReader(pb), got); err != nil {
				t.Fatal(err)
			}
			rates[got.SamplingRate]++
		}); err != nil {
			t.Fatal(err)
		}
	}
	// tplOpt carries samplingInterval (34) = the record number; only the
	// records after the first options record of their exporter have one.
	if rates[0] == 0 || len(rates) < 2 {
		t.Fatalf("sampling rates seen: %v", rates)
	}
}

// TestGoflowPBNoAllocs: the encode path allocates nothing per record.
func TestGoflowPBNoAllocs(t *testing.T) {
	recs, metas := steadyRecords(genIPFIX(false, 20, 30))
	enc := newGoflowEncoder()
	buf := make([]byte, 0, 1024)
	for i := range recs { // learn the sampling rates first
		buf, _ = enc.appendRecord(buf[:0], metas[i], recs[i])
	}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		buf, _ = enc.appendRecord(buf[:0], metas[i%len(recs)], recs[i%len(recs)])
		i++
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per record", allocs)
	}
}

func BenchmarkGoflowPBEncode(b *testing.B) {
	recs, metas := steadyRecords(genIPFIX(false, 20, 30))
	enc := newGoflowEncoder()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	n := 0
	for i := 0; b.Loop(); i++ {
		buf, _ = enc.appendRecord(buf[:0], metas[i%len(recs)], recs[i%len(recs)])
		n += len(buf)
	}
	b.SetBytes(int64(n / max(b.N, 1)))
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
