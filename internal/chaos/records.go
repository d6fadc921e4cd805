package chaos

import (
	"bytes"
	"hash/fnv"
	"io"
	"net/netip"
	"os"
	"strconv"
)

// Output follows a JSON lines file that Sluice appends records to and
// sorts its records: those of `sluice gen` by domain and record number,
// the rest (real exporters) counted. A line cut short by a kill is counted
// as garbled, not parsed. Not safe for concurrent use.
type Output struct {
	path    string
	off     int64
	partial []byte
	buf     []byte

	// Gen counts each gen record seen: domain<<32 | n.
	Gen map[uint64]int
	// MaxN is the highest record number seen per gen domain.
	MaxN map[uint32]uint32
	// Other counts distinct data records that are not gen's (a record
	// repeated by a mediator's replay is the same line), OtherRepeated
	// their repeats; Options options records; Garbled lines that are not
	// whole JSON objects.
	Other, OtherRepeated, Options, Garbled, Lines int
	other                                         map[uint64]bool
}

// NewOutput follows path (which may not exist yet).
func NewOutput(path string) *Output {
	return &Output{path: path, Gen: map[uint64]int{}, MaxN: map[uint32]uint32{}, other: map[uint64]bool{}, buf: make([]byte, 1<<20)}
}

// Poll reads what was appended since the last call.
func (o *Output) Poll() error {
	f, err := os.Open(o.path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(o.off, io.SeekStart); err != nil {
		return err
	}
	for {
		n, err := f.Read(o.buf)
		o.off += int64(n)
		data := o.buf[:n]
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				o.partial = append(o.partial, data...)
				break
			}
			line := data[:i]
			if len(o.partial) > 0 {
				line = append(o.partial, line...)
				o.partial = o.partial[:0]
			}
			o.line(line)
			data = data[i+1:]
		}
		if err == io.EOF || n == 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

var (
	srcKey    = []byte(`"sourceIPv6Address":"`)
	domainKey = []byte(`"observation_domain":`)
	optKey    = []byte(`"options":true`)
)

// GenRecord reads gen's domain and record number from a source address.
func GenRecord(a netip.Addr) (domain uint32, n uint32, ok bool) {
	if !a.Is6() {
		return 0, 0, false
	}
	b := a.As16()
	if b[0] != 0x20 || b[1] != 0x01 || b[2] != 0x0d || b[3] != 0xb8 || b[4] != 0 || b[5] != 1 || b[6] != 0 || b[7] == 0 ||
		b[8]|b[9]|b[10]|b[11] != 0 {
		return 0, 0, false
	}
	return uint32(b[7]), uint32(b[12])<<24 | uint32(b[13])<<16 | uint32(b[14])<<8 | uint32(b[15]), true
}

func (o *Output) line(l []byte) {
	o.Lines++
	if len(l) < 2 || l[0] != '{' || l[len(l)-1] != '}' {
		o.Garbled++
		return
	}
	if bytes.Contains(l, optKey) {
		o.Options++
		return
	}
	if d, n, ok := o.genRecord(l); ok {
		o.Gen[uint64(d)<<32|uint64(n)]++
		if m, seen := o.MaxN[d]; !seen || n > m {
			o.MaxN[d] = n
		}
		return
	}
	h := fnv.New64a()
	h.Write(l)
	if k := h.Sum64(); o.other[k] {
		o.OtherRepeated++
	} else {
		o.other[k] = true
		o.Other++
	}
}

func (o *Output) genRecord(l []byte) (uint32, uint32, bool) {
	i := bytes.Index(l, srcKey)
	if i < 0 {
		return 0, 0, false
	}
	rest := l[i+len(srcKey):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return 0, 0, false
	}
	a, err := netip.ParseAddr(string(rest[:j]))
	if err != nil {
		return 0, 0, false
	}
	d, n, ok := GenRecord(a)
	if !ok {
		return 0, 0, false
	}
	// The domain must agree with the message's, or it is not gen's.
	k := bytes.Index(l, domainKey)
	if k < 0 {
		return 0, 0, false
	}
	rest = l[k+len(domainKey):]
	e := bytes.IndexAny(rest, ",}")
	if e < 0 {
		return 0, 0, false
	}
	dom, err := strconv.ParseUint(string(rest[:e]), 10, 32)
	if err != nil || uint32(dom) != d {
		return 0, 0, false
	}
	return d, n, true
}

// Domain is what came out for one gen domain.
type Domain struct {
	Distinct int // distinct records
	Repeated int // records beyond the first of each
}

// Count sums the records of domain d.
func (o *Output) Count(d uint32) Domain {
	var r Domain
	for k, c := range o.Gen {
		if uint32(k>>32) == d {
			r.Distinct++
			r.Repeated += c - 1
		}
	}
	return r
}

// Missing lists the record numbers of domain d in [from, to) that never
// came out, as runs [a, b).
func (o *Output) Missing(d uint32, from, to uint32) [][2]uint32 {
	var runs [][2]uint32
	for n := from; n < to; n++ {
		if o.Gen[uint64(d)<<32|uint64(n)] > 0 {
			continue
		}
		if len(runs) > 0 && runs[len(runs)-1][1] == n {
			runs[len(runs)-1][1] = n + 1
		} else {
			runs = append(runs, [2]uint32{n, n + 1})
		}
	}
	return runs
}

// Total is every gen record of the given domains seen (repeats included).
func (o *Output) Total(domains ...uint32) int {
	n := 0
	for k, c := range o.Gen {
		for _, d := range domains {
			if uint32(k>>32) == d {
				n += c
			}
		}
	}
	return n
}
