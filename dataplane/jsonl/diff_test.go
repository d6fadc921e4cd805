package jsonl

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// randomSpecs returns a random template: registered elements of every
// type, mostly at their natural width, some reduced or wrong, some of
// variable length, a few enterprise and unknown ones.
func randomSpecs(rnd *rand.Rand) []ipfix.FieldSpec {
	n := 1 + rnd.IntN(14)
	specs := make([]ipfix.FieldSpec, 0, n)
	for len(specs) < n {
		s := ipfix.FieldSpec{ID: uint16(1 + rnd.IntN(500))}
		switch rnd.IntN(20) {
		case 0:
			s.PEN = ipfix.ReversePEN
		case 1:
			s.PEN = uint32(1 + rnd.IntN(10000))
		}
		if s.ID == 210 && rnd.IntN(2) == 0 {
			s.PEN = 0 // paddingOctets, left out
		}
		ie := ipfix.Lookup(s.PEN, s.ID)
		natural := uint16(4)
		if ie != nil {
			switch ie.Type {
			case ipfix.TypeUnsigned8, ipfix.TypeSigned8, ipfix.TypeBoolean:
				natural = 1
			case ipfix.TypeUnsigned16, ipfix.TypeSigned16:
				natural = 2
			case ipfix.TypeUnsigned64, ipfix.TypeSigned64, ipfix.TypeFloat64,
				ipfix.TypeDateTimeMilliseconds, ipfix.TypeDateTimeMicroseconds, ipfix.TypeDateTimeNanoseconds:
				natural = 8
			case ipfix.TypeIPv6Address:
				natural = 16
			case ipfix.TypeMACAddress:
				natural = 6
			case ipfix.TypeString, ipfix.TypeOctetArray, ipfix.TypeBasicList,
				ipfix.TypeSubTemplateList, ipfix.TypeSubTemplateMultiList:
				natural = ipfix.VarLen
			}
		}
		switch r := rnd.IntN(10); {
		case r < 7:
			s.Length = natural
		case r < 8:
			s.Length = ipfix.VarLen
		default:
			s.Length = uint16(1 + rnd.IntN(9))
		}
		specs = append(specs, s)
	}
	return specs
}

// randomValue returns a value of n octets (n is the template's length,
// VarLen for a random one) for spec; times are near base, so the time
// caches are hit and missed.
func randomValue(rnd *rand.Rand, spec ipfix.FieldSpec, base time.Time) []byte {
	n := int(spec.Length)
	if spec.Length == ipfix.VarLen {
		n = rnd.IntN(24)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rnd.Uint32())
	}
	ie := ipfix.Lookup(spec.PEN, spec.ID)
	if ie == nil || rnd.IntN(8) == 0 {
		return b // random octets, any value
	}
	near := base.Add(time.Duration(rnd.Int64N(int64(3 * time.Second))))
	switch {
	case ie.Type == ipfix.TypeDateTimeMilliseconds && n == 8:
		binary.BigEndian.PutUint64(b, uint64(near.UnixMilli()))
		if rnd.IntN(4) == 0 {
			binary.BigEndian.PutUint64(b, uint64(near.UnixMilli()/1000*1000+int64(rnd.IntN(10))*100))
		}
	case ie.Type == ipfix.TypeDateTimeSeconds && n == 4:
		binary.BigEndian.PutUint32(b, uint32(near.Unix()))
	case ie.Type == ipfix.TypeBoolean && n == 1:
		b[0] = byte(rnd.IntN(4))
	case ie.Type == ipfix.TypeString:
		const chars = "abc \"\\\n\x01é\xff\x00"
		for i := range b {
			b[i] = chars[rnd.IntN(len(chars))]
		}
	case n > 0 && n <= 8 && rnd.IntN(2) == 0:
		// Small numbers: one or two digits, the strconv fast path.
		clear(b)
		b[n-1] = byte(rnd.IntN(120))
	}
	return b
}

// The fast encoder must write what the encoder before it (ref_test.go)
// wrote, byte for byte: random templates, values and headers, one Meta
// reused across records as the mediator does, so every cache (head, plan,
// times) is hit and missed.
func TestAppendRecordMatchesReference(t *testing.T) {
	rnd := rand.New(rand.NewPCG(19, uint64(time.Now().UnixNano())))
	base := time.Now()
	exporters := []netip.AddrPort{
		netip.MustParseAddrPort("192.0.2.9:4739"), netip.MustParseAddrPort("192.0.2.10:0"),
		netip.MustParseAddrPort("[2001:db8::7]:2055"), netip.MustParseAddrPort("[fe80::1%eth0]:9995"),
	}
	var layouts []*ipfix.Layout
	res := resolverMap{}
	for i := range 40 {
		tr := ipfix.TemplateRecord{ID: uint16(256 + i), Fields: randomSpecs(rnd), V9: i%5 == 4}
		if i%7 == 3 {
			tr.Options, tr.ScopeCount = true, 1
		}
		l, err := ipfix.Compile(&tr)
		if err != nil {
			continue
		}
		layouts = append(layouts, l)
		res[l.ID] = l
	}
	var meta Meta
	ref := refMeta{Meta: &meta}
	var msg ipfix.Message
	var got, want []byte
	records := 0
	for set := range 3000 {
		l := layouts[rnd.IntN(len(layouts))]
		if set%50 == 0 || rnd.IntN(10) == 0 {
			msg = ipfix.Message{Version: ipfix.VersionIPFIX, DomainID: uint32(rnd.IntN(3)),
				ExportTime: uint32(base.Unix()) + uint32(rnd.IntN(3)), SysUptime: rnd.Uint32(), ExportNanos: uint32(rnd.IntN(1e9))}
			if l.V9 {
				msg.Version = 9
			}
			meta.Exporter = exporters[rnd.IntN(len(exporters))]
			meta.Received = 0
			if rnd.IntN(3) > 0 {
				meta.Received = base.UnixNano() + rnd.Int64N(1e9)
			}
			meta.Msg = &msg
			meta.Resolve = res
		}
		var body []byte
		for range 1 + rnd.IntN(5) {
			for _, f := range l.Fields {
				v := randomValue(rnd, f.FieldSpec, base)
				if f.Length == ipfix.VarLen {
					body = ipfix.AppendVarlen(body, v)
				} else {
					body = append(body, v...)
				}
			}
		}
		it := ipfix.NewDataIter(l, body)
		var r ipfix.Record
		for it.Next(&r) {
			got = AppendRecord(got[:0], &meta, &r)
			want = refAppendRecord(want[:0], &ref, &r)
			if !bytes.Equal(got, want) {
				t.Fatalf("template %d %v:\n got %s\nwant %s", l.ID, l.Fields, got, want)
			}
			if !json.Valid(got) {
				t.Fatalf("invalid JSON: %s", got)
			}
			records++
		}
	}
	if records < 5000 {
		t.Fatalf("only %d records compared", records)
	}
}

// Times at the edges: before 1970, the first and last instants RFC 3339
// can write and beyond, every fraction length.
func TestAppendMillisMatchesTime(t *testing.T) {
	var c timeCache
	var ref refTimeCache
	for _, ms := range []int64{0, 1, 999, 1000, -1, -999, -1000, -1001, 1764936000123, 1764936000100, 1764936000120,
		minRFC3339 * 1000, minRFC3339*1000 - 1, endRFC3339*1000 - 1, endRFC3339 * 1000, 1 << 62, -1 << 63} {
		got := string(c.appendMillis(nil, ms))
		want := `"` + string(ref.appendUTC(nil, time.UnixMilli(ms).UTC())) + `"`
		if got != want {
			t.Errorf("appendMillis(%d) = %s, want %s", ms, got, want)
		}
	}
}

func TestAppendUintMatchesStrconv(t *testing.T) {
	f := func(v uint64) {
		t.Helper()
		got := string(appendUint([]byte("x"), v))
		if want := "x" + string(refAppendUint(v)); got != want {
			t.Fatalf("appendUint(%d) = %s, want %s", v, got, want)
		}
	}
	for i := range 64 {
		for _, d := range []uint64{0, 1, 2, 9} {
			f(1<<i - d)
			f(1<<i + d)
		}
	}
	for _, p := range pow10 {
		f(p - 1)
		f(p)
		f(p + 1)
	}
	f(1<<64 - 1)
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		f(rnd.Uint64() >> rnd.IntN(64))
	}
	for v := range 256 {
		a := [4]byte{byte(v), byte(255 - v), byte(v / 3), byte(v % 10)}
		got := string(appendQuotedIPv4(nil, a))
		if want := `"` + netip.AddrFrom4(a).String() + `"`; got != want {
			t.Fatalf("appendQuotedIPv4(%v) = %s, want %s", a, got, want)
		}
	}
}
