package collector

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/entry"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/offline/decode"
)

// The offline decoder (DecodeFrom) scopes templates as the collector does:
// both go through template.Scoping. This differential test feeds the same
// message sequences to a collector loop and to a decode.Decoder and wants
// the same records, in the same order, from both. Sequences keep clear of
// what the two do differently on purpose: the collector holds data whose
// template has not come yet, the decoder drops it, so no template here
// arrives after data that waits for it.

// diffStep is one message from src over session (0: UDP), or the end of
// session when msg is nil.
type diffStep struct {
	src     netip.AddrPort
	session uint64
	msg     []byte
}

var (
	diffUDP  = netip.MustParseAddrPort("192.0.2.10:40000")
	diffUDP2 = netip.MustParseAddrPort("192.0.2.10:40001")
	diffTCP1 = netip.MustParseAddrPort("192.0.2.10:50001")
	diffTCP2 = netip.MustParseAddrPort("192.0.2.10:50002")
	short    = tuple[:3] // another layout of 8 octets a record
	varlen   = []ipfix.FieldSpec{{ID: 82, Length: ipfix.VarLen}, {ID: 1, Length: 8}}
	optSpecs = []ipfix.FieldSpec{{ID: 144, Length: 4}, {ID: 305, Length: 4}}
)

// msgOf builds one message of w from set builders, each given the message
// so far and returning it with one set appended.
func msgOf(w *ipfix.MessageWriter, sets ...func(b []byte) []byte) []byte {
	b := w.Begin(nil, 1700000000)
	for _, s := range sets {
		b = s(b)
	}
	b, _ = w.Finish(b)
	return b
}

func tplSet(w *ipfix.MessageWriter, id uint16, fields []ipfix.FieldSpec) func([]byte) []byte {
	return func(b []byte) []byte {
		b = w.BeginSet(b, ipfix.TemplateSetID)
		b = ipfix.AppendTemplateRecord(b, id, fields)
		w.AddTemplates(1)
		return w.EndSet(b)
	}
}

func optTplSet(w *ipfix.MessageWriter, id uint16, fields []ipfix.FieldSpec) func([]byte) []byte {
	return func(b []byte) []byte {
		b = w.BeginSet(b, ipfix.OptionsTemplateSetID)
		b = ipfix.AppendOptionsTemplateRecord(b, id, 1, fields)
		return w.EndSet(b)
	}
}

func withdrawSet(w *ipfix.MessageWriter, setID uint16, id uint16) func([]byte) []byte {
	return func(b []byte) []byte {
		b = w.BeginSet(b, setID)
		b = ipfix.AppendWithdrawal(b, id)
		return w.EndSet(b)
	}
}

// dataSet appends n tuple-shaped records (16 octets each) to a set of id;
// another template reads them its own way, which is the point.
func dataSet(w *ipfix.MessageWriter, id uint16, first, n int) func([]byte) []byte {
	return func(b []byte) []byte {
		b = w.BeginSet(b, id)
		for i := range n {
			b = appendTuple(b, first+i)
		}
		w.AddRecords(n)
		return w.EndSet(b)
	}
}

func rawSet(w *ipfix.MessageWriter, id uint16, body []byte) func([]byte) []byte {
	return func(b []byte) []byte {
		b = w.BeginSet(b, id)
		b = append(b, body...)
		w.AddRecords(1)
		return w.EndSet(b)
	}
}

func diffCases() map[string][]diffStep {
	ipfixW := func(domain uint32) *ipfix.MessageWriter { return &ipfix.MessageWriter{DomainID: domain} }
	u, t1, t2 := ipfixW(1), ipfixW(1), ipfixW(1)
	cases := map[string][]diffStep{}

	cases["udp and tcp on one address"] = []diffStep{
		{diffUDP, 0, msgOf(u, tplSet(u, 256, tuple))},
		{diffTCP1, 1, msgOf(t1, tplSet(t1, 256, short))},
		{diffUDP, 0, msgOf(u, dataSet(u, 256, 1, 3))},
		{diffTCP1, 1, msgOf(t1, dataSet(t1, 256, 10, 3))},
		{diffTCP1, 1, nil},
		{diffUDP, 0, msgOf(u, dataSet(u, 256, 20, 3))},
	}

	u, t1, t2 = ipfixW(1), ipfixW(1), ipfixW(1)
	cases["two tcp sessions of one address"] = []diffStep{
		{diffTCP1, 1, msgOf(t1, tplSet(t1, 256, tuple))},
		{diffTCP2, 2, msgOf(t2, tplSet(t2, 256, short))},
		{diffTCP1, 1, msgOf(t1, dataSet(t1, 256, 1, 2))},
		{diffTCP2, 2, msgOf(t2, dataSet(t2, 256, 5, 2))},
		{diffTCP1, 1, nil},
		{diffTCP2, 2, msgOf(t2, dataSet(t2, 256, 9, 2))},
	}

	u, u2 := ipfixW(1), ipfixW(1)
	cases["two ports of one address"] = []diffStep{
		{diffUDP, 0, msgOf(u, tplSet(u, 256, tuple))},
		{diffUDP2, 0, msgOf(u2, tplSet(u2, 256, short))},
		{diffUDP, 0, msgOf(u, dataSet(u, 256, 1, 2))},
		{diffUDP2, 0, msgOf(u2, dataSet(u2, 256, 5, 2))},
	}

	v9 := &ipfix.MessageWriter{Version: ipfix.VersionNetFlow9, DomainID: 1}
	u = ipfixW(1)
	cases["v9 and ipfix with one id"] = []diffStep{
		{diffUDP, 0, msgOf(v9, tplSet(v9, 256, tuple))},
		{diffUDP, 0, msgOf(u, tplSet(u, 256, short))},
		{diffUDP, 0, msgOf(v9, dataSet(v9, 256, 1, 2))},
		{diffUDP, 0, msgOf(u, dataSet(u, 256, 5, 2))},
	}

	u, t1, t2 = ipfixW(1), ipfixW(1), ipfixW(1)
	cases["withdrawals"] = []diffStep{
		{diffUDP, 0, msgOf(u, tplSet(u, 256, tuple))},
		{diffTCP1, 1, msgOf(t1, tplSet(t1, 256, short), tplSet(t1, 257, tuple))},
		{diffTCP1, 1, msgOf(t1, withdrawSet(t1, ipfix.TemplateSetID, 256))},
		{diffTCP1, 1, msgOf(t1, dataSet(t1, 257, 1, 2), dataSet(t1, 256, 3, 2))}, // 256 gone
		{diffTCP1, 1, msgOf(t1, withdrawSet(t1, ipfix.TemplateSetID, ipfix.WithdrawAllTemplates))},
		{diffTCP1, 1, msgOf(t1, dataSet(t1, 257, 5, 2))},                 // 257 gone too
		{diffUDP, 0, msgOf(u, withdrawSet(u, ipfix.TemplateSetID, 256))}, // ignored over UDP
		{diffUDP, 0, msgOf(u, dataSet(u, 256, 7, 2))},
		{diffTCP2, 2, msgOf(t2, optTplSet(t2, 400, optSpecs), tplSet(t2, 258, tuple))},
		{diffTCP2, 2, msgOf(t2, dataSet(t2, 400, 1, 1), dataSet(t2, 258, 1, 1))},
		{diffTCP2, 2, msgOf(t2, withdrawSet(t2, ipfix.OptionsTemplateSetID, ipfix.WithdrawAllOptionsTemplates))},
		{diffTCP2, 2, msgOf(t2, dataSet(t2, 400, 2, 1), dataSet(t2, 258, 2, 1))}, // options gone, 258 stays
		// Withdraw-all, define, withdraw-all in one message: the second
		// is a repeat, and the new template stays.
		{diffTCP2, 2, msgOf(t2, withdrawSet(t2, ipfix.TemplateSetID, ipfix.WithdrawAllTemplates),
			tplSet(t2, 259, tuple), withdrawSet(t2, ipfix.TemplateSetID, ipfix.WithdrawAllTemplates))},
		{diffTCP2, 2, msgOf(t2, dataSet(t2, 259, 3, 1))},
	}

	u = ipfixW(1)
	good := ipfix.AppendUint(ipfix.AppendVarlen(nil, []byte("ge-0/0/1")), 1, 8)
	broken := append(append([]byte(nil), good...), 30, 'x', 'y') // a varlen field longer than the set
	cases["malformed set and redefinition"] = []diffStep{
		{diffUDP, 0, msgOf(u, tplSet(u, 300, varlen), tplSet(u, 256, tuple))},
		{diffUDP, 0, msgOf(u, rawSet(u, 300, good), rawSet(u, 300, broken), dataSet(u, 256, 1, 1))},
		{diffUDP, 0, msgOf(u, tplSet(u, 256, short))},
		{diffUDP, 0, msgOf(u, dataSet(u, 256, 2, 1))},
	}
	return cases
}

func TestDecodeScopingMatchesCollector(t *testing.T) {
	for name, steps := range diffCases() {
		for _, byPort := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/scope_by_port=%v", name, byPort), func(t *testing.T) {
				got := collectorRecords(t, byPort, steps)
				want := decoderRecords(byPort, steps)
				if len(want) == 0 {
					t.Fatal("the decoder decoded nothing")
				}
				if !slices.Equal(got, want) {
					t.Fatalf("collector:\n%s\ndecoder:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
			})
		}
	}
}

func recordLine(src netip.AddrPort, version uint16, domain uint32, l *ipfix.Layout, raw []byte) string {
	return fmt.Sprintf("%s v%d d%d t%d %016x % x", src, version, domain, l.ID, l.Fingerprint, raw)
}

func collectorRecords(t *testing.T, byPort bool, steps []diffStep) []string {
	_, l := testCollector(t, Config{ScopeByPort: byPort})
	sessions := map[uint64]*tcpSession{}
	for _, s := range steps {
		if s.session == 0 {
			l.handle(s.msg, udpFrom(s.src))
			continue
		}
		ts := sessions[s.session]
		if ts == nil {
			ts = &tcpSession{id: s.session, remote: s.src, loop: l}
			sessions[s.session] = ts
		}
		if s.msg == nil {
			l.sessionClosed(ts)
			delete(sessions, s.session)
			continue
		}
		l.handle(s.msg, origin{src: s.src, transport: transportTCP, session: ts})
	}
	var out []string
	// Layouts by content and ID: two templates may share a fingerprint.
	type fpID struct {
		fp uint64
		id uint16
	}
	layouts := map[fpID]*ipfix.Layout{}
	c := l.ring.Consumer()
	var h entry.Header
	var rec ipfix.Record
	for b := c.Next(); b != nil; b = c.Next() {
		body, err := entry.Parse(b, &h)
		if err != nil {
			t.Fatal(err)
		}
		switch h.Kind {
		case entry.KindTemplate:
			var tr ipfix.TemplateRecord
			if err := ipfix.ParseTemplateRecord(body, h.Flags&entry.FlagOptions != 0, h.Flags&entry.FlagV9 != 0, &tr); err != nil {
				t.Fatal(err)
			}
			lay, err := ipfix.Compile(&tr)
			if err != nil {
				t.Fatal(err)
			}
			layouts[fpID{lay.Fingerprint, lay.ID}] = lay
		case entry.KindData:
			lay := layouts[fpID{h.Fingerprint, h.TemplateID}]
			if lay == nil {
				t.Fatalf("data entry of unannounced template %x", h.Fingerprint)
			}
			it := ipfix.NewDataIter(lay, body)
			for it.Next(&rec) {
				out = append(out, recordLine(h.Exporter, h.Version, h.Domain, lay, rec.Raw()))
			}
		}
		c.Release()
	}
	return out
}

func decoderRecords(byPort bool, steps []diffStep) []string {
	d := decode.New()
	d.ScopeByPort = byPort
	var out []string
	for _, s := range steps {
		if s.msg == nil {
			d.EndSession(s.session)
			continue
		}
		d.DecodeFrom(decode.Origin{Exporter: s.src, Session: s.session}, s.msg, func(r *decode.Record) {
			out = append(out, recordLine(r.Exporter, r.Msg.Version, r.Msg.DomainID, r.Rec.Layout, r.Rec.Raw()))
		})
	}
	return out
}
