package analysis

import (
	"bufio"
	"context"
	"encoding/xml"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/offline/decode"
)

// MaxEdgePorts bounds the ports listed on an edge.
const MaxEdgePorts = 16

// GraphResult is a graph job's result: who talks to whom. Edges are
// directed as the records are: a record's forward counters go on the
// edge from its source to its destination address, the reverse counters
// of an RFC 5103 biflow record on the edge back (with no flows: a record
// is one flow, counted in the direction it was reported). Addresses are
// sourceIPv4Address and destinationIPv4Address, or the IPv6 ones in
// templates without those.
type GraphResult struct {
	Metric Metric
	// Nodes are the hosts of Edges, most Metric (in and out) first; their
	// counters are the host's totals, not only those of the kept edges.
	Nodes []Node
	// Edges are the heaviest conversations by Metric (at most
	// GraphParams.MaxEdges), most first.
	Edges []Edge
	// Hosts and Conversations count the distinct ones held; EdgesOmitted
	// the conversations beyond MaxEdges.
	Hosts, Conversations, EdgesOmitted int
	// NoHosts counts records without a source and destination address.
	NoHosts uint64
	// Total counts the records the filter kept; Overflow those of hosts
	// or conversations first seen when the tables were full.
	Total, Overflow Totals
	Summary         Summary
}

// Node is a host and its counters in and out.
type Node struct {
	Addr                            netip.Addr
	OctetsOut, PacketsOut, FlowsOut uint64
	OctetsIn, PacketsIn, FlowsIn    uint64
}

// Edge is a conversation from Src to Dst.
type Edge struct {
	Src, Dst               netip.Addr
	Octets, Packets, Flows uint64
	// Protocols are the protocolIdentifier values seen, ascending.
	Protocols []uint8
	// Ports are the destination ports of TCP, UDP, SCTP and DCCP packets
	// on the edge, ascending: at most MaxEdgePorts, PortsTruncated when
	// there were more.
	Ports          []uint16
	PortsTruncated bool
}

// Graph runs a graph job.
func Graph(ctx context.Context, in Input, p GraphParams) (*GraphResult, error) {
	c, err := p.compile()
	if err != nil {
		return nil, err
	}
	s, err := newScan(ctx, &in, c.compiled, 1)
	if err != nil {
		return nil, err
	}
	k := newGraphSink(s.in.maxKeys())
	if err := s.run(k, false); err != nil {
		return nil, err
	}
	res := k.result(&c)
	res.Summary = s.sum
	return res, nil
}

type hostPlan struct {
	src, dst, sport, dport, proto int
	flow                          flowPlan
}

type edgeKey struct{ src, dst netip.Addr }

// hostKey is an address as a key: its 16 octets (IPv4 mapped) and a
// family octet, so an IPv4 address and its IPv4-mapped IPv6 form differ.
type hostKey = [32]byte

// pairKey is a conversation's two hostKeys' first 17 octets.
type pairKey = [64]byte

func hostKeyOf(a netip.Addr) (k hostKey) {
	*(*[16]byte)(k[:16]) = a.As16()
	if a.Is4() {
		k[16] = 4
	}
	return k
}

func pairKeyOf(s, d *hostKey) (k pairKey) {
	copy(k[:17], s[:17])
	copy(k[17:34], d[:17])
	return k
}

type nodeAcc struct{ out, in counts }

type edgeAcc struct {
	c      counts
	protos [4]uint64
	ports  [MaxEdgePorts]uint16
	nports uint8
	more   bool
}

type graphSink struct {
	plans   layoutCache[hostPlan]
	nodeIdx *keyIndex[hostKey]
	nodes   []netip.Addr
	nodeAcc []nodeAcc
	edgeIdx *keyIndex[pairKey]
	edges   []edgeKey
	edgeAcc []edgeAcc
	max     int
	noHosts uint64
	total   Totals
	over    Totals
}

func newGraphSink(max int) *graphSink {
	return &graphSink{nodeIdx: newKeyIndex[hostKey](), edgeIdx: newKeyIndex[pairKey](), max: max}
}

func (k *graphSink) plan(l *ipfix.Layout) *hostPlan {
	p := &hostPlan{
		src: addrField(l, ieSourceIPv4Address, 4), dst: addrField(l, ieDestinationIPv4Address, 4),
		sport: counterField(l, 0, ieSourceTransportPort, 0), dport: counterField(l, 0, ieDestinationTransportPort, 0),
		proto: counterField(l, 0, ieProtocolIdentifier, 0),
		flow:  newFlowPlan(l),
	}
	if p.src < 0 || p.dst < 0 {
		p.src, p.dst = addrField(l, ieSourceIPv6Address, 16), addrField(l, ieDestinationIPv6Address, 16)
	}
	k.plans.store(l, p)
	return p
}

func addrField(l *ipfix.Layout, id uint16, n uint16) int {
	if j := l.Index(0, id); j >= 0 && l.Fields[j].Length == n {
		return j
	}
	return -1
}

func (k *graphSink) record(r *decode.Record) {
	p := k.plans.lookup(r.Rec.Layout)
	if p == nil {
		p = k.plan(r.Rec.Layout)
	}
	fwd, rev := p.flow.directed(r.Rec)
	all := fwd
	all.octets += rev.octets
	all.packets += rev.packets
	k.total.add(all)
	if p.src < 0 || p.dst < 0 {
		k.noHosts++
		return
	}
	src, dst := r.Rec.Addr(p.src), r.Rec.Addr(p.dst)
	sk, dk := hostKeyOf(src), hostKeyOf(dst)
	fk := pairKeyOf(&sk, &dk)
	hasRev := rev.octets|rev.packets != 0
	// At the bound, a record that would add a host or a conversation
	// overflows whole.
	if len(k.nodes)+2 > k.max && (!k.nodeIdx.has(&sk) || !k.nodeIdx.has(&dk)) ||
		len(k.edges)+2 > k.max && (!k.edgeIdx.has(&fk) || hasRev && !k.edgeIdx.has(ptr(pairKeyOf(&dk, &sk)))) {
		k.over.add(all)
		return
	}
	proto := -1
	if p.proto >= 0 {
		proto = int(r.Rec.Uint(p.proto))
	}
	si, di := k.node(src, &sk), k.node(dst, &dk)
	k.nodeAcc[si].out.add(fwd)
	k.nodeAcc[di].in.add(fwd)
	e := &k.edgeAcc[k.edge(src, dst, &fk)]
	e.add(fwd, proto, portOf(r.Rec, p.dport, proto))
	if hasRev {
		k.nodeAcc[di].out.add(rev)
		k.nodeAcc[si].in.add(rev)
		rk := pairKeyOf(&dk, &sk)
		e := &k.edgeAcc[k.edge(dst, src, &rk)]
		e.add(rev, proto, portOf(r.Rec, p.sport, proto))
	}
}

// portOf reads a port field of a transport protocol's record; -1 if
// there is none.
func portOf(r *ipfix.Record, j, proto int) int {
	if j < 0 {
		return -1
	}
	switch proto {
	case -1, 6, 17, 33, 132:
		return int(r.Uint(j))
	}
	return -1
}

func ptr[T any](v T) *T { return &v }

func (k *graphSink) node(a netip.Addr, key *hostKey) int32 {
	i := k.nodeIdx.get(key)
	if int(i) == len(k.nodes) {
		k.nodes = append(k.nodes, a)
		k.nodeAcc = append(k.nodeAcc, nodeAcc{})
	}
	return i
}

func (k *graphSink) edge(src, dst netip.Addr, key *pairKey) int32 {
	i := k.edgeIdx.get(key)
	if int(i) == len(k.edges) {
		k.edges = append(k.edges, edgeKey{src, dst})
		k.edgeAcc = append(k.edgeAcc, edgeAcc{})
	}
	return i
}

func (e *edgeAcc) add(c counts, proto, port int) {
	e.c.add(c)
	if proto >= 0 && proto < 256 {
		e.protos[proto>>6] |= 1 << (proto & 63)
	}
	if port < 0 {
		return
	}
	for _, q := range e.ports[:e.nports] {
		if int(q) == port {
			return
		}
	}
	if int(e.nports) == len(e.ports) {
		e.more = true
		return
	}
	e.ports[e.nports] = uint16(port)
	e.nports++
}

func (k *graphSink) result(c *graphConfig) *GraphResult {
	res := &GraphResult{Metric: c.metric, Hosts: len(k.nodes), Conversations: len(k.edges),
		NoHosts: k.noHosts, Total: k.total, Overflow: k.over}
	keep := topIndices(len(k.edges), c.maxEdges, func(a, b int32) bool {
		ca, cb := &k.edgeAcc[a].c, &k.edgeAcc[b].c
		for _, x := range [3]Metric{c.metric, (c.metric + 1) % 3, (c.metric + 2) % 3} {
			if va, vb := ca.get(x), cb.get(x); va != vb {
				return va < vb
			}
		}
		return compareEdge(k.edges[a], k.edges[b]) > 0
	})
	res.EdgesOmitted = len(k.edges) - len(keep)
	used := make(map[int32]bool)
	nodeOf := func(a netip.Addr) int32 {
		key := hostKeyOf(a)
		i, _, _ := k.nodeIdx.find(&key)
		return i
	}
	for _, i := range keep {
		key, acc := k.edges[i], &k.edgeAcc[i]
		e := Edge{Src: key.src, Dst: key.dst, Octets: acc.c.octets, Packets: acc.c.packets, Flows: acc.c.flows,
			PortsTruncated: acc.more, Protocols: []uint8{}}
		for p := range 256 {
			if acc.protos[p>>6]&(1<<(p&63)) != 0 {
				e.Protocols = append(e.Protocols, uint8(p))
			}
		}
		e.Ports = slices.Sorted(slices.Values(acc.ports[:acc.nports]))
		if e.Ports == nil {
			e.Ports = []uint16{}
		}
		res.Edges = append(res.Edges, e)
		used[nodeOf(key.src)] = true
		used[nodeOf(key.dst)] = true
	}
	for i := range used {
		a := &k.nodeAcc[i]
		res.Nodes = append(res.Nodes, Node{Addr: k.nodes[i],
			OctetsOut: a.out.octets, PacketsOut: a.out.packets, FlowsOut: a.out.flows,
			OctetsIn: a.in.octets, PacketsIn: a.in.packets, FlowsIn: a.in.flows})
	}
	m := c.metric
	slices.SortFunc(res.Nodes, func(a, b Node) int {
		va, vb := a.sum(m), b.sum(m)
		switch {
		case va > vb:
			return -1
		case va < vb:
			return 1
		}
		return a.Addr.Compare(b.Addr)
	})
	return res
}

func (n *Node) sum(m Metric) uint64 {
	switch m {
	case Packets:
		return n.PacketsOut + n.PacketsIn
	case Flows:
		return n.FlowsOut + n.FlowsIn
	}
	return n.OctetsOut + n.OctetsIn
}

func compareEdge(a, b edgeKey) int {
	if c := a.src.Compare(b.src); c != 0 {
		return c
	}
	return a.dst.Compare(b.dst)
}

// Formats returns "json", "graphml" and "dot".
func (r *GraphResult) Formats() []string { return []string{"json", "graphml", "dot"} }

// Write writes the result in a format of Formats.
func (r *GraphResult) Write(w io.Writer, format string) error {
	switch format {
	case "json", "":
		_, err := w.Write(r.AppendJSON(nil))
		return err
	case "graphml":
		return r.WriteGraphML(w)
	case "dot":
		return r.WriteDOT(w)
	}
	return errFormat(format, r.Formats())
}

func appendNodeCounts(dst []byte, n *Node) []byte {
	dst = append(dst, `"octets_out":`...)
	dst = strconv.AppendUint(dst, n.OctetsOut, 10)
	dst = append(dst, `,"packets_out":`...)
	dst = strconv.AppendUint(dst, n.PacketsOut, 10)
	dst = append(dst, `,"flows_out":`...)
	dst = strconv.AppendUint(dst, n.FlowsOut, 10)
	dst = append(dst, `,"octets_in":`...)
	dst = strconv.AppendUint(dst, n.OctetsIn, 10)
	dst = append(dst, `,"packets_in":`...)
	dst = strconv.AppendUint(dst, n.PacketsIn, 10)
	dst = append(dst, `,"flows_in":`...)
	return strconv.AppendUint(dst, n.FlowsIn, 10)
}

// AppendJSON appends {"nodes":[{"id","octets_out",...,"flows_in"}],
// "edges":[{"source","target","octets","packets","flows","protocols",
// "ports","ports_truncated"}], "metric", "hosts", "conversations",
// "edges_omitted", "records_without_hosts", "total", "overflow",
// "summary"}.
func (r *GraphResult) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"nodes":[`...)
	for i := range r.Nodes {
		n := &r.Nodes[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"id":"`...)
		dst = n.Addr.AppendTo(dst)
		dst = append(dst, `",`...)
		dst = appendNodeCounts(dst, n)
		dst = append(dst, '}')
	}
	dst = append(dst, `],"edges":[`...)
	for i := range r.Edges {
		e := &r.Edges[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"source":"`...)
		dst = e.Src.AppendTo(dst)
		dst = append(dst, `","target":"`...)
		dst = e.Dst.AppendTo(dst)
		dst = append(dst, `",`...)
		dst = appendCounts(dst, e.Octets, e.Packets, e.Flows)
		dst = append(dst, `,"protocols":`...)
		dst = appendUints(dst, e.Protocols)
		dst = append(dst, `,"ports":`...)
		dst = appendUints(dst, e.Ports)
		dst = append(dst, `,"ports_truncated":`...)
		dst = strconv.AppendBool(dst, e.PortsTruncated)
		dst = append(dst, '}')
	}
	dst = append(dst, `],"metric":`...)
	dst = strconv.AppendQuote(dst, r.Metric.String())
	dst = append(dst, `,"hosts":`...)
	dst = strconv.AppendInt(dst, int64(r.Hosts), 10)
	dst = append(dst, `,"conversations":`...)
	dst = strconv.AppendInt(dst, int64(r.Conversations), 10)
	dst = append(dst, `,"edges_omitted":`...)
	dst = strconv.AppendInt(dst, int64(r.EdgesOmitted), 10)
	dst = append(dst, `,"records_without_hosts":`...)
	dst = strconv.AppendUint(dst, r.NoHosts, 10)
	dst = append(dst, `,"total":`...)
	dst = appendMarshal(dst, r.Total)
	dst = append(dst, `,"overflow":`...)
	dst = appendMarshal(dst, r.Overflow)
	dst = append(dst, `,"summary":`...)
	dst = appendMarshal(dst, r.Summary)
	return append(dst, "}\n"...)
}

func appendUints[T uint8 | uint16](dst []byte, vs []T) []byte {
	dst = append(dst, '[')
	for i, v := range vs {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendUint(dst, uint64(v), 10)
	}
	return append(dst, ']')
}

func joinUints[T uint8 | uint16](vs []T) string {
	var sb strings.Builder
	for i, v := range vs {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.FormatUint(uint64(v), 10))
	}
	return sb.String()
}

// graphML attributes: id, applies to, name, type.
var graphMLKeys = [...][4]string{
	{"n_octets_out", "node", "octets_out", "long"},
	{"n_packets_out", "node", "packets_out", "long"},
	{"n_flows_out", "node", "flows_out", "long"},
	{"n_octets_in", "node", "octets_in", "long"},
	{"n_packets_in", "node", "packets_in", "long"},
	{"n_flows_in", "node", "flows_in", "long"},
	{"e_octets", "edge", "octets", "long"},
	{"e_packets", "edge", "packets", "long"},
	{"e_flows", "edge", "flows", "long"},
	{"e_protocols", "edge", "protocols", "string"},
	{"e_ports", "edge", "ports", "string"},
	{"e_ports_truncated", "edge", "ports_truncated", "boolean"},
}

// WriteGraphML writes the graph as GraphML (directed; node IDs are the
// addresses; protocols and ports as comma-separated strings).
func (r *GraphResult) WriteGraphML(w io.Writer) error {
	bw := bufio.NewWriter(w)
	bw.WriteString(xml.Header)
	bw.WriteString(`<graphml xmlns="http://graphml.graphdrawing.org/xmlns" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">` + "\n")
	for _, k := range graphMLKeys {
		bw.WriteString(`  <key id="` + k[0] + `" for="` + k[1] + `" attr.name="` + k[2] + `" attr.type="` + k[3] + `"/>` + "\n")
	}
	bw.WriteString(`  <graph id="flows" edgedefault="directed">` + "\n")
	data := func(key, v string) {
		bw.WriteString(`<data key="` + key + `">`)
		xml.EscapeText(bw, []byte(v))
		bw.WriteString(`</data>`)
	}
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	for i := range r.Nodes {
		n := &r.Nodes[i]
		bw.WriteString(`    <node id="`)
		xml.EscapeText(bw, []byte(n.Addr.String()))
		bw.WriteString(`">`)
		data("n_octets_out", u(n.OctetsOut))
		data("n_packets_out", u(n.PacketsOut))
		data("n_flows_out", u(n.FlowsOut))
		data("n_octets_in", u(n.OctetsIn))
		data("n_packets_in", u(n.PacketsIn))
		data("n_flows_in", u(n.FlowsIn))
		bw.WriteString("</node>\n")
	}
	for i := range r.Edges {
		e := &r.Edges[i]
		bw.WriteString(`    <edge id="e` + strconv.Itoa(i) + `" source="`)
		xml.EscapeText(bw, []byte(e.Src.String()))
		bw.WriteString(`" target="`)
		xml.EscapeText(bw, []byte(e.Dst.String()))
		bw.WriteString(`">`)
		data("e_octets", u(e.Octets))
		data("e_packets", u(e.Packets))
		data("e_flows", u(e.Flows))
		data("e_protocols", joinUints(e.Protocols))
		data("e_ports", joinUints(e.Ports))
		data("e_ports_truncated", strconv.FormatBool(e.PortsTruncated))
		bw.WriteString("</edge>\n")
	}
	bw.WriteString("  </graph>\n</graphml>\n")
	return bw.Flush()
}

// WriteDOT writes the graph for Graphviz: a digraph whose nodes are the
// addresses and whose edges carry the counters as attributes and a label.
func (r *GraphResult) WriteDOT(w io.Writer) error {
	bw := bufio.NewWriter(w)
	bw.WriteString("digraph flows {\n  node [shape=box];\n")
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	for i := range r.Nodes {
		n := &r.Nodes[i]
		bw.WriteString("  " + dotID(n.Addr.String()) + " [octets_out=" + u(n.OctetsOut) + ", packets_out=" + u(n.PacketsOut) +
			", flows_out=" + u(n.FlowsOut) + ", octets_in=" + u(n.OctetsIn) + ", packets_in=" + u(n.PacketsIn) +
			", flows_in=" + u(n.FlowsIn) + "];\n")
	}
	for i := range r.Edges {
		e := &r.Edges[i]
		ports := joinUints(e.Ports)
		if e.PortsTruncated {
			ports += ",..."
		}
		label := u(e.Octets) + " octets, " + u(e.Flows) + " flows"
		bw.WriteString("  " + dotID(e.Src.String()) + " -> " + dotID(e.Dst.String()) + " [label=" + dotID(label) +
			", octets=" + u(e.Octets) + ", packets=" + u(e.Packets) + ", flows=" + u(e.Flows) +
			", protocols=" + dotID(joinUints(e.Protocols)) + ", ports=" + dotID(ports) + "];\n")
	}
	bw.WriteString("}\n")
	return bw.Flush()
}

// dotID quotes s as a DOT string.
func dotID(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}
