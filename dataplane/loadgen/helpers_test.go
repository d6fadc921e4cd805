package loadgen

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// decoded is what the project's decoder makes of one message.
type decoded struct {
	hdr       ipfix.Message
	templates []ipfix.TemplateRecord // in the order they came
	dataSets  []uint16               // IDs of the data sets
	early     bool                   // a data set came before its template
	records   int                    // data records of data templates
	options   int                    // records of options templates
	keys      []flowKey              // of the data records that have them
}

// flowKey is a record's source, destination and source port.
type flowKey struct {
	src, dst netip.Addr
	sport    uint16
}

// decoder decodes messages of many domains in order, keeping each domain's
// templates, and fails the test on anything the collector would reject.
type decoder struct {
	t       testing.TB
	layouts map[uint32]map[uint16]*ipfix.Layout
	// early, when not zero, is the record count of a data set that comes
	// before its template (Config.DataFirst) instead of a failure.
	early int
}

func newDecoder(t testing.TB) *decoder {
	return &decoder{t: t, layouts: map[uint32]map[uint16]*ipfix.Layout{}}
}

func (d *decoder) decode(msg []byte) decoded {
	t := d.t
	t.Helper()
	var out decoded
	if err := out.hdr.Decode(msg); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if out.hdr.Length != len(msg) {
		t.Fatalf("message length %d, want the %d octets sent", out.hdr.Length, len(msg))
	}
	layouts := d.layouts[out.hdr.DomainID]
	if layouts == nil {
		layouts = map[uint16]*ipfix.Layout{}
		d.layouts[out.hdr.DomainID] = layouts
	}
	sets := out.hdr.Sets()
	var s ipfix.Set
	for sets.Next(&s) {
		switch s.Kind {
		case ipfix.SetTemplate, ipfix.SetOptionsTemplate:
			it := s.Templates()
			var tr ipfix.TemplateRecord
			for it.Next(&tr) {
				l, err := ipfix.Compile(&tr)
				if err != nil {
					t.Fatalf("Compile(%+v): %v", tr, err)
				}
				layouts[tr.ID] = l
				kept := tr
				kept.Fields = slices.Clone(tr.Fields)
				out.templates = append(out.templates, kept)
			}
			if it.Err() != nil {
				t.Fatalf("templates: %v", it.Err())
			}
		case ipfix.SetData:
			l := layouts[s.ID]
			out.dataSets = append(out.dataSets, s.ID)
			if l == nil && d.early > 0 {
				out.early = true
				out.records += d.early
				continue
			}
			if l == nil {
				t.Fatalf("domain %d: data set %d before its template", out.hdr.DomainID, s.ID)
			}
			it := s.Records(l)
			var r ipfix.Record
			for it.Next(&r) {
				if l.Options {
					out.options++
					continue
				}
				out.records++
				if src, dst, sp := l.Index(0, 8), l.Index(0, 12), l.Index(0, 7); src >= 0 && dst >= 0 && sp >= 0 {
					out.keys = append(out.keys, flowKey{r.Addr(src), r.Addr(dst), uint16(r.Uint(sp))})
				}
			}
			if it.Err() != nil {
				t.Fatalf("records: %v", it.Err())
			}
			if rest := it.Remaining(); len(rest) > 0 && !(out.hdr.Version == ipfix.VersionNetFlow9 && len(rest) < 4) {
				t.Fatalf("set %d: %d octets after the last record", s.ID, len(rest))
			}
		default:
			t.Fatalf("set with reserved ID %d", s.ID)
		}
	}
	if sets.Err() != nil {
		t.Fatalf("sets: %v", sets.Err())
	}
	return out
}

// sequences checks that every domain's messages carry consecutive sequence
// numbers (data records for IPFIX, packets for v9) and returns each
// domain's first and next sequence numbers.
type seqCheck struct {
	t     testing.TB
	first map[uint32]uint32
	next  map[uint32]uint32
}

func newSeqCheck(t testing.TB) *seqCheck {
	return &seqCheck{t: t, first: map[uint32]uint32{}, next: map[uint32]uint32{}}
}

func (c *seqCheck) add(m decoded) {
	c.t.Helper()
	dom := m.hdr.DomainID
	want, ok := c.next[dom]
	if !ok {
		c.first[dom], want = m.hdr.Sequence, m.hdr.Sequence
	}
	if m.hdr.Sequence != want {
		c.t.Fatalf("domain %d: sequence %d, want %d", dom, m.hdr.Sequence, want)
	}
	if m.hdr.Version == ipfix.VersionNetFlow9 {
		c.next[dom] = want + 1
	} else {
		c.next[dom] = want + uint32(m.records+m.options)
	}
}

// sink replaces a Generator's sockets: it keeps a copy of every message,
// per exporter, in the order they were handed over, marking those that did
// not go. fail, when set, says how many of a batch of n go.
type sink struct {
	msgs    map[uint32][]sunk
	flushes map[uint32][]int // batch sizes handed to flush
	fail    func(e *exporter, n int) int
}

type sunk struct {
	b    []byte
	lost bool
}

func attachSink(g *Generator) *sink {
	s := &sink{msgs: map[uint32][]sunk{}, flushes: map[uint32][]int{}}
	g.write = func(e *exporter, msg []byte) error {
		s.msgs[e.domain] = append(s.msgs[e.domain], sunk{b: slices.Clone(msg)})
		return nil
	}
	g.flush = func(e *exporter, n int) (int, error) {
		s.flushes[e.domain] = append(s.flushes[e.domain], n)
		sent := n
		if s.fail != nil {
			sent = s.fail(e, n)
		}
		for i := range n {
			s.msgs[e.domain] = append(s.msgs[e.domain], sunk{b: slices.Clone(g.sender.msg(i)), lost: i >= sent})
		}
		if sent < n {
			return sent, errSinkFull
		}
		return n, nil
	}
	return s
}

var errSinkFull = errors.New("sink full")

// fakeClock stands in for the wall clock: Sleep advances it by the time
// asked plus over (a late wake-up), and every Now advances it by step.
type fakeClock struct {
	t     time.Time
	step  time.Duration
	over  time.Duration
	slept time.Duration
	naps  int
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	now := c.t
	c.t = c.t.Add(c.step)
	return now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) {
	c.t = c.t.Add(d + c.over)
	c.slept += d + c.over
	c.naps++
}

// run runs cfg on a fake clock into a sink and returns the summary.
func runFake(t testing.TB, cfg Config, c *fakeClock, fail func(e *exporter, n int) int) (Summary, *sink, *Generator) {
	t.Helper()
	g, err := newGenerator(cfg, c)
	if err != nil {
		t.Fatalf("newGenerator: %v", err)
	}
	s := attachSink(g)
	s.fail = fail
	return g.Run(context.Background()), s, g
}

// checkSummary decodes every exporter's messages in the order they were
// sent (lost ones too: their sequence numbers are used up) and checks the
// summary against them: counts, bytes, and first and next sequence numbers.
// early is Config.Records when data may come before its template.
func checkSummary(t testing.TB, msgs map[uint32][]sunk, sum Summary, early int) {
	t.Helper()
	var total Summary
	if len(msgs) != len(sum.Exporters) {
		t.Errorf("messages from %d exporters, summary has %d", len(msgs), len(sum.Exporters))
	}
	for _, es := range sum.Exporters {
		dom := es.ObservationDomain
		dec, seq := newDecoder(t), newSeqCheck(t)
		dec.early = early
		var got ExporterSummary
		for _, m := range msgs[dom] {
			d := dec.decode(m.b)
			if d.hdr.DomainID != dom {
				t.Fatalf("exporter %d sent a message of domain %d", dom, d.hdr.DomainID)
			}
			seq.add(d)
			switch {
			case len(d.templates) > 0:
				total.TemplateMessages++
				got.Bytes += uint64(len(m.b))
			case !m.lost:
				got.Messages++
				got.Records += uint64(d.records + d.options)
				got.Bytes += uint64(len(m.b))
			}
		}
		got.Source, got.ObservationDomain = es.Source, dom
		got.FirstSequence, got.NextSequence = seq.first[dom], seq.next[dom]
		if got != es {
			t.Errorf("exporter %d:\nsummary %+v\n   sent %+v", dom, es, got)
		}
		total.Messages += got.Messages
		total.Records += got.Records
		total.Bytes += got.Bytes
	}
	if sum.Messages != total.Messages || sum.Records != total.Records || sum.Bytes != total.Bytes ||
		sum.TemplateMessages != total.TemplateMessages {
		t.Errorf("summary totals %d messages, %d records, %d bytes, %d template messages; sent %d, %d, %d, %d",
			sum.Messages, sum.Records, sum.Bytes, sum.TemplateMessages,
			total.Messages, total.Records, total.Bytes, total.TemplateMessages)
	}
}

func addr4(b []byte) netip.Addr { return netip.AddrFrom4([4]byte(b)) }
