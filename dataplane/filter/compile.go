package filter

import (
	"bytes"
	"math"
	"net/netip"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// Program is an expression compiled for one layout. It is immutable and
// safe for concurrent use.
type Program struct {
	layout *ipfix.Layout
	match  pred
}

// pred evaluates a compiled (sub)expression on a record.
type pred func(r *ipfix.Record) bool

// Match reports whether r, a record decoded with the layout the program was
// compiled for (or an Equal one), satisfies the expression. It does not
// allocate. Records of any other layout do not match.
func (p *Program) Match(r *ipfix.Record) bool {
	if r.Layout != p.layout && (r.Layout == nil || !r.Layout.Equal(p.layout)) {
		return false
	}
	return p.match(r)
}

// Layout returns the layout the program was compiled for.
func (p *Program) Layout() *ipfix.Layout { return p.layout }

// CompileError reports a literal that cannot match its field's data type.
type CompileError struct {
	Field  string
	Reason string
}

func (e *CompileError) Error() string { return "filter: " + e.Field + ": " + e.Reason }

// Compile resolves the expression's names against l once. A name l does not
// carry makes its comparisons false; a literal whose type cannot match the
// field's data type is an error.
func (e *Expr) Compile(l *ipfix.Layout) (*Program, error) {
	if e == nil || e.root == nil {
		return nil, errNil
	}
	c := compiler{l: l}
	f, _, err := c.node(e.root)
	if err != nil {
		return nil, err
	}
	return &Program{layout: l, match: f}, nil
}

type compiler struct{ l *ipfix.Layout }

// constant predicates; the bool result of node tells constants apart so
// that "and"/"or" can fold them.
func alwaysTrue(*ipfix.Record) bool  { return true }
func alwaysFalse(*ipfix.Record) bool { return false }

type kconst uint8

const (
	notConst kconst = iota
	constTrue
	constFalse
)

func constPred(v bool) (pred, kconst, error) {
	if v {
		return alwaysTrue, constTrue, nil
	}
	return alwaysFalse, constFalse, nil
}

// field finds the field named by a key; -1 if absent.
func (c *compiler) field(name string) int {
	for i := range c.l.Fields {
		if c.l.Fields[i].Key == name {
			return i
		}
	}
	return -1
}

// registryType is the data type a name would have in a layout that lacks it.
func registryType(name string) (ipfix.DataType, bool) {
	for {
		if ie := ipfix.LookupName(name); ie != nil {
			return ie.Type, true
		}
		i := len(name) - 1
		for i > 0 && '0' <= name[i] && name[i] <= '9' {
			i--
		}
		if i <= 0 || i == len(name)-1 || name[i] != '_' {
			return 0, false
		}
		name = name[:i]
	}
}

func (c *compiler) node(n node) (pred, kconst, error) {
	switch n := n.(type) {
	case *constNode:
		return constPred(n.val)
	case *hasNode:
		return constPred(c.field(n.name) >= 0)
	case *notNode:
		f, k, err := c.node(n.x)
		if err != nil {
			return nil, 0, err
		}
		if k != notConst {
			return constPred(k == constFalse)
		}
		return func(r *ipfix.Record) bool { return !f(r) }, notConst, nil
	case *andNode, *orNode:
		isAnd := true
		xs := []node(nil)
		if a, ok := n.(*andNode); ok {
			xs = a.xs
		} else {
			isAnd = false
			xs = n.(*orNode).xs
		}
		var fs []pred
		decided := false
		for _, x := range xs {
			f, k, e := c.node(x)
			if e != nil {
				return nil, 0, e
			}
			switch {
			case k == constTrue && isAnd, k == constFalse && !isAnd:
				// neutral: drop
			case k != notConst:
				decided = true // absorbing; keep checking types
			default:
				fs = append(fs, f)
			}
		}
		if decided {
			return constPred(!isAnd)
		}
		switch len(fs) {
		case 0:
			return constPred(isAnd)
		case 1:
			return fs[0], notConst, nil
		case 2:
			a, b := fs[0], fs[1]
			if isAnd {
				return func(r *ipfix.Record) bool { return a(r) && b(r) }, notConst, nil
			}
			return func(r *ipfix.Record) bool { return a(r) || b(r) }, notConst, nil
		}
		if isAnd {
			return func(r *ipfix.Record) bool {
				for _, f := range fs {
					if !f(r) {
						return false
					}
				}
				return true
			}, notConst, nil
		}
		return func(r *ipfix.Record) bool {
			for _, f := range fs {
				if f(r) {
					return true
				}
			}
			return false
		}, notConst, nil
	case *cmpNode:
		return c.cmp(n.name, n.op, []Literal{n.lit}, false)
	case *inNode:
		return c.cmp(n.name, OpEq, n.lits, true)
	}
	panic("BUG: filter: unknown node")
}

type class uint8

const (
	clsNone class = iota
	clsUnsigned
	clsSigned
	clsFloat
	clsBool
	clsMAC
	clsBytes
	clsTime
	clsAddr
)

func classOf(t ipfix.DataType) class {
	switch t {
	case ipfix.TypeUnsigned8, ipfix.TypeUnsigned16, ipfix.TypeUnsigned32, ipfix.TypeUnsigned64:
		return clsUnsigned
	case ipfix.TypeSigned8, ipfix.TypeSigned16, ipfix.TypeSigned32, ipfix.TypeSigned64:
		return clsSigned
	case ipfix.TypeFloat32, ipfix.TypeFloat64:
		return clsFloat
	case ipfix.TypeBoolean:
		return clsBool
	case ipfix.TypeMACAddress:
		return clsMAC
	case ipfix.TypeString, ipfix.TypeOctetArray, ipfix.TypeUnknown:
		return clsBytes
	case ipfix.TypeDateTimeSeconds, ipfix.TypeDateTimeMilliseconds, ipfix.TypeDateTimeMicroseconds, ipfix.TypeDateTimeNanoseconds:
		return clsTime
	case ipfix.TypeIPv4Address, ipfix.TypeIPv6Address:
		return clsAddr
	}
	return clsNone
}

// accepts reports whether a literal kind can be compared with a class.
func accepts(c class, k LitKind, op Op, in bool) bool {
	switch c {
	case clsUnsigned, clsSigned, clsFloat:
		return k == LitInt || k == LitFloat
	case clsBool:
		return k == LitBool && (op == OpEq || op == OpNe)
	case clsMAC:
		return k == LitMAC
	case clsBytes:
		return k == LitString
	case clsTime:
		return k == LitTime
	case clsAddr:
		return k == LitAddr || k == LitPrefix && in
	}
	return false
}

// cmp compiles a comparison (one literal) or an "in" (any literal equal).
func (c *compiler) cmp(name string, op Op, lits []Literal, in bool) (pred, kconst, error) {
	i := c.field(name)
	var typ ipfix.DataType
	if i >= 0 {
		typ = c.l.Fields[i].IE.Type
	} else if t, ok := registryType(name); ok {
		typ = t
	} else {
		typ = ipfix.TypeOctetArray // unregistered: _ipfix_N, _v9_N, eNidM
	}
	cls := classOf(typ)
	for _, l := range lits {
		if !accepts(cls, l.Kind, op, in) {
			reason := "cannot compare " + typ.String() + " with " + l.Kind.String() + " " + l.String()
			if cls == clsBool && l.Kind == LitBool {
				reason = "booleans support only == and !="
			}
			return nil, 0, &CompileError{Field: name, Reason: reason}
		}
	}
	if i < 0 || len(lits) == 0 {
		return constPred(false)
	}
	if in && len(lits) == 1 && lits[0].Kind != LitPrefix {
		in = false // x in [v] is x == v
	}
	switch cls {
	case clsUnsigned, clsSigned, clsFloat:
		return numPred(i, cls, op, lits), notConst, nil
	case clsBool:
		want := lits[0].B == (op == OpEq)
		if in {
			var t, f bool
			for _, l := range lits {
				t, f = t || l.B, f || !l.B
			}
			if t && f {
				return alwaysTrue, notConst, nil
			}
			want = t
		}
		return func(r *ipfix.Record) bool { return r.Bool(i) == want }, notConst, nil
	case clsMAC:
		vals := make([][]byte, len(lits))
		for j := range lits {
			vals[j] = lits[j].MAC[:]
		}
		return bytesPred(i, op, vals), notConst, nil
	case clsBytes:
		vals := make([][]byte, len(lits))
		for j := range lits {
			vals[j] = []byte(lits[j].S)
		}
		return bytesPred(i, op, vals), notConst, nil
	case clsTime:
		vals := make([]int64, len(lits))
		for j := range lits {
			vals[j] = unixNano(lits[j].Time)
		}
		if !in {
			v := vals[0]
			return func(r *ipfix.Record) bool { return op.holds(cmpInt(r.UnixNano(i), v)) }, notConst, nil
		}
		return func(r *ipfix.Record) bool {
			t := r.UnixNano(i)
			for _, v := range vals {
				if t == v {
					return true
				}
			}
			return false
		}, notConst, nil
	case clsAddr:
		return addrPred(i, c.l.Fields[i], op, lits, in), notConst, nil
	}
	panic("BUG: filter: unhandled class")
}

var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// unixNano saturates like ipfix.Record.UnixNano.
func unixNano(t time.Time) int64 {
	switch {
	case t.Before(minTime):
		return math.MinInt64
	case t.After(maxTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

func cmpInt[T int64 | uint64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// num is a literal as a number: an integer (neg, mag) or a float.
type num struct {
	isFloat bool
	neg     bool
	mag     uint64
	f       float64
}

func toNum(l Literal) num {
	if l.Kind == LitFloat {
		return num{isFloat: true, f: l.F}
	}
	return num{neg: l.Neg, mag: l.Mag}
}

// cmpUintNum compares an unsigned value with a number exactly.
func cmpUintNum(u uint64, n num) int {
	if n.isFloat {
		return -cmpFloatUint(n.f, u)
	}
	if n.neg {
		return 1
	}
	return cmpInt(u, n.mag)
}

// cmpIntNum compares a signed value with a number exactly.
func cmpIntNum(v int64, n num) int {
	if n.isFloat {
		return -cmpFloatInt(n.f, v)
	}
	if n.neg {
		return cmpInt(v, -int64(n.mag)) // -(1<<63) wraps to MinInt64, as it should
	}
	if v < 0 {
		return -1
	}
	return cmpInt(uint64(v), n.mag)
}

// cmpFloatUint compares a (non-NaN) float with an unsigned integer exactly.
func cmpFloatUint(f float64, u uint64) int {
	switch {
	case f < 0:
		return -1
	case f >= 1<<64:
		return 1
	}
	t := math.Trunc(f)
	if c := cmpInt(uint64(t), u); c != 0 {
		return c
	}
	if f > t {
		return 1
	}
	return 0
}

// cmpFloatInt compares a (non-NaN) float with a signed integer exactly.
func cmpFloatInt(f float64, v int64) int {
	if v >= 0 {
		return cmpFloatUint(f, uint64(v))
	}
	if f >= 0 {
		return 1
	}
	// Both negative: compare magnitudes, reversed.
	return -cmpFloatUint(-f, uint64(-(v+1))+1)
}

// cmpFloatNum compares a float value with a number; ok is false for NaN.
func cmpFloatNum(f float64, n num) (int, bool) {
	if f != f {
		return 0, false
	}
	if n.isFloat {
		switch {
		case f < n.f:
			return -1, true
		case f > n.f:
			return 1, true
		}
		return 0, true
	}
	if n.neg {
		return cmpFloatInt(f, -int64(n.mag)), true
	}
	return cmpFloatUint(f, n.mag), true
}

func numPred(i int, cls class, op Op, lits []Literal) pred {
	ns := make([]num, len(lits))
	for j := range lits {
		ns[j] = toNum(lits[j])
	}
	if len(ns) == 1 {
		n := ns[0]
		switch cls {
		case clsUnsigned:
			if !n.isFloat && !n.neg {
				// The common case: an unsigned field against a
				// non-negative integer.
				m := n.mag
				switch op {
				case OpEq:
					return func(r *ipfix.Record) bool { return r.Uint(i) == m }
				case OpNe:
					return func(r *ipfix.Record) bool { return r.Uint(i) != m }
				}
			}
			return func(r *ipfix.Record) bool { return op.holds(cmpUintNum(r.Uint(i), n)) }
		case clsSigned:
			return func(r *ipfix.Record) bool { return op.holds(cmpIntNum(r.Int(i), n)) }
		}
		return func(r *ipfix.Record) bool {
			c, ok := cmpFloatNum(r.Float(i), n)
			if !ok {
				return op == OpNe
			}
			return op.holds(c)
		}
	}
	switch cls {
	case clsUnsigned:
		// Integers the field can hold go into a plain list; others
		// can only match through their float value.
		var us []uint64
		var rest []num
		for _, n := range ns {
			if !n.isFloat && !n.neg {
				us = append(us, n.mag)
			} else {
				rest = append(rest, n)
			}
		}
		return func(r *ipfix.Record) bool {
			v := r.Uint(i)
			for _, u := range us {
				if v == u {
					return true
				}
			}
			for _, n := range rest {
				if cmpUintNum(v, n) == 0 {
					return true
				}
			}
			return false
		}
	case clsSigned:
		return func(r *ipfix.Record) bool {
			v := r.Int(i)
			for _, n := range ns {
				if cmpIntNum(v, n) == 0 {
					return true
				}
			}
			return false
		}
	}
	return func(r *ipfix.Record) bool {
		v := r.Float(i)
		for _, n := range ns {
			if c, ok := cmpFloatNum(v, n); ok && c == 0 {
				return true
			}
		}
		return false
	}
}

func bytesPred(i int, op Op, vals [][]byte) pred {
	if len(vals) == 1 {
		v := vals[0]
		if op == OpEq {
			return func(r *ipfix.Record) bool { return bytes.Equal(r.Bytes(i), v) }
		}
		return func(r *ipfix.Record) bool { return op.holds(bytes.Compare(r.Bytes(i), v)) }
	}
	return func(r *ipfix.Record) bool {
		b := r.Bytes(i)
		for _, v := range vals {
			if bytes.Equal(b, v) {
				return true
			}
		}
		return false
	}
}

// v4net is an IPv4 prefix (or address, as a /32) as masked integers.
type v4net struct{ net, mask uint32 }

func addrPred(i int, f ipfix.Field, op Op, lits []Literal, in bool) pred {
	if !in {
		a := lits[0].Addr
		if f.Length == 4 && a.Is4() && (op == OpEq || op == OpNe) {
			v := ipfix.Uint(a.AsSlice())
			if op == OpEq {
				return func(r *ipfix.Record) bool { return r.Uint(i) == v }
			}
			return func(r *ipfix.Record) bool { return r.Uint(i) != v }
		}
		return func(r *ipfix.Record) bool {
			x := r.Addr(i)
			if x.BitLen() != a.BitLen() {
				return op == OpNe
			}
			return op.holds(x.Compare(a))
		}
	}
	if f.Length == 4 {
		// IPv4 fast path: masked integer compares; IPv6 entries never
		// match a 4-octet field.
		var nets []v4net
		for _, l := range lits {
			p := l.Pfx
			if l.Kind == LitAddr {
				p = netip.PrefixFrom(l.Addr, l.Addr.BitLen())
			}
			if !p.Addr().Is4() {
				continue
			}
			p = p.Masked()
			mask := uint32(0)
			if p.Bits() > 0 {
				mask = ^uint32(0) << (32 - p.Bits())
			}
			nets = append(nets, v4net{uint32(ipfix.Uint(p.Addr().AsSlice())), mask})
		}
		return func(r *ipfix.Record) bool {
			v := uint32(r.Uint(i))
			for _, n := range nets {
				if v&n.mask == n.net {
					return true
				}
			}
			return false
		}
	}
	var addrs []netip.Addr
	var pfxs []netip.Prefix
	for _, l := range lits {
		if l.Kind == LitAddr {
			addrs = append(addrs, l.Addr)
		} else {
			pfxs = append(pfxs, l.Pfx.Masked())
		}
	}
	return func(r *ipfix.Record) bool {
		x := r.Addr(i)
		for _, a := range addrs {
			if x == a {
				return true
			}
		}
		for _, p := range pfxs {
			if p.Contains(x) {
				return true
			}
		}
		return false
	}
}
