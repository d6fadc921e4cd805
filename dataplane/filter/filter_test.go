package filter

import (
	"bufio"
	"math"
	"math/big"
	"math/rand/v2"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// testFields is the template of the test records: every value class, a
// repeated element (octetDeltaCount_2, reduced size), a reverse element, a
// variable-length string and an unregistered enterprise element.
var testFields = []ipfix.FieldSpec{
	{ID: 8, Length: 4},                        // 0 sourceIPv4Address
	{ID: 12, Length: 4},                       // 1 destinationIPv4Address
	{ID: 27, Length: 16},                      // 2 sourceIPv6Address
	{ID: 4, Length: 1},                        // 3 protocolIdentifier
	{ID: 7, Length: 2},                        // 4 sourceTransportPort
	{ID: 11, Length: 2},                       // 5 destinationTransportPort
	{ID: 1, Length: 8},                        // 6 octetDeltaCount
	{ID: 1, Length: 4},                        // 7 octetDeltaCount_2
	{ID: 434, Length: 4},                      // 8 mibObjectValueInteger (signed32)
	{ID: 311, Length: 8},                      // 9 samplingProbability (float64)
	{ID: 320, Length: 4},                      // 10 absoluteError (float64 sent as float32)
	{ID: 276, Length: 1},                      // 11 dataRecordsReliability
	{ID: 56, Length: 6},                       // 12 sourceMacAddress
	{ID: 82, Length: ipfix.VarLen},            // 13 interfaceName
	{ID: 152, Length: 8},                      // 14 flowStartMilliseconds
	{ID: 150, Length: 4},                      // 15 flowStartSeconds
	{ID: 156, Length: 8},                      // 16 flowStartNanoseconds
	{ID: 1, Length: 8, PEN: ipfix.ReversePEN}, // 17 reverseOctetDeltaCount
	{ID: 7, Length: 2, PEN: 12345},            // 18 e12345id7
}

type testRec struct {
	src4, dst4, src6 netip.Addr
	proto            uint8
	sport, dport     uint16
	oct              uint64
	oct2             uint32
	mib              int32
	samp             float64
	abs              float32
	rel              bool
	mac              [6]byte
	ifname           string
	startMs, startS  time.Time
	startNs          time.Time
	rev              uint64
	ent              [2]byte
}

func appendRec(b []byte, v *testRec) []byte {
	b = ipfix.AppendAddr(b, v.src4)
	b = ipfix.AppendAddr(b, v.dst4)
	b = ipfix.AppendAddr(b, v.src6)
	b = ipfix.AppendUint(b, uint64(v.proto), 1)
	b = ipfix.AppendUint(b, uint64(v.sport), 2)
	b = ipfix.AppendUint(b, uint64(v.dport), 2)
	b = ipfix.AppendUint(b, v.oct, 8)
	b = ipfix.AppendUint(b, uint64(v.oct2), 4)
	b = ipfix.AppendUint(b, uint64(uint32(v.mib)), 4)
	b = ipfix.AppendFloat(b, v.samp, 8)
	b = ipfix.AppendFloat(b, float64(v.abs), 4)
	b = ipfix.AppendBool(b, v.rel)
	b = append(b, v.mac[:]...)
	b = ipfix.AppendVarlen(b, []byte(v.ifname))
	b = ipfix.AppendDateTimeMilliseconds(b, v.startMs)
	b = ipfix.AppendDateTimeSeconds(b, v.startS)
	b = ipfix.AppendNTP(b, v.startNs)
	b = ipfix.AppendUint(b, v.rev, 8)
	return append(b, v.ent[:]...)
}

func testLayout(tb testing.TB, fields []ipfix.FieldSpec) *ipfix.Layout {
	tb.Helper()
	l, err := ipfix.Compile(&ipfix.TemplateRecord{ID: 256, Fields: fields})
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// buildRecords encodes recs in one IPFIX message with MessageWriter and
// decodes them back as Records of layout l.
func buildRecords(tb testing.TB, l *ipfix.Layout, recs []testRec) []ipfix.Record {
	tb.Helper()
	w := ipfix.MessageWriter{DomainID: 1}
	msg := w.Begin(nil, 1_700_000_000)
	msg = w.BeginSet(msg, 256)
	for i := range recs {
		msg = appendRec(msg, &recs[i])
	}
	msg = w.EndSet(msg)
	w.AddRecords(len(recs))
	msg, err := w.Finish(msg)
	if err != nil {
		tb.Fatal(err)
	}
	var m ipfix.Message
	if err := m.Decode(msg); err != nil {
		tb.Fatal(err)
	}
	var out []ipfix.Record
	sets := m.Sets()
	var s ipfix.Set
	for sets.Next(&s) {
		it := s.Records(l)
		for {
			var r ipfix.Record
			if !it.Next(&r) {
				break
			}
			out = append(out, r)
		}
		if it.Err() != nil {
			tb.Fatal(it.Err())
		}
	}
	if len(out) != len(recs) {
		tb.Fatalf("decoded %d records, want %d", len(out), len(recs))
	}
	return out
}

var baseTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func sampleRec() testRec {
	return testRec{
		src4:    netip.MustParseAddr("10.1.2.3"),
		dst4:    netip.MustParseAddr("192.0.2.80"),
		src6:    netip.MustParseAddr("2001:db8::1"),
		proto:   6,
		sport:   40000,
		dport:   443,
		oct:     1 << 40,
		oct2:    1500,
		mib:     -42,
		samp:    0.25,
		abs:     1.5,
		rel:     true,
		mac:     [6]byte{0x00, 0x1b, 0x21, 0xaa, 0xbb, 0xcc},
		ifname:  `eth0 "uplink"`,
		startMs: baseTime.Add(123 * time.Millisecond),
		startS:  baseTime,
		startNs: baseTime.Add(500 * time.Millisecond),
		rev:     7,
		ent:     [2]byte{'h', 'i'},
	}
}

func TestMatch(t *testing.T) {
	l := testLayout(t, testFields)
	r := buildRecords(t, l, []testRec{sampleRec()})[0]
	f := func(expr string, want bool) {
		t.Helper()
		e, err := Parse(expr)
		if err != nil {
			t.Fatalf("Parse(%q): %v", expr, err)
		}
		p, err := e.Compile(l)
		if err != nil {
			t.Fatalf("Compile(%q): %v", expr, err)
		}
		if got := p.Match(&r); got != want {
			t.Fatalf("%q: got %v, want %v", expr, got, want)
		}
		if got := refEval(e.root, l, &r); got != want {
			t.Fatalf("%q: reference got %v, want %v", expr, got, want)
		}
	}
	// constants, logic
	f("true", true)
	f("false", false)
	f("not false", true)
	f("true and false", false)
	f("false or true", true)
	f("not (true and false) and (false or true)", true)
	f("not not true", true)

	// unsigned of several widths
	f("protocolIdentifier == 6", true)
	f("protocolIdentifier==6", true)
	f("protocolIdentifier != 6", false)
	f("protocolIdentifier == 0x06", true)
	f("protocolIdentifier < 7", true)
	f("protocolIdentifier <= 6", true)
	f("protocolIdentifier > 6", false)
	f("protocolIdentifier >= 6", true)
	f("protocolIdentifier > -1", true)
	f("protocolIdentifier == -6", false)
	f("protocolIdentifier != -6", true)
	f("protocolIdentifier < 6.5", true)
	f("protocolIdentifier == 6.0", true)
	f("protocolIdentifier > 5.999", true)
	f("protocolIdentifier == 18446744073709551615", false)
	f("octetDeltaCount == 1099511627776", true)
	f("octetDeltaCount == 1.099511627776e12", true)
	f("octetDeltaCount_2 == 1500", true)
	f("octetDeltaCount_2 in [1, 1500]", true)
	f("octetDeltaCount_2 in [1, -1500, 1500.5]", false)
	f("reverseOctetDeltaCount == 7", true)
	f("destinationTransportPort in [80, 443]", true)
	f("destinationTransportPort in [80, 8080]", false)
	f("destinationTransportPort in []", false)
	f("sourceTransportPort >= 1024", true)
	// signed
	f("mibObjectValueInteger == -42", true)
	f("mibObjectValueInteger < 0", true)
	f("mibObjectValueInteger > -42.5", true)
	f("mibObjectValueInteger < 18446744073709551615", true)
	f("mibObjectValueInteger in [1, -42]", true)
	f("mibObjectValueInteger > -9223372036854775808", true)
	// float
	f("samplingProbability == 0.25", true)
	f("samplingProbability < 1", true)
	f("samplingProbability > 0", true)
	f("samplingProbability in [0.5, 0.25]", true)
	f("absoluteError == 1.5", true)
	f("absoluteError > 1", true)
	// boolean
	f("dataRecordsReliability == true", true)
	f("dataRecordsReliability != true", false)
	f("dataRecordsReliability in [false]", false)
	f("dataRecordsReliability in [false, true]", true)
	// addresses
	f("sourceIPv4Address == 10.1.2.3", true)
	f("sourceIPv4Address != 10.1.2.3", false)
	f("sourceIPv4Address < 10.1.2.4", true)
	f("sourceIPv4Address == ::ffff:10.1.2.3", false)
	f("sourceIPv4Address != 2001:db8::1", true)
	f("sourceIPv4Address < 2001:db8::1", false)
	f("sourceIPv4Address in 10.0.0.0/8", true)
	f("sourceIPv4Address in 10.1.2.3/32", true)
	f("sourceIPv4Address in 0.0.0.0/0", true)
	f("sourceIPv4Address in 11.0.0.0/8", false)
	f("sourceIPv4Address in ::/0", false)
	f("sourceIPv4Address in [192.168.0.0/16, 10.1.2.3]", true)
	f("sourceIPv4Address in [192.168.0.0/16, 10.1.2.4]", false)
	f("destinationIPv4Address in [192.0.2.0/24]", true)
	f("sourceIPv6Address == 2001:db8::1", true)
	f("sourceIPv6Address in 2001:db8::/32", true)
	f("sourceIPv6Address in [10.0.0.0/8, 2001:db9::/32]", false)
	f("sourceIPv6Address in [2001:db8:0::1]", true)
	f("sourceIPv6Address != 10.1.2.3", true)
	// MAC
	f("sourceMacAddress == 00:1b:21:aa:bb:cc", true)
	f("sourceMacAddress == 00-1B-21-AA-BB-CC", true)
	f("sourceMacAddress < 00:1b:21:aa:bb:cd", true)
	f("sourceMacAddress in [00:00:00:00:00:00, 00:1b:21:aa:bb:cc]", true)
	// strings, escapes
	f(`interfaceName == "eth0 \"uplink\""`, true)
	f(`interfaceName != "eth0"`, true)
	f(`interfaceName > "eth0"`, true)
	f(`interfaceName in ["a", "eth0 \"uplink\""]`, true)
	f(`e12345id7 == "hi"`, true)
	// times, all encodings
	f("flowStartMilliseconds == 2026-01-02T03:04:05.123Z", true)
	f("flowStartMilliseconds == 2026-01-02T04:04:05.123+01:00", true)
	f("flowStartMilliseconds > 2026-01-02T03:04:05Z", true)
	f("flowStartSeconds == 2026-01-02T03:04:05Z", true)
	f("flowStartSeconds < 2026-01-02T03:04:05.000000001Z", true)
	f("flowStartNanoseconds == 2026-01-02T03:04:05.5Z", true)
	f("flowStartNanoseconds in [2026-01-02T03:04:05.5Z]", true)
	// presence, absent fields
	f("has sourceIPv4Address", true)
	f("has octetDeltaCount_2", true)
	f("has octetDeltaCount_3", false)
	f("has destinationIPv6Address", false)
	f("destinationIPv6Address == ::1", false)
	f("destinationIPv6Address != ::1", false)
	f("not destinationIPv6Address == ::1", true)
	f("packetDeltaCount in [1, 2]", false)
	f("packetDeltaCount > 0 or protocolIdentifier == 6", true)
	f("has packetDeltaCount and packetDeltaCount > 0", false)
	// the typical expression
	f("protocolIdentifier == 6 and destinationTransportPort in [80, 443] and sourceIPv4Address in 10.0.0.0/8", true)
	f("protocolIdentifier == 17 or destinationTransportPort == 443 and not sourceIPv4Address in 10.0.0.0/8", false)
}

func TestParseErrors(t *testing.T) {
	f := func(expr string, col int, reason string) {
		t.Helper()
		_, err := Parse(expr)
		if err == nil {
			t.Fatalf("Parse(%q): no error", expr)
		}
		pe, ok := err.(*Error)
		if !ok {
			t.Fatalf("Parse(%q): %T %v", expr, err, err)
		}
		if pe.Column != col || !strings.Contains(pe.Reason, reason) {
			t.Fatalf("Parse(%q): %v; want column %d, %q", expr, err, col, reason)
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "filter: column ") || strings.ToLower(msg) != msg && !strings.Contains(msg, "\"") {
			t.Fatalf("Parse(%q): bad message %q", expr, msg)
		}
	}
	f("", 1, "expected expression")
	f("protocolIdentifier", 19, "comparison operator")
	f("protocolIdentifier == ", 23, "expected literal")
	f("protocolIdentifier = 6", 20, "did you mean")
	f("protocolIdentifier == 6 and", 28, "expected expression")
	f("(protocolIdentifier == 6", 25, "expected \")\"")
	f("protocolIdentifier == 6)", 24, "unexpected \")\"")
	f("nosuchElement == 6", 1, "unknown information element")
	f("has 6", 5, "information element name")
	f("has and", 5, "information element name")
	f("protocolIdentifier == 6 6", 25, "unexpected")
	f("protocolIdentifier == foo", 23, "invalid literal")
	f("protocolIdentifier == 99999999999999999999", 23, "out of range")
	f("protocolIdentifier == -9223372036854775809", 23, "out of range")
	f("sourceIPv4Address == 10.0.0.0/8", 22, "prefix can only")
	f("sourceIPv4Address in 10.0.0.0/33", 22, "invalid prefix")
	f("sourceIPv4Address == 10.0.0.256", 22, "invalid address")
	f("sourceIPv4Address in [10.0.0.1 10.0.0.2]", 32, "expected \",\"")
	f("sourceIPv4Address in [10.0.0.1,", 32, "expected literal")
	f(`interfaceName == "abc`, 18, "unterminated string")
	f(`interfaceName == "a\nb"`, 20, "invalid escape")
	f("flowStartSeconds == 2026-13-01T00:00:00Z", 21, "invalid time")
	f("flowStartSeconds < 0000-01-01T00:00:00+01:00", 20, "out of range")
	f("flowStartSeconds > 9999-12-31T23:30:00-01:00", 20, "out of range")
	f("protocolIdentifier == 6 & x", 25, "unexpected character")
	f("protocolIdentifier == 1.5.6", 23, "invalid literal")
	f("protocolIdentifier == inf", 23, "invalid literal")
	f(strings.Repeat("(", MaxDepth+1)+"true"+strings.Repeat(")", MaxDepth+1), MaxDepth+1, "nested deeper")
	f(strings.Repeat("not ", MaxDepth+1)+"true", 4*MaxDepth+1, "nested deeper")
	f(strings.Repeat(" ", MaxLen+1), MaxLen+1, "longer than")

	// At the limit it still parses.
	if _, err := Parse(strings.Repeat("(", MaxDepth) + "true" + strings.Repeat(")", MaxDepth)); err != nil {
		t.Fatal(err)
	}
}

func TestCompileErrors(t *testing.T) {
	l := testLayout(t, testFields)
	f := func(expr, field string) {
		t.Helper()
		e, err := Parse(expr)
		if err != nil {
			t.Fatalf("Parse(%q): %v", expr, err)
		}
		_, err = e.Compile(l)
		if err == nil {
			t.Fatalf("Compile(%q): no error", expr)
		}
		if !strings.HasPrefix(err.Error(), "filter: "+field+": ") {
			t.Fatalf("Compile(%q): %v; want it to name %s", expr, err, field)
		}
	}
	f(`sourceIPv4Address == "10.0.0.1"`, "sourceIPv4Address")
	f(`sourceIPv4Address == 10`, "sourceIPv4Address")
	f(`protocolIdentifier == "6"`, "protocolIdentifier")
	f(`protocolIdentifier in 10.0.0.0/8`, "protocolIdentifier")
	f(`interfaceName == 5`, "interfaceName")
	f(`dataRecordsReliability < true`, "dataRecordsReliability")
	f(`dataRecordsReliability == 1`, "dataRecordsReliability")
	f(`flowStartSeconds == 5`, "flowStartSeconds")
	f(`sourceMacAddress == "x"`, "sourceMacAddress")
	// Type errors are found for names the layout lacks too.
	f(`destinationIPv6Address == "x"`, "destinationIPv6Address")
	f(`octetDeltaCount_3 == "x"`, "octetDeltaCount_3")
	// Even inside a branch that folds away.
	f(`false and sourceIPv4Address == 1`, "sourceIPv4Address")
}

func TestZeroAllocs(t *testing.T) {
	l := testLayout(t, testFields)
	recs := buildRecords(t, l, []testRec{sampleRec()})
	for _, expr := range []string{
		"protocolIdentifier == 6 and destinationTransportPort in [80, 443] and sourceIPv4Address in 10.0.0.0/8",
		`interfaceName in ["a", "b"] or sourceIPv6Address in [2001:db8::/32, ::1] or samplingProbability > 0.1`,
		"flowStartNanoseconds > 2026-01-01T00:00:00Z and mibObjectValueInteger < 0 and sourceMacAddress != 00:00:00:00:00:00",
		"not (octetDeltaCount > 1.5 and has packetDeltaCount) or sourceIPv4Address < 10.0.0.1",
	} {
		p, err := MustParse(expr).Compile(l)
		if err != nil {
			t.Fatal(err)
		}
		n := testing.AllocsPerRun(1000, func() { p.Match(&recs[0]) })
		if n != 0 {
			t.Errorf("%q: %v allocations per Match", expr, n)
		}
	}
}

func TestOtherLayout(t *testing.T) {
	l := testLayout(t, testFields)
	l2 := testLayout(t, testFields)
	other := testLayout(t, testFields[:3])
	p, err := MustParse("true").Compile(l)
	if err != nil {
		t.Fatal(err)
	}
	r := buildRecords(t, l2, []testRec{sampleRec()})[0]
	if !p.Match(&r) {
		t.Fatal("an equal layout should match")
	}
	r.Layout = other
	if p.Match(&r) {
		t.Fatal("another layout should not match")
	}
}

func TestRoundTrip(t *testing.T) {
	for _, src := range readSeeds(t) {
		e, err := Parse(src)
		if err != nil {
			t.Fatalf("seed %q: %v", src, err)
		}
		checkRoundTrip(t, e)
	}
}

func checkRoundTrip(t testing.TB, e *Expr) {
	t.Helper()
	s := e.String()
	e2, err := Parse(s)
	if err != nil {
		t.Fatalf("reparse %q: %v", s, err)
	}
	if !reflect.DeepEqual(e, e2) {
		t.Fatalf("round trip differs:\n%s\n%s", s, e2.String())
	}
	if s2 := e2.String(); s2 != s {
		t.Fatalf("String not stable: %q then %q", s, s2)
	}
}

func readSeeds(tb testing.TB) []string {
	fh, err := os.Open("testdata/filters.txt")
	if err != nil {
		tb.Fatal(err)
	}
	defer fh.Close()
	var out []string
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			out = append(out, line)
		}
	}
	return out
}

func FuzzParse(f *testing.F) {
	for _, s := range readSeeds(f) {
		f.Add(s)
	}
	l := testLayout(f, testFields)
	recs := buildRecords(f, l, []testRec{sampleRec()})
	f.Fuzz(func(t *testing.T, src string) {
		e, err := Parse(src)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "filter: column ") {
				t.Fatalf("bad error %q", err)
			}
			return
		}
		if s := e.String(); len(s) <= MaxLen {
			checkRoundTrip(t, e)
		}
		p, err := e.Compile(l)
		if err != nil {
			return
		}
		if got, want := p.Match(&recs[0]), refEval(e.root, l, &recs[0]); got != want {
			t.Fatalf("%q: Match %v, reference %v", src, got, want)
		}
	})
}

// refEval is the slow reference: it decodes the record into a map of
// values and evaluates the tree directly, with exact big.Float arithmetic
// for numbers.
func refEval(n node, l *ipfix.Layout, r *ipfix.Record) bool {
	vals := map[string]any{}
	for i, fl := range l.Fields {
		switch classOf(fl.IE.Type) {
		case clsUnsigned:
			vals[fl.Key] = new(big.Float).SetUint64(r.Uint(i))
		case clsSigned:
			vals[fl.Key] = new(big.Float).SetInt64(r.Int(i))
		case clsFloat:
			if v := r.Float(i); !math.IsNaN(v) {
				vals[fl.Key] = new(big.Float).SetFloat64(v)
			} else {
				vals[fl.Key] = math.NaN()
			}
		case clsBool:
			vals[fl.Key] = r.Bool(i)
		case clsMAC:
			vals[fl.Key] = r.MAC(i)
		case clsBytes:
			vals[fl.Key] = string(r.Bytes(i))
		case clsTime:
			vals[fl.Key] = r.Time(i)
		case clsAddr:
			vals[fl.Key] = r.Addr(i)
		}
	}
	return refNode(n, vals)
}

func refNode(n node, vals map[string]any) bool {
	switch n := n.(type) {
	case *constNode:
		return n.val
	case *notNode:
		return !refNode(n.x, vals)
	case *andNode:
		for _, x := range n.xs {
			if !refNode(x, vals) {
				return false
			}
		}
		return true
	case *orNode:
		for _, x := range n.xs {
			if refNode(x, vals) {
				return true
			}
		}
		return false
	case *hasNode:
		_, ok := vals[n.name]
		return ok
	case *cmpNode:
		v, ok := vals[n.name]
		return ok && refCmp(v, n.op, n.lit)
	case *inNode:
		v, ok := vals[n.name]
		if !ok {
			return false
		}
		for _, lit := range n.lits {
			if lit.Kind == LitPrefix {
				if a := v.(netip.Addr); lit.Pfx.Masked().Contains(a) {
					return true
				}
			} else if refCmp(v, OpEq, lit) {
				return true
			}
		}
		return false
	}
	panic("unknown node")
}

func refCmp(v any, op Op, lit Literal) bool {
	var c int
	switch v := v.(type) {
	case *big.Float:
		var x big.Float
		if lit.Kind == LitFloat {
			x.SetFloat64(lit.F)
		} else {
			x.SetUint64(lit.Mag)
			if lit.Neg {
				x.Neg(&x)
			}
		}
		c = v.Cmp(&x)
	case float64: // NaN
		return op == OpNe
	case bool:
		return (v == lit.B) == (op == OpEq)
	case [6]byte:
		c = strings.Compare(string(v[:]), string(lit.MAC[:]))
	case string:
		c = strings.Compare(v, lit.S)
	case time.Time:
		c = v.Compare(lit.Time)
	case netip.Addr:
		if v.Is4() != lit.Addr.Is4() {
			return op == OpNe
		}
		c = v.Compare(lit.Addr)
	}
	return op.holds(c)
}

// Random records and random expressions: the compiled program must agree
// with the reference.
func TestRandomAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	l := testLayout(t, testFields)
	recs := make([]testRec, 64)
	for i := range recs {
		recs[i] = randRec(rng)
	}
	rs := buildRecords(t, l, recs)
	g := gen{rng: rng}
	for range 3000 {
		e := &Expr{root: g.expr(0)}
		checkRoundTrip(t, e)
		p, err := e.Compile(l)
		if err != nil {
			t.Fatalf("%s: %v", e, err)
		}
		for j := range rs {
			if got, want := p.Match(&rs[j]), refEval(e.root, l, &rs[j]); got != want {
				t.Fatalf("%s on record %d: Match %v, reference %v", e, j, got, want)
			}
		}
	}
}

var (
	poolV4    = []string{"10.0.0.1", "10.1.2.3", "192.0.2.80", "0.0.0.0", "255.255.255.255"}
	poolV6    = []string{"2001:db8::1", "::1", "::ffff:10.0.0.1", "fe80::1"}
	poolInts  = []int64{0, 1, 6, 17, 80, 443, 1500, -1, -42, 65535, 1 << 40, math.MaxInt64, math.MinInt64}
	poolFloat = []float64{0, 0.25, 1.5, -1.5, 6.0000001, 1e20, -0.0, 1 << 53, 1<<53 + 1}
	poolStr   = []string{"", "eth0", "eth1", `a"b\c`, "hi"}
	poolMAC   = [][6]byte{{}, {0, 0x1b, 0x21, 0xaa, 0xbb, 0xcc}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	poolTimes = []time.Time{baseTime, baseTime.Add(123 * time.Millisecond), baseTime.Add(500 * time.Millisecond), baseTime.Add(time.Second)}
)

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

func randRec(rng *rand.Rand) testRec {
	return testRec{
		src4:    netip.MustParseAddr(pick(rng, poolV4)),
		dst4:    netip.MustParseAddr(pick(rng, poolV4)),
		src6:    netip.MustParseAddr(pick(rng, poolV6)),
		proto:   pick(rng, []uint8{0, 1, 6, 17, 255}),
		sport:   pick(rng, []uint16{0, 80, 443, 65535}),
		dport:   pick(rng, []uint16{0, 80, 443, 65535}),
		oct:     pick(rng, []uint64{0, 1, 1500, 1 << 40, 1 << 53, 1<<53 + 1, math.MaxUint64, math.MaxInt64}),
		oct2:    pick(rng, []uint32{0, 1, 1500, math.MaxUint32}),
		mib:     pick(rng, []int32{0, -1, -42, 6, math.MinInt32, math.MaxInt32}),
		samp:    pick(rng, []float64{0, 0.25, 1.5, -1.5, math.NaN(), math.Inf(1), 1 << 53}),
		abs:     pick(rng, []float32{0, 1.5, -1.5, float32(math.NaN())}),
		rel:     rng.IntN(2) == 0,
		mac:     pick(rng, poolMAC),
		ifname:  pick(rng, poolStr),
		startMs: pick(rng, poolTimes),
		startS:  pick(rng, poolTimes).Truncate(time.Second),
		startNs: pick(rng, poolTimes),
		rev:     pick(rng, []uint64{0, 7, 1500}),
		ent:     pick(rng, [][2]byte{{'h', 'i'}, {0, 0}}),
	}
}

type gen struct{ rng *rand.Rand }

// genNames are the names the generator compares: every field of the test
// layout and two it lacks.
var genNames = []string{"sourceIPv4Address", "destinationIPv4Address", "sourceIPv6Address",
	"protocolIdentifier", "sourceTransportPort", "destinationTransportPort", "octetDeltaCount",
	"octetDeltaCount_2", "mibObjectValueInteger", "samplingProbability", "absoluteError",
	"dataRecordsReliability", "sourceMacAddress", "interfaceName", "flowStartMilliseconds",
	"flowStartSeconds", "flowStartNanoseconds", "reverseOctetDeltaCount", "e12345id7",
	"packetDeltaCount", "destinationIPv6Address"}

func (g *gen) expr(depth int) node {
	k := g.rng.IntN(10)
	if depth > 3 {
		k = 9
	}
	switch k {
	case 0:
		return &notNode{x: g.expr(depth + 1)}
	case 1, 2:
		xs := []node{g.expr(depth + 1), g.expr(depth + 1)}
		return &andNode{xs: flatten[*andNode](xs)}
	case 3, 4:
		xs := []node{g.expr(depth + 1), g.expr(depth + 1), g.expr(depth + 1)}
		return &orNode{xs: flatten[*orNode](xs)}
	case 5:
		if g.rng.IntN(4) == 0 {
			return &constNode{val: g.rng.IntN(2) == 0}
		}
		return &hasNode{name: pick(g.rng, genNames)}
	}
	name := pick(g.rng, genNames)
	typ, _ := registryType(name)
	if name == "e12345id7" {
		typ = ipfix.TypeOctetArray
	}
	cls := classOf(typ)
	if g.rng.IntN(3) == 0 {
		lits := []Literal{}
		for range g.rng.IntN(4) {
			lits = append(lits, g.lit(cls, true))
		}
		return &inNode{name: name, lits: lits}
	}
	op := Op(g.rng.IntN(6))
	if cls == clsBool {
		op = Op(g.rng.IntN(2))
	}
	return &cmpNode{name: name, op: op, lit: g.lit(cls, false)}
}

func flatten[T *andNode | *orNode](xs []node) []node {
	var out []node
	for _, x := range xs {
		out = appendFlat[T](out, x)
	}
	return out
}

func (g *gen) lit(cls class, in bool) Literal {
	switch cls {
	case clsUnsigned, clsSigned, clsFloat:
		if g.rng.IntN(2) == 0 {
			f := pick(g.rng, poolFloat)
			if f == 0 {
				f = 0 // no -0: it prints as 0.0 and reads back as +0
			}
			return Literal{Kind: LitFloat, F: f}
		}
		v := pick(g.rng, poolInts)
		if v < 0 {
			return Literal{Kind: LitInt, Neg: true, Mag: uint64(-(v + 1)) + 1}
		}
		return Literal{Kind: LitInt, Mag: uint64(v)}
	case clsBool:
		return Literal{Kind: LitBool, B: g.rng.IntN(2) == 0}
	case clsMAC:
		return Literal{Kind: LitMAC, MAC: pick(g.rng, poolMAC)}
	case clsBytes:
		return Literal{Kind: LitString, S: pick(g.rng, poolStr)}
	case clsTime:
		return Literal{Kind: LitTime, Time: pick(g.rng, poolTimes)}
	case clsAddr:
		a := netip.MustParseAddr(pick(g.rng, append(poolV4, poolV6...)))
		if in && g.rng.IntN(2) == 0 {
			bits := g.rng.IntN(a.BitLen() + 1)
			return Literal{Kind: LitPrefix, Pfx: netip.PrefixFrom(a, bits)}
		}
		return Literal{Kind: LitAddr, Addr: a}
	}
	panic("class " + strconv.Itoa(int(cls)))
}

func BenchmarkMatch(b *testing.B) {
	l := testLayout(b, testFields)
	rng := rand.New(rand.NewPCG(3, 4))
	recs := make([]testRec, 256)
	for i := range recs {
		recs[i] = randRec(rng)
		recs[i].src4 = netip.AddrFrom4([4]byte{byte(rng.IntN(2) * 10), byte(i), 0, 1})
	}
	rs := buildRecords(b, l, recs)
	p, err := MustParse("protocolIdentifier == 6 and destinationTransportPort in [80, 443] and sourceIPv4Address in 10.0.0.0/8").Compile(l)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	n, matched := 0, 0
	for b.Loop() {
		for j := range rs {
			if p.Match(&rs[j]) {
				matched++
			}
		}
		n += len(rs)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/record")
	_ = matched
}
