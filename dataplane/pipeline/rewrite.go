package pipeline

import (
	"sync/atomic"

	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
)

// sink takes one record. r and what m points to are valid only during the
// call; a stage that changes a record hands the next sink its own copy.
type sink interface {
	record(m *jsonl.Meta, r *ipfix.Record)
}

// counts are a stage's record counters. The mediator goroutine updates the
// plain fields; publish copies them for readers on other goroutines, so the
// hot path pays no atomic operation per record.
type counts struct {
	in, out, errs uint64
	pubIn         atomic.Uint64
	pubOut        atomic.Uint64
	pubErrs       atomic.Uint64
}

func (c *counts) publish() {
	c.pubIn.Store(c.in)
	c.pubOut.Store(c.out)
	c.pubErrs.Store(c.errs)
}

// fanout is the end of a pipeline: its outputs.
type fanout struct {
	outs []export.Output
	n    counts
}

func (f *fanout) record(m *jsonl.Meta, r *ipfix.Record) {
	f.n.in++
	for _, o := range f.outs {
		o.Record(m, r)
	}
}

// maxPlans bounds a stage's per-template cache; past it the cache starts
// over (template churn, not steady state).
const maxPlans = 4096

// planCache maps input layouts to what a stage compiled for them, with a
// one-entry memo: the records of a set share a layout.
type planCache[P any] struct {
	last  *ipfix.Layout
	lastP *P
	m     map[*ipfix.Layout]*P
}

func (c *planCache[P]) get(l *ipfix.Layout, build func(*ipfix.Layout) *P) *P {
	if l == c.last {
		return c.lastP
	}
	p := c.m[l]
	if p == nil {
		if c.m == nil || len(c.m) >= maxPlans {
			c.m = make(map[*ipfix.Layout]*P)
		}
		p = build(l)
		c.m[l] = p
	}
	c.last, c.lastP = l, p
	return p
}

// piece is one output field's source in a rewrite.
type piece struct {
	kind pieceKind
	// pieceRange: bytes [off, end) of a fixed-length input record.
	off, end int
	// pieceField: input field index; varlen: the output field is
	// variable-length (the value gets a length prefix).
	field  int
	varlen bool
	// pieceConst: encoded bytes (with their prefix if variable-length).
	b []byte
	// pieceDyn: index into the per-record values the stage computes.
	dyn int
}

type pieceKind uint8

const (
	pieceRange pieceKind = iota
	pieceField
	pieceConst
	pieceDyn
)

// rewrite is a compiled change of template: the output layout and where
// each of its bytes comes from.
type rewrite struct {
	out      *ipfix.Layout
	pieces   []piece
	identity bool  // nothing changes: pass the input record on
	err      error // the template cannot be rewritten; records are dropped
}

// source names where an output field comes from while building a rewrite.
type source struct {
	spec  ipfix.FieldSpec
	field int    // input field, or -1
	b     []byte // constant (unprefixed), when field < 0 and dyn < 0
	dyn   int    // dynamic value index, or -1
}

// newRewrite compiles the sources against input layout in. Consecutive
// input fields of a fixed-length layout merge into one byte range.
func newRewrite(in *ipfix.Layout, srcs []source) *rewrite {
	w := &rewrite{}
	identity := len(srcs) == len(in.Fields)
	specs := make([]ipfix.FieldSpec, len(srcs))
	for i, s := range srcs {
		specs[i] = s.spec
		if s.field != i || s.spec != in.Fields[i].FieldSpec {
			identity = false
		}
		switch {
		case s.field >= 0 && in.RecordLen > 0 && s.spec.Length != ipfix.VarLen:
			f := &in.Fields[s.field]
			off, end := f.Offset, f.Offset+int(f.Length)
			if n := len(w.pieces); n > 0 && w.pieces[n-1].kind == pieceRange && w.pieces[n-1].end == off {
				w.pieces[n-1].end = end
			} else {
				w.pieces = append(w.pieces, piece{kind: pieceRange, off: off, end: end})
			}
		case s.field >= 0:
			w.pieces = append(w.pieces, piece{kind: pieceField, field: s.field, varlen: s.spec.Length == ipfix.VarLen})
		case s.dyn >= 0:
			w.pieces = append(w.pieces, piece{kind: pieceDyn, dyn: s.dyn})
		default:
			b := s.b
			if s.spec.Length == ipfix.VarLen {
				b = ipfix.AppendVarlen(nil, b)
			}
			w.pieces = append(w.pieces, piece{kind: pieceConst, b: b})
		}
	}
	if identity {
		w.identity, w.out = true, in
		return w
	}
	w.out, w.err = buildLayout(outputID(in), specs)
	return w
}

// apply appends the rewritten record to dst; dyn holds the encoded dynamic
// values (with their prefix if variable-length).
func (w *rewrite) apply(dst []byte, r *ipfix.Record, dyn [][]byte) []byte {
	raw := r.Raw()
	for i := range w.pieces {
		p := &w.pieces[i]
		switch p.kind {
		case pieceRange:
			dst = append(dst, raw[p.off:p.end]...)
		case pieceField:
			if p.varlen {
				dst = ipfix.AppendVarlen(dst, r.Bytes(p.field))
			} else {
				dst = append(dst, r.Bytes(p.field)...)
			}
		case pieceConst:
			dst = append(dst, p.b...)
		case pieceDyn:
			dst = append(dst, dyn[p.dyn]...)
		}
	}
	return dst
}

// maxRecordLen is the longest record one IPFIX message carries; field
// positions in a Record are 16-bit.
const maxRecordLen = ipfix.MaxMessageLen - ipfix.HeaderLenIPFIX - ipfix.SetHeaderLen

// view makes r a view of one record of layout l in b. A record too long
// for a message (values added by set or enrich) is refused.
func view(l *ipfix.Layout, b []byte, r *ipfix.Record) bool {
	if len(b) > maxRecordLen {
		return false
	}
	it := ipfix.NewDataIter(l, b)
	return it.Next(r)
}
