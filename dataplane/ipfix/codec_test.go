package ipfix_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
)

// Round trips through MessageWriter and the decoder.

// decodeRecords decodes msgs in order, compiling their templates into
// layouts (kept across messages, withdrawals applied), and calls fn for
// every data record. It fails the test on any error and returns the number
// of data records.
func decodeRecords(t *testing.T, layouts layoutMap, fn func(m *ipfix.Message, r *ipfix.Record), msgs ...[]byte) int {
	t.Helper()
	if fn == nil {
		fn = func(*ipfix.Message, *ipfix.Record) {}
	}
	n := 0
	for _, msg := range msgs {
		var m ipfix.Message
		if err := m.Decode(msg); err != nil {
			t.Fatalf("Decode: %v", err)
		}
		var r ipfix.Record
		if m.Version == ipfix.VersionNetFlow5 {
			it := m.V5Records()
			for it.Next(&r) {
				fn(&m, &r)
				n++
			}
			if it.Err() != nil {
				t.Fatal(it.Err())
			}
			continue
		}
		sets := m.Sets()
		var s ipfix.Set
		for sets.Next(&s) {
			switch s.Kind {
			case ipfix.SetTemplate, ipfix.SetOptionsTemplate:
				it := s.Templates()
				var tr ipfix.TemplateRecord
				for it.Next(&tr) {
					if tr.Withdrawal() {
						delete(layouts, tr.ID)
						continue
					}
					l, err := ipfix.Compile(&tr)
					if err != nil {
						t.Fatalf("Compile(%+v): %v", tr, err)
					}
					layouts[tr.ID] = l
				}
				if it.Err() != nil {
					t.Fatal(it.Err())
				}
			case ipfix.SetData:
				l := layouts[s.ID]
				if l == nil {
					t.Fatalf("data set for unknown template %d", s.ID)
				}
				it := s.Records(l)
				for it.Next(&r) {
					fn(&m, &r)
					n++
				}
				if it.Err() != nil {
					t.Fatal(it.Err())
				}
				if len(it.Remaining()) != 0 && !l.V9 {
					t.Fatalf("%d octets left in an IPFIX data set", len(it.Remaining()))
				}
			}
		}
		if sets.Err() != nil {
			t.Fatal(sets.Err())
		}
	}
	return n
}

// oneTemplate returns a message with template 256 of fields and one data
// set of the records made by rec.
func oneTemplate(t *testing.T, version uint16, fields []ipfix.FieldSpec, n int, rec func(b []byte, i int) []byte) []byte {
	t.Helper()
	return newBuilder(version, 1).begin().template(256, fields).data(256, n, rec).finish(t)
}

func mask(width int) uint64 {
	if width >= 8 {
		return math.MaxUint64
	}
	return 1<<(8*uint(width)) - 1
}

func TestUintWidths(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var fields []ipfix.FieldSpec
	for w := 1; w <= 8; w++ {
		fields = append(fields, ipfix.FieldSpec{ID: 1, Length: uint16(w)}) // octetDeltaCount
	}
	const n = 50
	vals := make([][8]uint64, n)
	for i := range vals {
		for w := range 8 {
			switch i {
			case 0:
				vals[i][w] = 0
			case 1:
				vals[i][w] = math.MaxUint64
			default:
				vals[i][w] = rng.Uint64()
			}
		}
	}
	msg := oneTemplate(t, ipfix.VersionIPFIX, fields, n, func(b []byte, i int) []byte {
		for w := 1; w <= 8; w++ {
			b = ipfix.AppendUint(b, vals[i][w-1], w)
		}
		return b
	})
	i := 0
	decodeRecords(t, layoutMap{}, func(_ *ipfix.Message, r *ipfix.Record) {
		for w := 1; w <= 8; w++ {
			want := vals[i][w-1] & mask(w)
			if got := r.Uint(w - 1); got != want || got != refUint(r.Bytes(w-1)) || len(r.Bytes(w-1)) != w {
				t.Fatalf("record %d width %d: Uint = %#x, want %#x", i, w, got, want)
			}
			if got := ipfix.Uint(r.Bytes(w - 1)); got != want {
				t.Fatalf("ipfix.Uint width %d = %#x, want %#x", w, got, want)
			}
		}
		i++
	}, msg)
	if i != n {
		t.Fatalf("%d records, want %d", i, n)
	}
	if got := ipfix.Uint(nil); got != 0 {
		t.Fatalf("Uint(nil) = %d", got)
	}
	// Longer than 8 octets: the last 8 count.
	if got := ipfix.Uint([]byte{0xff, 1, 2, 3, 4, 5, 6, 7, 8}); got != 0x0102030405060708 {
		t.Fatalf("Uint of 9 octets = %#x", got)
	}
}

func TestReducedSizeEncoding(t *testing.T) {
	// octetDeltaCount (unsigned64) in 4 octets, tcpControlBits
	// (unsigned16) in 1, as in tplFiveTuple.
	msg := newBuilder(ipfix.VersionIPFIX, 1).begin().template(256, tplFiveTuple).data(256, 2, appendFiveTuple).finish(t)
	i := 0
	decodeRecords(t, layoutMap{}, func(_ *ipfix.Message, r *ipfix.Record) {
		l := r.Layout
		octets, flags := l.Index(0, 1), l.Index(0, 6)
		if l.Fields[octets].IE.Type != ipfix.TypeUnsigned64 || l.Fields[flags].IE.Type != ipfix.TypeUnsigned16 {
			t.Fatalf("element types %v %v", l.Fields[octets].IE.Type, l.Fields[flags].IE.Type)
		}
		if len(r.Bytes(octets)) != 4 || r.Uint(octets) != uint64(1500*(i+1)) {
			t.Fatalf("reduced octetDeltaCount: % x = %d", r.Bytes(octets), r.Uint(octets))
		}
		if len(r.Bytes(flags)) != 1 || r.Uint(flags) != 0x12 {
			t.Fatalf("reduced tcpControlBits: % x = %d", r.Bytes(flags), r.Uint(flags))
		}
		if r.Uint(l.Index(0, 2)) != uint64(i+1) || r.Uint(l.Index(0, 7)) != uint64(1024+i) {
			t.Fatalf("record %d: packets %d, port %d", i, r.Uint(l.Index(0, 2)), r.Uint(l.Index(0, 7)))
		}
		i++
	}, msg)
	// AppendUint keeps the low octets.
	if got := ipfix.AppendUint(nil, 0x1122334455667788, 4); !bytes.Equal(got, []byte{0x55, 0x66, 0x77, 0x88}) {
		t.Fatalf("AppendUint reduced = % x", got)
	}
}

func TestIntSignExtension(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var fields []ipfix.FieldSpec
	for w := 1; w <= 8; w++ {
		fields = append(fields, ipfix.FieldSpec{ID: 434, Length: uint16(w)}) // mibObjectValueInteger
	}
	var vals [][8]int64
	for _, kind := range []string{"zero", "one", "minus one", "min", "max", "min+1", "max-1"} {
		var v [8]int64
		for w := 1; w <= 8; w++ {
			bits := 8 * uint(w)
			lo, hi := -int64(1)<<(bits-1), int64(uint64(1)<<(bits-1)-1)
			v[w-1] = map[string]int64{"zero": 0, "one": 1, "minus one": -1, "min": lo, "max": hi, "min+1": lo + 1, "max-1": hi - 1}[kind]
		}
		vals = append(vals, v)
	}
	for range 100 {
		var v [8]int64
		for w := 1; w <= 8; w++ {
			shift := 64 - 8*uint(w)
			v[w-1] = int64(rng.Uint64()<<shift) >> shift // in range for w octets
		}
		vals = append(vals, v)
	}
	msg := oneTemplate(t, ipfix.VersionIPFIX, fields, len(vals), func(b []byte, i int) []byte {
		for w := 1; w <= 8; w++ {
			b = ipfix.AppendUint(b, uint64(vals[i][w-1]), w)
		}
		return b
	})
	i := 0
	decodeRecords(t, layoutMap{}, func(_ *ipfix.Message, r *ipfix.Record) {
		for w := 1; w <= 8; w++ {
			want := vals[i][w-1]
			if got := r.Int(w - 1); got != want || got != refInt(r.Bytes(w-1)) {
				t.Fatalf("record %d width %d (% x): Int = %d, want %d", i, w, r.Bytes(w-1), got, want)
			}
		}
		i++
	}, msg)
	if ipfix.Int(nil) != 0 {
		t.Fatal("Int(nil) != 0")
	}
}

// randomLayout returns a random template: 1 to 12 fields of assorted types
// and widths (0 to 17 octets, or variable length).
func randomLayout(rng *rand.Rand) []ipfix.FieldSpec {
	pool := []ipfix.FieldSpec{
		{ID: 1}, {ID: 434}, {ID: 311}, {ID: 276}, {ID: 8}, {ID: 27}, {ID: 56},
		{ID: 82}, {ID: 313}, {ID: 150}, {ID: 152}, {ID: 154}, {ID: 156},
		{ID: 1, PEN: ipfix.ReversePEN}, {ID: 7, PEN: 9}, {ID: 600},
	}
	n := 1 + rng.IntN(12)
	fields := make([]ipfix.FieldSpec, 0, n)
	total := 0
	for range n {
		f := pool[rng.IntN(len(pool))]
		if rng.IntN(5) == 0 {
			f.Length = ipfix.VarLen
			total++
		} else {
			f.Length = uint16(rng.IntN(18))
			total += int(f.Length)
		}
		fields = append(fields, f)
	}
	if total == 0 {
		fields = append(fields, ipfix.FieldSpec{ID: 1, Length: 8})
	}
	return fields
}

// TestAccessorsRandom checks the fast accessors against the bit-by-bit
// reference on random layouts and random bytes, with both forms of varlen
// length prefix.
func TestAccessorsRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	c := &checker{tb: t}
	var rec ipfix.Record
	for iter := range 300 {
		fields := randomLayout(rng)
		l, err := ipfix.Compile(&ipfix.TemplateRecord{ID: 256, Fields: fields})
		if err != nil {
			t.Fatalf("Compile(%+v): %v", fields, err)
		}
		nrec := 1 + rng.IntN(5)
		var body []byte
		var values [][][]byte
		for range nrec {
			var vs [][]byte
			for _, f := range fields {
				n := int(f.Length)
				if f.Length == ipfix.VarLen {
					n = rng.IntN(300)
					if n < 255 && rng.IntN(4) > 0 {
						body = append(body, byte(n))
					} else {
						body = append(body, 255, byte(n>>8), byte(n))
					}
				}
				v := make([]byte, n)
				for i := range v {
					v[i] = byte(rng.Uint32())
				}
				body = append(body, v...)
				vs = append(vs, v)
			}
			values = append(values, vs)
		}
		i := 0
		got := c.checkData(l, body, &rec, func(r *ipfix.Record) {
			for j := range fields {
				if !bytes.Equal(r.Bytes(j), values[i][j]) {
					t.Fatalf("iteration %d record %d field %d: % x, want % x", iter, i, j, r.Bytes(j), values[i][j])
				}
			}
			i++
		})
		if got != nrec {
			t.Fatalf("iteration %d: %d records, want %d (%s)", iter, got, nrec, l)
		}
	}
}

func TestFloat(t *testing.T) {
	f64 := []float64{0, math.Copysign(0, -1), 1.5, -2.25e-300, math.MaxFloat64, math.SmallestNonzeroFloat64, math.Inf(1), math.Inf(-1), math.NaN()}
	f32 := []float32{0, 1.5, -3.25, math.MaxFloat32, math.SmallestNonzeroFloat32, float32(math.Inf(-1)), float32(math.NaN())}
	fields := []ipfix.FieldSpec{
		{ID: 311, Length: 8},         // samplingProbability (float64)
		{ID: 1, Length: 4, PEN: 777}, // an enterprise float32
	}
	n := max(len(f64), len(f32))
	msg := oneTemplate(t, ipfix.VersionIPFIX, fields, n, func(b []byte, i int) []byte {
		b = ipfix.AppendFloat(b, f64[i%len(f64)], 8)
		return ipfix.AppendFloat(b, float64(f32[i%len(f32)]), 4)
	})
	i := 0
	decodeRecords(t, layoutMap{}, func(_ *ipfix.Message, r *ipfix.Record) {
		want64, want32 := f64[i%len(f64)], float64(f32[i%len(f32)])
		if got := r.Float(0); math.Float64bits(got) != math.Float64bits(want64) && !(math.IsNaN(got) && math.IsNaN(want64)) {
			t.Fatalf("float64 %v decoded as %v", want64, got)
		}
		if got := r.Float(1); got != want32 && !(math.IsNaN(got) && math.IsNaN(want32)) {
			t.Fatalf("float32 %v decoded as %v", want32, got)
		}
		i++
	}, msg)
	if !math.IsNaN(ipfix.Float([]byte{1, 2})) {
		t.Fatal("Float of 2 octets is not NaN")
	}
}

func TestBool(t *testing.T) {
	wire := []byte{1, 2, 0, 3, 255}
	msg := oneTemplate(t, ipfix.VersionIPFIX, []ipfix.FieldSpec{{ID: 276, Length: 1}, {ID: 333, Length: 2}}, len(wire), func(b []byte, i int) []byte {
		return append(b, wire[i], 0, 1)
	})
	i := 0
	decodeRecords(t, layoutMap{}, func(_ *ipfix.Message, r *ipfix.Record) {
		if got := r.Bool(0); got != (wire[i] == 1) {
			t.Fatalf("boolean %d decoded as %v", wire[i], got)
		}
		if r.Bool(1) {
			t.Fatal("a 2-octet boolean decoded as true")
		}
		i++
	}, msg)
	if !bytes.Equal(ipfix.AppendBool(nil, true), []byte{1}) || !bytes.Equal(ipfix.AppendBool(nil, false), []byte{2}) {
		t.Fatal("AppendBool does not write 1/2")
	}
}

func TestAddressesAndStrings(t *testing.T) {
	fields := []ipfix.FieldSpec{
		{ID: 8, Length: 4},              // sourceIPv4Address
		{ID: 27, Length: 16},            // sourceIPv6Address
		{ID: 56, Length: 6},             // sourceMacAddress
		{ID: 82, Length: ipfix.VarLen},  // interfaceName
		{ID: 313, Length: ipfix.VarLen}, // ipHeaderPacketSection
		{ID: 82, Length: 8},             // fixed-length string, NUL padded
		{ID: 12, Length: 16},            // IPv4 element in 16 octets
	}
	v4 := netip.MustParseAddr("192.0.2.1")
	v6 := []netip.Addr{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("::ffff:198.51.100.7")}
	mac := [6]byte{0x02, 0x00, 0x5e, 0x10, 0x00, 0x01}
	name := "ge-0/0/0 ünïcode"
	octets := []byte{0x45, 0, 0, 0x28, 0xff}
	msg := oneTemplate(t, ipfix.VersionIPFIX, fields, 2, func(b []byte, i int) []byte {
		b = ipfix.AppendAddr(b, v4)
		b = ipfix.AppendAddr(b, v6[i])
		b = append(b, mac[:]...)
		b = ipfix.AppendVarlen(b, []byte(name))
		b = ipfix.AppendVarlen(b, octets)
		b = append(b, 'e', 't', 'h', '0', 0, 0, 0, 0)
		return ipfix.AppendAddr(b, v6[i])
	})
	i := 0
	decodeRecords(t, layoutMap{}, func(_ *ipfix.Message, r *ipfix.Record) {
		if got := r.Addr(0); got != v4 || !got.Is4() {
			t.Fatalf("IPv4 %v", got)
		}
		if got := r.Addr(1); got != v6[i] || !got.Is6() {
			t.Fatalf("IPv6 %v, want %v", got, v6[i])
		}
		if got := r.MAC(2); got != mac {
			t.Fatalf("MAC % x", got)
		}
		if r.Addr(2).IsValid() || r.MAC(0) != [6]byte{} {
			t.Fatal("address accessors accept the wrong width")
		}
		if got := r.String(3); got != name {
			t.Fatalf("string %q", got)
		}
		if got := r.Bytes(4); !bytes.Equal(got, octets) {
			t.Fatalf("octetArray % x", got)
		}
		if got := r.String(5); got != "eth0\x00\x00\x00\x00" {
			t.Fatalf("fixed string %q", got)
		}
		if got := r.Addr(6); got != v6[i] {
			t.Fatalf("16 octets in an IPv4 element: %v", got)
		}
		i++
	}, msg)
	if ipfix.String(nil) != "" || ipfix.Addr([]byte{1, 2, 3}).IsValid() {
		t.Fatal("String(nil) or Addr of 3 octets")
	}
}

func TestDateTimes(t *testing.T) {
	when := time.Date(2026, 11, 25, 12, 34, 56, 123456789, time.UTC)
	fields := []ipfix.FieldSpec{
		{ID: 150, Length: 4}, // flowStartSeconds
		{ID: 152, Length: 8}, // flowStartMilliseconds
		{ID: 154, Length: 8}, // flowStartMicroseconds
		{ID: 156, Length: 8}, // flowStartNanoseconds
		{ID: 152, Length: 6}, // milliseconds, reduced size
		{ID: 154, Length: 8}, // microseconds with the low 11 bits set
		{ID: 156, Length: 8}, // nanoseconds with the same bits
		{ID: 154, Length: 4}, // an NTP type of the wrong width
	}
	ntpHalf := []byte{0x83, 0xaa, 0x7e, 0x80, 0x80, 0, 0x07, 0xff} // 1970-01-01 + 0.5 s + 0x7ff/2^32 s
	msg := oneTemplate(t, ipfix.VersionIPFIX, fields, 1, func(b []byte, _ int) []byte {
		b = ipfix.AppendDateTimeSeconds(b, when)
		b = ipfix.AppendDateTimeMilliseconds(b, when)
		b = ipfix.AppendNTP(b, when)
		b = ipfix.AppendNTP(b, when)
		b = ipfix.AppendUint(b, uint64(when.UnixMilli()), 6)
		b = append(b, ntpHalf...)
		b = append(b, ntpHalf...)
		return append(b, 1, 2, 3, 4)
	})
	decodeRecords(t, layoutMap{}, func(_ *ipfix.Message, r *ipfix.Record) {
		check := func(i int, want time.Time, tolerance time.Duration) {
			t.Helper()
			got := r.Time(i)
			if d := got.Sub(want); d < -tolerance || d > tolerance || got.Location() != time.UTC {
				t.Fatalf("field %d: Time = %v, want %v (±%v)", i, got, want, tolerance)
			}
			if ns := r.UnixNano(i); ns != got.UnixNano() {
				t.Fatalf("field %d: UnixNano = %d, Time says %d", i, ns, got.UnixNano())
			}
		}
		check(0, when.Truncate(time.Second), 0)
		check(1, when.Truncate(time.Millisecond), 0)
		// 2^-32 s is 0.23 ns; microseconds drop the low 11 bits (0.48 us).
		check(2, when, 478*time.Nanosecond)
		check(3, when, time.Nanosecond)
		check(4, when.Truncate(time.Millisecond), 0)
		check(5, time.Unix(0, 500_000_000), 0)
		check(6, time.Unix(0, 500_000_477), 0)
		if r.Time(2).After(when) {
			t.Fatalf("microseconds rounded up: %v after %v", r.Time(2), when)
		}
		if !r.Time(7).IsZero() || r.UnixNano(7) != 0 {
			t.Fatalf("4-octet NTP time = %v / %d", r.Time(7), r.UnixNano(7))
		}
	}, msg)
	// The NTP era starts in 1900; the package-level decoders agree.
	era := []byte{0, 0, 0, 0, 0, 0, 0, 0}
	if got := ipfix.DateTimeNanoseconds(era); !got.Equal(time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("NTP zero = %v", got)
	}
	if got := ipfix.DateTimeMicroseconds(ntpHalf); !got.Equal(time.Unix(0, 5e8)) {
		t.Fatalf("DateTimeMicroseconds = %v", got)
	}
}

func TestVarlenLengths(t *testing.T) {
	for _, n := range []int{0, 1, 254, 255, 256, 1000, 20000} {
		v := make([]byte, n)
		for i := range v {
			v[i] = byte(i*7 + n)
		}
		enc := ipfix.AppendVarlen(nil, v)
		switch {
		case n < 255 && (len(enc) != n+1 || enc[0] != byte(n)):
			t.Fatalf("length %d encoded with prefix % x", n, enc[:min(3, len(enc))])
		case n >= 255 && (len(enc) != n+3 || enc[0] != 255 || int(binary.BigEndian.Uint16(enc[1:])) != n):
			t.Fatalf("length %d encoded with prefix % x", n, enc[:3])
		}
		fields := []ipfix.FieldSpec{{ID: 313, Length: ipfix.VarLen}, {ID: 82, Length: ipfix.VarLen}, {ID: 4, Length: 1}}
		msg := oneTemplate(t, ipfix.VersionIPFIX, fields, 2, func(b []byte, _ int) []byte {
			b = ipfix.AppendVarlen(b, v)
			// The 3-octet form is valid for short values too.
			b = append(b, 255, 0, 3, 'a', 'b', 'c')
			return append(b, 17)
		})
		recs := decodeRecords(t, layoutMap{}, func(_ *ipfix.Message, r *ipfix.Record) {
			if !bytes.Equal(r.Bytes(0), v) || r.String(1) != "abc" || r.Uint(2) != 17 {
				t.Fatalf("length %d: got %d octets, %q, %d", n, len(r.Bytes(0)), r.String(1), r.Uint(2))
			}
			if len(r.Raw()) != len(enc)+6+1 {
				t.Fatalf("length %d: record of %d octets", n, len(r.Raw()))
			}
		}, msg)
		if recs != 2 {
			t.Fatalf("length %d: %d records", n, recs)
		}
	}
}

func TestEnterpriseAndReverseElements(t *testing.T) {
	msg := newBuilder(ipfix.VersionIPFIX, 1).begin().template(256, tplEnterprise).finish(t)
	// The first specifier carries the enterprise bit and PEN 29305.
	if got := msg[specOff : specOff+8]; !bytes.Equal(got, []byte{0x80, 1, 0, 8, 0, 0, 0x72, 0x79}) {
		t.Fatalf("reverse specifier encoded as % x", got)
	}
	layouts := layoutMap{}
	decodeRecords(t, layouts, nil, msg)
	l := layouts[256]
	want := []struct {
		key     string
		typ     ipfix.DataType
		pen     uint32
		reverse bool
		known   bool
	}{
		{"reverseOctetDeltaCount", ipfix.TypeUnsigned64, ipfix.ReversePEN, true, true},
		{"reversePacketDeltaCount", ipfix.TypeUnsigned64, ipfix.ReversePEN, true, true},
		{"e12345id100", ipfix.TypeOctetArray, 12345, false, false},
		{"sourceTransportPort", ipfix.TypeUnsigned16, 0, false, true},
		{"sourceTransportPort_2", ipfix.TypeUnsigned16, 0, false, true},
	}
	for i, w := range want {
		f := l.Fields[i]
		if f.Key != w.key || f.IE.Type != w.typ || f.PEN != w.pen || f.IE.PEN != w.pen || f.IE.Reverse != w.reverse || f.IE.Known != w.known {
			t.Errorf("field %d: key %q type %v PEN %d/%d reverse %v known %v; want %+v",
				i, f.Key, f.IE.Type, f.PEN, f.IE.PEN, f.IE.Reverse, f.IE.Known, w)
		}
	}
	if l.Index(ipfix.ReversePEN, 1) != 0 || l.Index(0, 1) != -1 || l.Index(12345, 100) != 2 {
		t.Fatal("Index does not tell enterprise numbers apart")
	}
	if ie := ipfix.LookupName("reverseOctetDeltaCount"); ie == nil || ie.ID != 1 || ie.PEN != ipfix.ReversePEN {
		t.Fatalf("LookupName(reverseOctetDeltaCount) = %+v", ie)
	}
	// Values decode like the forward elements.
	data := newBuilder(ipfix.VersionIPFIX, 1).begin().data(256, 1, func(b []byte, _ int) []byte {
		b = ipfix.AppendUint(b, 1<<40, 8)
		b = ipfix.AppendUint(b, 9, 4)
		b = append(b, 'a', 'b', 'c', 'd')
		return append(b, portsRecord(53, 54)...)
	}).finish(t)
	decodeRecords(t, layouts, func(_ *ipfix.Message, r *ipfix.Record) {
		if r.Uint(0) != 1<<40 || r.Uint(1) != 9 || string(r.Bytes(2)) != "abcd" || r.Uint(3) != 53 || r.Uint(4) != 54 {
			t.Fatalf("enterprise record decoded as %d %d %q %d %d", r.Uint(0), r.Uint(1), r.Bytes(2), r.Uint(3), r.Uint(4))
		}
	}, data)
}

func TestOptionsTemplateScope(t *testing.T) {
	msg := newBuilder(ipfix.VersionIPFIX, 1).begin().optionsTemplate(300, 2, tplOptions).data(300, 1, func(b []byte, _ int) []byte {
		b = ipfix.AppendUint(b, 7, 4)
		b = ipfix.AppendUint(b, 99, 4)
		b = ipfix.AppendUint(b, 1000, 8)
		return ipfix.AppendUint(b, 20000, 8)
	}).finish(t)
	layouts := layoutMap{}
	n := decodeRecords(t, layouts, func(_ *ipfix.Message, r *ipfix.Record) {
		if r.Uint(0) != 7 || r.Uint(1) != 99 || r.Uint(2) != 1000 || r.Uint(3) != 20000 {
			t.Fatalf("options record %d %d %d %d", r.Uint(0), r.Uint(1), r.Uint(2), r.Uint(3))
		}
	}, msg)
	l := layouts[300]
	if n != 1 || !l.Options || l.ScopeCount != 2 || l.V9 {
		t.Fatalf("options layout %+v, %d records", l, n)
	}
	for i, f := range l.Fields {
		if f.Scope != (i < 2) {
			t.Errorf("field %d (%s): Scope %v", i, f.Key, f.Scope)
		}
	}
	if l.Fields[0].Key != "observationDomainId" || l.Fields[3].Key != "exportedFlowRecordTotalCount" {
		t.Fatalf("keys %q %q", l.Fields[0].Key, l.Fields[3].Key)
	}
}

func TestNetFlow9Templates(t *testing.T) {
	scopes := []ipfix.FieldSpec{{ID: 1, Length: 4}, {ID: 2, Length: 4}, {ID: 3, Length: 2}, {ID: 4, Length: 2}, {ID: 5, Length: 2}, {ID: 6, Length: 1}}
	opts := append(append([]ipfix.FieldSpec(nil), scopes...), ipfix.FieldSpec{ID: 1, Length: 8}, ipfix.FieldSpec{ID: 2, Length: 4})
	m := newBuilder(ipfix.VersionNetFlow9, 9)
	msg := m.begin().
		template(256, tplFiveTuple).
		optionsTemplate(257, len(scopes), opts).
		data(256, 3, appendFiveTuple).
		data(257, 1, func(b []byte, _ int) []byte {
			for _, f := range opts {
				b = ipfix.AppendUint(b, uint64(f.ID), int(f.Length))
			}
			return b
		}).
		finish(t)
	var hdr ipfix.Message
	if err := hdr.Decode(msg); err != nil {
		t.Fatal(err)
	}
	if hdr.Version != ipfix.VersionNetFlow9 || hdr.Count != 2+3+1 || hdr.DomainID != 9 || hdr.SysUptime != 3_600_000 || hdr.Length != len(msg) {
		t.Fatalf("v9 header %+v", hdr)
	}
	// Every v9 set is padded to 4 octets.
	sets := hdr.Sets()
	var s ipfix.Set
	for sets.Next(&s) {
		if (len(s.Body)+4)%4 != 0 {
			t.Fatalf("set %d of %d octets", s.ID, len(s.Body)+4)
		}
	}
	layouts := layoutMap{}
	n := decodeRecords(t, layouts, func(_ *ipfix.Message, r *ipfix.Record) {
		if r.Layout.ID == 257 {
			for i, f := range opts {
				if r.Uint(i) != uint64(f.ID) {
					t.Fatalf("options field %d = %d", i, r.Uint(i))
				}
			}
		}
	}, msg)
	if n != 4 {
		t.Fatalf("%d records", n)
	}
	l := layouts[257]
	wantKeys := []string{"scopeSystem", "scopeInterface", "scopeLineCard", "scopeCache", "scopeTemplate", "tcpControlBits", "octetDeltaCount", "packetDeltaCount"}
	if !l.V9 || !l.Options || l.ScopeCount != len(scopes) {
		t.Fatalf("v9 options layout %s: V9 %v Options %v ScopeCount %d", l, l.V9, l.Options, l.ScopeCount)
	}
	for i, f := range l.Fields {
		if f.Key != wantKeys[i] || f.Scope != (i < len(scopes)) {
			t.Errorf("field %d: key %q scope %v, want %q", i, f.Key, f.Scope, wantKeys[i])
		}
	}
	if l.Fields[1].IE.Type != ipfix.TypeUnsigned32 || l.Fields[0].IE.Type != ipfix.TypeOctetArray {
		t.Errorf("scope types %v %v", l.Fields[0].IE.Type, l.Fields[1].IE.Type)
	}
	if layouts[256].V9 != true || layouts[256].Options {
		t.Fatal("v9 template layout flags")
	}
}

func TestUptimeTime(t *testing.T) {
	export := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name       string
		uptime, ms uint32
		nanos      uint32
		want       time.Time
	}{
		{"same instant", 10_000, 10_000, 0, export},
		{"6 s before", 10_000, 4_000, 0, export.Add(-6 * time.Second)},
		{"after the export", 10_000, 10_500, 0, export.Add(500 * time.Millisecond)},
		{"before the uptime wrapped", 500, 0xffffff00, 0, export.Add(-756 * time.Millisecond)},
		// Differences are taken modulo 2^32 and read as signed: 0 is 1 ms
		// after 0xffffffff.
		{"across the wrap, later", 0xffffffff, 0, 0, export.Add(time.Millisecond)},
		{"half the range back", 1 << 31, 1, 0, export.Add(-(1<<31 - 1) * time.Millisecond)},
		{"v5 nanoseconds", 10_000, 9_000, 250_000_000, export.Add(-750 * time.Millisecond)},
	} {
		m := ipfix.Message{SysUptime: c.uptime, ExportTime: uint32(export.Unix()), ExportNanos: c.nanos}
		if got := m.UptimeTime(c.ms); !got.Equal(c.want) || got.Location() != time.UTC {
			t.Errorf("%s: UptimeTime(%d) with uptime %d = %v, want %v", c.name, c.ms, c.uptime, got, c.want)
		}
	}
	// Through a real header.
	m := newBuilder(ipfix.VersionNetFlow9, 1)
	m.w.SysUptime = 100
	msg := m.begin().finish(t)
	var dm ipfix.Message
	if err := dm.Decode(msg); err != nil {
		t.Fatal(err)
	}
	if got := dm.UptimeTime(1<<32 - 900); !got.Equal(seedTime.Add(-time.Second)) {
		t.Fatalf("wrapped uptime: %v", got)
	}
}

func TestNetFlow5(t *testing.T) {
	msg := append(v5Message(3), 0xde, 0xad) // trailing octets are not records
	var m ipfix.Message
	if err := m.Decode(msg); err != nil {
		t.Fatal(err)
	}
	if m.Version != 5 || m.Count != 3 || m.Length != 24+3*48 || m.SysUptime != 3_600_000 || m.ExportNanos != 5e8 ||
		m.Sequence != 42 || m.DomainID != 0x0102 || m.SamplingInterval != 0x4064 || len(m.Body()) != 3*48 {
		t.Fatalf("v5 header %+v", m)
	}
	if !m.Time().Equal(seedTime.Add(500 * time.Millisecond)) {
		t.Fatalf("v5 export time %v", m.Time())
	}
	l := ipfix.V5Layout()
	if l.RecordLen != 48 || l.ID != ipfix.V5TemplateID || !l.V9 || len(l.Fields) != 20 {
		t.Fatalf("v5 layout %s", l)
	}
	keys := []string{
		"sourceIPv4Address", "destinationIPv4Address", "ipNextHopIPv4Address", "ingressInterface", "egressInterface",
		"packetDeltaCount", "octetDeltaCount", "flowStartSysUpTime", "flowEndSysUpTime", "sourceTransportPort",
		"destinationTransportPort", "paddingOctets", "tcpControlBits", "protocolIdentifier", "ipClassOfService",
		"bgpSourceAsNumber", "bgpDestinationAsNumber", "sourceIPv4PrefixLength", "destinationIPv4PrefixLength", "paddingOctets_2",
	}
	for i, f := range l.Fields {
		if f.Key != keys[i] {
			t.Errorf("v5 field %d: %q, want %q", i, f.Key, keys[i])
		}
	}
	i := 0
	n := decodeRecords(t, nil, func(m *ipfix.Message, r *ipfix.Record) {
		got := []uint64{r.Uint(3), r.Uint(4), r.Uint(5), r.Uint(6), r.Uint(9), r.Uint(10), r.Uint(12), r.Uint(13), r.Uint(14), r.Uint(15), r.Uint(16), r.Uint(17), r.Uint(18)}
		want := []uint64{3, 4, uint64(10 + i), uint64(1000 * i), uint64(40000 + i), 53, 0x1b, 17, 0xb8, 64500, 64501, 24, 16}
		for j := range got {
			if got[j] != want[j] {
				t.Fatalf("record %d: %v, want %v", i, got, want)
			}
		}
		if r.Addr(0) != netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}) || r.Addr(2) != netip.MustParseAddr("10.0.2.1") {
			t.Fatalf("record %d: %v %v", i, r.Addr(0), r.Addr(2))
		}
		// First: 100 s before the export (uptime 3600 s, First 3500 s).
		if got := m.UptimeTime(uint32(r.Uint(7))); !got.Equal(m.Time().Add(-100 * time.Second).Truncate(time.Millisecond)) {
			t.Fatalf("record %d: First %v", i, got)
		}
		i++
	}, msg)
	if n != 3 {
		t.Fatalf("%d v5 records", n)
	}
}

func TestSequenceNumbers(t *testing.T) {
	seqOf := func(msg []byte) uint32 {
		var m ipfix.Message
		if err := m.Decode(msg); err != nil {
			t.Fatal(err)
		}
		return m.Sequence
	}
	// IPFIX counts data records sent before the message.
	m := newBuilder(ipfix.VersionIPFIX, 1)
	m.w.Sequence = 100
	msgs := [][]byte{
		m.begin().template(256, tplFiveTuple).data(256, 3, appendFiveTuple).finish(t),
		m.begin().template(257, tplPorts).finish(t),
		m.begin().data(256, 2, appendFiveTuple).data(257, 4, func(b []byte, i int) []byte { return append(b, portsRecord(1, 2)...) }).finish(t),
		m.begin().finish(t),
	}
	for i, want := range []uint32{100, 103, 103, 109} {
		if got := seqOf(msgs[i]); got != want {
			t.Errorf("IPFIX message %d: sequence %d, want %d", i, got, want)
		}
	}
	if m.w.Sequence != 109 {
		t.Errorf("IPFIX writer sequence %d, want 109", m.w.Sequence)
	}
	// v9 counts messages; the header count is template and data records.
	m = newBuilder(ipfix.VersionNetFlow9, 1)
	m.w.Sequence = 0xffffffff
	msgs = [][]byte{
		m.begin().template(256, tplFiveTuple).data(256, 3, appendFiveTuple).finish(t),
		m.begin().finish(t),
		m.begin().data(256, 2, appendFiveTuple).finish(t),
	}
	for i, want := range []struct {
		seq   uint32
		count uint16
	}{{0xffffffff, 4}, {0, 0}, {1, 2}} {
		var dm ipfix.Message
		if err := dm.Decode(msgs[i]); err != nil {
			t.Fatal(err)
		}
		if dm.Sequence != want.seq || dm.Count != want.count {
			t.Errorf("v9 message %d: sequence %d count %d, want %d %d", i, dm.Sequence, dm.Count, want.seq, want.count)
		}
	}
	if m.w.Sequence != 2 {
		t.Errorf("v9 writer sequence %d, want 2", m.w.Sequence)
	}
}

func TestMessageWriterSets(t *testing.T) {
	// An empty set is removed; IPFIX sets are not padded, v9 ones are.
	for _, version := range []uint16{ipfix.VersionIPFIX, ipfix.VersionNetFlow9} {
		m := newBuilder(version, 1).begin()
		before := len(m.b)
		m.b = m.w.BeginSet(m.b, 256)
		m.b = m.w.EndSet(m.b)
		if len(m.b) != before {
			t.Fatalf("v%d: empty set kept (%d octets)", version, len(m.b)-before)
		}
		m.data(256, 1, func(b []byte, _ int) []byte { return append(b, 1, 2, 3, 4, 5) })
		msg := m.finish(t)
		want := before + 4 + 5
		if version == ipfix.VersionNetFlow9 {
			want = before + 12
		}
		if len(msg) != want {
			t.Fatalf("v%d: message of %d octets, want %d", version, len(msg), want)
		}
	}
	// A message beyond 65535 octets is refused and removed.
	m := newBuilder(ipfix.VersionIPFIX, 1)
	m.w.Sequence = 5
	prefix := []byte("keep")
	b := m.w.Begin(bytes.Clone(prefix), 0)
	b = m.w.BeginSet(b, 256)
	b = append(b, make([]byte, 65535)...)
	b = m.w.EndSet(b)
	m.w.AddRecords(1)
	b, err := m.w.Finish(b)
	if err != ipfix.ErrMessageTooLarge || !bytes.Equal(b, prefix) || m.w.Sequence != 5 {
		t.Fatalf("oversized message: %v, %q, sequence %d", err, b[:min(len(b), 8)], m.w.Sequence)
	}
	// The largest message fits.
	b = m.w.Begin(nil, 0)
	b = m.w.BeginSet(b, 256)
	b = append(b, make([]byte, ipfix.MaxMessageLen-ipfix.HeaderLenIPFIX-ipfix.SetHeaderLen)...)
	b = m.w.EndSet(b)
	if b, err = m.w.Finish(b); err != nil || len(b) != ipfix.MaxMessageLen {
		t.Fatalf("65535-octet message: %v, %d", err, len(b))
	}
	var dm ipfix.Message
	if err := dm.Decode(b); err != nil || dm.Length != ipfix.MaxMessageLen {
		t.Fatalf("65535-octet message decodes as %d: %v", dm.Length, err)
	}
}

func compile(t *testing.T, tr ipfix.TemplateRecord) *ipfix.Layout {
	t.Helper()
	l, err := ipfix.Compile(&tr)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestFingerprint(t *testing.T) {
	base := compile(t, ipfix.TemplateRecord{ID: 256, Fields: tplFiveTuple})
	// Content-based and stable across processes: the value is part of
	// the contract (template tiers may persist it).
	const golden = 0x32c56b524fd012c1
	if base.Fingerprint != golden {
		t.Errorf("fingerprint of the five-tuple template = %#x, want %#x", base.Fingerprint, uint64(golden))
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for range 100 {
		tr := ipfix.TemplateRecord{ID: 256, Fields: randomLayout(rng), Options: rng.IntN(2) == 0, V9: rng.IntN(2) == 0}
		if tr.Options {
			tr.ScopeCount = uint16(rng.IntN(len(tr.Fields) + 1))
		}
		if got, want := compile(t, tr).Fingerprint, refFingerprint(&tr); got != want {
			t.Fatalf("fingerprint of %+v = %#x, reference %#x", tr, got, want)
		}
	}
	if other := compile(t, ipfix.TemplateRecord{ID: 4000, Fields: tplFiveTuple}); other.Fingerprint != base.Fingerprint || !other.Equal(base) {
		t.Error("the template ID changes the fingerprint")
	}
	changed := func(name string, tr ipfix.TemplateRecord) {
		t.Helper()
		if l := compile(t, tr); l.Fingerprint == base.Fingerprint || l.Equal(base) {
			t.Errorf("%s: same fingerprint", name)
		}
	}
	edit := func(fn func(f []ipfix.FieldSpec)) []ipfix.FieldSpec {
		f := append([]ipfix.FieldSpec(nil), tplFiveTuple...)
		fn(f)
		return f
	}
	changed("one length", ipfix.TemplateRecord{ID: 256, Fields: edit(func(f []ipfix.FieldSpec) { f[6].Length = 8 })})
	changed("one element", ipfix.TemplateRecord{ID: 256, Fields: edit(func(f []ipfix.FieldSpec) { f[0].ID = 27 })})
	changed("one enterprise number", ipfix.TemplateRecord{ID: 256, Fields: edit(func(f []ipfix.FieldSpec) { f[6].PEN = ipfix.ReversePEN })})
	changed("field order", ipfix.TemplateRecord{ID: 256, Fields: edit(func(f []ipfix.FieldSpec) { f[0], f[1] = f[1], f[0] })})
	changed("one field fewer", ipfix.TemplateRecord{ID: 256, Fields: tplFiveTuple[:9]})
	changed("options", ipfix.TemplateRecord{ID: 256, Options: true, Fields: tplFiveTuple})
	opt0 := compile(t, ipfix.TemplateRecord{ID: 256, Options: true, Fields: tplFiveTuple})
	opt1 := compile(t, ipfix.TemplateRecord{ID: 256, Options: true, ScopeCount: 1, Fields: tplFiveTuple})
	if opt0.Fingerprint == opt1.Fingerprint || opt0.Equal(opt1) {
		t.Error("scope count: same fingerprint")
	}
	changed("v9", ipfix.TemplateRecord{ID: 256, V9: true, Fields: tplFiveTuple})
	// Through the wire: the same template from two messages.
	layouts := [2]layoutMap{{}, {}}
	decodeRecords(t, layouts[0], nil, newBuilder(ipfix.VersionIPFIX, 1).begin().template(256, tplFiveTuple).finish(t))
	decodeRecords(t, layouts[1], nil, newBuilder(ipfix.VersionIPFIX, 2).begin().template(999, tplFiveTuple).finish(t))
	if layouts[0][256].Fingerprint != base.Fingerprint || layouts[1][999].Fingerprint != base.Fingerprint {
		t.Error("decoded templates do not share the fingerprint")
	}
}

// refFingerprint is the documented fingerprint computed with hash/fnv:
// FNV-1a 64 over little-endian words, first options<<32 | scope<<16 | v9,
// then PEN<<32 | ID<<16 | length for every field.
func refFingerprint(tr *ipfix.TemplateRecord) uint64 {
	h := fnv.New64a()
	var w [8]byte
	add := func(v uint64) {
		binary.LittleEndian.PutUint64(w[:], v)
		h.Write(w[:])
	}
	add(uint64(btoi(tr.Options))<<32 | uint64(tr.ScopeCount)<<16 | uint64(btoi(tr.V9)))
	for _, f := range tr.Fields {
		add(uint64(f.PEN)<<32 | uint64(f.ID)<<16 | uint64(f.Length))
	}
	return h.Sum64()
}

func TestDuplicateKeys(t *testing.T) {
	l := compile(t, ipfix.TemplateRecord{ID: 256, Fields: []ipfix.FieldSpec{
		{ID: 7, Length: 2}, {ID: 7, Length: 2}, {ID: 8, Length: 4}, {ID: 7, Length: 2},
		{ID: 999, Length: 1}, {ID: 999, Length: 1}, {ID: 5, Length: 1, PEN: 42}, {ID: 5, Length: 1, PEN: 42},
	}})
	want := []string{
		"sourceTransportPort", "sourceTransportPort_2", "sourceIPv4Address", "sourceTransportPort_3",
		"_ipfix_999", "_ipfix_999_2", "e42id5", "e42id5_2",
	}
	for i, f := range l.Fields {
		if f.Key != want[i] {
			t.Errorf("field %d: key %q, want %q", i, f.Key, want[i])
		}
	}
}

func TestNestedLists(t *testing.T) {
	msg := newBuilder(ipfix.VersionIPFIX, 1).begin().
		template(262, tplPorts).
		template(259, []ipfix.FieldSpec{{ID: 82, Length: ipfix.VarLen}, {ID: 10, Length: 4}}).
		template(261, tplLists).
		data(261, 1, func(b []byte, _ int) []byte {
			b = ipfix.AppendVarlen(b, basicListPorts(80, 443, 8080))
			b = ipfix.AppendVarlen(b, subTemplateList(262, portsRecord(1, 2), portsRecord(3, 4)))
			return ipfix.AppendVarlen(b, subTemplateMultiList(
				stmlGroup{262, [][]byte{portsRecord(5, 6)}},
				stmlGroup{259, [][]byte{ipfix.AppendUint(ipfix.AppendVarlen(nil, []byte("ge-0/0/0")), 7, 4)}},
			))
		}).
		finish(t)
	layouts := layoutMap{}
	var js []byte
	n := decodeRecords(t, layouts, func(m *ipfix.Message, r *ipfix.Record) {
		if !r.Layout.Lists {
			t.Fatal("layout with lists has Lists false")
		}
		// basicList of ports.
		bl, err := ipfix.DecodeBasicList(r.Bytes(0))
		if err != nil || bl.Semantic != ipfix.ListAllOf || bl.Element != (ipfix.FieldSpec{ID: 7, Length: 2}) {
			t.Fatalf("basicList %+v: %v", bl, err)
		}
		var ports []uint64
		vals := bl.Values()
		for v, ok := vals.Next(); ok; v, ok = vals.Next() {
			ports = append(ports, ipfix.Uint(v))
		}
		if vals.Err() != nil || len(ports) != 3 || ports[0] != 80 || ports[1] != 443 || ports[2] != 8080 {
			t.Fatalf("basicList values %v: %v", ports, vals.Err())
		}
		// subTemplateList of port pairs.
		sl, err := ipfix.DecodeSubTemplateList(r.Bytes(1))
		if err != nil || sl.TemplateID != 262 || sl.Semantic != ipfix.ListAllOf {
			t.Fatalf("subTemplateList %+v: %v", sl, err)
		}
		var inner ipfix.Record
		it := ipfix.NewDataIter(layouts[sl.TemplateID], sl.Data)
		var pairs []uint64
		for it.Next(&inner) {
			pairs = append(pairs, inner.Uint(0), inner.Uint(1))
		}
		if it.Err() != nil || len(pairs) != 4 || pairs[0] != 1 || pairs[3] != 4 {
			t.Fatalf("subTemplateList records %v: %v", pairs, it.Err())
		}
		// subTemplateMultiList of two groups.
		ml, err := ipfix.DecodeSubTemplateMultiList(r.Bytes(2))
		if err != nil || ml.Semantic != ipfix.ListExactlyOneOf {
			t.Fatalf("subTemplateMultiList %+v: %v", ml, err)
		}
		groups := ml.Groups()
		var got []string
		for id, data, ok := groups.Next(); ok; id, data, ok = groups.Next() {
			it := ipfix.NewDataIter(layouts[id], data)
			for it.Next(&inner) {
				switch id {
				case 262:
					got = append(got, "ports", string(rune('0'+inner.Uint(0))), string(rune('0'+inner.Uint(1))))
				case 259:
					got = append(got, inner.String(0), string(rune('0'+inner.Uint(1))))
				}
			}
			if it.Err() != nil {
				t.Fatal(it.Err())
			}
		}
		if groups.Err() != nil || strings.Join(got, " ") != "ports 5 6 ge-0/0/0 7" {
			t.Fatalf("subTemplateMultiList records %q: %v", got, groups.Err())
		}
		js = jsonl.AppendRecord(js[:0], &jsonl.Meta{Msg: m, Resolve: layouts}, r)
	}, msg)
	if n != 1 {
		t.Fatalf("%d records", n)
	}
	// And as JSON, resolved through the same templates.
	var obj struct {
		BasicList       []int
		SubTemplateList []struct {
			TemplateID               int `json:"template_id"`
			SourceTransportPort      int
			DestinationTransportPort int
		}
		SubTemplateMultiList []map[string]any
	}
	if err := json.Unmarshal(js, &obj); err != nil {
		t.Fatalf("%v: %s", err, js)
	}
	if len(obj.BasicList) != 3 || obj.BasicList[2] != 8080 || len(obj.SubTemplateList) != 2 ||
		obj.SubTemplateList[1].DestinationTransportPort != 4 || obj.SubTemplateList[0].TemplateID != 262 ||
		len(obj.SubTemplateMultiList) != 2 || obj.SubTemplateMultiList[1]["interfaceName"] != "ge-0/0/0" {
		t.Fatalf("JSON %s", js)
	}
}

// TestRecordRawIsOneRecord checks that Record.Raw is the record's own bytes,
// as documented, for fixed-length and variable-length layouts.
func TestRecordRawIsOneRecord(t *testing.T) {
	for _, c := range []struct {
		name   string
		fields []ipfix.FieldSpec
		rec    func(b []byte, i int) []byte
	}{
		{"fixed", tplFiveTuple, appendFiveTuple},
		{"varlen", tplVarlen, func(b []byte, i int) []byte { return appendVarlenRecord(b, i) }},
	} {
		msg := oneTemplate(t, ipfix.VersionIPFIX, c.fields, 3, c.rec)
		var sizes []int
		decodeRecords(t, layoutMap{}, func(_ *ipfix.Message, r *ipfix.Record) {
			sizes = append(sizes, len(r.Raw()))
		}, msg)
		fixedLen := 0
		for _, f := range tplFiveTuple {
			fixedLen += int(f.Length)
		}
		want := []int{fixedLen, fixedLen, fixedLen}
		if c.name == "varlen" {
			want = nil
			for i := range 3 {
				want = append(want, len(appendVarlenRecord(nil, i)))
			}
		}
		for i := range want {
			if sizes[i] != want[i] {
				t.Errorf("%s: record %d: len(Raw()) = %d, want %d", c.name, i, sizes[i], want[i])
			}
		}
	}
}
