package pipeline

import (
	"encoding/binary"
	"net/netip"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
)

// Elements enrich adds (IANA IDs).
const (
	ieSamplingInterval              = 34
	ieSamplerID                     = 48
	ieSamplerRandomInterval         = 50
	ieSelectorID                    = 302
	ieSamplingPacketInterval        = 305
	ieSamplingPacketSpace           = 306
	ieSamplingSize                  = 309
	ieSamplingPopulation            = 310
	ieOriginalExporterIPv4Address   = 403
	ieOriginalExporterIPv6Address   = 404
	ieOriginalObservationDomainID   = 405
	maxSamplingEntries              = 1 << 16
	dynExporter, dynDomain, dynRate = 0, 1, 2
	dynNets                         = 3
)

type enrichStage struct {
	exporter, sampling bool
	nets               []*netLookup
	// plans by exporter address family: the added element differs.
	plans [2]planCache[enrichPlan]
	rates samplingTable
	dyn   [][]byte
	addr  [16]byte
	dom   [4]byte
	rate  [4]byte
	buf   []byte
	rec   ipfix.Record
	next  sink
	n     counts
}

type netLookup struct {
	tab  *netTable
	addr []namedField
	// cols are the table columns added, encoded per row once.
	cols []netColumn
	dyn  int // first dynamic value index
}

type netColumn struct {
	spec ipfix.FieldSpec
	rows [][]byte // encoded value (prefixed if variable-length) per row
	zero []byte   // no match
}

type enrichPlan struct {
	w *rewrite
	// addrField per lookup: the address field this template has, or -1.
	addrField []int
	// samplerField is samplerId or selectorId, or -1; addRate is false
	// when the template carries samplingInterval itself.
	samplerField int
	addRate      bool
}

func newEnrich(line int, e *Enrich) (*enrichStage, error) {
	s := &enrichStage{exporter: e.Exporter, sampling: e.Sampling}
	nDyn := dynNets
	for _, nw := range e.Networks {
		tab, err := loadNetTable(nw.File)
		if err != nil {
			return nil, errAt(line, "enrich: %v", err)
		}
		addr, err := resolveNames(line, "enrich address", nw.Address)
		if err != nil {
			return nil, err
		}
		for _, a := range addr {
			if a.ie != nil && a.ie.Type != ipfix.TypeIPv4Address && a.ie.Type != ipfix.TypeIPv6Address {
				return nil, errAt(line, "enrich: %s is %s, not an address", a.name, a.ie.Type)
			}
		}
		nl := &netLookup{tab: tab, addr: addr, dyn: nDyn}
		for _, c := range nw.Columns {
			col := -1
			for i, h := range tab.header {
				if h == c.From {
					col = i
				}
			}
			if col < 0 {
				return nil, errAt(line, "enrich: %s has no column %q (it has %v)", nw.File, c.From, tab.header)
			}
			ie, err := element(c.To)
			if err != nil {
				return nil, errAt(line, "enrich: %v", err)
			}
			nc := netColumn{rows: make([][]byte, len(tab.rows))}
			var length uint16
			nc.zero, length, err = encodeValue(&ie, "")
			if err != nil {
				return nil, errAt(line, "enrich: %v", err)
			}
			varlen := length == ipfix.VarLen
			if varlen {
				nc.zero = ipfix.AppendVarlen(nil, nc.zero)
			}
			for r, cells := range tab.rows {
				b, _, err := encodeValue(&ie, cells[col])
				if err != nil {
					return nil, errAt(line, "enrich: %s row %d: %v", nw.File, r+1, err)
				}
				if varlen {
					b = ipfix.AppendVarlen(nil, b)
				}
				nc.rows[r] = b
			}
			nc.spec = ipfix.FieldSpec{ID: ie.ID, Length: length, PEN: ie.PEN}
			nl.cols = append(nl.cols, nc)
			nDyn++
		}
		s.nets = append(s.nets, nl)
	}
	s.dyn = make([][]byte, nDyn)
	s.rates.m = make(map[samplingKey]uint32)
	return s, nil
}

func (s *enrichStage) plan(l *ipfix.Layout, v6 bool) *enrichPlan {
	p := &enrichPlan{samplerField: -1}
	srcs := make([]source, 0, len(l.Fields)+8)
	for j := range l.Fields {
		srcs = append(srcs, source{spec: l.Fields[j].FieldSpec, field: j, dyn: -1})
	}
	if s.exporter {
		spec := ipfix.FieldSpec{ID: ieOriginalExporterIPv4Address, Length: 4}
		if v6 {
			spec = ipfix.FieldSpec{ID: ieOriginalExporterIPv6Address, Length: 16}
		}
		srcs = append(srcs, source{spec: spec, field: -1, dyn: dynExporter},
			source{spec: ipfix.FieldSpec{ID: ieOriginalObservationDomainID, Length: 4}, field: -1, dyn: dynDomain})
	}
	if s.sampling && l.Index(0, ieSamplingInterval) < 0 {
		p.addRate = true
		if p.samplerField = l.Index(0, ieSamplerID); p.samplerField < 0 {
			p.samplerField = l.Index(0, ieSelectorID)
		}
		srcs = append(srcs, source{spec: ipfix.FieldSpec{ID: ieSamplingInterval, Length: 4}, field: -1, dyn: dynRate})
	}
	for _, nl := range s.nets {
		f := -1
		for i := range nl.addr {
			if j := nl.addr[i].index(l); j >= 0 && isAddr(&l.Fields[j]) {
				f = j
				break
			}
		}
		p.addrField = append(p.addrField, f)
		for c := range nl.cols {
			srcs = append(srcs, source{spec: nl.cols[c].spec, field: -1, dyn: nl.dyn + c})
		}
	}
	p.w = newRewrite(l, srcs)
	return p
}

func (s *enrichStage) record(m *jsonl.Meta, r *ipfix.Record) {
	s.n.in++
	exp := m.Exporter.Addr()
	v6 := exp.Is6()
	fam := 0
	if v6 {
		fam = 1
	}
	l := r.Layout
	p := s.plans[fam].get(l, func(l *ipfix.Layout) *enrichPlan { return s.plan(l, v6) })
	if p.w.err != nil {
		s.n.errs++
		return
	}
	if s.exporter {
		if v6 {
			s.addr = exp.As16()
			s.dyn[dynExporter] = s.addr[:16]
		} else {
			var a [4]byte // zero for an invalid address (aggregates)
			if exp.Is4() {
				a = exp.As4()
			}
			copy(s.addr[:4], a[:])
			s.dyn[dynExporter] = s.addr[:4]
		}
		binary.BigEndian.PutUint32(s.dom[:], metaDomain(m))
		s.dyn[dynDomain] = s.dom[:]
	}
	if p.addRate {
		var id uint64
		if p.samplerField >= 0 {
			id = r.Uint(p.samplerField)
		}
		binary.BigEndian.PutUint32(s.rate[:], s.rates.get(exp, metaDomain(m), id))
		s.dyn[dynRate] = s.rate[:]
	}
	for i, nl := range s.nets {
		row := -1
		if f := p.addrField[i]; f >= 0 {
			row = nl.tab.lookup(r.Bytes(f))
		}
		for c := range nl.cols {
			if row >= 0 {
				s.dyn[nl.dyn+c] = nl.cols[c].rows[row]
			} else {
				s.dyn[nl.dyn+c] = nl.cols[c].zero
			}
		}
	}
	s.buf = p.w.apply(s.buf[:0], r, s.dyn)
	if !view(p.w.out, s.buf, &s.rec) {
		s.n.errs++
		return
	}
	s.n.out++
	s.next.record(m, &s.rec)
}

// metaDomain is the record's observation domain (0 without a message).
func metaDomain(m *jsonl.Meta) uint32 {
	if m.Msg == nil {
		return 0
	}
	return m.Msg.DomainID
}

// observeOptions learns sampling rates from an options record.
func (s *enrichStage) observeOptions(m *jsonl.Meta, r *ipfix.Record) {
	if !s.sampling {
		return
	}
	l := r.Layout
	rate := uint64(0)
	if i, j := l.Index(0, ieSamplingPacketInterval), l.Index(0, ieSamplingPacketSpace); i >= 0 && j >= 0 {
		if n := r.Uint(i); n > 0 {
			rate = (n + r.Uint(j)) / n
		}
	} else if i := l.Index(0, ieSamplingInterval); i >= 0 {
		rate = r.Uint(i)
	} else if i := l.Index(0, ieSamplerRandomInterval); i >= 0 {
		rate = r.Uint(i)
	} else if i, j := l.Index(0, ieSamplingSize), l.Index(0, ieSamplingPopulation); i >= 0 && j >= 0 {
		if n := r.Uint(i); n > 0 {
			rate = r.Uint(j) / n
		}
	} else {
		return
	}
	if rate > 0xffffffff {
		rate = 0xffffffff
	}
	var id uint64
	if i := l.Index(0, ieSamplerID); i >= 0 {
		id = r.Uint(i)
	} else if i := l.Index(0, ieSelectorID); i >= 0 {
		id = r.Uint(i)
	}
	s.rates.put(m.Exporter.Addr(), metaDomain(m), id, uint32(rate))
}

// samplingTable holds the latest sampling rate per exporter, domain and
// sampler; bounded (it starts over when full).
type samplingTable struct {
	m     map[samplingKey]uint32
	last  samplingKey
	lastV uint32
	memo  bool
}

type samplingKey struct {
	addr   netip.Addr
	domain uint32
	id     uint64
}

func (t *samplingTable) put(a netip.Addr, dom uint32, id uint64, rate uint32) {
	if len(t.m) >= maxSamplingEntries {
		clear(t.m)
	}
	t.m[samplingKey{a, dom, id}] = rate
	// A record without a sampler ID takes the exporter's latest rate.
	t.m[samplingKey{a, dom, 0}] = rate
	t.memo = false
}

func (t *samplingTable) get(a netip.Addr, dom uint32, id uint64) uint32 {
	k := samplingKey{a, dom, id}
	if t.memo && k == t.last {
		return t.lastV
	}
	v, ok := t.m[k]
	if !ok && id != 0 {
		v = t.m[samplingKey{a, dom, 0}]
	}
	t.last, t.lastV, t.memo = k, v, true
	return v
}
