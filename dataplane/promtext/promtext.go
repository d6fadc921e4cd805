package promtext

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Family is a metric family: a name, a type and a help text. Declare families
// once, as package variables, with Counter, Gauge or Histogram; a Family is
// immutable and safe for concurrent use.
type Family struct {
	name   string
	header string   // "# HELP ...\n# TYPE ...\n", escaped once
	les    []string // histogram only: the le label of each bucket, "+Inf" last
}

// Counter declares a counter family. It panics if name is not a valid metric
// name or help is not valid UTF-8.
func Counter(name, help string) *Family { return newFamily(name, "counter", help) }

// Gauge declares a gauge family. It panics like Counter.
func Gauge(name, help string) *Family { return newFamily(name, "gauge", help) }

// Histogram declares a histogram family with the given bucket upper bounds,
// strictly increasing and finite; the +Inf bucket is implied. It panics like
// Counter, or if the bounds are not so.
func Histogram(name, help string, bounds []float64) *Family {
	f := newFamily(name, "histogram", help)
	f.les = make([]string, 0, len(bounds)+1)
	for i, b := range bounds {
		if math.IsNaN(b) || math.IsInf(b, 0) || i > 0 && b <= bounds[i-1] {
			panic("BUG: promtext: histogram " + name + ": bounds must be finite and increasing")
		}
		f.les = append(f.les, strconv.FormatFloat(b, 'g', -1, 64))
	}
	f.les = append(f.les, "+Inf")
	return f
}

func newFamily(name, typ, help string) *Family {
	if !validName(name) {
		panic("BUG: promtext: invalid metric name " + strconv.Quote(name))
	}
	if !utf8.ValidString(help) {
		panic("BUG: promtext: help of " + name + " is not UTF-8")
	}
	return &Family{
		name:   name,
		header: "# HELP " + name + " " + helpEscaper.Replace(help) + "\n# TYPE " + name + " " + typ + "\n",
	}
}

var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)

// validName reports whether s matches [a-zA-Z_:][a-zA-Z0-9_:]*.
func validName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == ':' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

// Writer appends families to a byte slice. It writes a family's header before
// the family's first sample and not again while samples of that family follow
// one another, so write each family's samples together. A Writer belongs to
// the goroutine writing one exposition (it lives on the stack of an
// AppendMetrics call) and is not safe for concurrent use.
//
// Labels are given as alternating names and values. Names must be valid label
// names (they are literals in the callers); values may hold any text: they
// are escaped, and invalid UTF-8 is replaced by U+FFFD.
type Writer struct {
	b    []byte
	last *Family
}

// NewWriter returns a Writer appending to dst.
func NewWriter(dst []byte) Writer { return Writer{b: dst} }

// Bytes returns dst with everything written appended.
func (w *Writer) Bytes() []byte { return w.b }

// Head writes f's HELP and TYPE lines unless f is the family written last.
// Samples call it themselves; call it directly to show a family that has no
// samples now.
func (w *Writer) Head(f *Family) {
	if w.last != f {
		w.b = append(w.b, f.header...)
		w.last = f
	}
}

// Uint appends a sample of counter or gauge f.
func (w *Writer) Uint(f *Family, v uint64, labels ...string) {
	w.series(f, "", labels, "", "")
	w.b = strconv.AppendUint(w.b, v, 10)
	w.b = append(w.b, '\n')
}

// Int appends a sample of counter or gauge f.
func (w *Writer) Int(f *Family, v int64, labels ...string) {
	w.series(f, "", labels, "", "")
	w.b = strconv.AppendInt(w.b, v, 10)
	w.b = append(w.b, '\n')
}

// Float appends a sample of counter or gauge f; NaN and infinities are
// written as NaN, +Inf and -Inf.
func (w *Writer) Float(f *Family, v float64, labels ...string) {
	w.series(f, "", labels, "", "")
	w.b = appendFloat(w.b, v)
	w.b = append(w.b, '\n')
}

// Histogram appends one histogram of family f: buckets[i] counts the
// observations in bucket i alone (not cumulated), the last one those above
// the highest bound, so len(buckets) is one more than f's bounds. sum is the
// sum of the observations.
func (w *Writer) Histogram(f *Family, buckets []uint64, sum float64, labels ...string) {
	if len(buckets) != len(f.les) {
		panic("BUG: promtext: " + f.name + ": bucket count does not match the family's bounds")
	}
	var cum uint64
	for i, n := range buckets {
		cum += n
		w.series(f, "_bucket", labels, "le", f.les[i])
		w.b = strconv.AppendUint(w.b, cum, 10)
		w.b = append(w.b, '\n')
	}
	w.series(f, "_sum", labels, "", "")
	w.b = appendFloat(w.b, sum)
	w.b = append(w.b, '\n')
	w.series(f, "_count", labels, "", "")
	w.b = strconv.AppendUint(w.b, cum, 10)
	w.b = append(w.b, '\n')
}

// series writes the header if needed, then name+suffix, the labels (and the
// extra pair if any) and the space before the value.
func (w *Writer) series(f *Family, suffix string, labels []string, extraName, extraValue string) {
	if len(labels)%2 != 0 {
		panic("BUG: promtext: " + f.name + ": labels must be name, value pairs")
	}
	if (f.les != nil) != (suffix != "") {
		panic("BUG: promtext: " + f.name + ": histogram and sample calls mixed up")
	}
	w.Head(f)
	b := append(w.b, f.name...)
	b = append(b, suffix...)
	if len(labels) > 0 || extraName != "" {
		b = append(b, '{')
		for i := 0; i < len(labels); i += 2 {
			b = appendPair(b, labels[i], labels[i+1])
			b = append(b, ',')
		}
		if extraName != "" {
			b = appendPair(b, extraName, extraValue)
			b = append(b, ',')
		}
		b[len(b)-1] = '}'
	}
	w.b = append(b, ' ')
}

func appendPair(b []byte, name, value string) []byte {
	b = append(b, name...)
	b = append(b, '=', '"')
	b = appendLabelValue(b, value)
	return append(b, '"')
}

// appendLabelValue appends s escaped for a label value (without the quotes):
// backslash, double quote and newline become \\, \" and \n, and invalid UTF-8
// becomes U+FFFD.
func appendLabelValue(dst []byte, s string) []byte {
	i := 0
	for i < len(s) && s[i] < utf8.RuneSelf && s[i] != '\\' && s[i] != '"' && s[i] != '\n' {
		i++
	}
	dst = append(dst, s[:i]...)
	for i < len(s) {
		c := s[i]
		switch {
		case c == '\\':
			dst = append(dst, `\\`...)
		case c == '"':
			dst = append(dst, `\"`...)
		case c == '\n':
			dst = append(dst, `\n`...)
		case c < utf8.RuneSelf:
			dst = append(dst, c)
		default:
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				dst = append(dst, string(utf8.RuneError)...)
			} else {
				dst = append(dst, s[i:i+n]...)
			}
			i += n
			continue
		}
		i++
	}
	return dst
}

// appendFloat writes v as Prometheus parsers read it; strconv already spells
// the special values NaN, +Inf and -Inf.
func appendFloat(dst []byte, v float64) []byte {
	return strconv.AppendFloat(dst, v, 'g', -1, 64)
}
