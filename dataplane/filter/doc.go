// Package filter implements the select language of the mediator: a small
// boolean language over IPFIX information elements named as in the IANA
// registry (sourceIPv4Address), as RFC 5103 reverse elements
// (reverseOctetDeltaCount), as the vendor and NetFlow v9 registry names
// them (ixiaL7AppName, xlateSrcAddrIpv4: see ipfix.LookupName) or by a
// layout's field key (octetDeltaCount_2 for the second occurrence of an
// element in a template).
//
// An expression is parsed once (Parse), compiled once per template layout
// (Expr.Compile) and then evaluated per record (Program.Match) without
// allocating.
//
// Grammar (EBNF; keywords are lower-case and reserved):
//
//	expr     = and { "or" and } .
//	and      = unary { "and" unary } .
//	unary    = "not" unary | primary .
//	primary  = "(" expr ")" | "true" | "false" | "has" name
//	         | name cmpop literal | name "in" ( list | literal ) .
//	cmpop    = "==" | "!=" | "<" | "<=" | ">" | ">=" .
//	list     = "[" [ literal { "," literal } ] "]" .
//	literal  = integer | float | string | address | prefix | mac
//	         | "true" | "false" | time .
//	integer  = [ "-" ] ( decimal | "0x" hexdigits ) .          (* 42, -7, 0x1f *)
//	float    = [ "-" ] decimal ( "." decimal | exponent ) ...  (* 1.5, -2e-3 *)
//	string   = `"` { char | `\\` | `\"` } `"` .
//	address  = IPv4 or IPv6 address (10.0.0.1, 2001:db8::1), no zone .
//	prefix   = address "/" bits .  (* only inside "in" *)
//	mac      = six hex pairs separated by ":" or "-" .
//	time     = RFC 3339 time (2026-01-02T03:04:05.5Z), for dateTime fields .
//	name     = letter_or_underscore { letter | digit | "_" } .
//
// "and" binds tighter than "or"; "not" binds tightest. "has name" is true
// when the layout carries the field (presence is a property of the template).
// "name in 10.0.0.0/8" is short for "name in [10.0.0.0/8]"; a list may mix
// prefixes and addresses.
//
// Semantics:
//   - A name the layout does not carry makes every comparison and "in" on it
//     false (so "x != 1" is false too, while "not x == 1" is true) and
//     "has" false; different templates carry different fields, so this is
//     not an error. Names that are neither registered elements nor field
//     keys (name_N, _ipfix_N, _v9_N, eNidM) are rejected by Parse.
//   - A literal that cannot match the element's data type (a string against
//     an address) is a compile error naming the field.
//   - Unsigned, signed and float elements of any encoded width compare
//     numerically and exactly with integer and float literals: a negative
//     literal against an unsigned field compares as mathematics says. A NaN
//     field value makes every comparison false except "!=".
//   - Addresses compare by value; an IPv4 and an IPv6 address are never
//     equal (IPv4-mapped IPv6 addresses are not unmapped), and ordering
//     between families is false. Prefixes match addresses of their family.
//   - Strings and octetArrays compare byte-wise with string literals, MAC
//     addresses byte-wise with MAC literals, booleans with true/false
//     (== and != only), dateTimes of all four encodings by instant with
//     time literals.
//
// Errors from Parse name the 1-based byte column of the problem; inputs are
// limited to MaxLen bytes and MaxDepth nested parentheses or "not".
package filter
