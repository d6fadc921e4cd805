// Package decode turns IPFIX and NetFlow messages from many exporters into
// data records, keeping templates per exporter and observation domain the
// way a collector does. It serves `sluice decode`, tests and fuzzers; the
// collector's own template tiers live in dataplane/template.
package decode

import (
	"net/netip"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// Stats counts what a Decoder has seen.
type Stats struct {
	Messages         uint64
	Sets             uint64
	Templates        uint64
	OptionsTemplates uint64
	Withdrawals      uint64
	Redefinitions    uint64
	DataRecords      uint64
	OptionsRecords   uint64
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

type scopeKey struct {
	exporter netip.AddrPort
	domain   uint32
	version  uint16
}

// Scope holds the templates of one (exporter, observation domain).
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
	// socket on a new port keeps its templates.
	ScopeByPort bool
	Stats       Stats
	scopes      map[scopeKey]*Scope
	msg         ipfix.Message
	tr          ipfix.TemplateRecord
	rec         ipfix.Record
	out         Record
}

// New returns an empty Decoder.
func New() *Decoder {
	return &Decoder{scopes: make(map[scopeKey]*Scope), Stats: Stats{Errors: make(map[string]uint64)}}
}

func (d *Decoder) count(err error) {
	d.Stats.Errors[ipfix.Reason(err)]++
}

// Decode decodes the message at the start of b from exporter and calls fn for
// every data record. It returns the length of the message (so a caller can
// walk a file of concatenated IPFIX messages) and the first error that ended
// decoding of the message; errors inside a set are counted and decoding goes
// on with the next set.
func (d *Decoder) Decode(exporter netip.AddrPort, b []byte, fn Handler) (int, error) {
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
	sc := d.scope(exporter, m)
	d.out.Resolver = sc
	var set ipfix.Set
	sets := m.Sets()
	for sets.Next(&set) {
		d.Stats.Sets++
		switch set.Kind {
		case ipfix.SetTemplate, ipfix.SetOptionsTemplate:
			d.templates(sc, &set)
		case ipfix.SetData:
			d.data(sc, &set, fn)
		}
	}
	if err := sets.Err(); err != nil {
		d.count(err)
		return m.Length, err
	}
	return m.Length, nil
}

func (d *Decoder) scope(exporter netip.AddrPort, m *ipfix.Message) *Scope {
	if !d.ScopeByPort {
		exporter = netip.AddrPortFrom(exporter.Addr(), 0)
	}
	k := scopeKey{exporter, m.DomainID, m.Version}
	sc := d.scopes[k]
	if sc == nil {
		sc = &Scope{templates: make(map[uint16]*ipfix.Layout)}
		d.scopes[k] = sc
	}
	return sc
}

func (d *Decoder) templates(sc *Scope, set *ipfix.Set) {
	it := set.Templates()
	withdrewAll := false
	for it.Next(&d.tr) {
		t := &d.tr
		if t.Withdrawal() {
			d.Stats.Withdrawals++
			if t.ID < ipfix.MinDataSetID {
				// One withdraw-all per set does it; repeats would each
				// scan every template.
				if withdrewAll {
					continue
				}
				withdrewAll = true
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

func (d *Decoder) data(sc *Scope, set *ipfix.Set, fn Handler) {
	l := sc.templates[set.ID]
	if l == nil {
		d.count(ipfix.ErrUnknownTemplate)
		return
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

// Layouts calls fn for every template currently known.
// The exporter's port is 0 unless ScopeByPort is set.
func (d *Decoder) Layouts(fn func(exporter netip.AddrPort, domain uint32, l *ipfix.Layout)) {
	for k, sc := range d.scopes {
		for _, l := range sc.templates {
			fn(k.exporter, k.domain, l)
		}
	}
}
