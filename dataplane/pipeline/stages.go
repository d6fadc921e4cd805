package pipeline

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/sluice-flow/sluice/dataplane/anon"
	"github.com/sluice-flow/sluice/dataplane/filter"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
)

// selectStage passes the records its expression matches.
type selectStage struct {
	expr  *filter.Expr
	plans planCache[selectPlan]
	next  sink
	n     counts
}

type selectPlan struct {
	p   *filter.Program
	err error
}

func (s *selectStage) record(m *jsonl.Meta, r *ipfix.Record) {
	s.n.in++
	p := s.plans.get(r.Layout, func(l *ipfix.Layout) *selectPlan {
		p, err := s.expr.Compile(l)
		return &selectPlan{p, err}
	})
	if p.err != nil {
		s.n.errs++
		return
	}
	if p.p.Match(r) {
		s.n.out++
		s.next.record(m, r)
	}
}

// rewriteStage runs a compiled rewrite per template: project and set.
type rewriteStage struct {
	build func(l *ipfix.Layout) *rewrite
	plans planCache[rewrite]
	buf   []byte
	rec   ipfix.Record
	next  sink
	n     counts
}

func (s *rewriteStage) record(m *jsonl.Meta, r *ipfix.Record) {
	s.n.in++
	w := s.plans.get(r.Layout, s.build)
	switch {
	case w.err != nil:
		s.n.errs++
		return
	case w.identity:
		s.n.out++
		s.next.record(m, r)
		return
	}
	s.buf = w.apply(s.buf[:0], r, nil)
	if !view(w.out, s.buf, &s.rec) {
		s.n.errs++
		return
	}
	s.n.out++
	s.next.record(m, &s.rec)
}

func newProject(line int, p *Project) (*rewriteStage, error) {
	keep := len(p.Keep) > 0 // "keep: []" next to a drop list is no keep list
	names := p.Keep
	if !keep {
		names = p.Drop
	}
	nf, err := resolveNames(line, "project", names)
	if err != nil {
		return nil, err
	}
	return &rewriteStage{build: func(l *ipfix.Layout) *rewrite {
		var srcs []source
		if keep {
			used := make([]bool, len(l.Fields))
			for i := range nf {
				if j := nf[i].index(l); j >= 0 && !used[j] {
					used[j] = true
					srcs = append(srcs, source{spec: l.Fields[j].FieldSpec, field: j, dyn: -1})
				}
			}
		} else {
			drop := make([]bool, len(l.Fields))
			for i := range nf {
				if j := nf[i].index(l); j >= 0 {
					drop[j] = true
				}
			}
			for j := range l.Fields {
				if !drop[j] {
					srcs = append(srcs, source{spec: l.Fields[j].FieldSpec, field: j, dyn: -1})
				}
			}
		}
		return newRewrite(l, srcs)
	}}, nil
}

func newSet(line int, fields []SetField) (*rewriteStage, error) {
	type konst struct {
		spec ipfix.FieldSpec
		b    []byte
	}
	ks := make([]konst, len(fields))
	for i, f := range fields {
		ie, err := element(f.Name)
		if err != nil {
			return nil, errAt(line, "set: %v", err)
		}
		b, length, err := encodeValue(&ie, f.Value)
		if err != nil {
			return nil, errAt(line, "set: %v", err)
		}
		if length == ipfix.VarLen && len(b) > 0 && len(b) < 255 {
			length = uint16(len(b)) // a fixed-length string keeps the layout fixed
		}
		ks[i] = konst{ipfix.FieldSpec{ID: ie.ID, Length: length, PEN: ie.PEN}, b}
	}
	return &rewriteStage{build: func(l *ipfix.Layout) *rewrite {
		srcs := make([]source, 0, len(l.Fields)+len(ks))
		for j := range l.Fields {
			srcs = append(srcs, source{spec: l.Fields[j].FieldSpec, field: j, dyn: -1})
		}
		for _, k := range ks {
			if j := l.Index(k.spec.PEN, k.spec.ID); j >= 0 {
				srcs[j] = source{spec: k.spec, field: -1, b: k.b, dyn: -1}
			} else {
				srcs = append(srcs, source{spec: k.spec, field: -1, b: k.b, dyn: -1})
			}
		}
		return newRewrite(l, srcs)
	}}, nil
}

// renameStage swaps the layout: the bytes are unchanged.
type renameStage struct {
	renames []struct {
		from namedField
		to   ipfix.InfoElement
	}
	plans planCache[renamePlan]
	rec   ipfix.Record
	next  sink
	n     counts
}

type renamePlan struct {
	out *ipfix.Layout // nil: nothing to rename
	err error
}

func newRename(line int, rs []Rename) (*renameStage, error) {
	s := &renameStage{}
	for _, r := range rs {
		from, err := resolveNames(line, "rename", []string{r.From})
		if err != nil {
			return nil, err
		}
		to, err := element(r.To)
		if err != nil {
			return nil, errAt(line, "rename: %v", err)
		}
		if from[0].ie != nil && !compatible(from[0].ie.Type, to.Type) {
			return nil, errAt(line, "rename: %s is %s, %s is %s", r.From, from[0].ie.Type, r.To, to.Type)
		}
		s.renames = append(s.renames, struct {
			from namedField
			to   ipfix.InfoElement
		}{from[0], to})
	}
	return s, nil
}

func compatible(a, b ipfix.DataType) bool {
	return a == b || a == ipfix.TypeOctetArray || b == ipfix.TypeOctetArray
}

func (s *renameStage) plan(l *ipfix.Layout) *renamePlan {
	specs := make([]ipfix.FieldSpec, len(l.Fields))
	changed := false
	for i := range l.Fields {
		specs[i] = l.Fields[i].FieldSpec
	}
	for _, rn := range s.renames {
		j := rn.from.index(l)
		if j < 0 {
			continue
		}
		if !compatible(l.Fields[j].IE.Type, rn.to.Type) {
			return &renamePlan{err: fmt.Errorf("%s is %s, %s is %s", l.Fields[j].Key, l.Fields[j].IE.Type, rn.to.Name, rn.to.Type)}
		}
		specs[j].ID, specs[j].PEN = rn.to.ID, rn.to.PEN
		changed = true
	}
	if !changed {
		return &renamePlan{}
	}
	out, err := buildLayout(outputID(l), specs)
	return &renamePlan{out: out, err: err}
}

func (s *renameStage) record(m *jsonl.Meta, r *ipfix.Record) {
	s.n.in++
	p := s.plans.get(r.Layout, s.plan)
	switch {
	case p.err != nil:
		s.n.errs++
		return
	case p.out == nil:
		s.n.out++
		s.next.record(m, r)
		return
	}
	if !view(p.out, r.Raw(), &s.rec) {
		s.n.errs++
		return
	}
	s.n.out++
	s.next.record(m, &s.rec)
}

// anonStage rewrites address fields in a copy of the record.
type anonStage struct {
	cp     *anon.CryptoPAn // nil: truncate
	bits4  int
	bits6  int
	fields []namedField // nil: every address field
	plans  planCache[anonPlan]
	buf    []byte
	rec    ipfix.Record
	next   sink
	n      counts
	cache4 *[1 << 14]anonCacheEntry
}

// anonCacheEntry remembers one IPv4 anonymisation: addresses repeat across
// flows, and Crypto-PAn costs 16 AES blocks per address.
type anonCacheEntry struct {
	in, out uint32
	ok      bool
}

type anonPlan struct {
	fields []int // address fields to rewrite
}

func newAnonymise(line int, a *Anonymise) (*anonStage, error) {
	s := &anonStage{bits4: 24, bits6: 48}
	if a.IPv4Prefix != nil {
		s.bits4 = *a.IPv4Prefix
	}
	if a.IPv6Prefix != nil {
		s.bits6 = *a.IPv6Prefix
	}
	if len(a.Fields) > 0 {
		nf, err := resolveNames(line, "anonymise", a.Fields)
		if err != nil {
			return nil, err
		}
		for _, f := range nf {
			if f.ie != nil && f.ie.Type != ipfix.TypeIPv4Address && f.ie.Type != ipfix.TypeIPv6Address {
				return nil, errAt(line, "anonymise: %s is %s, not an address", f.name, f.ie.Type)
			}
		}
		s.fields = nf
	}
	if a.Method == "cryptopan" {
		keyText := a.Key
		if a.KeyFile != "" {
			f, err := openBounded(a.KeyFile, 4096)
			if err != nil {
				return nil, errAt(line, "anonymise: key_file: %v", err)
			}
			b, err := io.ReadAll(f)
			f.Close()
			if err != nil {
				return nil, errAt(line, "anonymise: key_file: %v", err)
			}
			keyText = string(b)
		}
		key, err := anon.ParseKey(keyText)
		if err != nil {
			return nil, errAt(line, "anonymise: %v", err)
		}
		if s.cp, err = anon.NewCryptoPAn(key); err != nil {
			return nil, errAt(line, "anonymise: %v", err)
		}
		s.cp.Precompute4()
		s.cache4 = new([1 << 14]anonCacheEntry)
	} else if a.Key != "" || a.KeyFile != "" {
		return nil, errAt(line, "anonymise: truncate takes no key")
	}
	return s, nil
}

func isAddr(f *ipfix.Field) bool {
	return (f.IE.Type == ipfix.TypeIPv4Address && f.Length == 4) || (f.IE.Type == ipfix.TypeIPv6Address && f.Length == 16)
}

func (s *anonStage) plan(l *ipfix.Layout) *anonPlan {
	p := &anonPlan{}
	if s.fields == nil {
		for i := range l.Fields {
			if isAddr(&l.Fields[i]) {
				p.fields = append(p.fields, i)
			}
		}
		return p
	}
	for i := range s.fields {
		if j := s.fields[i].index(l); j >= 0 && isAddr(&l.Fields[j]) {
			p.fields = append(p.fields, j)
		}
	}
	return p
}

func (s *anonStage) record(m *jsonl.Meta, r *ipfix.Record) {
	s.n.in++
	p := s.plans.get(r.Layout, s.plan)
	if len(p.fields) == 0 {
		s.n.out++
		s.next.record(m, r)
		return
	}
	s.buf = append(s.buf[:0], r.Raw()...)
	for _, j := range p.fields {
		off := r.Offset(j)
		if r.Layout.Fields[j].Length == 4 {
			s.addr4(s.buf[off : off+4])
		} else {
			s.addr6(s.buf[off : off+16])
		}
	}
	if !view(r.Layout, s.buf, &s.rec) {
		s.n.errs++
		return
	}
	s.n.out++
	s.next.record(m, &s.rec)
}

func (s *anonStage) addr4(b []byte) {
	a := binary.BigEndian.Uint32(b)
	if s.cp == nil {
		binary.BigEndian.PutUint32(b, a&^(^uint32(0)>>s.bits4)) // a shift by 32 gives 0
		return
	}
	e := &s.cache4[(a*0x9E3779B1)>>18]
	if e.ok && e.in == a {
		binary.BigEndian.PutUint32(b, e.out)
		return
	}
	out := s.cp.Anonymize4([4]byte(b))
	*e = anonCacheEntry{in: a, out: binary.BigEndian.Uint32(out[:]), ok: true}
	copy(b, out[:])
}

func (s *anonStage) addr6(b []byte) {
	if s.cp != nil {
		out := s.cp.Anonymize6([16]byte(b))
		copy(b, out[:])
		return
	}
	for i := range b {
		keep := s.bits6 - 8*i
		switch {
		case keep >= 8:
		case keep <= 0:
			b[i] = 0
		default:
			b[i] &= ^byte(0xff >> keep)
		}
	}
}

// sampleStage keeps one record in rate.
type sampleStage struct {
	rate   uint64
	random bool
	count  uint64
	rnd    uint64
	next   sink
	n      counts
}

func (s *sampleStage) record(m *jsonl.Meta, r *ipfix.Record) {
	s.n.in++
	if s.random {
		// xorshift64*: a uniform draw, then keep with probability 1/rate.
		s.rnd ^= s.rnd >> 12
		s.rnd ^= s.rnd << 25
		s.rnd ^= s.rnd >> 27
		if (s.rnd*0x2545F4914F6CDD1D)%s.rate != 0 {
			return
		}
	} else {
		c := s.count
		s.count++
		if c%s.rate != 0 {
			return
		}
	}
	s.n.out++
	s.next.record(m, r)
}
