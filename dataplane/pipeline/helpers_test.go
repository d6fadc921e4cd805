package pipeline_test

import (
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
	"github.com/sluice-flow/sluice/dataplane/pipeline"
)

// Element IDs the tests use.
const (
	idOctets      = 1
	idPackets     = 2
	idDeltaFlows  = 3
	idProto       = 4
	idSrcPort     = 7
	idSrc4        = 8
	idIngress     = 10
	idDstPort     = 11
	idDst4        = 12
	idSrcAS       = 16
	idDstAS       = 17
	idSrc6        = 27
	idDst6        = 28
	idSamplingInt = 34
	idSamplerID   = 48
	idSrcMAC      = 56
	idVlan        = 58
	idIfName      = 82
	idStartMs     = 152
	idEndMs       = 153
	idPktInterval = 305
	idPktSpace    = 306
	idOrigExp4    = 403
	idOrigExp6    = 404
	idOrigDomain  = 405
)

func spec(id, length uint16) ipfix.FieldSpec { return ipfix.FieldSpec{ID: id, Length: length} }

// mkLayout compiles a data template.
func mkLayout(t testing.TB, id uint16, specs ...ipfix.FieldSpec) *ipfix.Layout {
	t.Helper()
	raw := ipfix.AppendTemplateRecord(nil, id, specs)
	var tr ipfix.TemplateRecord
	if err := ipfix.ParseTemplateRecord(raw, false, false, &tr); err != nil {
		t.Fatal(err)
	}
	l, err := ipfix.Compile(&tr)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// mkOptionsLayout compiles an options template whose first scope fields
// are scope fields.
func mkOptionsLayout(t testing.TB, id uint16, scope int, specs ...ipfix.FieldSpec) *ipfix.Layout {
	t.Helper()
	raw := ipfix.AppendOptionsTemplateRecord(nil, id, scope, specs)
	var tr ipfix.TemplateRecord
	if err := ipfix.ParseTemplateRecord(raw, true, false, &tr); err != nil {
		t.Fatal(err)
	}
	l, err := ipfix.Compile(&tr)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// encode encodes one record of l: ints and uint64s as unsigned of the
// field's length, addresses, strings and byte slices (prefixed if the
// field is variable-length), times by the element's type.
func encode(t testing.TB, l *ipfix.Layout, vals ...any) []byte {
	t.Helper()
	if len(vals) != len(l.Fields) {
		t.Fatalf("encode: %d values for %d fields", len(vals), len(l.Fields))
	}
	var b []byte
	for i, v := range vals {
		f := &l.Fields[i]
		switch v := v.(type) {
		case int:
			b = ipfix.AppendUint(b, uint64(v), int(f.Length))
		case uint64:
			b = ipfix.AppendUint(b, v, int(f.Length))
		case netip.Addr:
			b = ipfix.AppendAddr(b, v)
		case string:
			b = appendOctets(b, f.Length, []byte(v))
		case []byte:
			b = appendOctets(b, f.Length, v)
		case time.Time:
			switch f.IE.Type {
			case ipfix.TypeDateTimeSeconds:
				b = ipfix.AppendDateTimeSeconds(b, v)
			case ipfix.TypeDateTimeMilliseconds:
				b = ipfix.AppendDateTimeMilliseconds(b, v)
			default:
				b = ipfix.AppendNTP(b, v)
			}
		default:
			t.Fatalf("encode: %T", v)
		}
	}
	return b
}

func appendOctets(b []byte, length uint16, v []byte) []byte {
	if length == ipfix.VarLen {
		return ipfix.AppendVarlen(b, v)
	}
	out := make([]byte, length)
	copy(out, v)
	return append(b, out...)
}

// mkRecord views the first record of l in b.
func mkRecord(t testing.TB, l *ipfix.Layout, b []byte) *ipfix.Record {
	t.Helper()
	r := new(ipfix.Record)
	it := ipfix.NewDataIter(l, b)
	if !it.Next(r) {
		t.Fatalf("no record of %v in %x: %v", l, b, it.Err())
	}
	return r
}

func mkMeta(exporter string, domain uint32) *jsonl.Meta {
	return &jsonl.Meta{
		Exporter: netip.MustParseAddrPort(exporter),
		Msg:      &ipfix.Message{Version: ipfix.VersionIPFIX, DomainID: domain},
	}
}

// captured is a copy of one record an output received.
type captured struct {
	Exporter netip.AddrPort
	Domain   uint32
	Layout   *ipfix.Layout
	Raw      []byte
	RawPtr   *byte // where the record was: same pointer, same bytes
	Fields   map[string]any
}

// capture is an export.Output that keeps copies of what it receives.
type capture struct {
	spec    string
	recs    []captured
	flushes int
	closed  atomic.Int32
}

func (c *capture) Record(m *jsonl.Meta, r *ipfix.Record) {
	raw := r.Raw()
	g := captured{
		Exporter: m.Exporter,
		Layout:   r.Layout,
		Raw:      append([]byte(nil), raw...),
		RawPtr:   unsafe.SliceData(raw),
		Fields:   decodeFields(r),
	}
	if m.Msg != nil {
		g.Domain = m.Msg.DomainID
	}
	c.recs = append(c.recs, g)
}

func (c *capture) Flush() error { c.flushes++; return nil }
func (c *capture) Close() error {
	c.closed.Add(1)
	return nil
}
func (c *capture) Name() string        { return c.spec }
func (c *capture) Stats() export.Stats { return export.Stats{Sent: uint64(len(c.recs))} }

// decodeFields decodes every field of r into a comparable Go value keyed
// by the field's key: uint64, int64, netip.Addr, string, bool, [6]byte,
// time as Unix nanoseconds (int64), anything else as hex.
func decodeFields(r *ipfix.Record) map[string]any {
	m := make(map[string]any, len(r.Layout.Fields))
	for i := range r.Layout.Fields {
		f := &r.Layout.Fields[i]
		var v any
		switch f.IE.Type {
		case ipfix.TypeUnsigned8, ipfix.TypeUnsigned16, ipfix.TypeUnsigned32, ipfix.TypeUnsigned64:
			v = r.Uint(i)
		case ipfix.TypeSigned8, ipfix.TypeSigned16, ipfix.TypeSigned32, ipfix.TypeSigned64:
			v = r.Int(i)
		case ipfix.TypeIPv4Address, ipfix.TypeIPv6Address:
			v = r.Addr(i)
		case ipfix.TypeString:
			v = string(r.Bytes(i))
		case ipfix.TypeBoolean:
			v = r.Bool(i)
		case ipfix.TypeMACAddress:
			v = r.MAC(i)
		case ipfix.TypeDateTimeSeconds, ipfix.TypeDateTimeMilliseconds, ipfix.TypeDateTimeMicroseconds, ipfix.TypeDateTimeNanoseconds:
			v = r.UnixNano(i)
		default:
			v = hex.EncodeToString(r.Bytes(i))
		}
		m[f.Key] = v
	}
	return m
}

// outputs opens captures by spec; a spec containing "fail" fails to open.
type outputs struct {
	mu     sync.Mutex
	bySpec map[string]*capture // the latest opened per spec
	all    []*capture
}

func newOutputs() *outputs { return &outputs{bySpec: map[string]*capture{}} }

func (o *outputs) open(spec string) (export.Output, error) {
	if strings.Contains(spec, "fail") {
		return nil, errors.New("cannot open " + spec)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	c := &capture{spec: spec}
	o.bySpec[spec] = c
	o.all = append(o.all, c)
	return c, nil
}

func (o *outputs) get(t testing.TB, spec string) *capture {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	c := o.bySpec[spec]
	if c == nil {
		t.Fatalf("output %s never opened", spec)
	}
	return c
}

// openCount is the number of outputs opened and not closed.
func (o *outputs) openCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, c := range o.all {
		if c.closed.Load() == 0 {
			n++
		}
	}
	return n
}

// outSpec is the spec the single-output test pipelines write to.
const outSpec = "jsonl:/nonexistent/out.jsonl"

// compileSrc parses and compiles src with captures as outputs.
func compileSrc(t testing.TB, src string) (*pipeline.Snapshot, *outputs) {
	t.Helper()
	o := newOutputs()
	c, err := pipeline.Parse([]byte(src))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, src)
	}
	s, err := pipeline.Compile(c, pipeline.NewOutputSet(o.open))
	if err != nil {
		t.Fatalf("compile: %v\n%s", err, src)
	}
	return s, o
}

// stages compiles a single pipeline of the given stages (YAML list items,
// one per line) feeding output "out" (outSpec).
func stages(t testing.TB, items ...string) (*pipeline.Snapshot, *capture) {
	t.Helper()
	src := "outputs: {out: \"" + outSpec + "\"}\npipelines:\n  - name: p\n    outputs: [out]\n    stages:\n"
	for _, it := range items {
		src += "      - " + it + "\n"
	}
	s, o := compileSrc(t, src)
	return s, o.get(t, outSpec)
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }
