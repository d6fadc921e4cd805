package ipfix

import (
	"net/netip"
	"testing"
	"time"
)

// fiveTuple is the 46-octet benchmark record: addresses, ports, protocol,
// TCP flags in one octet, 8-octet counters and millisecond timestamps.
var fiveTuple = []FieldSpec{
	{ID: 8, Length: 4},   // sourceIPv4Address
	{ID: 12, Length: 4},  // destinationIPv4Address
	{ID: 7, Length: 2},   // sourceTransportPort
	{ID: 11, Length: 2},  // destinationTransportPort
	{ID: 4, Length: 1},   // protocolIdentifier
	{ID: 6, Length: 1},   // tcpControlBits (reduced to 1 octet)
	{ID: 1, Length: 8},   // octetDeltaCount
	{ID: 2, Length: 8},   // packetDeltaCount
	{ID: 152, Length: 8}, // flowStartMilliseconds
	{ID: 153, Length: 8}, // flowEndMilliseconds
}

var benchStart = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// appendFiveTuple appends benchmark record i of the fiveTuple template.
func appendFiveTuple(msg []byte, i int) []byte {
	msg = AppendAddr(msg, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
	msg = AppendAddr(msg, netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}))
	msg = AppendUint(msg, uint64(1024+i), 2)
	msg = AppendUint(msg, 443, 2)
	msg = AppendUint(msg, 6, 1)
	msg = AppendUint(msg, 0x1b, 1)
	msg = AppendUint(msg, uint64(1500*(i+1)), 8)
	msg = AppendUint(msg, uint64(i+1), 8)
	msg = AppendDateTimeMilliseconds(msg, benchStart.Add(time.Duration(i)*time.Millisecond))
	return AppendDateTimeMilliseconds(msg, benchStart.Add(time.Duration(i+100)*time.Millisecond))
}

// buildFiveTupleMessage returns one IPFIX message with n data records of
// template 256 and the compiled layout.
func buildFiveTupleMessage(tb testing.TB, n int) ([]byte, *Layout) {
	return buildMessage(tb, 256, fiveTuple, n, appendFiveTuple)
}

// buildMessage returns one IPFIX message with n records of template id made
// by appendRecord, and the compiled layout.
func buildMessage(tb testing.TB, id uint16, fields []FieldSpec, n int, appendRecord func([]byte, int) []byte) ([]byte, *Layout) {
	tb.Helper()
	w := MessageWriter{DomainID: 1}
	msg := w.Begin(nil, uint32(benchStart.Unix()))
	msg = w.BeginSet(msg, id)
	for i := range n {
		msg = appendRecord(msg, i)
	}
	msg = w.EndSet(msg)
	w.AddRecords(n)
	msg, err := w.Finish(msg)
	if err != nil {
		tb.Fatal(err)
	}
	l, err := Compile(&TemplateRecord{ID: id, Fields: fields})
	if err != nil {
		tb.Fatal(err)
	}
	return msg, l
}

// readAll reads every field of every record through the typed accessors and
// returns a checksum so the work cannot be optimised away.
func readAll(msg []byte, l *Layout, m *Message, r *Record) (sum uint64, records int) {
	if err := m.Decode(msg); err != nil {
		panic(err)
	}
	var set Set
	sets := m.Sets()
	for sets.Next(&set) {
		it := set.Records(l)
		for it.Next(r) {
			src, dst := r.Addr(0), r.Addr(1)
			sum += uint64(src.As4()[3]) + uint64(dst.As4()[3])
			sum += r.Uint(2) + r.Uint(3) + r.Uint(4) + r.Uint(5)
			sum += r.Uint(6) + r.Uint(7)
			sum += uint64(r.UnixNano(8)) + uint64(r.UnixNano(9))
			records++
		}
	}
	return sum, records
}

func BenchmarkDecodeMessage(b *testing.B) {
	msg, l := buildFiveTupleMessage(b, 30)
	if len(msg) != HeaderLenIPFIX+SetHeaderLen+30*46 {
		b.Fatalf("message is %d octets", len(msg))
	}
	var m Message
	var r Record
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	var sink uint64
	for b.Loop() {
		s, n := readAll(msg, l, &m, &r)
		if n != 30 {
			b.Fatalf("decoded %d records", n)
		}
		sink += s
	}
	perRecord := float64(b.Elapsed().Nanoseconds()) / float64(b.N*30)
	b.ReportMetric(perRecord, "ns/record")
	b.ReportMetric(1e9/perRecord, "records/s")
	_ = sink
}

// varlenFields adds two variable-length strings to the benchmark record.
var varlenFields = append(append([]FieldSpec(nil), fiveTuple...),
	FieldSpec{ID: 82, Length: VarLen}, // interfaceName
	FieldSpec{ID: 83, Length: VarLen}, // interfaceDescription
)

func BenchmarkDecodeMessageVarlen(b *testing.B) {
	const n = 20
	msg, l := buildMessage(b, 257, varlenFields, n, func(msg []byte, i int) []byte {
		msg = appendFiveTuple(msg, i)
		msg = AppendVarlen(msg, []byte("GigabitEthernet0/0/1"))
		return AppendVarlen(msg, []byte("uplink to core"))
	})
	var m Message
	var r Record
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	var sink uint64
	for b.Loop() {
		if err := m.Decode(msg); err != nil {
			b.Fatal(err)
		}
		var set Set
		sets := m.Sets()
		records := 0
		for sets.Next(&set) {
			it := set.Records(l)
			for it.Next(&r) {
				sink += uint64(r.Addr(0).As4()[3]) + uint64(r.Addr(1).As4()[3])
				sink += r.Uint(2) + r.Uint(3) + r.Uint(4) + r.Uint(5) + r.Uint(6) + r.Uint(7)
				sink += uint64(r.UnixNano(8)) + uint64(r.UnixNano(9))
				sink += uint64(len(r.String(10))) + uint64(len(r.String(11)))
				records++
			}
		}
		if records != n {
			b.Fatalf("decoded %d records", records)
		}
	}
	perRecord := float64(b.Elapsed().Nanoseconds()) / float64(b.N*n)
	b.ReportMetric(perRecord, "ns/record")
	b.ReportMetric(1e9/perRecord, "records/s")
}

func TestDecodeNoAllocs(t *testing.T) {
	msg, l := buildFiveTupleMessage(t, 30)
	var m Message
	var r Record
	allocs := testing.AllocsPerRun(100, func() {
		if _, n := readAll(msg, l, &m, &r); n != 30 {
			t.Fatalf("decoded %d records", n)
		}
	})
	if allocs != 0 {
		t.Fatalf("decoding a message allocates %v times, want 0", allocs)
	}
}
