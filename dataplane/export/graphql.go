package export

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
)

// GraphQL ingestion: records sent to an IPFIXgraph-style records API as the
// ingestIpfixRecord(input: IpfixRecordInput!) mutation. The input type is
// inferred from the schema IPFIXgraph's author published for IPjFIXsvc
// (github.com/mesbrj/IPjFIXsvc, src/main/resources/graphql/schema.graphqls),
// not from IPFIXgraph itself, which is not published.

// gqlKind is how an element's value is written into an input field.
type gqlKind uint8

const (
	gqlLong      gqlKind = iota // Long: an unsigned integer as a JSON number
	gqlInt                      // Int: a JSON number within 32-bit signed range
	gqlString                   // String: text, addresses, MACs; octets in hex
	gqlInstant                  // Instant: an RFC 3339 time
	gqlNumString                // String holding a number (enumerations, flags)
)

// gqlGroup is the input object a field belongs to.
type gqlGroup uint8

const (
	gqlTop    gqlGroup = iota // IpfixRecordInput
	gqlDPI                    // dpiInfo: DpiInfoInput
	gqlBiflow                 // bidirectionalFlowInfo: BidirectionalFlowInfoInput
	gqlCERT                   // certInfo: CertEnterpriseInfoInput
	gqlGroups
)

var gqlGroupNames = [gqlGroups]string{"", "dpiInfo", "bidirectionalFlowInfo", "certInfo"}

// GraphQLField maps one information element to one input field.
type GraphQLField struct {
	Group   string // "" (IpfixRecordInput), "dpiInfo", "bidirectionalFlowInfo" or "certInfo"
	Input   string // the input field
	Element string // the IANA name, or "" for an enterprise element
	PEN     uint32 // with ID, for enterprise elements (CERT: 6871)
	ID      uint16
	Kind    string // the GraphQL type: Long, Int, String or Instant
	kind    gqlKind
	group   gqlGroup
}

// GraphQLFields is the mapping from IPFIX elements to IpfixRecordInput
// fields (README.md prints it). Several elements may feed one field (the
// flow start in any unit); the first one a record carries wins. Input
// fields whose element no registry knows (sslServerName, dnsQueryName, ...)
// are listed with no element and stay empty.
var GraphQLFields = []GraphQLField{
	{Input: "octetDeltaCount", Element: "octetDeltaCount", Kind: "Long"},
	{Input: "packetDeltaCount", Element: "packetDeltaCount", Kind: "Long"},
	{Input: "deltaFlowCount", Element: "deltaFlowCount", Kind: "Long"},
	{Input: "protocolIdentifier", Element: "protocolIdentifier", Kind: "Int"},
	{Input: "ipClassOfService", Element: "ipClassOfService", Kind: "Int"},
	{Input: "tcpControlBits", Element: "tcpControlBits", Kind: "Int"},
	{Input: "sourceTransportPort", Element: "sourceTransportPort", Kind: "Int"},
	{Input: "sourceIPv4Address", Element: "sourceIPv4Address", Kind: "String"},
	{Input: "sourceIPv4PrefixLength", Element: "sourceIPv4PrefixLength", Kind: "Int"},
	{Input: "ingressInterface", Element: "ingressInterface", Kind: "Int"},
	{Input: "destinationTransportPort", Element: "destinationTransportPort", Kind: "Int"},
	{Input: "destinationIPv4Address", Element: "destinationIPv4Address", Kind: "String"},
	{Input: "destinationIPv4PrefixLength", Element: "destinationIPv4PrefixLength", Kind: "Int"},
	{Input: "egressInterface", Element: "egressInterface", Kind: "Int"},
	{Input: "ipNextHopIPv4Address", Element: "ipNextHopIPv4Address", Kind: "String"},
	{Input: "sourceIPv6Address", Element: "sourceIPv6Address", Kind: "String"},
	{Input: "destinationIPv6Address", Element: "destinationIPv6Address", Kind: "String"},
	{Input: "sourceIPv6PrefixLength", Element: "sourceIPv6PrefixLength", Kind: "Int"},
	{Input: "destinationIPv6PrefixLength", Element: "destinationIPv6PrefixLength", Kind: "Int"},
	{Input: "flowStartMilliseconds", Element: "flowStartMilliseconds", Kind: "Instant"},
	{Input: "flowStartMilliseconds", Element: "flowStartSeconds", Kind: "Instant"},
	{Input: "flowStartMilliseconds", Element: "flowStartMicroseconds", Kind: "Instant"},
	{Input: "flowStartMilliseconds", Element: "flowStartNanoseconds", Kind: "Instant"},
	{Input: "flowEndMilliseconds", Element: "flowEndMilliseconds", Kind: "Instant"},
	{Input: "flowEndMilliseconds", Element: "flowEndSeconds", Kind: "Instant"},
	{Input: "flowEndMilliseconds", Element: "flowEndMicroseconds", Kind: "Instant"},
	{Input: "flowEndMilliseconds", Element: "flowEndNanoseconds", Kind: "Instant"},
	{Input: "flowStartSysUpTime", Element: "flowStartSysUpTime", Kind: "Long"},
	{Input: "flowEndSysUpTime", Element: "flowEndSysUpTime", Kind: "Long"},
	{Input: "mplsTopLabelStackSection", Element: "mplsTopLabelStackSection", Kind: "Int"},
	{Input: "mplsLabelStackSection2", Element: "mplsLabelStackSection2", Kind: "Int"},
	{Input: "mplsLabelStackSection3", Element: "mplsLabelStackSection3", Kind: "Int"},
	{Input: "applicationId", Element: "applicationId", Kind: "Int"},
	{Input: "applicationName", Element: "applicationName", Kind: "String"},
	{Input: "applicationDescription", Element: "applicationDescription", Kind: "String"},
	{Input: "observationDomainId", Element: "observationDomainId", Kind: "Int"},
	{Input: "exporterIPv4Address", Element: "exporterIPv4Address", Kind: "String"},
	{Input: "exporterIPv6Address", Element: "exporterIPv6Address", Kind: "String"},

	{Group: "dpiInfo", Input: "httpRequestMethod", Element: "httpRequestMethod", Kind: "String"},
	{Group: "dpiInfo", Input: "httpRequestHost", Element: "httpRequestHost", Kind: "String"},
	{Group: "dpiInfo", Input: "httpRequestTarget", Element: "httpRequestTarget", Kind: "String"},
	{Group: "dpiInfo", Input: "httpUserAgent", Element: "httpUserAgent", Kind: "String"},
	{Group: "dpiInfo", Input: "httpStatusCode", Element: "httpStatusCode", Kind: "Int"},
	{Group: "dpiInfo", Input: "sslServerName", Element: "sslServerName", Kind: "String"},
	{Group: "dpiInfo", Input: "sslCertificateIssuer", Element: "sslCertificateIssuer", Kind: "String"},
	{Group: "dpiInfo", Input: "sslCertificateSubject", Element: "sslCertificateSubject", Kind: "String"},
	{Group: "dpiInfo", Input: "sslCipherSuite", Element: "sslCipherSuite", Kind: "String"},
	{Group: "dpiInfo", Input: "sslVersion", Element: "sslVersion", Kind: "Int"},
	{Group: "dpiInfo", Input: "dnsQueryName", Element: "dnsQueryName", Kind: "String"},
	{Group: "dpiInfo", Input: "dnsQueryType", Element: "dnsQueryType", Kind: "Int"},
	{Group: "dpiInfo", Input: "dnsResponseCode", Element: "dnsResponseCode", Kind: "Int"},
	{Group: "dpiInfo", Input: "dnsResponseName", Element: "dnsResponseName", Kind: "String"},
	{Group: "dpiInfo", Input: "applicationProtocol", Element: "applicationProtocol", Kind: "String"},
	{Group: "dpiInfo", Input: "applicationLayerProtocolId", Element: "applicationLayerProtocolId", Kind: "Int"},

	{Group: "bidirectionalFlowInfo", Input: "biflowDirection", Element: "biflowDirection", Kind: "String"},
	{Group: "bidirectionalFlowInfo", Input: "reverseOctetDeltaCount", Element: "reverseOctetDeltaCount", Kind: "Long"},
	{Group: "bidirectionalFlowInfo", Input: "reversePacketDeltaCount", Element: "reversePacketDeltaCount", Kind: "Long"},
	{Group: "bidirectionalFlowInfo", Input: "reverseFlowStartMilliseconds", Element: "reverseFlowStartMilliseconds", Kind: "Instant"},
	{Group: "bidirectionalFlowInfo", Input: "reverseFlowStartMilliseconds", Element: "reverseFlowStartSeconds", Kind: "Instant"},
	{Group: "bidirectionalFlowInfo", Input: "reverseFlowEndMilliseconds", Element: "reverseFlowEndMilliseconds", Kind: "Instant"},
	{Group: "bidirectionalFlowInfo", Input: "reverseFlowEndMilliseconds", Element: "reverseFlowEndSeconds", Kind: "Instant"},
	{Group: "bidirectionalFlowInfo", Input: "reverseTcpControlBits", Element: "reverseTcpControlBits", Kind: "Int"},
	{Group: "bidirectionalFlowInfo", Input: "flowDurationMilliseconds", Element: "flowDurationMilliseconds", Kind: "Long"},
	{Group: "bidirectionalFlowInfo", Input: "flowDurationMicroseconds", Element: "flowDurationMicroseconds", Kind: "Long"},
	{Group: "bidirectionalFlowInfo", Input: "minimumIpTotalLength", Element: "minimumIpTotalLength", Kind: "Long"},
	{Group: "bidirectionalFlowInfo", Input: "maximumIpTotalLength", Element: "maximumIpTotalLength", Kind: "Long"},
	{Group: "bidirectionalFlowInfo", Input: "reverseMinimumIpTotalLength", Element: "reverseMinimumIpTotalLength", Kind: "Long"},
	{Group: "bidirectionalFlowInfo", Input: "reverseMaximumIpTotalLength", Element: "reverseMaximumIpTotalLength", Kind: "Long"},
	{Group: "bidirectionalFlowInfo", Input: "minimumTTL", Element: "minimumTTL", Kind: "Int"},
	{Group: "bidirectionalFlowInfo", Input: "maximumTTL", Element: "maximumTTL", Kind: "Int"},
	{Group: "bidirectionalFlowInfo", Input: "reverseMinimumTTL", Element: "reverseMinimumTTL", Kind: "Int"},
	{Group: "bidirectionalFlowInfo", Input: "reverseMaximumTTL", Element: "reverseMaximumTTL", Kind: "Int"},
	{Group: "bidirectionalFlowInfo", Input: "flowEndReason", Element: "flowEndReason", Kind: "String"},
	{Group: "bidirectionalFlowInfo", Input: "flowDirection", Element: "flowDirection", Kind: "Int"},

	// CERT (YAF) elements under PEN 6871, numbered as the schema's comments
	// say; VLAN and MACs come from the IANA elements exporters send.
	{Group: "certInfo", Input: "silkAppLabel", PEN: 6871, ID: 33, Kind: "Int"},
	{Group: "certInfo", Input: "payloadEntropy", PEN: 6871, ID: 35, Kind: "String"},
	{Group: "certInfo", Input: "initialTCPFlags", PEN: 6871, ID: 14, Kind: "String"},
	{Group: "certInfo", Input: "unionTCPFlags", PEN: 6871, ID: 15, Kind: "String"},
	{Group: "certInfo", Input: "reverseFlowDeltaMilliseconds", PEN: 6871, ID: 21, Kind: "Long"},
	{Group: "certInfo", Input: "flowAttributes", PEN: 6871, ID: 40, Kind: "String"},
	{Group: "certInfo", Input: "flowKeyHash", PEN: 6871, ID: 106, Kind: "Int"},
	{Group: "certInfo", Input: "osName", PEN: 6871, ID: 36, Kind: "String"},
	{Group: "certInfo", Input: "osVersion", PEN: 6871, ID: 37, Kind: "String"},
	{Group: "certInfo", Input: "osFingerprint", PEN: 6871, ID: 107, Kind: "String"},
	{Group: "certInfo", Input: "payloadContent", PEN: 6871, ID: 18, Kind: "String"},
	{Group: "certInfo", Input: "payloadLength", PEN: 6871, ID: 19, Kind: "Int"},
	{Group: "certInfo", Input: "reversePayloadContent", PEN: 6871, ID: 20, Kind: "String"},
	{Group: "certInfo", Input: "reversePayloadLength", PEN: 6871, ID: 22, Kind: "Int"},
	{Group: "certInfo", Input: "ingressInterfaceName", PEN: 6871, ID: 100, Kind: "String"},
	{Group: "certInfo", Input: "egressInterfaceName", PEN: 6871, ID: 101, Kind: "String"},
	{Group: "certInfo", Input: "vlanId", Element: "vlanId", Kind: "Int"},
	{Group: "certInfo", Input: "reverseVlanId", Element: "reverseVlanId", Kind: "Int"},
	{Group: "certInfo", Input: "sourceMacAddress", Element: "sourceMacAddress", Kind: "String"},
	{Group: "certInfo", Input: "destinationMacAddress", Element: "destinationMacAddress", Kind: "String"},
}

type gqlKey struct {
	pen uint32
	id  uint16
}

// gqlTable maps elements to their GraphQLFields index; built once.
var gqlTable = func() map[gqlKey]int {
	t := make(map[gqlKey]int)
	for i := range GraphQLFields {
		f := &GraphQLFields[i]
		switch f.Kind {
		case "Long":
			f.kind = gqlLong
		case "Int":
			f.kind = gqlInt
		case "Instant":
			f.kind = gqlInstant
		case "String":
			f.kind = gqlString
		default:
			panic("BUG: export: GraphQL kind " + f.Kind)
		}
		for g, name := range gqlGroupNames {
			if name == f.Group {
				f.group = gqlGroup(g)
			}
		}
		if f.Element != "" {
			ie := ipfix.LookupName(f.Element)
			if ie == nil {
				continue // no registry knows it: the input stays empty
			}
			f.PEN, f.ID = ie.PEN, ie.ID
			if ie.Type != ipfix.TypeString && f.kind == gqlString && ie.Semantics == ipfix.SemanticsIdentifier {
				f.kind = gqlNumString // enumerations such as flowEndReason
			}
		} else if f.kind == gqlString {
			if ie := ipfix.Lookup(f.PEN, f.ID); ie == nil || (ie.Type != ipfix.TypeString && ie.Type != ipfix.TypeOctetArray) {
				f.kind = gqlNumString
			}
		}
		if _, dup := t[gqlKey{f.PEN, f.ID}]; !dup {
			t[gqlKey{f.PEN, f.ID}] = i
		}
	}
	return t
}()

// Defaults of the GraphQL output.
const (
	DefaultGraphQLBatch   = 100
	DefaultGraphQLQueue   = 10000 // records
	DefaultGraphQLRetries = 5
	DefaultGraphQLTimeout = 10 * time.Second
	gqlBackoffMin         = 100 * time.Millisecond
	gqlBackoffMax         = 10 * time.Second
)

// GraphQLConfig configures a GraphQL output. The zero value of each option
// is its documented default.
type GraphQLConfig struct {
	URL       string // http:// or https:// endpoint
	Batch     int    // records per request; 0: DefaultGraphQLBatch
	Queue     int    // records waiting; 0: DefaultGraphQLQueue
	Retries   int    // after the first attempt; 0: DefaultGraphQLRetries; <0: none
	Timeout   time.Duration
	TokenFile string // bearer token sent as Authorization
	// ListMutation, when set, sends a batch as one call of this mutation
	// taking input: [IpfixRecordInput!]! instead of aliased
	// ingestIpfixRecord calls.
	ListMutation string
}

var graphqlOptions = []string{"batch", "queue", "retries", "timeout", "token_file", "list_mutation"}

// parseGraphQLSpec parses "graphql+http(s)://HOST[:PORT]/PATH[?batch=N&...]".
func parseGraphQLSpec(spec string) (GraphQLConfig, error) {
	var c GraphQLConfig
	rest, q, err := splitQuery(spec, strings.TrimPrefix(spec, "graphql+"), graphqlOptions...)
	if err != nil {
		return c, err
	}
	u, err := url.Parse(rest)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return c, fmt.Errorf("export: %q: want graphql+http(s)://HOST[:PORT]/PATH", spec)
	}
	c.URL = rest
	num := func(key string, min int) (int, error) {
		s := q.Get(key)
		if s == "" {
			return 0, nil
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < min || n > 1<<24 {
			return 0, fmt.Errorf("export: %q: %s: bad value %q", spec, key, s)
		}
		return n, nil
	}
	if c.Batch, err = num("batch", 1); err != nil {
		return c, err
	}
	if c.Queue, err = num("queue", 1); err != nil {
		return c, err
	}
	if q.Get("retries") == "0" {
		c.Retries = -1
	} else if c.Retries, err = num("retries", 1); err != nil {
		return c, err
	}
	if c.Timeout, err = optDuration(spec, q, "timeout", 0); err != nil {
		return c, err
	}
	c.TokenFile = q.Get("token_file")
	c.ListMutation = q.Get("list_mutation")
	if c.ListMutation != "" && !isGraphQLName(c.ListMutation) {
		return c, fmt.Errorf("export: %q: list_mutation: bad name %q", spec, c.ListMutation)
	}
	if max(c.Batch, DefaultGraphQLBatch*btoi(c.Batch == 0)) > max(c.Queue, DefaultGraphQLQueue*btoi(c.Queue == 0)) {
		return c, fmt.Errorf("export: %q: batch larger than the queue", spec)
	}
	return c, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func isGraphQLName(s string) bool {
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

// gqlBatch is a request's worth of records: their input objects, joined
// by commas, in the variables' form the mode needs.
type gqlBatch struct {
	buf []byte
	n   int
}

// GraphQL sends records to a GraphQL records API (IPFIXgraph, IPjFIXsvc) as
// ingestIpfixRecord mutations, Batch per request. Record never blocks: it
// writes the record's IpfixRecordInput into the current batch; full batches
// go to a bounded queue (overflow dropped and counted) that a writer
// goroutine posts, retrying with exponential backoff on transport errors,
// 5xx and 429. A request the server refuses as invalid (GraphQL errors) is
// not retried: its records are dropped and counted. Elements with no input
// field are left out and counted (Unmapped). Record, Flush and Close are
// called by one goroutine (the mediator's); Stats, Queued, Reconnects and
// Unmapped are safe from any goroutine.
type GraphQL struct {
	name    string
	cfg     GraphQLConfig
	token   string
	client  *http.Client
	ctx     context.Context
	cancel  context.CancelFunc
	queue   chan *gqlBatch
	free    chan *gqlBatch
	done    chan struct{}
	closed  bool
	cur     *gqlBatch
	docs    map[int]string // query documents by batch size (writer side)
	scratch [gqlGroups][]byte
	set     []bool // input fields set in the current record (by table index)
	meta    jsonl.Meta

	queued   atomic.Int64
	sent     atomic.Uint64
	dropped  atomic.Uint64
	errs     atomic.Uint64
	retries  atomic.Uint64
	unmapped atomic.Uint64
}

// NewGraphQL starts a GraphQL output named name; it reads the token file.
func NewGraphQL(name string, c GraphQLConfig) (*GraphQL, error) {
	if c.Batch <= 0 {
		c.Batch = DefaultGraphQLBatch
	}
	if c.Queue <= 0 {
		c.Queue = DefaultGraphQLQueue
	}
	if c.Retries == 0 {
		c.Retries = DefaultGraphQLRetries
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultGraphQLTimeout
	}
	g := &GraphQL{name: name, cfg: c, client: &http.Client{Timeout: c.Timeout}, docs: make(map[int]string),
		done: make(chan struct{}), set: make([]bool, len(GraphQLFields))}
	if c.TokenFile != "" {
		b, err := os.ReadFile(c.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("export: %q: token_file: %w", name, err)
		}
		g.token = strings.TrimSpace(string(b))
	}
	slots := max(1, c.Queue/c.Batch)
	g.queue = make(chan *gqlBatch, slots)
	g.free = make(chan *gqlBatch, slots+2)
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.cur = &gqlBatch{}
	go g.run()
	return g, nil
}

// Record implements Output.
func (g *GraphQL) Record(m *jsonl.Meta, r *ipfix.Record) {
	if g.closed {
		g.dropped.Add(1)
		return
	}
	b := g.cur
	if b.n > 0 {
		b.buf = append(b.buf, ',')
	}
	if g.cfg.ListMutation == "" {
		b.buf = append(b.buf, `"r`...)
		b.buf = strconv.AppendInt(b.buf, int64(b.n), 10)
		b.buf = append(b.buf, `":`...)
	}
	g.meta.Exporter, g.meta.Msg, g.meta.Resolve = m.Exporter, m.Msg, m.Resolve
	b.buf = g.appendInput(b.buf, &g.meta, r)
	b.n++
	if b.n >= g.cfg.Batch {
		g.push()
	}
}

// appendInput appends r as an IpfixRecordInput JSON object.
func (g *GraphQL) appendInput(dst []byte, m *jsonl.Meta, r *ipfix.Record) []byte {
	clear(g.set)
	for i := range g.scratch {
		g.scratch[i] = g.scratch[i][:0]
	}
	var lists [3][]byte // basicLists, subTemplateLists, subTemplateMultiLists
	fields := r.Layout.Fields
	for i := range fields {
		f := &fields[i]
		if f.ID == 210 && f.PEN == 0 { // paddingOctets
			continue
		}
		switch f.IE.Type {
		case ipfix.TypeBasicList, ipfix.TypeSubTemplateList, ipfix.TypeSubTemplateMultiList:
			k := int(f.IE.Type - ipfix.TypeBasicList)
			if v, ok := appendGQLList(nil, m, f.IE.Type, r.Bytes(i)); ok {
				if len(lists[k]) > 0 {
					lists[k] = append(lists[k], ',')
				}
				lists[k] = append(lists[k], v...)
			} else {
				g.unmapped.Add(1)
			}
			continue
		}
		ti, ok := gqlTable[gqlKey{f.PEN, f.ID}]
		if ok && GraphQLFields[ti].Element != "" && GraphQLFields[ti].Element != f.IE.Name {
			ok = false // a NetFlow v9 scope field (scopeInterface is ID 2)
		}
		if !ok {
			g.unmapped.Add(1)
			continue
		}
		t := &GraphQLFields[ti]
		if g.inputSet(ti) {
			continue // an earlier element gave this field its value
		}
		grp := &g.scratch[t.group]
		start := len(*grp)
		if start > 0 {
			*grp = append(*grp, ',')
		}
		*grp = append(*grp, '"')
		*grp = append(*grp, t.Input...)
		*grp = append(*grp, '"', ':')
		var okv bool
		if *grp, okv = appendGQLValue(*grp, m, r, i, t.kind); !okv {
			*grp = (*grp)[:start] // out of the input type's range
			g.unmapped.Add(1)
			continue
		}
		g.markSet(ti)
	}
	top := &g.scratch[gqlTop]
	sep := func() {
		if len(*top) > 0 {
			*top = append(*top, ',')
		}
	}
	if !g.inputSetName("observationDomainId") && m.Msg.DomainID <= math.MaxInt32 {
		sep()
		*top = append(*top, `"observationDomainId":`...)
		*top = strconv.AppendUint(*top, uint64(m.Msg.DomainID), 10)
	}
	if a := m.Exporter.Addr().Unmap(); a.IsValid() {
		name := "exporterIPv6Address"
		if a.Is4() {
			name = "exporterIPv4Address"
		}
		if !g.inputSetName(name) {
			sep()
			*top = append(*top, '"')
			*top = append(*top, name...)
			*top = append(*top, `":"`...)
			*top = a.AppendTo(*top)
			*top = append(*top, '"')
		}
	}
	for grp := gqlDPI; grp < gqlGroups; grp++ {
		if len(g.scratch[grp]) == 0 {
			continue
		}
		sep()
		*top = append(*top, '"')
		*top = append(*top, gqlGroupNames[grp]...)
		*top = append(*top, `":{`...)
		*top = append(*top, g.scratch[grp]...)
		*top = append(*top, '}')
	}
	for k, name := range [3]string{"basicLists", "subTemplateLists", "subTemplateMultiLists"} {
		if len(lists[k]) == 0 {
			continue
		}
		sep()
		*top = append(*top, '"')
		*top = append(*top, name...)
		*top = append(*top, `":[`...)
		*top = append(*top, lists[k]...)
		*top = append(*top, ']')
	}
	dst = append(dst, '{')
	dst = append(dst, *top...)
	return append(dst, '}')
}

// inputSet reports whether table entry ti's input field already has a
// value in this record (entries sharing an input share the answer).
func (g *GraphQL) inputSet(ti int) bool {
	t := &GraphQLFields[ti]
	for j := range GraphQLFields {
		if g.set[j] && GraphQLFields[j].Input == t.Input && GraphQLFields[j].group == t.group {
			return true
		}
	}
	return false
}

func (g *GraphQL) inputSetName(input string) bool {
	for j := range GraphQLFields {
		if g.set[j] && GraphQLFields[j].Input == input && GraphQLFields[j].group == gqlTop {
			return true
		}
	}
	return false
}

func (g *GraphQL) markSet(ti int) { g.set[ti] = true }

// appendGQLValue appends field i of r as kind wants; false when the value
// does not fit.
func appendGQLValue(dst []byte, m *jsonl.Meta, r *ipfix.Record, i int, kind gqlKind) ([]byte, bool) {
	v := r.Bytes(i)
	ie := r.Layout.Fields[i].IE
	switch kind {
	case gqlLong, gqlInt, gqlNumString:
		if len(v) == 0 || len(v) > 8 {
			return dst, false
		}
		u := ipfix.Uint(v)
		switch {
		case kind == gqlInt && u > math.MaxInt32:
			return dst, false
		case kind == gqlLong && u > math.MaxInt64:
			return dst, false
		case kind == gqlNumString:
			dst = append(dst, '"')
			dst = strconv.AppendUint(dst, u, 10)
			return append(dst, '"'), true
		}
		return strconv.AppendUint(dst, u, 10), true
	case gqlInstant:
		ns := r.UnixNano(i)
		if ns <= 0 {
			return dst, false
		}
		dst = append(dst, '"')
		dst = time.Unix(0, ns).UTC().AppendFormat(dst, time.RFC3339Nano)
		return append(dst, '"'), true
	default: // String: the JSON lines value, quoted when it is not a string
		start := len(dst)
		dst = jsonl.AppendValue(dst, m, ie, v, 0)
		if len(dst) > start && dst[start] != '"' {
			val := string(dst[start:])
			dst = strconv.AppendQuote(dst[:start], val)
		}
		return dst, true
	}
}

var gqlSemantics = map[uint8]string{0: "noneOf", 1: "exactlyOneOf", 2: "oneOrMoreOf", 3: "allOf", 4: "ordered", 0xff: "undefined"}

// appendGQLList appends an RFC 6313 list as a BasicListElementInput,
// SubTemplateListElementInput or SubTemplateMultiListElementInput.
func appendGQLList(dst []byte, m *jsonl.Meta, typ ipfix.DataType, b []byte) ([]byte, bool) {
	switch typ {
	case ipfix.TypeBasicList:
		l, err := ipfix.DecodeBasicList(b)
		if err != nil {
			return dst, false
		}
		ie := ipfix.Lookup(l.Element.PEN, l.Element.ID)
		name := ipfix.UnknownName(l.Element.PEN, l.Element.ID)
		dataType := ipfix.TypeOctetArray.String()
		if ie != nil {
			name, dataType = ie.Name, ie.Type.String()
		} else {
			ie = &ipfix.InfoElement{Type: ipfix.TypeOctetArray}
		}
		dst = append(dst, `{"informationElementId":`...)
		dst = strconv.AppendUint(dst, uint64(l.Element.ID), 10)
		dst = append(dst, `,"informationElementName":`...)
		dst = strconv.AppendQuote(dst, name)
		dst = appendGQLSemantic(dst, l.Semantic)
		dst = append(dst, `,"dataType":`...)
		dst = strconv.AppendQuote(dst, dataType)
		dst = append(dst, `,"values":[`...)
		it := l.Values()
		n := 0
		for v, ok := it.Next(); ok; v, ok = it.Next() {
			if n > 0 {
				dst = append(dst, ',')
			}
			start := len(dst)
			dst = jsonl.AppendValue(dst, m, ie, v, 1)
			if dst[start] != '"' {
				val := string(dst[start:])
				dst = strconv.AppendQuote(dst[:start], val)
			}
			n++
		}
		if it.Err() != nil {
			return dst, false
		}
		return append(dst, "]}"...), true
	case ipfix.TypeSubTemplateList:
		l, err := ipfix.DecodeSubTemplateList(b)
		if err != nil || m.Resolve == nil || m.Resolve.Resolve(l.TemplateID) == nil {
			return dst, false
		}
		return appendGQLSubTemplateList(dst, m, l.Semantic, b), true
	case ipfix.TypeSubTemplateMultiList:
		l, err := ipfix.DecodeSubTemplateMultiList(b)
		if err != nil || m.Resolve == nil {
			return dst, false
		}
		dst = append(dst, `{"subTemplateLists":[`...)
		it := l.Groups()
		n := 0
		var one []byte
		for id, data, ok := it.Next(); ok; id, data, ok = it.Next() {
			if m.Resolve.Resolve(id) == nil {
				return dst, false
			}
			if n > 0 {
				dst = append(dst, ',')
			}
			// The group as a subTemplateList of its own (semantic undefined).
			one = append(append(one[:0], 0xff, byte(id>>8), byte(id)), data...)
			dst = appendGQLSubTemplateList(dst, m, 0xff, one)
			n++
		}
		if it.Err() != nil {
			return dst, false
		}
		dst = append(dst, ']')
		return append(appendGQLSemantic(dst, l.Semantic), '}'), true
	}
	return dst, false
}

// appendGQLSubTemplateList appends a SubTemplateListElementInput: its
// entries as JSON objects, as `sluice decode` prints them.
func appendGQLSubTemplateList(dst []byte, m *jsonl.Meta, semantic uint8, b []byte) []byte {
	id := uint16(b[1])<<8 | uint16(b[2])
	dst = append(dst, `{"templateId":`...)
	dst = strconv.AppendUint(dst, uint64(id), 10)
	dst = appendGQLSemantic(dst, semantic)
	dst = append(dst, `,"entries":`...)
	return append(jsonl.AppendValue(dst, m, &gqlSTL, b, 1), '}')
}

var gqlSTL = ipfix.InfoElement{Type: ipfix.TypeSubTemplateList}

func appendGQLSemantic(dst []byte, s uint8) []byte {
	dst = append(dst, `,"semantic":`...)
	if name, ok := gqlSemantics[s]; ok {
		return strconv.AppendQuote(dst, name)
	}
	return strconv.AppendQuote(dst, strconv.Itoa(int(s)))
}

// push queues the current batch, or drops its records if the queue is full.
func (g *GraphQL) push() {
	b := g.cur
	if b.n == 0 {
		return
	}
	g.queued.Add(int64(b.n))
	size := len(b.buf) // b is the writer's once queued
	select {
	case g.queue <- b:
		select {
		case g.cur = <-g.free:
		default:
			g.cur = &gqlBatch{buf: make([]byte, 0, size)}
		}
	default:
		g.queued.Add(-int64(b.n))
		g.dropped.Add(uint64(b.n))
		b.buf, b.n = b.buf[:0], 0
	}
}

// Flush implements Output: a partial batch is queued when there is room,
// else it keeps filling.
func (g *GraphQL) Flush() error {
	if !g.closed && g.cur.n > 0 && len(g.queue) < cap(g.queue) {
		g.push()
	}
	return nil
}

// Close implements Output: queued records get a few seconds (tcpCloseGrace)
// to be posted; what is left is counted as dropped. Records given after
// Close are dropped.
func (g *GraphQL) Close() error {
	if g.closed {
		return nil
	}
	g.closed = true
	g.push()
	close(g.queue)
	timer := time.AfterFunc(tcpCloseGrace, g.cancel)
	<-g.done
	timer.Stop()
	g.cancel()
	return nil
}

// Name implements Output.
func (g *GraphQL) Name() string { return g.name }

// Stats implements Output.
func (g *GraphQL) Stats() Stats {
	return Stats{Sent: g.sent.Load(), Dropped: g.dropped.Load(), Errors: g.errs.Load()}
}

// Queued implements QueueStats: records in batches not yet posted.
func (g *GraphQL) Queued() int { return int(g.queued.Load()) }

// Reconnects implements QueueStats: requests retried.
func (g *GraphQL) Reconnects() uint64 { return g.retries.Load() }

// Unmapped counts the element values left out: no input field takes them,
// or the value does not fit its input's type.
func (g *GraphQL) Unmapped() uint64 { return g.unmapped.Load() }

// run is the writer goroutine: it owns the HTTP client's requests.
func (g *GraphQL) run() {
	defer close(g.done)
	var body bytes.Buffer
	for b := range g.queue {
		ok := g.cfg.ListMutation == ""
		body.Reset()
		body.WriteString(`{"query":`)
		q, _ := json.Marshal(g.document(b.n))
		body.Write(q)
		if ok {
			body.WriteString(`,"variables":{`)
			body.Write(b.buf)
			body.WriteString(`}}`)
		} else {
			body.WriteString(`,"variables":{"records":[`)
			body.Write(b.buf)
			body.WriteString(`]}}`)
		}
		sent := g.post(body.Bytes(), b.n)
		g.sent.Add(uint64(sent))
		g.dropped.Add(uint64(b.n - sent))
		g.queued.Add(-int64(b.n))
		b.buf, b.n = b.buf[:0], 0
		select {
		case g.free <- b:
		default:
		}
	}
}

// document returns the mutation for a batch of n records.
func (g *GraphQL) document(n int) string {
	if d, ok := g.docs[n]; ok {
		return d
	}
	var s strings.Builder
	if g.cfg.ListMutation != "" {
		s.WriteString("mutation IngestIpfixRecords($records: [IpfixRecordInput!]!) { records: ")
		s.WriteString(g.cfg.ListMutation)
		s.WriteString("(input: $records) { id } }")
	} else {
		s.WriteString("mutation IngestIpfixRecords(")
		for i := range n {
			if i > 0 {
				s.WriteString(", ")
			}
			fmt.Fprintf(&s, "$r%d: IpfixRecordInput!", i)
		}
		s.WriteString(") {")
		for i := range n {
			fmt.Fprintf(&s, " r%d: ingestIpfixRecord(input: $r%d) { id }", i, i)
		}
		s.WriteString(" }")
	}
	g.docs[n] = s.String()
	return g.docs[n]
}

// errGQLRetry marks a failure worth retrying.
var errGQLRetry = errors.New("export: graphql: retryable")

// post sends one request, retrying with backoff, and returns how many of
// its n records the server took.
func (g *GraphQL) post(body []byte, n int) int {
	backoff := gqlBackoffMin
	for attempt := 0; ; attempt++ {
		sent, err := g.try(body, n)
		if err == nil {
			return sent
		}
		g.errs.Add(1)
		if !errors.Is(err, errGQLRetry) || attempt >= g.cfg.Retries || g.ctx.Err() != nil {
			return sent // a refusal may still have taken some aliases
		}
		g.retries.Add(1)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-g.ctx.Done():
			t.Stop()
			return 0
		}
		backoff = min(2*backoff, gqlBackoffMax)
	}
}

// gqlResponse is the part of a GraphQL response the writer reads.
type gqlResponse struct {
	Data   map[string]json.RawMessage `json:"data"`
	Errors []struct {
		Message string `json:"message"`
		Path    []any  `json:"path"`
	} `json:"errors"`
}

// try posts body once. A response with errors on some aliases takes the
// others; errors without a path (the document refused) take none.
func (g *GraphQL) try(body []byte, n int) (int, error) {
	req, err := http.NewRequestWithContext(g.ctx, http.MethodPost, g.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/graphql-response+json, application/json")
	if g.token != "" {
		req.Header.Set("Authorization", "Bearer "+g.token)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errGQLRetry, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errGQLRetry, err)
	}
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		return 0, fmt.Errorf("%w: HTTP %d", errGQLRetry, resp.StatusCode)
	}
	var out gqlResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		return 0, fmt.Errorf("export: graphql: HTTP %d: %v", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK && len(out.Errors) == 0 {
		return 0, fmt.Errorf("export: graphql: HTTP %d", resp.StatusCode)
	}
	if len(out.Errors) == 0 {
		return n, nil
	}
	failed := map[string]bool{}
	for _, e := range out.Errors {
		if len(e.Path) == 0 || g.cfg.ListMutation != "" {
			return 0, fmt.Errorf("export: graphql: %s", e.Message)
		}
		if s, ok := e.Path[0].(string); ok {
			failed[s] = true
		}
	}
	ok := 0
	for i := range n {
		if !failed["r"+strconv.Itoa(i)] && out.Data["r"+strconv.Itoa(i)] != nil && string(out.Data["r"+strconv.Itoa(i)]) != "null" {
			ok++
		}
	}
	return ok, fmt.Errorf("export: graphql: %d of %d records refused: %s", n-ok, n, out.Errors[0].Message)
}
