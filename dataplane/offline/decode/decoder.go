// Package decode turns IPFIX and NetFlow messages from many exporters into
// data records, keeping templates per exporter, transport session and
// observation domain the way the collector does: both scope templates with
// template.Scoping. It serves `sluice decode`, tests and fuzzers; the
// collector's own template tiers live in dataplane/template.
package decode

import (
	"net/netip"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/template"
)

// Stats counts what a Decoder has seen.
type Stats struct {
	Messages         uint64
	Sets             uint64
	Templates        uint64
	OptionsTemplates uint64
	Withdrawals      uint64
	// WithdrawalsIgnored counts withdrawals DecodeFrom ignored over UDP
	// (RFC 7011 section 8.4), as the collector does.
	WithdrawalsIgnored uint64
	Redefinitions      uint64
	DataRecords        uint64
	OptionsRecords     uint64
	// Errors counts failures by ipfix.Error reason.
	Errors map[string]uint64
}

// Record is handed to a Handler for each data record. It and everything it
// points to are valid only during the call.
type Record struct {
	Exporter netip.AddrPort
	Msg      *ipfix.Message
	Rec      *ipfix.Record
	// Resolver finds sibling templates for RFC 6313 sub-template lists.
	Resolver *Scope
}

// Handler receives decoded records.
type Handler func(r *Record)

// Origin says where a message came from: the exporter's address and the
// transport session. Session 0 is UDP; a TCP connection (or a file read as
// one stream) has a nonzero number of the caller's choosing, and its
// templates are its own (RFC 7011 section 8).
type Origin struct {
	Exporter netip.AddrPort
	Session  uint64
}

// Scope holds the templates of one (exporter, transport session,
// observation domain).
type Scope struct {
	templates map[uint16]*ipfix.Layout
}

// Resolve returns the layout of templateID in this scope, or nil.
func (s *Scope) Resolve(templateID uint16) *ipfix.Layout {
	if s == nil {
		return nil
	}
	return s.templates[templateID]
}

// Decoder decodes messages, keeping templates across calls. Not safe for
// concurrent use.
type Decoder struct {
	// ScopeByPort scopes templates by exporter address and port. By default
	// the scope is the address alone, so an exporter that reopens its
	// socket on a new port keeps its templates. (template.Scoping.ByPort)
	ScopeByPort bool
	Stats       Stats
	scopes      map[template.DomainKey]*Scope
	msg         ipfix.Message
	tr          ipfix.TemplateRecord
	rec         ipfix.Record
	out         Record
}

// New returns an empty Decoder.
func New() *Decoder {
	return &Decoder{scopes: make(map[template.DomainKey]*Scope), Stats: Stats{Errors: make(map[string]uint64)}}
}

func (d *Decoder) count(err error) {
	d.Stats.Errors[ipfix.Reason(err)]++
}

// Decode decodes the message at the start of b from exporter and calls fn for
// every data record. It returns the length of the message (so a caller can
// walk a file of concatenated IPFIX messages) and the first error that ended
// decoding of the message; errors inside a set are counted and decoding goes
// on with the next set.
//
// Templates are scoped as for UDP (session 0), but withdrawals are taken at
// their word whatever the transport was, and a malformed data set gives the
// records before the fault: for files and captures read on their own, and
// for fuzzers. DecodeFrom decodes as the collector does.
func (d *Decoder) Decode(exporter netip.AddrPort, b []byte, fn Handler) (int, error) {
	return d.decode(Origin{Exporter: exporter}, false, b, fn)
}

// DecodeFrom is Decode with the collector's rules: templates scoped by
// (exporter, domain) over UDP and by transport session over TCP, the same
// template.Scoping as the collector's; withdrawals honoured within a
// session and ignored over UDP (RFC 7011 section 8.4); a malformed data set
// gives no records. Data of a template not known yet is counted
// (unknown_template), not held as the collector holds it.
func (d *Decoder) DecodeFrom(o Origin, b []byte, fn Handler) (int, error) {
	return d.decode(o, true, b, fn)
}

// EndSession forgets the templates of a transport session, as the collector
// does when a TCP session closes.
func (d *Decoder) EndSession(session uint64) {
	if session == 0 {
		return
	}
	for k := range d.scopes {
		if k.Session == session {
			delete(d.scopes, k)
		}
	}
}

// decode decodes one message; asCollector applies the collector's rules
// (DecodeFrom) where Decode's differ.
func (d *Decoder) decode(o Origin, asCollector bool, b []byte, fn Handler) (int, error) {
	exporter := o.Exporter
	m := &d.msg
	if err := m.Decode(b); err != nil {
		d.count(err)
		return 0, err
	}
	d.Stats.Messages++
	d.out = Record{Exporter: exporter, Msg: m}
	if m.Version == ipfix.VersionNetFlow5 {
		it := m.V5Records()
		for it.Next(&d.rec) {
			d.Stats.DataRecords++
			if fn != nil {
				d.out.Rec = &d.rec
				fn(&d.out)
			}
		}
		return m.Length, nil
	}
	dk := template.Scoping{ByPort: d.ScopeByPort}.Domain(exporter, o.Session, m.DomainID, m.Version)
	sc := d.scope(dk)
	d.out.Resolver = sc
	withdraw := !asCollector || dk.HonoursWithdrawals()
	var withdrewAll [2]bool // per message: templates, options templates
	var set ipfix.Set
	sets := m.Sets()
	for sets.Next(&set) {
		d.Stats.Sets++
		switch set.Kind {
		case ipfix.SetTemplate, ipfix.SetOptionsTemplate:
			d.templates(sc, &set, withdraw, &withdrewAll)
		case ipfix.SetData:
			d.data(sc, &set, asCollector, fn)
		}
	}
	if err := sets.Err(); err != nil {
		d.count(err)
		return m.Length, err
	}
	return m.Length, nil
}

func (d *Decoder) scope(k template.DomainKey) *Scope {
	sc := d.scopes[k]
	if sc == nil {
		sc = &Scope{templates: make(map[uint16]*ipfix.Layout)}
		d.scopes[k] = sc
	}
	return sc
}

func (d *Decoder) templates(sc *Scope, set *ipfix.Set, withdraw bool, withdrewAll *[2]bool) {
	it := set.Templates()
	for it.Next(&d.tr) {
		t := &d.tr
		if t.Withdrawal() {
			if !withdraw {
				d.Stats.WithdrawalsIgnored++
				continue
			}
			d.Stats.Withdrawals++
			if t.ID < ipfix.MinDataSetID {
				// One withdraw-all of each kind per message does it
				// (as in the collector); repeats would each scan every
				// template.
				kind := 0
				if t.Options {
					kind = 1
				}
				if withdrewAll[kind] {
					continue
				}
				withdrewAll[kind] = true
			}
			d.withdraw(sc, t)
			continue
		}
		l, err := ipfix.Compile(t)
		if err != nil {
			d.count(err)
			continue
		}
		if t.Options {
			d.Stats.OptionsTemplates++
		} else {
			d.Stats.Templates++
		}
		if old := sc.templates[t.ID]; old != nil && !old.Equal(l) {
			d.Stats.Redefinitions++
		}
		sc.templates[t.ID] = l
	}
	if err := it.Err(); err != nil {
		d.count(err)
	}
}

func (d *Decoder) withdraw(sc *Scope, t *ipfix.TemplateRecord) {
	if t.ID >= ipfix.MinDataSetID {
		delete(sc.templates, t.ID)
		return
	}
	// Withdraw all templates of the set's kind.
	for id, l := range sc.templates {
		if l.Options == t.Options {
			delete(sc.templates, id)
		}
	}
}

// data decodes a data set. whole, as in the collector, decodes nothing of a
// malformed set rather than a prefix whose boundaries may be wrong.
func (d *Decoder) data(sc *Scope, set *ipfix.Set, whole bool, fn Handler) {
	l := sc.templates[set.ID]
	if l == nil {
		d.count(ipfix.ErrUnknownTemplate)
		return
	}
	if whole && l.RecordLen == 0 {
		it := set.Records(l)
		for it.Next(&d.rec) {
			// Only checking the set; records are handed out below.
		}
		if err := it.Err(); err != nil {
			d.count(err)
			return
		}
	}
	it := set.Records(l)
	for it.Next(&d.rec) {
		if l.Options {
			d.Stats.OptionsRecords++
		} else {
			d.Stats.DataRecords++
		}
		if fn != nil {
			d.out.Rec = &d.rec
			fn(&d.out)
		}
	}
	if err := it.Err(); err != nil {
		d.count(err)
	}
}

// Layouts calls fn for every template currently known, a transport
// session's included. The exporter's port is 0 unless ScopeByPort is set.
func (d *Decoder) Layouts(fn func(exporter netip.AddrPort, domain uint32, l *ipfix.Layout)) {
	for k, sc := range d.scopes {
		for _, l := range sc.templates {
			fn(k.Exporter, k.Domain, l)
		}
	}
}
