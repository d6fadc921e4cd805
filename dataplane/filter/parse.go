package filter

import (
	"errors"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// Limits that keep hostile input from exhausting the stack or memory.
const (
	MaxLen   = 64 << 10 // bytes of source
	MaxDepth = 64       // nested parentheses and "not"
)

// Expr is a parsed filter expression. It is immutable and can be compiled
// for any number of layouts.
type Expr struct {
	root node
}

// node is one of *constNode, *notNode, *andNode, *orNode, *hasNode,
// *cmpNode, *inNode.
type node interface{ isNode() }

type constNode struct{ val bool }
type notNode struct{ x node }
type andNode struct{ xs []node }
type orNode struct{ xs []node }
type hasNode struct{ name string }
type cmpNode struct {
	name string
	op   Op
	lit  Literal
}
type inNode struct {
	name string
	lits []Literal
}

func (*constNode) isNode() {}
func (*notNode) isNode()   {}
func (*andNode) isNode()   {}
func (*orNode) isNode()    {}
func (*hasNode) isNode()   {}
func (*cmpNode) isNode()   {}
func (*inNode) isNode()    {}

// Op is a comparison operator.
type Op uint8

// Comparison operators.
const (
	OpEq Op = iota
	OpNe
	OpLt
	OpLe
	OpGt
	OpGe
)

var opNames = [...]string{OpEq: "==", OpNe: "!=", OpLt: "<", OpLe: "<=", OpGt: ">", OpGe: ">="}

func (o Op) String() string { return opNames[o] }

// holds reports whether a comparison result c (-1, 0, 1) satisfies o.
func (o Op) holds(c int) bool {
	switch o {
	case OpEq:
		return c == 0
	case OpNe:
		return c != 0
	case OpLt:
		return c < 0
	case OpLe:
		return c <= 0
	case OpGt:
		return c > 0
	}
	return c >= 0
}

// LitKind is the kind of a literal.
type LitKind uint8

// Literal kinds.
const (
	LitInt LitKind = iota
	LitFloat
	LitString
	LitAddr
	LitPrefix
	LitMAC
	LitBool
	LitTime
)

var litKindNames = [...]string{LitInt: "integer", LitFloat: "float", LitString: "string",
	LitAddr: "address", LitPrefix: "prefix", LitMAC: "mac address", LitBool: "boolean", LitTime: "time"}

func (k LitKind) String() string { return litKindNames[k] }

// Literal is a constant of an expression. Only the fields of its Kind are set.
type Literal struct {
	Kind LitKind
	Neg  bool   // LitInt: negative; the value is -Mag
	Mag  uint64 // LitInt: magnitude
	F    float64
	S    string
	Addr netip.Addr
	Pfx  netip.Prefix
	MAC  [6]byte
	B    bool
	Time time.Time
}

// Error is a parse error at a 1-based byte column.
type Error struct {
	Column int
	Reason string
}

func (e *Error) Error() string {
	return "filter: column " + strconv.Itoa(e.Column) + ": " + e.Reason
}

// Parse parses a filter expression.
func Parse(src string) (*Expr, error) {
	if len(src) > MaxLen {
		return nil, &Error{Column: MaxLen + 1, Reason: "expression longer than " + strconv.Itoa(MaxLen) + " bytes"}
	}
	p := &parser{src: src}
	p.next()
	n, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tEOF {
		return nil, p.errf(p.tok.pos, "unexpected "+p.tok.describe())
	}
	return &Expr{root: n}, nil
}

// MustParse is Parse that panics on error, for tests and constants.
func MustParse(src string) *Expr {
	e, err := Parse(src)
	if err != nil {
		panic(err)
	}
	return e
}

type tokKind uint8

const (
	tEOF tokKind = iota
	tWord
	tString
	tOp
	tLParen
	tRParen
	tLBrack
	tRBrack
	tComma
	tBad
)

type token struct {
	kind tokKind
	pos  int
	text string // word text, unquoted string, operator
	op   Op
}

func (t token) describe() string {
	switch t.kind {
	case tEOF:
		return "end of expression"
	case tString:
		return "string " + quote(t.text)
	case tWord, tOp:
		return "\"" + t.text + "\""
	case tLParen:
		return "\"(\""
	case tRParen:
		return "\")\""
	case tLBrack:
		return "\"[\""
	case tRBrack:
		return "\"]\""
	case tComma:
		return "\",\""
	}
	return "character"
}

type parser struct {
	src     string
	off     int
	tok     token
	depth   int
	err     *Error // lexer error, reported when the bad token is consumed
	prevPos int
}

func (p *parser) errf(pos int, reason string) error {
	return &Error{Column: pos + 1, Reason: reason}
}

func isWordByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '_' || c == '.' || c == ':' || c == '/' || c == '-' || c == '+'
}

func (p *parser) next() {
	s := p.src
	for p.off < len(s) && (s[p.off] == ' ' || s[p.off] == '\t' || s[p.off] == '\n' || s[p.off] == '\r') {
		p.off++
	}
	start := p.off
	if p.off >= len(s) {
		p.tok = token{kind: tEOF, pos: start}
		return
	}
	c := s[p.off]
	switch c {
	case '(':
		p.off++
		p.tok = token{kind: tLParen, pos: start}
		return
	case ')':
		p.off++
		p.tok = token{kind: tRParen, pos: start}
		return
	case '[':
		p.off++
		p.tok = token{kind: tLBrack, pos: start}
		return
	case ']':
		p.off++
		p.tok = token{kind: tRBrack, pos: start}
		return
	case ',':
		p.off++
		p.tok = token{kind: tComma, pos: start}
		return
	case '=', '!', '<', '>':
		p.off++
		two := p.off < len(s) && s[p.off] == '='
		if two {
			p.off++
		}
		var op Op
		switch {
		case c == '=' && two:
			op = OpEq
		case c == '!' && two:
			op = OpNe
		case c == '<':
			op = OpLt
			if two {
				op = OpLe
			}
		case c == '>':
			op = OpGt
			if two {
				op = OpGe
			}
		default:
			p.tok = token{kind: tBad, pos: start}
			p.err = &Error{Column: start + 1, Reason: "unexpected \"" + string(c) + "\" (did you mean \"" + string(c) + "=\"?)"}
			return
		}
		p.tok = token{kind: tOp, pos: start, op: op, text: s[start:p.off]}
		return
	case '"':
		p.off++
		var b []byte
		plain := true
		for p.off < len(s) {
			c := s[p.off]
			if c == '"' {
				text := s[start+1 : p.off]
				if !plain {
					text = string(b)
				}
				p.off++
				p.tok = token{kind: tString, pos: start, text: text}
				return
			}
			if c == '\\' {
				if p.off+1 >= len(s) || (s[p.off+1] != '\\' && s[p.off+1] != '"') {
					p.tok = token{kind: tBad, pos: p.off}
					p.err = &Error{Column: p.off + 1, Reason: "invalid escape in string (only \\\\ and \\\" are allowed)"}
					p.off = len(s)
					return
				}
				if plain {
					b = append(b, s[start+1:p.off]...)
					plain = false
				}
				b = append(b, s[p.off+1])
				p.off += 2
				continue
			}
			if !plain {
				b = append(b, c)
			}
			p.off++
		}
		p.tok = token{kind: tBad, pos: start}
		p.err = &Error{Column: start + 1, Reason: "unterminated string"}
		return
	}
	if isWordByte(c) {
		for p.off < len(s) && isWordByte(s[p.off]) {
			p.off++
		}
		p.tok = token{kind: tWord, pos: start, text: s[start:p.off]}
		return
	}
	p.off++
	p.tok = token{kind: tBad, pos: start}
	p.err = &Error{Column: start + 1, Reason: "unexpected character " + strconv.QuoteRune(rune(c))}
	if c >= 0x80 {
		p.err.Reason = "unexpected byte " + strconv.Quote(string(c))
	}
}

// unexpected reports the current token as wrong, in favour of a lexer error.
func (p *parser) unexpected(want string) error {
	if p.tok.kind == tBad {
		return p.err
	}
	return p.errf(p.tok.pos, "expected "+want+", found "+p.tok.describe())
}

func (p *parser) isKeyword(kw string) bool { return p.tok.kind == tWord && p.tok.text == kw }

func (p *parser) parseOr() (node, error) {
	x, err := p.parseAnd()
	if err != nil {
		return nil, err
	}
	if !p.isKeyword("or") {
		return x, nil
	}
	xs := appendFlat[*orNode](nil, x)
	for p.isKeyword("or") {
		p.next()
		y, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		xs = appendFlat[*orNode](xs, y)
	}
	return &orNode{xs: xs}, nil
}

func (p *parser) parseAnd() (node, error) {
	x, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	if !p.isKeyword("and") {
		return x, nil
	}
	xs := appendFlat[*andNode](nil, x)
	for p.isKeyword("and") {
		p.next()
		y, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		xs = appendFlat[*andNode](xs, y)
	}
	return &andNode{xs: xs}, nil
}

// appendFlat splices a parenthesised chain of the same operator, so that
// "(a and b) and c" and "a and b and c" are the same expression.
func appendFlat[T *andNode | *orNode](xs []node, x node) []node {
	if y, ok := x.(T); ok {
		switch y := any(y).(type) {
		case *andNode:
			return append(xs, y.xs...)
		case *orNode:
			return append(xs, y.xs...)
		}
	}
	return append(xs, x)
}

func (p *parser) enter(pos int) error {
	p.depth++
	if p.depth > MaxDepth {
		return p.errf(pos, "expression nested deeper than "+strconv.Itoa(MaxDepth))
	}
	return nil
}

func (p *parser) parseUnary() (node, error) {
	if p.isKeyword("not") {
		if err := p.enter(p.tok.pos); err != nil {
			return nil, err
		}
		p.next()
		x, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		p.depth--
		return &notNode{x: x}, nil
	}
	return p.parsePrimary()
}

var keywords = map[string]bool{"and": true, "or": true, "not": true, "in": true, "has": true, "true": true, "false": true}

func (p *parser) parsePrimary() (node, error) {
	t := p.tok
	switch t.kind {
	case tLParen:
		if err := p.enter(t.pos); err != nil {
			return nil, err
		}
		p.next()
		x, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		if p.tok.kind != tRParen {
			return nil, p.unexpected("\")\" or operator")
		}
		p.depth--
		p.next()
		return x, nil
	case tWord:
	default:
		return nil, p.unexpected("expression")
	}
	switch t.text {
	case "true", "false":
		p.next()
		return &constNode{val: t.text == "true"}, nil
	case "has":
		p.next()
		name, err := p.parseName()
		if err != nil {
			return nil, err
		}
		return &hasNode{name: name}, nil
	}
	name, err := p.parseName()
	if err != nil {
		return nil, err
	}
	switch {
	case p.tok.kind == tOp:
		op := p.tok.op
		p.next()
		lit, err := p.parseLiteral()
		if err != nil {
			return nil, err
		}
		if lit.Kind == LitPrefix {
			return nil, p.errf(p.prevPos, "a prefix can only be used with \"in\"")
		}
		return &cmpNode{name: name, op: op, lit: lit}, nil
	case p.isKeyword("in"):
		p.next()
		if p.tok.kind != tLBrack {
			lit, err := p.parseLiteral()
			if err != nil {
				return nil, err
			}
			return &inNode{name: name, lits: []Literal{lit}}, nil
		}
		p.next()
		lits := []Literal{}
		for p.tok.kind != tRBrack {
			if len(lits) > 0 {
				if p.tok.kind != tComma {
					return nil, p.unexpected("\",\" or \"]\"")
				}
				p.next()
			}
			lit, err := p.parseLiteral()
			if err != nil {
				return nil, err
			}
			lits = append(lits, lit)
		}
		p.next()
		return &inNode{name: name, lits: lits}, nil
	}
	return nil, p.unexpected("comparison operator or \"in\" after " + quote(name))
}

func isName(s string) bool {
	if s == "" || '0' <= s[0] && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// knownName reports whether name can name a field: a registered element, a
// repeated field key (name_N), or an unregistered element's name.
func knownName(name string) bool {
	if _, ok := ipfix.ElementByName(name); ok {
		return true
	}
	i := strings.LastIndexByte(name, '_')
	return i > 0 && isDigits(name[i+1:]) && name[i+1] != '0' && knownName(name[:i])
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (p *parser) parseName() (string, error) {
	t := p.tok
	if t.kind != tWord || !isName(t.text) || keywords[t.text] {
		return "", p.unexpected("information element name")
	}
	if !knownName(t.text) {
		return "", p.errf(t.pos, "unknown information element "+quote(t.text))
	}
	p.next()
	return t.text, nil
}

func (p *parser) parseLiteral() (Literal, error) {
	t := p.tok
	p.prevPos = t.pos
	switch t.kind {
	case tString:
		p.next()
		return Literal{Kind: LitString, S: t.text}, nil
	case tWord:
	default:
		return Literal{}, p.unexpected("literal")
	}
	lit, reason := parseWordLiteral(t.text)
	if reason != "" {
		return Literal{}, p.errf(t.pos, reason)
	}
	p.next()
	return lit, nil
}

func parseWordLiteral(s string) (Literal, string) {
	switch s {
	case "true", "false":
		return Literal{Kind: LitBool, B: s == "true"}, ""
	}
	bad := "invalid literal " + quote(s)
	if strings.IndexByte(s, '/') >= 0 {
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return Literal{}, "invalid prefix " + quote(s)
		}
		return Literal{Kind: LitPrefix, Pfx: pfx}, ""
	}
	if m, ok := parseMAC(s); ok {
		return Literal{Kind: LitMAC, MAC: m}, ""
	}
	if strings.IndexByte(s, ':') >= 0 && strings.IndexByte(s, 'T') < 0 && strings.IndexByte(s, 't') < 0 ||
		strings.Count(s, ".") == 3 && !strings.ContainsAny(s, "eE-+") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return Literal{}, "invalid address " + quote(s)
		}
		return Literal{Kind: LitAddr, Addr: a}, ""
	}
	if len(s) >= 11 && s[4] == '-' && isDigits(s[:4]) {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return Literal{}, "invalid time " + quote(s) + " (want RFC 3339)"
		}
		// Kept in UTC and printed so: its year must have four digits
		// there too, or the printed filter would not parse.
		if y := tm.UTC().Year(); y < 0 || y > 9999 {
			return Literal{}, "time " + quote(s) + " out of range (years 0000 to 9999 in UTC)"
		}
		return Literal{Kind: LitTime, Time: tm.UTC()}, ""
	}
	digits, neg := strings.CutPrefix(s, "-")
	if digits == "" || !('0' <= digits[0] && digits[0] <= '9' || digits[0] == '.') {
		return Literal{}, bad
	}
	if hex, ok := strings.CutPrefix(digits, "0x"); ok || strings.HasPrefix(digits, "0X") {
		if !ok {
			hex = digits[2:]
		}
		if v, err := strconv.ParseUint(hex, 16, 64); err == nil && !strings.Contains(hex, "_") {
			return intLit(neg, v, s)
		}
		return Literal{}, bad
	}
	if isDigits(digits) {
		v, err := strconv.ParseUint(digits, 10, 64)
		if err != nil {
			return Literal{}, "integer " + quote(s) + " out of range"
		}
		return intLit(neg, v, s)
	}
	if strings.ContainsAny(digits, "_xXpP") {
		return Literal{}, bad
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return Literal{}, bad
	}
	return Literal{Kind: LitFloat, F: f}, ""
}

func intLit(neg bool, v uint64, s string) (Literal, string) {
	if neg && v > 1<<63 {
		return Literal{}, "integer " + quote(s) + " out of range"
	}
	if v == 0 {
		neg = false
	}
	return Literal{Kind: LitInt, Neg: neg, Mag: v}, ""
}

func parseMAC(s string) (m [6]byte, ok bool) {
	if len(s) != 17 {
		return m, false
	}
	sep := s[2]
	if sep != ':' && sep != '-' {
		return m, false
	}
	for i := range 6 {
		if i > 0 && s[3*i-1] != sep {
			return m, false
		}
		v, err := strconv.ParseUint(s[3*i:3*i+2], 16, 8)
		if err != nil {
			return m, false
		}
		m[i] = byte(v)
	}
	return m, true
}

func quote(s string) string {
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return string(append(b, '"'))
}

// String formats the literal so that Parse reads it back unchanged.
func (l Literal) String() string {
	switch l.Kind {
	case LitInt:
		s := strconv.FormatUint(l.Mag, 10)
		if l.Neg {
			s = "-" + s
		}
		return s
	case LitFloat:
		s := strconv.FormatFloat(l.F, 'g', -1, 64)
		if !strings.ContainsAny(s, ".e") {
			s += ".0"
		}
		return s
	case LitString:
		return quote(l.S)
	case LitAddr:
		return l.Addr.String()
	case LitPrefix:
		return l.Pfx.String()
	case LitMAC:
		const hexd = "0123456789abcdef"
		b := make([]byte, 0, 17)
		for i, c := range l.MAC {
			if i > 0 {
				b = append(b, ':')
			}
			b = append(b, hexd[c>>4], hexd[c&15])
		}
		return string(b)
	case LitBool:
		return strconv.FormatBool(l.B)
	case LitTime:
		return l.Time.Format(time.RFC3339Nano)
	}
	return "?"
}

// String formats the expression in canonical form; Parse reads it back as
// an equal expression.
func (e *Expr) String() string {
	var b strings.Builder
	writeNode(&b, e.root)
	return b.String()
}

func writeNode(b *strings.Builder, n node) {
	switch n := n.(type) {
	case *constNode:
		b.WriteString(strconv.FormatBool(n.val))
	case *notNode:
		b.WriteString("not ")
		writeOperand(b, n.x)
	case *andNode:
		for i, x := range n.xs {
			if i > 0 {
				b.WriteString(" and ")
			}
			writeOperand(b, x)
		}
	case *orNode:
		for i, x := range n.xs {
			if i > 0 {
				b.WriteString(" or ")
			}
			if _, ok := x.(*orNode); ok {
				writeParen(b, x)
			} else {
				writeNode(b, x)
			}
		}
	case *hasNode:
		b.WriteString("has ")
		b.WriteString(n.name)
	case *cmpNode:
		b.WriteString(n.name)
		b.WriteByte(' ')
		b.WriteString(n.op.String())
		b.WriteByte(' ')
		b.WriteString(n.lit.String())
	case *inNode:
		b.WriteString(n.name)
		b.WriteString(" in [")
		for i, l := range n.lits {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(l.String())
		}
		b.WriteByte(']')
	}
}

// writeOperand writes an operand of "and" or "not", parenthesising chains.
func writeOperand(b *strings.Builder, n node) {
	switch n.(type) {
	case *andNode, *orNode:
		writeParen(b, n)
	default:
		writeNode(b, n)
	}
}

func writeParen(b *strings.Builder, n node) {
	b.WriteByte('(')
	writeNode(b, n)
	b.WriteByte(')')
}

var errNil = errors.New("filter: nil expression")
