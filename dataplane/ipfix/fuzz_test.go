package ipfix_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
	"github.com/sluice-flow/sluice/dataplane/offline/decode"
	"github.com/sluice-flow/sluice/dataplane/offline/pcap"
)

// The fuzzers below feed arbitrary bytes to the codec and check invariants
// against small reference decoders written here, independently of the
// codec's own parsing: where a record, a field or a set lies, what every
// accessor returns for the bytes found there, and which sentinel error a
// malformed input yields.

// maxRecordLen mirrors the codec's bound on a record: what one IPFIX message
// can carry after its header and one set header.
const maxRecordLen = ipfix.MaxMessageLen - ipfix.HeaderLenIPFIX - ipfix.SetHeaderLen

// ---------------------------------------------------------------------------
// Seeds built with MessageWriter.

// Templates used by the seeds and by the codec tests.
var (
	tplFiveTuple = []ipfix.FieldSpec{
		{ID: 8, Length: 4},   // sourceIPv4Address
		{ID: 12, Length: 4},  // destinationIPv4Address
		{ID: 7, Length: 2},   // sourceTransportPort
		{ID: 11, Length: 2},  // destinationTransportPort
		{ID: 4, Length: 1},   // protocolIdentifier
		{ID: 6, Length: 1},   // tcpControlBits, reduced from 2 octets
		{ID: 1, Length: 4},   // octetDeltaCount, reduced from 8 octets
		{ID: 2, Length: 8},   // packetDeltaCount
		{ID: 152, Length: 8}, // flowStartMilliseconds
		{ID: 153, Length: 8}, // flowEndMilliseconds
	}
	tplVarlen = []ipfix.FieldSpec{
		{ID: 82, Length: ipfix.VarLen},  // interfaceName
		{ID: 1, Length: 8},              // octetDeltaCount
		{ID: 27, Length: 16},            // sourceIPv6Address
		{ID: 56, Length: 6},             // sourceMacAddress
		{ID: 313, Length: ipfix.VarLen}, // ipHeaderPacketSection
		{ID: 154, Length: 8},            // flowStartMicroseconds
		{ID: 156, Length: 8},            // flowStartNanoseconds
		{ID: 150, Length: 4},            // flowStartSeconds
		{ID: 434, Length: 2},            // mibObjectValueInteger, reduced signed
		{ID: 311, Length: 8},            // samplingProbability (float64)
		{ID: 276, Length: 1},            // dataRecordsReliability (boolean)
	}
	tplLists = []ipfix.FieldSpec{
		{ID: 291, Length: ipfix.VarLen}, // basicList
		{ID: 292, Length: ipfix.VarLen}, // subTemplateList
		{ID: 293, Length: ipfix.VarLen}, // subTemplateMultiList
	}
	tplEnterprise = []ipfix.FieldSpec{
		{ID: 1, Length: 8, PEN: ipfix.ReversePEN}, // reverseOctetDeltaCount
		{ID: 2, Length: 4, PEN: ipfix.ReversePEN}, // reversePacketDeltaCount
		{ID: 100, Length: 4, PEN: 12345},
		{ID: 7, Length: 2},
		{ID: 7, Length: 2}, // duplicate: sourceTransportPort_2
	}
	tplOptions = []ipfix.FieldSpec{
		{ID: 149, Length: 4}, // observationDomainId (scope)
		{ID: 144, Length: 4}, // exportingProcessId (scope)
		{ID: 41, Length: 8},  // exportedMessageTotalCount
		{ID: 42, Length: 8},  // exportedFlowRecordTotalCount
	}
	// v9 options: scope system (1) and interface (2), then counters.
	tplV9Options = []ipfix.FieldSpec{
		{ID: 1, Length: 4},
		{ID: 2, Length: 4},
		{ID: 41, Length: 8},
		{ID: 61, Length: 1},
	}
	tplPorts = []ipfix.FieldSpec{{ID: 7, Length: 2}, {ID: 11, Length: 2}}
)

var seedTime = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// msgBuilder wraps MessageWriter for tests: every helper appends to b.
type msgBuilder struct {
	w ipfix.MessageWriter
	b []byte
}

func newBuilder(version uint16, domain uint32) *msgBuilder {
	return &msgBuilder{w: ipfix.MessageWriter{Version: version, DomainID: domain, SysUptime: 3_600_000}}
}

func (m *msgBuilder) begin() *msgBuilder {
	m.b = m.w.Begin(m.b[:0:0], uint32(seedTime.Unix()))
	return m
}

func (m *msgBuilder) v9() bool { return m.w.Version == ipfix.VersionNetFlow9 }

func (m *msgBuilder) template(id uint16, fields []ipfix.FieldSpec) *msgBuilder {
	m.b = m.w.BeginSet(m.b, ipfix.TemplateSetID)
	m.b = ipfix.AppendTemplateRecord(m.b, id, fields)
	m.w.AddTemplates(1)
	m.b = m.w.EndSet(m.b)
	return m
}

func (m *msgBuilder) optionsTemplate(id uint16, scope int, fields []ipfix.FieldSpec) *msgBuilder {
	m.b = m.w.BeginSet(m.b, ipfix.OptionsTemplateSetID)
	if m.v9() {
		m.b = ipfix.AppendV9OptionsTemplateRecord(m.b, id, scope, fields)
	} else {
		m.b = ipfix.AppendOptionsTemplateRecord(m.b, id, scope, fields)
	}
	m.w.AddTemplates(1)
	m.b = m.w.EndSet(m.b)
	return m
}

func (m *msgBuilder) withdraw(setID uint16, ids ...uint16) *msgBuilder {
	m.b = m.w.BeginSet(m.b, setID)
	for _, id := range ids {
		m.b = ipfix.AppendWithdrawal(m.b, id)
	}
	m.w.AddTemplates(len(ids))
	m.b = m.w.EndSet(m.b)
	return m
}

// data appends one data set of template id with the records made by fn.
func (m *msgBuilder) data(id uint16, n int, fn func(b []byte, i int) []byte) *msgBuilder {
	m.b = m.w.BeginSet(m.b, id)
	for i := range n {
		m.b = fn(m.b, i)
	}
	m.w.AddRecords(n)
	m.b = m.w.EndSet(m.b)
	return m
}

func (m *msgBuilder) raw(b ...byte) *msgBuilder {
	m.b = append(m.b, b...)
	return m
}

func (m *msgBuilder) finish(tb testing.TB) []byte {
	tb.Helper()
	b, err := m.w.Finish(m.b)
	if err != nil {
		tb.Fatal(err)
	}
	m.b = nil
	return b
}

func appendFiveTuple(b []byte, i int) []byte {
	b = ipfix.AppendAddr(b, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
	b = ipfix.AppendAddr(b, netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}))
	b = ipfix.AppendUint(b, uint64(1024+i), 2)
	b = ipfix.AppendUint(b, 443, 2)
	b = ipfix.AppendUint(b, 6, 1)
	b = ipfix.AppendUint(b, 0x12, 1)
	b = ipfix.AppendUint(b, uint64(1500*(i+1)), 4)
	b = ipfix.AppendUint(b, uint64(i+1), 8)
	b = ipfix.AppendDateTimeMilliseconds(b, seedTime.Add(time.Duration(i)*time.Millisecond))
	return ipfix.AppendDateTimeMilliseconds(b, seedTime.Add(time.Duration(i+100)*time.Millisecond))
}

// appendVarlenRecord appends a tplVarlen record whose interfaceName is n
// octets long (n >= 255 takes the 3-octet length prefix).
func appendVarlenRecord(b []byte, n int) []byte {
	b = ipfix.AppendVarlen(b, bytes.Repeat([]byte{'a' + byte(n%26)}, n))
	b = ipfix.AppendUint(b, uint64(n)*1000, 8)
	b = ipfix.AppendAddr(b, netip.MustParseAddr("2001:db8::1"))
	b = append(b, 0x02, 0x00, 0x5e, 0x00, 0x53, byte(n))
	b = ipfix.AppendVarlen(b, []byte{0x45, 0, 0, 40})
	b = ipfix.AppendNTP(b, seedTime.Add(123456789))
	b = ipfix.AppendNTP(b, seedTime.Add(987654321))
	b = ipfix.AppendDateTimeSeconds(b, seedTime)
	b = ipfix.AppendUint(b, uint64(0xfffe), 2) // -2
	b = ipfix.AppendFloat(b, 0.25, 8)
	return ipfix.AppendBool(b, n%2 == 0)
}

// Structured list values.

func basicListPorts(ports ...uint16) []byte {
	b := ipfix.AppendBasicListHeader(nil, ipfix.ListAllOf, ipfix.FieldSpec{ID: 7, Length: 2})
	for _, p := range ports {
		b = ipfix.AppendUint(b, uint64(p), 2)
	}
	return b
}

func basicListStrings(pen uint32, vals ...string) []byte {
	b := ipfix.AppendBasicListHeader(nil, ipfix.ListOneOrMoreOf, ipfix.FieldSpec{ID: 82, Length: ipfix.VarLen, PEN: pen})
	for _, v := range vals {
		b = ipfix.AppendVarlen(b, []byte(v))
	}
	return b
}

func subTemplateList(id uint16, records ...[]byte) []byte {
	b := ipfix.AppendSubTemplateListHeader(nil, ipfix.ListAllOf, id)
	for _, r := range records {
		b = append(b, r...)
	}
	return b
}

// stmlGroup is one group of a subTemplateMultiList.
type stmlGroup struct {
	id      uint16
	records [][]byte
}

func subTemplateMultiList(groups ...stmlGroup) []byte {
	b := []byte{ipfix.ListExactlyOneOf}
	for _, g := range groups {
		start := len(b)
		b = binary.BigEndian.AppendUint16(b, g.id)
		b = append(b, 0, 0)
		for _, r := range g.records {
			b = append(b, r...)
		}
		binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	}
	return b
}

func portsRecord(src, dst uint16) []byte {
	return ipfix.AppendUint(ipfix.AppendUint(nil, uint64(src), 2), uint64(dst), 2)
}

// nestedSelfList returns a subTemplateList of template 256 nested depth
// times: each record of 256 holds one varlen subTemplateList field.
func nestedSelfList(depth int) []byte {
	v := subTemplateList(256)
	for range depth {
		v = subTemplateList(256, ipfix.AppendVarlen(nil, v))
	}
	return v
}

func listSeeds() [][]byte {
	return [][]byte{
		basicListPorts(80, 443, 8080),
		basicListPorts(),
		basicListStrings(0, "eth0", "", strings.Repeat("x", 300)),
		basicListStrings(12345, "enterprise"),
		subTemplateList(258, portsRecord(1, 2), portsRecord(3, 4)),
		subTemplateList(256),
		nestedSelfList(3),
		nestedSelfList(ipfix.MaxListDepth + 3),
		subTemplateMultiList(
			stmlGroup{258, [][]byte{portsRecord(5, 6)}},
			stmlGroup{259, [][]byte{ipfix.AppendUint(ipfix.AppendVarlen(nil, []byte("ge-0/0/0")), 7, 4)}},
			stmlGroup{256, [][]byte{ipfix.AppendVarlen(nil, nestedSelfList(2))}},
		),
		subTemplateMultiList(),
	}
}

// builtMessages returns messages of every kind MessageWriter can make.
func builtMessages(tb testing.TB) [][]byte {
	var out [][]byte
	for _, version := range []uint16{ipfix.VersionIPFIX, ipfix.VersionNetFlow9} {
		m := newBuilder(version, 7)
		// Templates and data in one message.
		out = append(out, m.begin().
			template(256, tplFiveTuple).
			template(257, tplVarlen).
			data(256, 3, appendFiveTuple).
			data(257, 5, func(b []byte, i int) []byte { return appendVarlenRecord(b, []int{0, 254, 255, 256, 1000}[i]) }).
			finish(tb))
		// Options template with scope, then its data.
		out = append(out, m.begin().
			optionsTemplate(300, 2, map[bool][]ipfix.FieldSpec{false: tplOptions, true: tplV9Options}[m.v9()]).
			data(300, 1, func(b []byte, i int) []byte {
				b = ipfix.AppendUint(b, 7, 4)
				b = ipfix.AppendUint(b, 1, 4)
				b = ipfix.AppendUint(b, 1000, 8)
				if m.v9() {
					return ipfix.AppendUint(b, 1, 1)
				}
				return ipfix.AppendUint(b, 20000, 8)
			}).
			finish(tb))
		// Enterprise and reverse elements, duplicates.
		out = append(out, m.begin().
			template(260, tplEnterprise).
			data(260, 2, func(b []byte, i int) []byte {
				b = ipfix.AppendUint(b, uint64(i)<<40, 8)
				b = ipfix.AppendUint(b, uint64(i), 4)
				b = append(b, 'a', 'b', 'c', 'd')
				return append(b, portsRecord(uint16(i), 53)...)
			}).
			finish(tb))
		// Lists.
		out = append(out, m.begin().
			template(258, tplPorts).
			template(259, []ipfix.FieldSpec{{ID: 82, Length: ipfix.VarLen}, {ID: 10, Length: 4}}).
			template(256, []ipfix.FieldSpec{{ID: 292, Length: ipfix.VarLen}}).
			template(261, tplLists).
			data(261, 2, func(b []byte, i int) []byte {
				seeds := listSeeds()
				b = ipfix.AppendVarlen(b, seeds[i])
				b = ipfix.AppendVarlen(b, seeds[4+2*i])
				return ipfix.AppendVarlen(b, seeds[8])
			}).
			finish(tb))
		// Withdrawals, one and all.
		out = append(out, m.begin().
			withdraw(ipfix.TemplateSetID, 256, 257).
			withdraw(ipfix.TemplateSetID, ipfix.WithdrawAllTemplates).
			withdraw(ipfix.OptionsTemplateSetID, ipfix.WithdrawAllOptionsTemplates).
			finish(tb))
		// Trailing zero padding after the last set.
		out = append(out, m.begin().
			template(256, tplFiveTuple).
			data(256, 1, appendFiveTuple).
			raw(0, 0, 0).
			finish(tb))
	}
	return append(out, v5Message(3))
}

// v5Message hand-builds a NetFlow v5 message with n flow records.
func v5Message(n int) []byte {
	b := binary.BigEndian.AppendUint16(nil, ipfix.VersionNetFlow5)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	b = binary.BigEndian.AppendUint32(b, 3_600_000)               // sys_uptime
	b = binary.BigEndian.AppendUint32(b, uint32(seedTime.Unix())) // unix_secs
	b = binary.BigEndian.AppendUint32(b, 500_000_000)             // unix_nsecs
	b = binary.BigEndian.AppendUint32(b, 42)                      // flow_sequence
	b = append(b, 1, 2)                                           // engine type, id
	b = binary.BigEndian.AppendUint16(b, 0x4064)                  // sampling
	for i := range n {
		b = append(b, 10, 0, 0, byte(i)) // srcaddr
		b = append(b, 10, 0, 1, byte(i)) // dstaddr
		b = append(b, 10, 0, 2, 1)       // nexthop
		b = binary.BigEndian.AppendUint16(b, 3)
		b = binary.BigEndian.AppendUint16(b, 4)
		b = binary.BigEndian.AppendUint32(b, uint32(10+i))   // dPkts
		b = binary.BigEndian.AppendUint32(b, uint32(1000*i)) // dOctets
		b = binary.BigEndian.AppendUint32(b, 3_500_000)      // First
		b = binary.BigEndian.AppendUint32(b, 3_599_000)      // Last
		b = binary.BigEndian.AppendUint16(b, uint16(40000+i))
		b = binary.BigEndian.AppendUint16(b, 53)
		b = append(b, 0, 0x1b, 17, 0xb8) // pad, flags, proto, tos
		b = binary.BigEndian.AppendUint16(b, 64500)
		b = binary.BigEndian.AppendUint16(b, 64501)
		b = append(b, 24, 16, 0, 0)
	}
	return b
}

// ---------------------------------------------------------------------------
// Seeds from captures.

var (
	capturesOnce sync.Once
	captures     [][]byte
)

// captureMessages returns the UDP payloads of ../../testdata/captures/*.pcap
// and the messages of *.ipfix files there. Missing or unreadable files are
// skipped: the folder is filled by another job.
func captureMessages() [][]byte {
	capturesOnce.Do(func() {
		dir := filepath.Join("..", "..", "testdata", "captures")
		for _, pat := range []string{"*.pcap", "*.pcapng"} {
			paths, _ := filepath.Glob(filepath.Join(dir, pat))
			for _, p := range paths {
				captures = append(captures, readCapture(p)...)
			}
		}
		paths, _ := filepath.Glob(filepath.Join(dir, "*.ipfix"))
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			for len(b) >= ipfix.HeaderLenIPFIX {
				n := int(binary.BigEndian.Uint16(b[2:]))
				if n < ipfix.HeaderLenIPFIX || n > len(b) {
					break
				}
				captures = append(captures, b[:n:n])
				b = b[n:]
			}
		}
	})
	return captures
}

func readCapture(path string) [][]byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	r, err := pcap.NewReader(f)
	if err != nil {
		return nil
	}
	var out [][]byte
	var d pcap.Datagram
	for r.Next(&d) == nil {
		out = append(out, bytes.Clone(d.Payload))
	}
	return out
}

// allSeedMessages is what the message fuzzers start from.
func allSeedMessages(tb testing.TB) [][]byte {
	return append(builtMessages(tb), captureMessages()...)
}

// ---------------------------------------------------------------------------
// Reference decoding and invariant checks.

// endAligned returns a copy of b that ends exactly where its heap
// allocation ends, so that a pointer computed past the end of the input is
// caught by checkptr (go test -race, or -gcflags=all=-d=checkptr) the way a
// bounds check would catch an index.
func endAligned(b []byte) []byte {
	buf := append([]byte(nil), b...) // capacity rounded up to the size class
	buf = buf[:cap(buf)]
	out := buf[len(buf)-len(b):]
	copy(out, b)
	return out
}

// sliceOffset returns where inner starts in outer, if inner lies within it.
// Empty slices carry no position and are reported as lying within.
func sliceOffset(outer, inner []byte) (int, bool) {
	if len(inner) == 0 {
		return 0, true
	}
	o := uintptr(unsafe.Pointer(unsafe.SliceData(outer)))
	i := uintptr(unsafe.Pointer(unsafe.SliceData(inner)))
	if i < o || i-o > uintptr(len(outer)) || int(i-o)+len(inner) > len(outer) {
		return 0, false
	}
	return int(i - o), true
}

func isAllZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// checkSentinel fails unless err is one of the package's sentinel errors
// with a reason, and one of allowed if any are given.
func checkSentinel(tb testing.TB, err error, allowed ...*ipfix.Error) {
	tb.Helper()
	var e *ipfix.Error
	if !errors.As(err, &e) {
		tb.Fatalf("error %v (%T) is not an *ipfix.Error", err, err)
	}
	if e.Reason() == "" || e.Error() == "" {
		tb.Fatalf("error %q has an empty reason", e.Error())
	}
	if ipfix.Reason(err) != e.Reason() {
		tb.Fatalf("Reason(%v) = %q, want %q", err, ipfix.Reason(err), e.Reason())
	}
	known := false
	for _, s := range ipfix.Errors {
		known = known || s == e
	}
	if !known {
		tb.Fatalf("error %v is not listed in ipfix.Errors", err)
	}
	if len(allowed) == 0 {
		return
	}
	for _, a := range allowed {
		if errors.Is(err, a) {
			return
		}
	}
	tb.Fatalf("error %v (%s) is not one of the errors this step may return", err, e.Reason())
}

// refUint computes a big-endian unsigned value bit by bit, keeping the last
// 64 bits like the codec's accessor.
func refUint(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		for bit := 7; bit >= 0; bit-- {
			v = v<<1 | uint64(c>>uint(bit)&1)
		}
	}
	return v
}

// refInt computes a two's complement value of len(b) octets (the last 8 if
// longer) bit by bit: the sign bit weighs -2^(n-1).
func refInt(b []byte) int64 {
	if len(b) > 8 {
		b = b[len(b)-8:]
	}
	if len(b) == 0 {
		return 0
	}
	v := -int64(b[0] >> 7)
	first := true
	for _, c := range b {
		for bit := 7; bit >= 0; bit-- {
			if first {
				first = false
				continue
			}
			v = v*2 + int64(c>>uint(bit)&1)
		}
	}
	return v
}

// refNTP decodes an NTP timestamp with rounding to the nearest nanosecond,
// masking the low 11 fraction bits for dateTimeMicroseconds.
func refNTP(b []byte, micro bool) time.Time {
	sec := int64(refUint(b[:4])) - 2208988800
	frac := refUint(b[4:8])
	if micro {
		frac &^= 1<<11 - 1
	}
	prod := frac * 1_000_000_000
	ns := prod >> 32
	if prod&(1<<32-1) >= 1<<31 {
		ns++
	}
	return time.Unix(sec, int64(ns)).UTC()
}

// refField is a field's place in a record found by the reference walk.
type refField struct{ off, n int }

// refRecord walks one record of l at the start of b the way RFC 7011
// section 7 describes it, and returns the field positions and the record
// length, or the error a decoder must report. ok is false when b is
// shorter than a record can be (the iteration ends there silently).
func refRecord(l *ipfix.Layout, b []byte, pos []refField) (_ []refField, size int, err error, ok bool) {
	pos = pos[:0]
	if l.RecordLen > 0 && len(b) < l.RecordLen || len(b) < l.MinLen {
		return pos, 0, nil, false
	}
	off := 0
	for _, f := range l.Fields {
		n := int(f.Length)
		if f.Length == ipfix.VarLen {
			if off >= len(b) {
				return pos, 0, ipfix.ErrShortRecord, true
			}
			n = int(b[off])
			off++
			if n == 255 {
				if off+2 > len(b) {
					return pos, 0, ipfix.ErrShortRecord, true
				}
				n = int(b[off])<<8 | int(b[off+1])
				off += 2
			}
			if off+n > len(b) {
				return pos, 0, ipfix.ErrVarlenLength, true
			}
		} else if off+n > len(b) {
			return pos, 0, ipfix.ErrShortRecord, true
		}
		pos = append(pos, refField{off, n})
		off += n
	}
	return pos, off, nil, true
}

// checker holds scratch space for the checks of one fuzz input.
type checker struct {
	tb  testing.TB
	pos []refField
}

// checkLayout verifies a compiled layout against the template record.
func (c *checker) checkLayout(l *ipfix.Layout, t *ipfix.TemplateRecord) {
	tb := c.tb
	tb.Helper()
	if l.ID != t.ID || l.Options != t.Options || l.V9 != t.V9 || l.ScopeCount != int(t.ScopeCount) {
		tb.Fatalf("layout header %d/%v/%v/%d, template %d/%v/%v/%d",
			l.ID, l.Options, l.V9, l.ScopeCount, t.ID, t.Options, t.V9, t.ScopeCount)
	}
	if len(l.Fields) != len(t.Fields) {
		tb.Fatalf("layout has %d fields, template %d", len(l.Fields), len(t.Fields))
	}
	if !bytes.Equal(l.Raw, t.Raw) {
		tb.Fatalf("layout Raw %x, template Raw %x", l.Raw, t.Raw)
	}
	if _, within := sliceOffset(t.Raw, l.Raw); within && len(l.Raw) > 0 {
		tb.Fatalf("layout Raw aliases the message buffer")
	}
	off, minLen, fixed, lists := 0, 0, true, false
	keys := make(map[string]bool, len(l.Fields))
	for i, f := range l.Fields {
		if f.FieldSpec != t.Fields[i] {
			tb.Fatalf("field %d: %+v, template %+v", i, f.FieldSpec, t.Fields[i])
		}
		if f.Scope != (i < int(t.ScopeCount)) {
			tb.Fatalf("field %d: Scope %v with %d scope fields", i, f.Scope, t.ScopeCount)
		}
		if f.IE == nil || f.IE.Name == "" {
			tb.Fatalf("field %d has no element description", i)
		}
		v9Scope := f.Scope && t.V9 && f.PEN == 0 && f.ID >= 1 && f.ID <= 5
		if v9Scope != strings.HasPrefix(f.IE.Name, "scope") {
			tb.Fatalf("field %d (%+v) named %q", i, f.FieldSpec, f.IE.Name)
		}
		if !v9Scope && (f.IE.ID != f.ID || f.IE.PEN != f.PEN) {
			tb.Fatalf("field %d (%+v) described by element %d/%d", i, f.FieldSpec, f.IE.PEN, f.IE.ID)
		}
		if f.Key == "" || keys[f.Key] {
			tb.Fatalf("field %d key %q empty or repeated", i, f.Key)
		}
		keys[f.Key] = true
		switch f.IE.Type {
		case ipfix.TypeBasicList, ipfix.TypeSubTemplateList, ipfix.TypeSubTemplateMultiList:
			lists = true
		}
		want := -1
		if fixed {
			want = off
		}
		if f.Offset != want {
			tb.Fatalf("field %d offset %d, want %d", i, f.Offset, want)
		}
		if f.Length == ipfix.VarLen {
			fixed = false
			minLen++
		} else {
			off += int(f.Length)
			minLen += int(f.Length)
		}
	}
	if l.MinLen != minLen || minLen < 1 || minLen > maxRecordLen {
		tb.Fatalf("MinLen %d, want %d in [1, %d]", l.MinLen, minLen, maxRecordLen)
	}
	wantLen := -1
	if fixed {
		wantLen = off
	}
	if l.RecordLen != wantLen {
		tb.Fatalf("RecordLen %d, want %d", l.RecordLen, wantLen)
	}
	if l.Lists != lists {
		tb.Fatalf("Lists %v, want %v", l.Lists, lists)
	}
	again, err := ipfix.Compile(t)
	if err != nil || again.Fingerprint != l.Fingerprint || !again.Equal(l) || !l.Equal(again) {
		tb.Fatalf("compiling the same template twice differs (%v)", err)
	}
	if l.String() == "" {
		tb.Fatalf("empty String")
	}
}

// checkCompileError verifies why Compile rejected t.
func (c *checker) checkCompileError(t *ipfix.TemplateRecord, err error) {
	c.tb.Helper()
	checkSentinel(c.tb, err, ipfix.ErrZeroLengthRecord, ipfix.ErrTemplateTooLarge, ipfix.ErrTemplateShort)
	minLen := 0
	for _, f := range t.Fields {
		if f.Length == ipfix.VarLen {
			minLen++
		} else {
			minLen += int(f.Length)
		}
	}
	switch {
	case errors.Is(err, ipfix.ErrZeroLengthRecord) && minLen != 0,
		errors.Is(err, ipfix.ErrTemplateTooLarge) && minLen <= maxRecordLen,
		errors.Is(err, ipfix.ErrTemplateShort) && len(t.Fields) != 0:
		c.tb.Fatalf("Compile(%+v) = %v with a minimum record length of %d", t.Fields, err, minLen)
	}
}

// checkRecord verifies every field of r against the reference walk of raw
// (Record.Raw, which must be exactly the record) and returns its length.
func (c *checker) checkRecord(r *ipfix.Record, l *ipfix.Layout, raw []byte) int {
	tb := c.tb
	tb.Helper()
	if r.Layout != l || r.NumFields() != len(l.Fields) {
		tb.Fatalf("record has layout %p with %d fields, want %p with %d", r.Layout, r.NumFields(), l, len(l.Fields))
	}
	var err error
	var ok bool
	var size int
	c.pos, size, err, ok = refRecord(l, raw, c.pos)
	if !ok || err != nil {
		tb.Fatalf("iterator returned a record the reference rejects (%v): % x", err, raw)
	}
	if size != len(raw) || cap(raw) != len(raw) {
		tb.Fatalf("record is %d octets (capacity %d), reference says %d", len(raw), cap(raw), size)
	}
	for i := range l.Fields {
		got := r.Bytes(i)
		p := c.pos[i]
		if len(got) != p.n {
			tb.Fatalf("field %d is %d octets, want %d", i, len(got), p.n)
		}
		if off, within := sliceOffset(raw, got); !within || len(got) > 0 && off != p.off {
			tb.Fatalf("field %d at offset %d (within %v), want %d", i, off, within, p.off)
		}
		checkAccessors(tb, r, i, got, l.Fields[i].IE.Type)
	}
	return size
}

// checkAccessors reads field i through every accessor and compares with
// the reference decoding of its bytes b.
func checkAccessors(tb testing.TB, r *ipfix.Record, i int, b []byte, typ ipfix.DataType) {
	tb.Helper()
	if !bytes.Equal(r.Bytes(i), b) {
		tb.Fatalf("field %d: Bytes changed between calls", i)
	}
	if got, want := r.Uint(i), refUint(b); got != want {
		tb.Fatalf("field %d: Uint(% x) = %#x, want %#x", i, b, got, want)
	}
	if got, want := r.Int(i), refInt(b); got != want {
		tb.Fatalf("field %d: Int(% x) = %d, want %d", i, b, got, want)
	}
	f := r.Float(i)
	switch len(b) {
	case 4:
		want := float64(math.Float32frombits(uint32(refUint(b))))
		if math.Float64bits(f) != math.Float64bits(want) && !(math.IsNaN(f) && math.IsNaN(want)) {
			tb.Fatalf("field %d: Float(% x) = %v, want %v", i, b, f, want)
		}
	case 8:
		if want := math.Float64frombits(refUint(b)); math.Float64bits(f) != refUint(b) {
			tb.Fatalf("field %d: Float(% x) = %v, want %v", i, b, f, want)
		}
	default:
		if !math.IsNaN(f) {
			tb.Fatalf("field %d: Float of %d octets = %v, want NaN", i, len(b), f)
		}
	}
	if got, want := r.Bool(i), len(b) == 1 && b[0] == 1; got != want {
		tb.Fatalf("field %d: Bool(% x) = %v", i, b, got)
	}
	a := r.Addr(i)
	switch len(b) {
	case 4:
		if !a.Is4() || a.As4() != [4]byte(b) {
			tb.Fatalf("field %d: Addr(% x) = %v", i, b, a)
		}
	case 16:
		if !a.Is6() || a.As16() != [16]byte(b) {
			tb.Fatalf("field %d: Addr(% x) = %v", i, b, a)
		}
	default:
		if a.IsValid() {
			tb.Fatalf("field %d: Addr of %d octets = %v, want invalid", i, len(b), a)
		}
	}
	mac := r.MAC(i)
	if len(b) == 6 && mac != [6]byte(b) || len(b) != 6 && mac != [6]byte{} {
		tb.Fatalf("field %d: MAC(% x) = % x", i, b, mac)
	}
	s := r.String(i)
	if s != string(b) {
		tb.Fatalf("field %d: String(% x) = %q", i, b, s)
	}
	if len(b) > 0 && unsafe.StringData(s) != &b[0] {
		tb.Fatalf("field %d: String copies", i)
	}
	tm, ns := r.Time(i), r.UnixNano(i)
	switch typ {
	case ipfix.TypeDateTimeMilliseconds:
		ms := refUint(b)
		if want := time.UnixMilli(int64(ms)).UTC(); !tm.Equal(want) {
			tb.Fatalf("field %d: Time(% x) = %v, want %v", i, b, tm, want)
		}
		want := int64(math.MaxInt64)
		if ms < math.MaxInt64/1_000_000 {
			want = int64(ms) * 1_000_000
		}
		if ns != want {
			tb.Fatalf("field %d: UnixNano(% x) = %d, want %d", i, b, ns, want)
		}
	case ipfix.TypeDateTimeMicroseconds, ipfix.TypeDateTimeNanoseconds:
		if len(b) != 8 {
			if !tm.IsZero() || ns != 0 {
				tb.Fatalf("field %d: %d-octet NTP time = %v / %d, want zero", i, len(b), tm, ns)
			}
			break
		}
		want := refNTP(b, typ == ipfix.TypeDateTimeMicroseconds)
		if !tm.Equal(want) || ns != want.UnixNano() {
			tb.Fatalf("field %d: Time(% x) = %v / %d, want %v / %d", i, b, tm, ns, want, want.UnixNano())
		}
	default:
		sec := refUint(b)
		if want := time.Unix(int64(sec), 0).UTC(); !tm.Equal(want) {
			tb.Fatalf("field %d: Time(% x) = %v, want %v", i, b, tm, want)
		}
		if typ == ipfix.TypeDateTimeSeconds && len(b) <= 4 && ns != int64(sec)*1e9 {
			tb.Fatalf("field %d: UnixNano(% x) = %d, want %d", i, b, ns, int64(sec)*1e9)
		}
	}
	if tm.Location() != time.UTC {
		tb.Fatalf("field %d: Time not in UTC", i)
	}
}

// checkData decodes body (a data set body or list content) with l and checks
// every record and the iterator's bookkeeping. each, if set, sees every
// record. It returns the number of records.
func (c *checker) checkData(l *ipfix.Layout, body []byte, rec *ipfix.Record, each func(*ipfix.Record)) int {
	tb := c.tb
	tb.Helper()
	it := ipfix.NewDataIter(l, body)
	consumed, n := 0, 0
	for it.Next(rec) {
		raw := rec.Raw()
		off, within := sliceOffset(body, raw)
		if !within || off != consumed || len(raw) == 0 {
			tb.Fatalf("record %d at offset %d (within %v, %d octets), want offset %d", n, off, within, len(raw), consumed)
		}
		consumed += c.checkRecord(rec, l, raw)
		n++
		if each != nil {
			each(rec)
		}
	}
	rest := body[consumed:]
	_, _, refErr, ok := refRecord(l, rest, c.pos)
	if err := it.Err(); err != nil {
		checkSentinel(tb, err, ipfix.ErrShortRecord, ipfix.ErrVarlenLength)
		if len(it.Remaining()) != 0 {
			tb.Fatalf("Remaining is %d octets after %v", len(it.Remaining()), err)
		}
		if !errors.Is(err, refErr) {
			tb.Fatalf("iterator failed with %v at offset %d, reference says %v", err, consumed, refErr)
		}
		return n
	}
	if ok {
		tb.Fatalf("iterator stopped at offset %d of %d, reference sees a record (%v)", consumed, len(body), refErr)
	}
	rem := it.Remaining()
	if off, within := sliceOffset(body, rem); !within || len(rem) > 0 && off != consumed || consumed+len(rem) != len(body) {
		tb.Fatalf("consumed %d + Remaining %d != set body %d", consumed, len(rem), len(body))
	}
	return n
}

// layoutMap resolves template IDs for jsonl.
type layoutMap map[uint16]*ipfix.Layout

func (m layoutMap) Resolve(id uint16) *ipfix.Layout { return m[id] }

// maxLayoutsPerSet bounds how many layouts a data set is decoded with.
const maxLayoutsPerSet = 6

// walker decodes one fuzz input the way a collector would, and every data
// set also with the other layouts compiled from the same input.
type walker struct {
	checker
	msg     ipfix.Message
	all     []*ipfix.Layout // every layout compiled, in order
	current layoutMap       // templates in force (withdrawals applied)
	tr      ipfix.TemplateRecord
	rec     ipfix.Record
	js      []byte
	records int // records decoded with the template in force
}

func newWalker(tb testing.TB) *walker {
	return &walker{checker: checker{tb: tb}, current: layoutMap{}}
}

// message checks one message at the start of input and returns its length
// (0 when the header is rejected).
func (w *walker) message(input []byte) int {
	tb := w.tb
	tb.Helper()
	m := &w.msg
	if err := m.Decode(input); err != nil {
		checkSentinel(tb, err, ipfix.ErrShortMessage, ipfix.ErrVersion, ipfix.ErrMessageLength, ipfix.ErrV5Count)
		w.checkHeaderError(input, err)
		return 0
	}
	hdr := w.checkHeader(input)
	body := m.Body()
	if off, within := sliceOffset(input, body); !within || len(body) > 0 && off != hdr || len(body) != m.Length-hdr {
		tb.Fatalf("body at %d, %d octets; header %d, length %d", off, len(body), hdr, m.Length)
	}
	if m.Version == ipfix.VersionNetFlow5 {
		w.v5()
		return m.Length
	}
	sets := m.Sets()
	var s ipfix.Set
	pos := 0
	for sets.Next(&s) {
		if len(body)-pos < ipfix.SetHeaderLen {
			tb.Fatalf("set at %d with %d octets left", pos, len(body)-pos)
		}
		id, n := binary.BigEndian.Uint16(body[pos:]), int(binary.BigEndian.Uint16(body[pos+2:]))
		if s.ID != id || len(s.Body) != n-ipfix.SetHeaderLen {
			tb.Fatalf("set %d/%d octets, wire says %d/%d", s.ID, len(s.Body)+4, id, n)
		}
		if off, within := sliceOffset(body, s.Body); !within || len(s.Body) > 0 && off != pos+4 {
			tb.Fatalf("set body at %d, want %d", off, pos+4)
		}
		if want := refSetKind(id, m.Version == ipfix.VersionNetFlow9); s.Kind != want {
			tb.Fatalf("set %d of kind %d, want %d", id, s.Kind, want)
		}
		pos += n
		switch s.Kind {
		case ipfix.SetTemplate, ipfix.SetOptionsTemplate:
			w.templates(&s)
		case ipfix.SetData:
			w.data(&s)
		}
	}
	rest := body[pos:]
	if err := sets.Err(); err != nil {
		checkSentinel(tb, err, ipfix.ErrShortSet, ipfix.ErrSetLength)
		if isAllZero(rest) {
			tb.Fatalf("%v on zero padding", err)
		}
		if (len(rest) < 4) != errors.Is(err, ipfix.ErrShortSet) {
			tb.Fatalf("%v on %d trailing octets", err, len(rest))
		}
	} else if !isAllZero(rest) {
		tb.Fatalf("set walk ended cleanly before % x", rest)
	}
	return m.Length
}

func refSetKind(id uint16, v9 bool) ipfix.SetKind {
	switch {
	case id >= 256:
		return ipfix.SetData
	case v9 && id == 0 || !v9 && id == 2:
		return ipfix.SetTemplate
	case v9 && id == 1 || !v9 && id == 3:
		return ipfix.SetOptionsTemplate
	}
	return ipfix.SetReserved
}

// checkHeader compares the decoded header with the wire and returns the
// header length.
func (w *walker) checkHeader(b []byte) int {
	tb, m := w.tb, &w.msg
	be := binary.BigEndian
	if m.Length > len(b) || m.Version != be.Uint16(b) {
		tb.Fatalf("version %d, length %d of %d", m.Version, m.Length, len(b))
	}
	var hdr int
	switch m.Version {
	case ipfix.VersionIPFIX:
		hdr = ipfix.HeaderLenIPFIX
		if m.Length != int(be.Uint16(b[2:])) || m.ExportTime != be.Uint32(b[4:]) ||
			m.Sequence != be.Uint32(b[8:]) || m.DomainID != be.Uint32(b[12:]) {
			tb.Fatalf("IPFIX header %+v from % x", m, b[:hdr])
		}
	case ipfix.VersionNetFlow9:
		hdr = ipfix.HeaderLenV9
		if m.Length != len(b) || m.Count != be.Uint16(b[2:]) || m.SysUptime != be.Uint32(b[4:]) ||
			m.ExportTime != be.Uint32(b[8:]) || m.Sequence != be.Uint32(b[12:]) || m.DomainID != be.Uint32(b[16:]) {
			tb.Fatalf("v9 header %+v from % x", m, b[:hdr])
		}
	case ipfix.VersionNetFlow5:
		hdr = ipfix.HeaderLenV5
		if m.Count == 0 || m.Length != hdr+48*int(m.Count) || m.Count != be.Uint16(b[2:]) ||
			m.SysUptime != be.Uint32(b[4:]) || m.ExportTime != be.Uint32(b[8:]) ||
			m.ExportNanos != be.Uint32(b[12:]) || m.Sequence != be.Uint32(b[16:]) ||
			m.DomainID != uint32(b[20])<<8|uint32(b[21]) || m.SamplingInterval != be.Uint16(b[22:]) {
			tb.Fatalf("v5 header %+v from % x", m, b[:hdr])
		}
	default:
		tb.Fatalf("decoded unknown version %d", m.Version)
	}
	if m.Length < hdr {
		tb.Fatalf("length %d below the %d-octet header", m.Length, hdr)
	}
	return hdr
}

// checkHeaderError verifies a header rejection against the wire.
func (w *walker) checkHeaderError(b []byte, err error) {
	tb := w.tb
	bad := false
	switch {
	case len(b) < 4:
		bad = !errors.Is(err, ipfix.ErrShortMessage)
	default:
		v := binary.BigEndian.Uint16(b)
		hdr := map[uint16]int{ipfix.VersionIPFIX: 16, ipfix.VersionNetFlow9: 20, ipfix.VersionNetFlow5: 24}[v]
		switch {
		case hdr == 0:
			bad = !errors.Is(err, ipfix.ErrVersion)
		case len(b) < hdr:
			bad = !errors.Is(err, ipfix.ErrShortMessage)
		case v == ipfix.VersionIPFIX:
			n := int(binary.BigEndian.Uint16(b[2:]))
			bad = !errors.Is(err, ipfix.ErrMessageLength) || n >= 16 && n <= len(b)
		case v == ipfix.VersionNetFlow5:
			n := int(binary.BigEndian.Uint16(b[2:]))
			bad = !errors.Is(err, ipfix.ErrV5Count) || n > 0 && 24+48*n <= len(b)
		default:
			bad = true // a v9 header of 20 octets is always accepted
		}
	}
	if bad {
		tb.Fatalf("Decode(% x...) = %v", b[:min(len(b), 24)], err)
	}
}

func (w *walker) templates(s *ipfix.Set) {
	tb := w.tb
	tb.Helper()
	it := s.Templates()
	// A fresh record per set, so that the growth of Fields can be
	// checked against this set's length.
	w.tr = ipfix.TemplateRecord{}
	t := &w.tr
	pos := 0
	for it.Next(t) {
		off, within := sliceOffset(s.Body, t.Raw)
		if !within || off != pos || len(t.Raw) < 4 {
			tb.Fatalf("template record at %d (%d octets), want %d", off, len(t.Raw), pos)
		}
		pos += len(t.Raw)
		if t.Options != (s.Kind == ipfix.SetOptionsTemplate) || t.V9 != (w.msg.Version == ipfix.VersionNetFlow9) ||
			int(t.ScopeCount) > len(t.Fields) || t.ID != binary.BigEndian.Uint16(t.Raw) {
			tb.Fatalf("template record %+v in set %d", t, s.ID)
		}
		if cap(t.Fields) > len(s.Body)/2+8 {
			tb.Fatalf("Fields grew to %d in a %d-octet set", cap(t.Fields), len(s.Body))
		}
		if t.Withdrawal() {
			w.withdraw(t)
			continue
		}
		l, err := ipfix.Compile(t)
		if err != nil {
			w.checkCompileError(t, err)
			continue
		}
		w.checkLayout(l, t)
		if len(w.all) < 64 {
			w.all = append(w.all, l)
		}
		w.current[l.ID] = l
	}
	rest := s.Body[pos:]
	if err := it.Err(); err != nil {
		checkSentinel(tb, err, ipfix.ErrTemplateShort, ipfix.ErrTemplateID, ipfix.ErrScopeCount)
		if isAllZero(rest) {
			tb.Fatalf("%v on zero padding", err)
		}
		return
	}
	v9opts := s.Kind == ipfix.SetOptionsTemplate && w.msg.Version == ipfix.VersionNetFlow9
	if !isAllZero(rest) && len(rest) >= 4 && !(v9opts && (len(rest) < 6 || rest[0] == 0 && rest[1] == 0)) {
		tb.Fatalf("template walk ended cleanly before % x", rest)
	}
}

// withdraw applies a withdrawal to the templates in force, as
// decode.Decoder does.
func (w *walker) withdraw(t *ipfix.TemplateRecord) {
	if t.ID >= ipfix.MinDataSetID {
		delete(w.current, t.ID)
		return
	}
	if t.ID != ipfix.WithdrawAllTemplates && t.ID != ipfix.WithdrawAllOptionsTemplates {
		w.tb.Fatalf("withdrawal of template %d accepted", t.ID)
	}
	for id, l := range w.current {
		if l.Options == t.Options {
			delete(w.current, id)
		}
	}
}

func (w *walker) data(s *ipfix.Set) {
	if l := w.current[s.ID]; l != nil {
		w.records += w.checkData(l, s.Body, &w.rec, w.emitJSON)
	}
	tried := 0
	for _, l := range w.all {
		if l.ID == s.ID || tried >= maxLayoutsPerSet {
			continue
		}
		tried++
		w.checkData(l, s.Body, &w.rec, nil)
	}
	w.checkData(ipfix.V5Layout(), s.Body, &w.rec, nil)
}

// emitJSON encodes a record as a JSON line and checks the result.
func (w *walker) emitJSON(r *ipfix.Record) {
	meta := jsonl.Meta{Exporter: netip.MustParseAddrPort("192.0.2.1:4739"), Msg: &w.msg, Resolve: w.current}
	w.js = jsonl.AppendRecord(w.js[:0], &meta, r)
	if !json.Valid(w.js) || bytes.IndexByte(w.js, '\n') != len(w.js)-1 {
		w.tb.Fatalf("invalid JSON line: %s", w.js)
	}
}

// v5 checks the records of a NetFlow v5 message against the wire format.
func (w *walker) v5() {
	tb, m := w.tb, &w.msg
	it := m.V5Records()
	body := m.Body()
	// Offsets of the v5 record fields (Cisco's flow record format).
	offsets := [...]int{0, 4, 8, 12, 14, 16, 20, 24, 28, 32, 34, 36, 37, 38, 39, 40, 42, 44, 45, 46, 48}
	n := 0
	for it.Next(&w.rec) {
		r := &w.rec
		start, within := sliceOffset(body, r.Raw())
		if !within || start != 48*n || r.Layout != ipfix.V5Layout() || r.NumFields() != len(offsets)-1 {
			tb.Fatalf("v5 record %d at %d (within %v)", n, start, within)
		}
		rec := body[start : start+48]
		for i := range r.NumFields() {
			if off, _ := sliceOffset(rec, r.Bytes(i)); off != offsets[i] || len(r.Bytes(i)) != offsets[i+1]-offsets[i] {
				tb.Fatalf("v5 field %d at %d, %d octets", i, off, len(r.Bytes(i)))
			}
		}
		if w.checkRecord(r, ipfix.V5Layout(), r.Raw()) != 48 {
			tb.Fatalf("v5 record is not 48 octets")
		}
		if r.Addr(0) != netip.AddrFrom4([4]byte(rec[0:4])) || r.Uint(7) != refUint(rec[24:28]) ||
			r.Uint(13) != uint64(rec[38]) || r.Uint(16) != refUint(rec[42:44]) {
			tb.Fatalf("v5 record %d decoded wrongly", n)
		}
		w.emitJSON(r)
		n++
		w.records++
	}
	if n != int(m.Count) || it.Err() != nil || len(it.Remaining()) != 0 {
		tb.Fatalf("v5: %d records of %d (err %v, %d octets left)", n, m.Count, it.Err(), len(it.Remaining()))
	}
}

// crossCheck runs decode.Decoder over the same message and compares its
// record count and error with the walker's.
func (w *walker) crossCheck(input []byte, n int, setErr error) {
	d := decode.New()
	var calls int
	got, err := d.Decode(netip.MustParseAddrPort("192.0.2.1:4739"), input, func(r *decode.Record) { calls++ })
	if got != n || (err == nil) != (setErr == nil) || err != nil && !errors.Is(err, setErr) {
		w.tb.Fatalf("decode.Decoder: %d octets, %v; walker %d octets, %v", got, err, n, setErr)
	}
	if int(d.Stats.DataRecords+d.Stats.OptionsRecords) != w.records || calls != w.records {
		w.tb.Fatalf("decode.Decoder saw %d+%d records (%d calls), walker %d",
			d.Stats.DataRecords, d.Stats.OptionsRecords, calls, w.records)
	}
}

// fuzzOneMessage is the body of FuzzMessage and FuzzNetFlow9.
func fuzzOneMessage(t *testing.T, input []byte) *walker {
	w := newWalker(t)
	n := w.message(input)
	var setErr error
	if n > 0 && w.msg.Version != ipfix.VersionNetFlow5 {
		sets := w.msg.Sets()
		var s ipfix.Set
		for sets.Next(&s) {
		}
		setErr = sets.Err()
	}
	if n == 0 {
		var m ipfix.Message
		setErr = m.Decode(input)
	}
	w.crossCheck(input, n, setErr)
	return w
}

// ---------------------------------------------------------------------------
// Fuzzers.

func FuzzMessage(f *testing.F) {
	for _, m := range allSeedMessages(f) {
		f.Add(m)
	}
	f.Add([]byte{})
	f.Add([]byte{0, 10, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, input []byte) {
		fuzzOneMessage(t, endAligned(input))
	})
}

// templateSetKinds are the (version, set ID) pairs FuzzTemplateSet covers.
var templateSetKinds = [...]struct {
	version uint16
	setID   uint16 // as given to MessageWriter.BeginSet
	options bool
}{
	{ipfix.VersionIPFIX, ipfix.TemplateSetID, false},
	{ipfix.VersionIPFIX, ipfix.OptionsTemplateSetID, true},
	{ipfix.VersionNetFlow9, ipfix.TemplateSetID, false},
	{ipfix.VersionNetFlow9, ipfix.OptionsTemplateSetID, true},
}

// templateSetMessage wraps a template set body in a message of the kind.
func templateSetMessage(tb testing.TB, kind uint8, body []byte) []byte {
	k := templateSetKinds[int(kind)%len(templateSetKinds)]
	m := newBuilder(k.version, 1).begin()
	m.b = m.w.BeginSet(m.b, k.setID)
	m.b = append(m.b, body...)
	m.b = m.w.EndSet(m.b)
	return m.finish(tb)
}

// refTemplateFields parses the field specifiers of a template record's wire
// bytes (not a withdrawal) independently of TemplateIter.
func refTemplateFields(raw []byte, v9, options bool) (fields []ipfix.FieldSpec, scope int) {
	be := binary.BigEndian
	if v9 && options {
		scope = int(be.Uint16(raw[2:])) / 4
		for off := 6; off+4 <= len(raw); off += 4 {
			fields = append(fields, ipfix.FieldSpec{ID: be.Uint16(raw[off:]), Length: be.Uint16(raw[off+2:])})
		}
		return fields, scope
	}
	off := 4
	if options {
		scope, off = int(be.Uint16(raw[4:])), 6
	}
	for off < len(raw) {
		f := ipfix.FieldSpec{ID: be.Uint16(raw[off:]), Length: be.Uint16(raw[off+2:])}
		off += 4
		if !v9 && f.ID&0x8000 != 0 {
			f.ID &= 0x7fff
			f.PEN = be.Uint32(raw[off:])
			off += 4
		}
		fields = append(fields, f)
	}
	return fields, scope
}

func FuzzTemplateSet(f *testing.F) {
	for _, msg := range allSeedMessages(f) {
		var m ipfix.Message
		if m.Decode(msg) != nil || m.Version == ipfix.VersionNetFlow5 {
			continue
		}
		sets := m.Sets()
		var s ipfix.Set
		for sets.Next(&s) {
			if s.Kind == ipfix.SetTemplate || s.Kind == ipfix.SetOptionsTemplate {
				kind := uint8(s.Kind - ipfix.SetTemplate)
				if m.Version == ipfix.VersionNetFlow9 {
					kind += 2
				}
				f.Add(kind, bytes.Clone(s.Body))
			}
		}
	}
	// Withdrawals, padding, enterprise bit with PEN 0.
	f.Add(uint8(0), []byte{1, 0, 0, 0, 0, 2, 0, 0, 0, 0})
	f.Add(uint8(0), []byte{1, 0, 0, 1, 0x80, 1, 0, 8, 0, 0, 0, 0})
	f.Add(uint8(1), []byte{1, 0, 0, 2, 0, 1, 0, 149, 0, 4, 0, 1, 0, 8})
	f.Add(uint8(3), []byte{1, 0, 0, 4, 0, 4, 0, 1, 0, 4, 0, 1, 0, 8, 0, 0})
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		if len(body) > ipfix.MaxMessageLen-ipfix.HeaderLenV9-ipfix.SetHeaderLen-3 {
			body = body[:ipfix.MaxMessageLen-ipfix.HeaderLenV9-ipfix.SetHeaderLen-3]
		}
		k := templateSetKinds[int(kind)%len(templateSetKinds)]
		msg := endAligned(templateSetMessage(t, kind, body))
		w := newWalker(t)
		w.message(msg) // all the message invariants
		var m ipfix.Message
		if err := m.Decode(msg); err != nil {
			t.Fatal(err)
		}
		sets := m.Sets()
		var s ipfix.Set
		if !sets.Next(&s) {
			if len(body) != 0 {
				t.Fatalf("no set in a message with a %d-octet template set", len(body))
			}
			return
		}
		if want := ipfix.SetTemplate + ipfix.SetKind(btoi(k.options)); s.Kind != want {
			t.Fatalf("set kind %d, want %d", s.Kind, want)
		}
		it := s.Templates()
		var tr ipfix.TemplateRecord
		for it.Next(&tr) {
			roundTripTemplate(t, k.version, &tr)
		}
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// roundTripTemplate re-encodes a decoded template record with the Append
// helpers, decodes it again and compares.
func roundTripTemplate(t *testing.T, version uint16, tr *ipfix.TemplateRecord) {
	t.Helper()
	if tr.Withdrawal() {
		if raw := ipfix.AppendWithdrawal(nil, tr.ID); !bytes.Equal(raw, tr.Raw) {
			t.Fatalf("withdrawal %x re-encoded as %x", tr.Raw, raw)
		}
		return
	}
	fields, scope := refTemplateFields(tr.Raw, tr.V9, tr.Options)
	if !equalSpecs(fields, tr.Fields) || scope != int(tr.ScopeCount) {
		t.Fatalf("template %x decoded as %+v scope %d, reference %+v scope %d", tr.Raw, tr.Fields, tr.ScopeCount, fields, scope)
	}
	m := newBuilder(version, 1).begin()
	var setID uint16 = ipfix.TemplateSetID
	if tr.Options {
		setID = ipfix.OptionsTemplateSetID
	}
	m.b = m.w.BeginSet(m.b, setID)
	start := len(m.b)
	switch {
	case tr.Options && tr.V9:
		m.b = ipfix.AppendV9OptionsTemplateRecord(m.b, tr.ID, int(tr.ScopeCount), tr.Fields)
	case tr.Options:
		m.b = ipfix.AppendOptionsTemplateRecord(m.b, tr.ID, int(tr.ScopeCount), tr.Fields)
	default:
		m.b = ipfix.AppendTemplateRecord(m.b, tr.ID, tr.Fields)
	}
	enc := bytes.Clone(m.b[start:])
	m.b = m.w.EndSet(m.b)
	msg := m.finish(t)
	// Only an enterprise bit with PEN 0 re-encodes differently (shorter).
	if len(enc) == len(tr.Raw) && !bytes.Equal(enc, tr.Raw) || len(enc) > len(tr.Raw) {
		t.Fatalf("template %x re-encoded as %x", tr.Raw, enc)
	}
	var dm ipfix.Message
	if err := dm.Decode(msg); err != nil {
		t.Fatal(err)
	}
	sets := dm.Sets()
	var s ipfix.Set
	if !sets.Next(&s) {
		t.Fatalf("re-encoded message has no set: %v", sets.Err())
	}
	it := s.Templates()
	var again ipfix.TemplateRecord
	if !it.Next(&again) {
		t.Fatalf("re-encoded template %x does not decode: %v", enc, it.Err())
	}
	if again.ID != tr.ID || again.Options != tr.Options || again.V9 != tr.V9 ||
		again.ScopeCount != tr.ScopeCount || !equalSpecs(again.Fields, tr.Fields) {
		t.Fatalf("round trip: %+v became %+v", tr, again)
	}
	if !bytes.Equal(again.Raw, enc) {
		t.Fatalf("round trip Raw %x, encoded %x", again.Raw, enc)
	}
	if it.Next(&again) || it.Err() != nil {
		t.Fatalf("re-encoded set has more than one record (%v)", it.Err())
	}
	l1, err1 := ipfix.Compile(tr)
	l2, err2 := ipfix.Compile(&again)
	if (err1 == nil) != (err2 == nil) || err1 != nil && !errors.Is(err2, err1) {
		t.Fatalf("Compile: %v before, %v after the round trip", err1, err2)
	}
	if err1 == nil && (l1.Fingerprint != l2.Fingerprint || !l1.Equal(l2)) {
		t.Fatalf("fingerprint %x became %x", l1.Fingerprint, l2.Fingerprint)
	}
}

func equalSpecs(a, b []ipfix.FieldSpec) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func FuzzNetFlow9(f *testing.F) {
	for _, msg := range allSeedMessages(f) {
		if len(msg) >= ipfix.HeaderLenV9 && binary.BigEndian.Uint16(msg) == ipfix.VersionNetFlow9 {
			be := binary.BigEndian
			f.Add(be.Uint16(msg[2:]), be.Uint32(msg[4:]), be.Uint32(msg[8:]), msg[ipfix.HeaderLenV9:])
		}
	}
	f.Add(uint16(0), uint32(0), uint32(0), []byte{})
	f.Add(uint16(1), uint32(10), uint32(0xffffffff), []byte{0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, count uint16, uptime, exportTime uint32, body []byte) {
		msg := binary.BigEndian.AppendUint16(nil, ipfix.VersionNetFlow9)
		msg = binary.BigEndian.AppendUint16(msg, count)
		msg = binary.BigEndian.AppendUint32(msg, uptime)
		msg = binary.BigEndian.AppendUint32(msg, exportTime)
		msg = binary.BigEndian.AppendUint32(msg, 1234) // sequence
		msg = binary.BigEndian.AppendUint32(msg, 5)    // source ID
		msg = endAligned(append(msg, body...))
		w := fuzzOneMessage(t, msg)
		m := &w.msg
		if m.Version != ipfix.VersionNetFlow9 || m.Length != len(msg) || m.Count != count ||
			m.SysUptime != uptime || m.ExportTime != exportTime || m.DomainID != 5 {
			t.Fatalf("v9 header decoded as %+v", m)
		}
		// Uptime conversion: a flow d ms before the export, modulo the
		// 32-bit wrap, for any d below 2^31.
		export := time.Unix(int64(exportTime), 0).UTC()
		if !m.UptimeTime(uptime).Equal(export) || !m.Time().Equal(export) {
			t.Fatalf("UptimeTime(uptime) = %v, export time %v", m.UptimeTime(uptime), export)
		}
		d := uint32(len(body))*2654435761 ^ uptime
		d &= 1<<31 - 1
		if got, want := m.UptimeTime(uptime-d), export.Add(-time.Duration(d)*time.Millisecond); !got.Equal(want) {
			t.Fatalf("UptimeTime(%d - %d) = %v, want %v", uptime, d, got, want)
		}
	})
}

func FuzzNetFlow5(f *testing.F) {
	for _, msg := range allSeedMessages(f) {
		if len(msg) >= 2 && binary.BigEndian.Uint16(msg) == ipfix.VersionNetFlow5 {
			f.Add(msg)
		}
	}
	f.Add(v5Message(1))
	f.Add(v5Message(30))
	f.Add(v5Message(2)[:24+48+10])
	f.Add(append(v5Message(1), 1, 2, 3))
	f.Fuzz(func(t *testing.T, input []byte) {
		input = endAligned(input)
		w := fuzzOneMessage(t, input)
		if len(input) < 4 || binary.BigEndian.Uint16(input) != ipfix.VersionNetFlow5 {
			return
		}
		var m ipfix.Message
		err := m.Decode(input)
		count := 0
		if len(input) >= 4 {
			count = int(binary.BigEndian.Uint16(input[2:]))
		}
		valid := len(input) >= ipfix.HeaderLenV5 && count > 0 && ipfix.HeaderLenV5+48*count <= len(input)
		if (err == nil) != valid {
			t.Fatalf("Decode of a v5 message with count %d in %d octets: %v", count, len(input), err)
		}
		if err == nil && w.records != count {
			t.Fatalf("v5: %d records, header count %d", w.records, count)
		}
	})
}

// listLayouts are the layouts FuzzLists decodes list contents with; the
// resolver returns them by ID and selfList for every other ID, so
// sub-template lists can nest without end.
func listLayouts(tb testing.TB) (layoutMap, *ipfix.Layout) {
	mk := func(id uint16, fields ...ipfix.FieldSpec) *ipfix.Layout {
		l, err := ipfix.Compile(&ipfix.TemplateRecord{ID: id, Fields: fields})
		if err != nil {
			tb.Fatal(err)
		}
		return l
	}
	self := mk(256, ipfix.FieldSpec{ID: 292, Length: ipfix.VarLen})
	m := layoutMap{
		256: self,
		257: mk(257, ipfix.FieldSpec{ID: 293, Length: ipfix.VarLen}, ipfix.FieldSpec{ID: 291, Length: ipfix.VarLen}),
		258: mk(258, tplPorts...),
		259: mk(259, ipfix.FieldSpec{ID: 82, Length: ipfix.VarLen}, ipfix.FieldSpec{ID: 10, Length: 4}),
		260: mk(260, tplFiveTuple...),
		// A fixed-length self-reference: a 3-octet list header and one
		// octet of content.
		261: mk(261, ipfix.FieldSpec{ID: 292, Length: 4}, ipfix.FieldSpec{ID: 4, Length: 1}),
		262: mk(262, tplVarlen...),
	}
	return m, self
}

// selfResolver resolves the list layouts, and any other ID to the
// self-referential list layout.
type selfResolver struct {
	known layoutMap
	self  *ipfix.Layout
}

func (r selfResolver) Resolve(id uint16) *ipfix.Layout {
	if l := r.known[id]; l != nil {
		return l
	}
	return r.self
}

// maxListValue bounds list values to what a data set can hold.
const maxListValue = ipfix.MaxMessageLen - ipfix.HeaderLenIPFIX - ipfix.SetHeaderLen - 3

func FuzzLists(f *testing.F) {
	for _, v := range listSeeds() {
		f.Add(v)
	}
	f.Add([]byte{3, 0x80, 7, 0, 2, 0, 0})      // enterprise bit, PEN truncated
	f.Add([]byte{3, 0, 7, 0xff, 0xff, 255, 0}) // 255 without the two octets
	f.Add([]byte{1, 1, 2, 0, 3})               // group length below 4
	layouts, self := listLayouts(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > maxListValue {
			b = b[:maxListValue]
		}
		b = endAligned(b)
		c := &checker{tb: t}
		var rec ipfix.Record
		checkBasicList(t, b)

		// subTemplateList: the content decoded with every test layout.
		stl, err := ipfix.DecodeSubTemplateList(b)
		if (err != nil) != (len(b) < 3) {
			t.Fatalf("DecodeSubTemplateList of %d octets: %v", len(b), err)
		}
		if err != nil {
			checkSentinel(t, err, ipfix.ErrListMalformed)
		} else {
			if stl.Semantic != b[0] || stl.TemplateID != binary.BigEndian.Uint16(b[1:]) {
				t.Fatalf("subTemplateList header %+v from % x", stl, b[:3])
			}
			if off, within := sliceOffset(b, stl.Data); !within || len(stl.Data) != len(b)-3 || len(stl.Data) > 0 && off != 3 {
				t.Fatalf("subTemplateList data at %d, %d octets", off, len(stl.Data))
			}
			for _, l := range layouts {
				c.checkData(l, stl.Data, &rec, nil)
			}
		}

		// subTemplateMultiList: groups walked against the wire.
		stml, err := ipfix.DecodeSubTemplateMultiList(b)
		if (err != nil) != (len(b) < 1) {
			t.Fatalf("DecodeSubTemplateMultiList of %d octets: %v", len(b), err)
		}
		if err != nil {
			checkSentinel(t, err, ipfix.ErrListMalformed)
		} else {
			if stml.Semantic != b[0] {
				t.Fatalf("semantic %d, want %d", stml.Semantic, b[0])
			}
			it := stml.Groups()
			pos := 1
			for id, data, ok := it.Next(); ok; id, data, ok = it.Next() {
				n := int(binary.BigEndian.Uint16(b[pos+2:]))
				if id != binary.BigEndian.Uint16(b[pos:]) || len(data) != n-4 {
					t.Fatalf("group %d of %d octets at %d, wire says %d", id, len(data)+4, pos, n)
				}
				if off, within := sliceOffset(b, data); !within || len(data) > 0 && off != pos+4 {
					t.Fatalf("group data at %d, want %d", off, pos+4)
				}
				pos += n
				c.checkData(selfResolver{layouts, self}.Resolve(id), data, &rec, nil)
			}
			rest := b[pos:]
			if err := it.Err(); err != nil {
				checkSentinel(t, err, ipfix.ErrListMalformed)
				if len(rest) >= 4 && int(binary.BigEndian.Uint16(rest[2:])) >= 4 && int(binary.BigEndian.Uint16(rest[2:])) <= len(rest) {
					t.Fatalf("group walk failed on a well-formed group % x", rest[:4])
				}
			} else if len(rest) != 0 {
				t.Fatalf("group walk ended cleanly before %d octets", len(rest))
			}
		}

		// JSON of every list type, with and without a resolver, and with
		// the self-referential one. The output is bounded: each nesting
		// level adds a constant per input octet.
		metas := []*jsonl.Meta{
			nil,
			{Resolve: layouts},
			{Resolve: selfResolver{layouts, self}},
		}
		for _, id := range []uint16{291, 292, 293, 443} {
			ie := ipfix.Lookup(0, id)
			for _, meta := range metas {
				out := jsonl.AppendValue(nil, meta, ie, b, 0)
				if !json.Valid(out) {
					t.Fatalf("%s value is invalid JSON: %s", ie.Name, out)
				}
				if limit := 256 * (ipfix.MaxListDepth + 1) * (len(b) + 1); len(out) > limit {
					t.Fatalf("%s value of %d octets became %d octets of JSON", ie.Name, len(b), len(out))
				}
			}
		}
	})
}

// checkBasicList decodes b as a basicList and walks its values against the
// wire format.
func checkBasicList(t *testing.T, b []byte) {
	t.Helper()
	bl, err := ipfix.DecodeBasicList(b)
	hdr := 5
	if len(b) >= 2 && b[1]&0x80 != 0 {
		hdr = 9
	}
	wantErr := len(b) < hdr || len(b) > hdr && b[3] == 0 && b[4] == 0
	if (err != nil) != wantErr {
		t.Fatalf("DecodeBasicList(% x) = %v", b[:min(len(b), 9)], err)
	}
	if err != nil {
		checkSentinel(t, err, ipfix.ErrListMalformed)
		return
	}
	be := binary.BigEndian
	want := ipfix.FieldSpec{ID: be.Uint16(b[1:]) & 0x7fff, Length: be.Uint16(b[3:])}
	if hdr == 9 {
		want.PEN = be.Uint32(b[5:])
	}
	if bl.Semantic != b[0] || bl.Element != want {
		t.Fatalf("basicList header %+v, want %+v", bl, want)
	}
	it := bl.Values()
	pos := hdr
	for v, ok := it.Next(); ok; v, ok = it.Next() {
		n, off := int(want.Length), 0
		if want.Length == ipfix.VarLen {
			n, off = int(b[pos]), 1
			if n == 255 {
				n, off = int(be.Uint16(b[pos+1:])), 3
			}
		}
		if at, within := sliceOffset(b, v); len(v) != n || !within || n > 0 && at != pos+off {
			t.Fatalf("value at %d (%d octets), want %d (%d)", at, len(v), pos+off, n)
		}
		pos += off + n
	}
	rest := b[pos:]
	if err := it.Err(); err != nil {
		checkSentinel(t, err, ipfix.ErrListMalformed)
		if len(rest) == 0 {
			t.Fatalf("%v at the end of the list", err)
		}
	} else if len(rest) != 0 {
		t.Fatalf("value walk ended cleanly before %d octets", len(rest))
	}
}
