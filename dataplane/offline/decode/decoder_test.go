package decode

import (
	"net/netip"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

var (
	fields   = []ipfix.FieldSpec{{ID: 8, Length: 4}, {ID: 1, Length: 8}}
	exporter = netip.MustParseAddrPort("192.0.2.1:2055")
)

// msg builds a message of template 256 (tpl), its withdrawal (withdraw)
// and n data records.
func msg(w *ipfix.MessageWriter, tpl, withdraw bool, n int) []byte {
	b := w.Begin(nil, 1700000000)
	if tpl || withdraw {
		b = w.BeginSet(b, ipfix.TemplateSetID)
		if withdraw {
			b = ipfix.AppendWithdrawal(b, 256)
		} else {
			b = ipfix.AppendTemplateRecord(b, 256, fields)
		}
		b = w.EndSet(b)
	}
	if n > 0 {
		b = w.BeginSet(b, 256)
		for i := range n {
			b = ipfix.AppendAddr(b, netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}))
			b = ipfix.AppendUint(b, uint64(i), 8)
		}
		b = w.EndSet(b)
		w.AddRecords(n)
	}
	b, _ = w.Finish(b)
	return b
}

// Over UDP DecodeFrom ignores withdrawals, as the collector does; Decode
// takes them at their word; within a session both apply.
func TestWithdrawals(t *testing.T) {
	f := func(name string, decode func(d *Decoder, b []byte, h Handler), want [3]int) {
		t.Helper()
		d := New()
		w := &ipfix.MessageWriter{DomainID: 1}
		var got [3]int
		for i, m := range [][]byte{msg(w, true, false, 2), msg(w, false, true, 0), msg(w, false, false, 3)} {
			decode(d, m, func(*Record) { got[i]++ })
		}
		if got != want {
			t.Fatalf("%s: records per message %v, want %v", name, got, want)
		}
	}
	f("Decode", func(d *Decoder, b []byte, h Handler) { d.Decode(exporter, b, h) }, [3]int{2, 0, 0})
	f("DecodeFrom udp", func(d *Decoder, b []byte, h Handler) { d.DecodeFrom(Origin{Exporter: exporter}, b, h) }, [3]int{2, 0, 3})
	f("DecodeFrom tcp", func(d *Decoder, b []byte, h Handler) {
		d.DecodeFrom(Origin{Exporter: exporter, Session: 4}, b, h)
	}, [3]int{2, 0, 0})
}

// A session's templates are its own until it ends.
func TestSessions(t *testing.T) {
	d := New()
	n := 0
	count := func(*Record) { n++ }
	w := &ipfix.MessageWriter{DomainID: 1}
	d.DecodeFrom(Origin{Exporter: exporter, Session: 1}, msg(w, true, false, 1), count)
	d.DecodeFrom(Origin{Exporter: exporter, Session: 2}, msg(w, false, false, 1), count)
	d.DecodeFrom(Origin{Exporter: exporter}, msg(w, false, false, 1), count)
	if n != 1 || d.Stats.Errors[ipfix.Reason(ipfix.ErrUnknownTemplate)] != 2 {
		t.Fatalf("%d records, stats %+v: session 1's template served others", n, d.Stats)
	}
	d.EndSession(1)
	left := 0
	d.Layouts(func(netip.AddrPort, uint32, *ipfix.Layout) { left++ })
	if left != 0 {
		t.Fatalf("%d templates after the session ended", left)
	}
}
