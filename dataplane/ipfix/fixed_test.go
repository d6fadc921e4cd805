package ipfix

import (
	"bytes"
	"math"
	"testing"
)

// readAllFixed is readAll with the decoders chosen once for the layout:
// FixedIter and the width-specific accessors, which inline.
func readAllFixed(msg []byte, l *Layout, m *Message, r *Record) (sum uint64, records int) {
	if err := m.Decode(msg); err != nil {
		panic(err)
	}
	var set Set
	sets := m.Sets()
	for sets.Next(&set) {
		it, ok := l.FixedIter(set.Body)
		if !ok {
			panic("not a fixed-length layout")
		}
		for it.Next(r) {
			src, dst := r.Addr4(0), r.Addr4(1)
			sum += uint64(src.As4()[3]) + uint64(dst.As4()[3])
			sum += r.Uint(2) + r.Uint(3) + r.Uint(4) + r.Uint(5)
			sum += r.Uint(6) + r.Uint(7)
			sum += uint64(r.UnixNanoMillis(8)) + uint64(r.UnixNanoMillis(9))
			records++
		}
	}
	return sum, records
}

// FixedIter and the width-specific accessors give what DataIter and the
// general accessors give, padding included, and allocate nothing.
func TestFixedIterMatchesDataIter(t *testing.T) {
	msg, l := buildFiveTupleMessage(t, 30)
	var m Message
	var r1, r2 Record
	s1, n1 := readAll(msg, l, &m, &r1)
	s2, n2 := readAllFixed(msg, l, &m, &r2)
	if n1 != 30 || n2 != 30 || s1 != s2 {
		t.Fatalf("DataIter: %d records, sum %d; FixedIter: %d records, sum %d", n1, s1, n2, s2)
	}

	body := make([]byte, 0, 3*l.RecordLen+3)
	for i := range 3 {
		body = appendFiveTuple(body, i+250)
	}
	body = append(body, 0, 0, 0) // set padding
	d := NewDataIter(l, body)
	f, ok := l.FixedIter(body)
	if !ok {
		t.Fatal("five-tuple layout not fixed")
	}
	for d.Next(&r1) {
		if !f.Next(&r2) {
			t.Fatal("FixedIter ended early")
		}
		if !bytes.Equal(r1.Raw(), r2.Raw()) || r1.Addr(1) != r2.Addr4(1) || r1.UnixNano(9) != r2.UnixNanoMillis(9) {
			t.Fatalf("records differ: %x / %x", r1.Raw(), r2.Raw())
		}
	}
	if f.Next(&r2) || !bytes.Equal(d.Remaining(), f.Remaining()) || len(f.Remaining()) != 3 {
		t.Fatalf("FixedIter past the end, or remaining %x, want %x", f.Remaining(), d.Remaining())
	}

	// Saturates as UnixNano does.
	late := make([]byte, l.RecordLen)
	copy(late, body[:l.RecordLen])
	copy(late[l.RecordLen-8:], []byte{0xff, 0, 0, 0, 0, 0, 0, 0})
	f, _ = l.FixedIter(late)
	if !f.Next(&r2) || r2.UnixNanoMillis(9) != math.MaxInt64 {
		t.Fatalf("far future: %d", r2.UnixNanoMillis(9))
	}

	if allocs := testing.AllocsPerRun(100, func() { readAllFixed(msg, l, &m, &r2) }); allocs != 0 {
		t.Fatalf("%v allocations per message", allocs)
	}
}

// A variable-length layout has no FixedIter, and asking a width-specific
// accessor for a field of another width is a bug that panics.
func TestFixedRefusals(t *testing.T) {
	l, err := Compile(&TemplateRecord{ID: 257, Fields: varlenFields})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.FixedIter(nil); ok {
		t.Fatal("FixedIter of a variable-length layout")
	}
	var zero FixedIter
	if zero.Next(&Record{}) {
		t.Fatal("zero FixedIter yields a record")
	}
	msg, fl := buildFiveTupleMessage(t, 1)
	var m Message
	if err := m.Decode(msg); err != nil {
		t.Fatal(err)
	}
	var set Set
	sets := m.Sets()
	sets.Next(&set)
	it, _ := fl.FixedIter(set.Body)
	var r Record
	it.Next(&r)
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", name)
			}
		}()
		f()
	}
	mustPanic("Addr4 of a 2-octet port", func() { r.Addr4(2) })
	mustPanic("UnixNanoMillis of an 8-octet counter", func() { r.UnixNanoMillis(6) })
	mustPanic("UnixNanoMillis of a 4-octet address", func() { r.UnixNanoMillis(0) })
}

// BenchmarkDecodeMessageFixed is BenchmarkDecodeMessage with the decoders
// chosen once for the layout (FixedIter, Addr4, UnixNanoMillis): nothing in
// the loop over the records is a call.
func BenchmarkDecodeMessageFixed(b *testing.B) {
	msg, l := buildFiveTupleMessage(b, 30)
	var m Message
	var r Record
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	var sink uint64
	for b.Loop() {
		s, n := readAllFixed(msg, l, &m, &r)
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
