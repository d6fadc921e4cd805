package analysis

import (
	"encoding/binary"
	"math"
	"unsafe"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
	"github.com/sluice-flow/sluice/dataplane/offline/decode"
)

// Elements the jobs read (IANA IDs; reverse ones under ipfix.ReversePEN).
const (
	ieOctetDeltaCount          = 1
	iePacketDeltaCount         = 2
	ieDeltaFlowCount           = 3
	ieProtocolIdentifier       = 4
	ieSourceTransportPort      = 7
	ieSourceIPv4Address        = 8
	ieDestinationTransportPort = 11
	ieDestinationIPv4Address   = 12
	ieFlowEndSysUpTime         = 21
	ieFlowStartSysUpTime       = 22
	ieSourceIPv6Address        = 27
	ieDestinationIPv6Address   = 28
	ieOctetTotalCount          = 85
	iePacketTotalCount         = 86
	ieFlowStartSeconds         = 150
	ieFlowEndSeconds           = 151
	ieFlowStartMilliseconds    = 152
	ieFlowEndMilliseconds      = 153
	ieFlowStartMicroseconds    = 154
	ieFlowEndMicroseconds      = 155
	ieFlowStartNanoseconds     = 156
	ieFlowEndNanoseconds       = 157
	ieFlowDurationMilliseconds = 161
	ieFlowDurationMicroseconds = 162
)

// The first of these a template carries gives a flow's start (end), as
// the aggregate stage picks them.
var (
	startIDs = [...]uint16{ieFlowStartMilliseconds, ieFlowStartSeconds, ieFlowStartMicroseconds, ieFlowStartNanoseconds, ieFlowStartSysUpTime}
	endIDs   = [...]uint16{ieFlowEndMilliseconds, ieFlowEndSeconds, ieFlowEndMicroseconds, ieFlowEndNanoseconds, ieFlowEndSysUpTime}
)

// counts are a key's counters.
type counts struct {
	octets, packets, flows uint64
}

func (c *counts) add(o counts) {
	c.octets += o.octets
	c.packets += o.packets
	c.flows += o.flows
}

func (c *counts) get(m Metric) uint64 {
	switch m {
	case Packets:
		return c.packets
	case Flows:
		return c.flows
	}
	return c.octets
}

// flowPlan locates a layout's counters and times (field indices, -1 when
// absent).
type flowPlan struct {
	oct, revOct, pkt, revPkt, flows int
	start, end, dur                 int
	startUp, endUp                  bool  // sysUpTime-relative
	durNs                           int64 // ns per unit of dur
}

func newFlowPlan(l *ipfix.Layout) flowPlan {
	p := flowPlan{
		oct:    counterField(l, 0, ieOctetDeltaCount, ieOctetTotalCount),
		revOct: counterField(l, ipfix.ReversePEN, ieOctetDeltaCount, ieOctetTotalCount),
		pkt:    counterField(l, 0, iePacketDeltaCount, iePacketTotalCount),
		revPkt: counterField(l, ipfix.ReversePEN, iePacketDeltaCount, iePacketTotalCount),
		flows:  counterField(l, 0, ieDeltaFlowCount, 0),
		start:  -1, end: -1, dur: -1,
	}
	for _, id := range startIDs {
		if j := timeField(l, id); j >= 0 {
			p.start, p.startUp = j, id == ieFlowStartSysUpTime
			break
		}
	}
	for _, id := range endIDs {
		if j := timeField(l, id); j >= 0 {
			p.end, p.endUp = j, id == ieFlowEndSysUpTime
			break
		}
	}
	if j := counterField(l, 0, ieFlowDurationMilliseconds, 0); j >= 0 {
		p.dur, p.durNs = j, 1e6
	} else if j := counterField(l, 0, ieFlowDurationMicroseconds, 0); j >= 0 {
		p.dur, p.durNs = j, 1e3
	}
	return p
}

// counterField finds an unsigned field of up to 8 octets: id, else alt.
func counterField(l *ipfix.Layout, pen uint32, id, alt uint16) int {
	for _, x := range [2]uint16{id, alt} {
		if x == 0 {
			continue
		}
		if j := l.Index(pen, x); j >= 0 && l.Fields[j].Length != ipfix.VarLen && l.Fields[j].Length <= 8 {
			return j
		}
	}
	return -1
}

// timeField finds a time field whose length its type can be read at.
func timeField(l *ipfix.Layout, id uint16) int {
	j := l.Index(0, id)
	if j < 0 {
		return -1
	}
	n := l.Fields[j].Length
	switch l.Fields[j].IE.Type {
	case ipfix.TypeDateTimeMicroseconds, ipfix.TypeDateTimeNanoseconds:
		if n != 8 {
			return -1
		}
	default:
		if n == ipfix.VarLen || n == 0 || n > 8 {
			return -1
		}
	}
	return j
}

// counters reads a record's counters: forward plus reverse.
func (p *flowPlan) counters(r *ipfix.Record) counts {
	c := counts{flows: 1}
	if p.oct >= 0 {
		c.octets = r.Uint(p.oct)
	}
	if p.pkt >= 0 {
		c.packets = r.Uint(p.pkt)
	}
	if p.revOct >= 0 {
		c.octets += r.Uint(p.revOct)
	}
	if p.revPkt >= 0 {
		c.packets += r.Uint(p.revPkt)
	}
	if p.flows >= 0 {
		c.flows = r.Uint(p.flows)
	}
	return c
}

// directed reads the forward and the reverse counters apart; flows go
// with the forward direction.
func (p *flowPlan) directed(r *ipfix.Record) (fwd, rev counts) {
	fwd.flows = 1
	if p.oct >= 0 {
		fwd.octets = r.Uint(p.oct)
	}
	if p.pkt >= 0 {
		fwd.packets = r.Uint(p.pkt)
	}
	if p.flows >= 0 {
		fwd.flows = r.Uint(p.flows)
	}
	if p.revOct >= 0 {
		rev.octets = r.Uint(p.revOct)
	}
	if p.revPkt >= 0 {
		rev.packets = r.Uint(p.revPkt)
	}
	return fwd, rev
}

// span returns a flow's start and end in Unix ns. A flow with only one
// of them (and no duration) is a point; a flow without either, or whose
// IPFIX sysUpTime times cannot be placed (no systemInitTimeMilliseconds
// from its exporter yet), is placed at its message's export time and ok is
// false. An end before the start is a point at the end.
func (s *scan) span(p *flowPlan, r *decode.Record) (start, end int64, ok bool) {
	var hasS, hasE bool
	if p.start >= 0 {
		start, hasS = s.timeNs(r, p.start, p.startUp)
	}
	if p.end >= 0 {
		end, hasE = s.timeNs(r, p.end, p.endUp)
	}
	switch {
	case hasS && hasE:
	case hasS && p.dur >= 0:
		end = start + int64(r.Rec.Uint(p.dur))*p.durNs
	case hasS:
		end = start
	case hasE:
		start = end
	default:
		t := int64(r.Msg.ExportTime) * 1e9
		return t, t, false
	}
	if end < start {
		start = end
	}
	return start, end, true
}

func (s *scan) timeNs(r *decode.Record, j int, uptime bool) (int64, bool) {
	if !uptime {
		return r.Rec.UnixNano(j), true
	}
	ms := r.Rec.Uint(j)
	if r.Msg.Version != ipfix.VersionIPFIX {
		// As jsonl and the aggregate stage: relative to the header.
		return r.Msg.UptimeTime(uint32(ms)).UnixNano(), true
	}
	init, ok := s.uptimes.initNs(r, s.in.ScopeByPort)
	return init + int64(ms)*1e6, ok
}

// keyPlan copies a layout's key fields into a key at canonical widths.
type keyPlan struct {
	mask byte
	srcs []keySrc
}

type keySrc struct {
	field, off, width int
	conv              uint8 // convCopy, convUint, convInt, convFloat
}

const (
	convCopy uint8 = iota
	convUint
	convInt
	convFloat
)

// newKeyPlan resolves ks against l. A key element the layout lacks, or
// carries at a length its type cannot be read at, is absent (null).
func newKeyPlan(ks *keySpec, l *ipfix.Layout) keyPlan {
	var p keyPlan
	for i, e := range ks.elems {
		j := l.Index(e.ie.PEN, e.ie.ID)
		if j < 0 {
			continue
		}
		n := int(l.Fields[j].Length)
		src := keySrc{field: j, off: e.off, width: e.width}
		switch {
		case n == e.width:
		case n == ipfix.VarLen || n == 0 || n > 8:
			continue
		case isUint(e.ie.Type):
			src.conv = convUint
		case isInt(e.ie.Type):
			src.conv = convInt
		case e.ie.Type == ipfix.TypeFloat64 && n == 4:
			src.conv = convFloat
		default:
			continue
		}
		p.mask |= 1 << i
		p.srcs = append(p.srcs, src)
	}
	return p
}

func isUint(t ipfix.DataType) bool {
	switch t {
	case ipfix.TypeUnsigned8, ipfix.TypeUnsigned16, ipfix.TypeUnsigned32, ipfix.TypeUnsigned64,
		ipfix.TypeDateTimeSeconds, ipfix.TypeDateTimeMilliseconds:
		return true
	}
	return false
}

func isInt(t ipfix.DataType) bool {
	return t >= ipfix.TypeSigned8 && t <= ipfix.TypeSigned64
}

// fill writes r's key into dst, which is zero and at least the key's
// width long.
func (p *keyPlan) fill(dst []byte, r *ipfix.Record) {
	dst[0] = p.mask
	for i := range p.srcs {
		k := &p.srcs[i]
		out := dst[k.off : k.off+k.width]
		switch k.conv {
		case convCopy:
			copy(out, r.Bytes(k.field))
		case convUint:
			putUint(out, r.Uint(k.field))
		case convInt:
			putUint(out, uint64(r.Int(k.field)))
		default:
			binary.BigEndian.PutUint64(out, math.Float64bits(r.Float(k.field)))
		}
	}
}

func putUint(b []byte, v uint64) {
	switch len(b) {
	case 1:
		b[0] = byte(v)
	case 2:
		binary.BigEndian.PutUint16(b, uint16(v))
	case 4:
		binary.BigEndian.PutUint32(b, uint32(v))
	case 8:
		binary.BigEndian.PutUint64(b, v)
	}
}

// keyArray are the key sizes a table is built for: a key is a presence
// byte and the values, zero-padded to the next size.
type keyArray interface {
	[8]byte | [16]byte | [32]byte | [64]byte
}

// keyBytes views a key as bytes.
func keyBytes[K keyArray](k *K) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(k)), unsafe.Sizeof(*k))
}

// Value is one key element's value in a result: the element and its
// value at the element's canonical width, or nil bytes when the record
// lacked it.
type Value struct {
	IE    *ipfix.InfoElement
	Bytes []byte
}

// values splits a key into Values (copies: results outlive the tables).
func (ks *keySpec) values(key []byte) []Value {
	out := make([]Value, len(ks.elems))
	for i, e := range ks.elems {
		out[i].IE = e.ie
		if key[0]&(1<<i) != 0 {
			out[i].Bytes = append([]byte(nil), key[e.off:e.off+e.width]...)
		}
	}
	return out
}

// AppendJSON appends the value as jsonl writes it (addresses, MACs and
// times as strings, numbers as numbers), null when absent.
func (v Value) AppendJSON(dst []byte) []byte {
	if v.Bytes == nil {
		return append(dst, "null"...)
	}
	return jsonl.AppendValue(dst, nil, v.IE, v.Bytes, 0)
}

// String returns the value as text (the JSON form unquoted), empty when
// absent. Key values are never strings, so nothing needs unescaping.
func (v Value) String() string {
	if v.Bytes == nil {
		return ""
	}
	b := v.AppendJSON(nil)
	if len(b) >= 2 && b[0] == '"' {
		b = b[1 : len(b)-1]
	}
	return string(b)
}
