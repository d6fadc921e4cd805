package jsonl

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

type resolverMap map[uint16]*ipfix.Layout

func (m resolverMap) Resolve(id uint16) *ipfix.Layout { return m[id] }

func compile(t testing.TB, id uint16, options bool, scope uint16, specs ...ipfix.FieldSpec) *ipfix.Layout {
	t.Helper()
	l, err := ipfix.Compile(&ipfix.TemplateRecord{ID: id, Options: options, ScopeCount: scope, Fields: specs})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// oneRecord wraps a record body in a message and returns the decoded message
// and record.
func oneRecord(t testing.TB, l *ipfix.Layout, body []byte) (*ipfix.Message, *ipfix.Record) {
	t.Helper()
	w := ipfix.MessageWriter{DomainID: 7}
	msg := w.Begin(nil, 1700000000)
	msg = w.BeginSet(msg, l.ID)
	msg = append(msg, body...)
	msg = w.EndSet(msg)
	w.AddRecords(1)
	msg, err := w.Finish(msg)
	if err != nil {
		t.Fatal(err)
	}
	var m ipfix.Message
	if err := m.Decode(msg); err != nil {
		t.Fatal(err)
	}
	var set ipfix.Set
	sets := m.Sets()
	if !sets.Next(&set) {
		t.Fatal("no set")
	}
	var r ipfix.Record
	it := set.Records(l)
	if !it.Next(&r) {
		t.Fatalf("no record: %v", it.Err())
	}
	return &m, &r
}

func TestAppendRecordTypes(t *testing.T) {
	start := time.Date(2026, 11, 25, 10, 0, 0, 123_000_000, time.UTC)
	sub := compile(t, 300, false, 0, ipfix.FieldSpec{ID: 7, Length: 2}, ipfix.FieldSpec{ID: 11, Length: 2})
	l := compile(t, 256, false, 0,
		ipfix.FieldSpec{ID: 8, Length: 4},                        // sourceIPv4Address
		ipfix.FieldSpec{ID: 27, Length: 16},                      // sourceIPv6Address
		ipfix.FieldSpec{ID: 1, Length: 4},                        // octetDeltaCount, reduced size
		ipfix.FieldSpec{ID: 56, Length: 6},                       // sourceMacAddress
		ipfix.FieldSpec{ID: 82, Length: ipfix.VarLen},            // interfaceName
		ipfix.FieldSpec{ID: 152, Length: 8},                      // flowStartMilliseconds
		ipfix.FieldSpec{ID: 156, Length: 8},                      // flowStartNanoseconds
		ipfix.FieldSpec{ID: 1, Length: 8, PEN: ipfix.ReversePEN}, // reverseOctetDeltaCount
		ipfix.FieldSpec{ID: 99, Length: 3, PEN: 9},               // unknown enterprise element
		ipfix.FieldSpec{ID: 1, Length: 8},                        // octetDeltaCount again
		ipfix.FieldSpec{ID: 292, Length: ipfix.VarLen},           // subTemplateList
		ipfix.FieldSpec{ID: 291, Length: ipfix.VarLen},           // basicList
		ipfix.FieldSpec{ID: 210, Length: 2},                      // paddingOctets, omitted
		ipfix.FieldSpec{ID: 434, Length: 4},                      // mibObjectValueInteger (signed32)
		ipfix.FieldSpec{ID: 320, Length: 4},                      // absoluteError (float64 sent as float32)
		ipfix.FieldSpec{ID: 276, Length: 1},                      // dataRecordsReliability (boolean)
	)
	var b []byte
	b = ipfix.AppendAddr(b, netip.MustParseAddr("192.0.2.1"))
	b = ipfix.AppendAddr(b, netip.MustParseAddr("2001:db8::1"))
	b = ipfix.AppendUint(b, 123456, 4)
	b = append(b, 0x02, 0, 0x5e, 0x10, 0, 1)
	b = ipfix.AppendVarlen(b, []byte("eth0 \"up\"\n"))
	b = ipfix.AppendDateTimeMilliseconds(b, start)
	b = ipfix.AppendNTP(b, start.Add(456))
	b = ipfix.AppendUint(b, 99, 8)
	b = append(b, 0xaa, 0xbb, 0xcc)
	b = ipfix.AppendUint(b, 5, 8)
	var list []byte
	list = ipfix.AppendSubTemplateListHeader(list, ipfix.ListAllOf, 300)
	list = ipfix.AppendUint(list, 53, 2)
	list = ipfix.AppendUint(list, 5353, 2)
	list = ipfix.AppendUint(list, 80, 2)
	list = ipfix.AppendUint(list, 8080, 2)
	b = ipfix.AppendVarlen(b, list)
	list = ipfix.AppendBasicListHeader(list[:0], ipfix.ListOrdered, ipfix.FieldSpec{ID: 7, Length: 2})
	list = ipfix.AppendUint(list, 1, 2)
	list = ipfix.AppendUint(list, 2, 2)
	b = ipfix.AppendVarlen(b, list)
	b = append(b, 0, 0)
	b = ipfix.AppendUint(b, uint64(0xfffffffe), 4) // -2
	b = ipfix.AppendFloat(b, 0.5, 4)
	b = ipfix.AppendBool(b, false)

	m, r := oneRecord(t, l, b)
	out := AppendRecord(nil, &Meta{Exporter: netip.MustParseAddrPort("198.51.100.9:4739"), Msg: m, Resolve: resolverMap{300: sub}}, r)
	if !strings.HasSuffix(string(out), "}\n") || !json.Valid(out) {
		t.Fatalf("invalid JSON: %s", out)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"exporter":               "198.51.100.9:4739",
		"version":                10.0,
		"observation_domain":     7.0,
		"template_id":            256.0,
		"export_time":            "2023-11-14T22:13:20Z",
		"sourceIPv4Address":      "192.0.2.1",
		"sourceIPv6Address":      "2001:db8::1",
		"octetDeltaCount":        123456.0,
		"octetDeltaCount_2":      5.0,
		"sourceMacAddress":       "02:00:5e:10:00:01",
		"interfaceName":          "eth0 \"up\"\n",
		"flowStartMilliseconds":  "2026-11-25T10:00:00.123Z",
		"flowStartNanoseconds":   "2026-11-25T10:00:00.123000456Z",
		"reverseOctetDeltaCount": 99.0,
		"e9id99":                 "aabbcc",
		"mibObjectValueInteger":  -2.0,
		"absoluteError":          0.5,
		"dataRecordsReliability": false,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	if _, ok := got["paddingOctets"]; ok {
		t.Error("paddingOctets should be left out")
	}
	if _, ok := got["options"]; ok {
		t.Error("data record marked as options")
	}
	stl, _ := got["subTemplateList"].([]any)
	if len(stl) != 2 {
		t.Fatalf("subTemplateList = %#v", got["subTemplateList"])
	}
	if r0 := stl[0].(map[string]any); r0["sourceTransportPort"] != 53.0 || r0["destinationTransportPort"] != 5353.0 || r0["template_id"] != 300.0 {
		t.Errorf("subTemplateList[0] = %#v", r0)
	}
	if bl, _ := got["basicList"].([]any); len(bl) != 2 || bl[0] != 1.0 || bl[1] != 2.0 {
		t.Errorf("basicList = %#v", got["basicList"])
	}
}

func TestAppendStringEscapes(t *testing.T) {
	f := func(in string, want string) {
		t.Helper()
		got := string(AppendString(nil, []byte(in)))
		if got != want {
			t.Errorf("AppendString(%q) = %s, want %s", in, got, want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("AppendString(%q) is not valid JSON: %s", in, got)
		}
	}
	f("", `""`)
	f("plain", `"plain"`)
	f("a\"b\\c", `"a\"b\\c"`)
	f("tab\tnl\ncr\r", `"tab\tnl\ncr\r"`)
	f("\x01\x1f", `"\u0001\u001f"`)
	f("bad\xffutf8", `"bad\ufffdutf8"`)
	f("héllo", `"héllo"`)
	f("padded\x00\x00", `"padded"`)
}

// A self-referencing sub-template list must end at MaxListDepth, not recurse
// forever.
func TestSelfNestedListTerminates(t *testing.T) {
	l := compile(t, 256, false, 0, ipfix.FieldSpec{ID: 292, Length: ipfix.VarLen})
	// Innermost: an empty list; wrap it in 20 levels.
	v := ipfix.AppendSubTemplateListHeader(nil, ipfix.ListAllOf, 256)
	for range 20 {
		outer := ipfix.AppendSubTemplateListHeader(nil, ipfix.ListAllOf, 256)
		v = append(outer, ipfix.AppendVarlen(nil, v)...)
	}
	m, r := oneRecord(t, l, ipfix.AppendVarlen(nil, v))
	out := AppendRecord(nil, &Meta{Msg: m, Resolve: resolverMap{256: l}}, r)
	if !json.Valid(out) {
		t.Fatalf("invalid JSON: %s", out)
	}
	if depth := strings.Count(string(out), "["); depth > ipfix.MaxListDepth {
		t.Fatalf("nested %d lists deep, limit %d", depth, ipfix.MaxListDepth)
	}
}

func TestAppendRecordNoAllocs(t *testing.T) {
	l := compile(t, 256, false, 0,
		ipfix.FieldSpec{ID: 8, Length: 4}, ipfix.FieldSpec{ID: 12, Length: 4},
		ipfix.FieldSpec{ID: 7, Length: 2}, ipfix.FieldSpec{ID: 11, Length: 2},
		ipfix.FieldSpec{ID: 4, Length: 1}, ipfix.FieldSpec{ID: 1, Length: 8},
		ipfix.FieldSpec{ID: 152, Length: 8}, ipfix.FieldSpec{ID: 82, Length: ipfix.VarLen})
	var b []byte
	b = ipfix.AppendAddr(b, netip.MustParseAddr("192.0.2.1"))
	b = ipfix.AppendAddr(b, netip.MustParseAddr("192.0.2.2"))
	b = ipfix.AppendUint(b, 1000, 2)
	b = ipfix.AppendUint(b, 443, 2)
	b = ipfix.AppendUint(b, 6, 1)
	b = ipfix.AppendUint(b, 1500, 8)
	b = ipfix.AppendDateTimeMilliseconds(b, time.Now())
	b = ipfix.AppendVarlen(b, []byte("eth0"))
	m, r := oneRecord(t, l, b)
	meta := &Meta{Exporter: netip.MustParseAddrPort("192.0.2.9:1234"), Msg: m}
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() { buf = AppendRecord(buf[:0], meta, r) }); n != 0 {
		t.Fatalf("AppendRecord allocates %v times per record", n)
	}
	if bytes.Contains(buf, []byte("time_received_ns")) {
		t.Fatalf("no receive time known, yet %s", buf)
	}
	meta.Received = 1764936000123456789
	buf = AppendRecord(buf[:0], meta, r)
	var obj map[string]any
	dec := json.NewDecoder(bytes.NewReader(buf))
	dec.UseNumber()
	if err := dec.Decode(&obj); err != nil || obj["time_received_ns"] != json.Number("1764936000123456789") {
		t.Fatalf("time_received_ns: %v in %s", err, buf)
	}
}

// BenchmarkAppendRecord encodes the records of a message like the ones
// `sluice gen` sends (the 5-tuple template, 30 records of 46 octets, each
// its own addresses, port, counters and times), one per op, with the
// encoder before issue 19 (encoder=old, ref_test.go) and the current one
// in the same run: `go test -bench AppendRecord -count 10 | benchstat
// -col /encoder -`.
func BenchmarkAppendRecord(b *testing.B) {
	l := compile(b, 256, false, 0,
		ipfix.FieldSpec{ID: 8, Length: 4}, ipfix.FieldSpec{ID: 12, Length: 4},
		ipfix.FieldSpec{ID: 7, Length: 2}, ipfix.FieldSpec{ID: 11, Length: 2},
		ipfix.FieldSpec{ID: 4, Length: 1}, ipfix.FieldSpec{ID: 6, Length: 1},
		ipfix.FieldSpec{ID: 1, Length: 8}, ipfix.FieldSpec{ID: 2, Length: 8},
		ipfix.FieldSpec{ID: 152, Length: 8}, ipfix.FieldSpec{ID: 153, Length: 8})
	start := time.Now().UnixMilli()
	var body []byte
	for n := range 30 {
		body = ipfix.AppendAddr(body, netip.AddrFrom4([4]byte{10, 1, byte(n >> 8), byte(n)}))
		body = ipfix.AppendAddr(body, netip.AddrFrom4([4]byte{192, 0, 2, byte(n)}))
		body = ipfix.AppendUint(body, uint64(1024+n), 2)
		body = ipfix.AppendUint(body, 443, 2)
		body = ipfix.AppendUint(body, 6, 1)
		body = ipfix.AppendUint(body, 0x1b, 1)
		body = ipfix.AppendUint(body, uint64(64+n*37), 8)
		body = ipfix.AppendUint(body, uint64(1+n%10), 8)
		body = ipfix.AppendUint(body, uint64(start), 8)
		body = ipfix.AppendUint(body, uint64(start+int64(n*33)), 8)
	}
	recs := make([]ipfix.Record, 0, 30)
	it := ipfix.NewDataIter(l, body)
	for r := (ipfix.Record{}); it.Next(&r); r = (ipfix.Record{}) {
		recs = append(recs, r)
	}
	msg := &ipfix.Message{Version: ipfix.VersionIPFIX, DomainID: 7, ExportTime: uint32(start / 1000)}
	meta := &Meta{Exporter: netip.MustParseAddrPort("192.0.2.9:1234"), Msg: msg, Received: start * 1e6}
	run := func(b *testing.B, enc func(dst []byte, r *ipfix.Record) []byte) {
		buf := make([]byte, 0, 4096)
		for i := range recs {
			buf = enc(buf[:0], &recs[i])
		}
		if n := testing.AllocsPerRun(100, func() { buf = enc(buf[:0], &recs[3]) }); n != 0 {
			b.Fatalf("%v allocations per record", n)
		}
		size := 0
		b.ReportAllocs()
		i := 0
		// The loop's own CPU time too: on a shared machine the wall
		// clock counts the other processes' time.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		cpu0 := threadCPU()
		for b.Loop() {
			buf = enc(buf[:0], &recs[i])
			size += len(buf)
			if i++; i == len(recs) {
				i = 0
			}
		}
		cpu := threadCPU() - cpu0
		b.SetBytes(int64(size / b.N))
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/record")
	}
	b.Run("encoder=old", func(b *testing.B) {
		ref := &refMeta{Meta: meta}
		run(b, func(dst []byte, r *ipfix.Record) []byte { return refAppendRecord(dst, ref, r) })
	})
	b.Run("encoder=new", func(b *testing.B) {
		run(b, func(dst []byte, r *ipfix.Record) []byte { return AppendRecord(dst, meta, r) })
	})
}

// The cached RFC 3339 formatting must equal the time package's, for times
// across second boundaries and with every fraction length.
func TestTimeCacheMatchesRFC3339Nano(t *testing.T) {
	var c timeCache
	base := time.Date(2026, 11, 25, 23, 59, 58, 0, time.UTC)
	for _, d := range []time.Duration{0, 1, 10, 999, 1000, 123456789, time.Second, time.Second + 5*time.Millisecond,
		2 * time.Second, 2*time.Second + 120*time.Microsecond, 400 * 24 * time.Hour} {
		tm := base.Add(d)
		got := string(c.appendUTC(nil, tm))
		if want := tm.Format(time.RFC3339Nano); got != want {
			t.Errorf("appendUTC(%v) = %s, want %s", tm, got, want)
		}
	}
	far := time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)
	if got, want := string(c.appendUTC(nil, far)), far.Format(time.RFC3339Nano); got != want {
		t.Errorf("year 12000: %s, want %s", got, want)
	}
}

func BenchmarkTimeFormat(b *testing.B) {
	tm := time.Date(2026, 11, 25, 12, 0, 0, 123_000_000, time.UTC)
	buf := make([]byte, 0, 64)
	b.Run("cached", func(b *testing.B) {
		var c timeCache
		for b.Loop() {
			buf = c.appendUTC(buf[:0], tm)
		}
	})
	b.Run("AppendFormat", func(b *testing.B) {
		for b.Loop() {
			buf = tm.AppendFormat(buf[:0], time.RFC3339Nano)
		}
	})
}

// threadCPU returns the CPU time of the calling thread (Linux
// RUSAGE_THREAD; 0 elsewhere).
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(1, &ru) != nil { // RUSAGE_THREAD
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
