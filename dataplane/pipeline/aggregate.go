package pipeline

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"strings"
	"time"
	"unsafe"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
)

// Elements the aggregate stage reads or adds (IANA IDs).
const (
	ieDeltaFlowCount        = 3
	ieFlowEndSysUpTime      = 21
	ieFlowStartSysUpTime    = 22
	ieFlowStartSeconds      = 150
	ieFlowEndSeconds        = 151
	ieFlowStartMilliseconds = 152
	ieFlowEndMilliseconds   = 153
	ieFlowStartMicroseconds = 154
	ieFlowEndMicroseconds   = 155
	ieFlowStartNanoseconds  = 156
	ieFlowEndNanoseconds    = 157
	maxAggShapes            = 64
	defaultMaxKeys          = 1 << 20
	defaultAggTemplateID    = 4096
	defaultActiveTimeout    = 60 * time.Second
	aggScanEvery            = time.Second
	aggEvictSample          = 8
	initialAggSlots         = 1024
	// freeOldTableBytes: heap tables this large go back to the OS when
	// the table doubles.
	freeOldTableBytes            = 32 << 20
	aggFnSum, aggFnMin, aggFnMax = 0, 1, 2
)

var (
	startIDs = [...]uint16{ieFlowStartMilliseconds, ieFlowStartSeconds, ieFlowStartMicroseconds, ieFlowStartNanoseconds, ieFlowStartSysUpTime}
	endIDs   = [...]uint16{ieFlowEndMilliseconds, ieFlowEndSeconds, ieFlowEndMicroseconds, ieFlowEndNanoseconds, ieFlowEndSysUpTime}
)

// aggStage is RFC 7015 aggregation over an open-addressing table with a
// bound on keys (aggTable). A key is the presence mask then the key values
// at canonical widths, padded to whole 8-octet words; the accumulators
// follow it in the slot, sums first, then minima, then maxima. Records go
// into the table aggBatch at a time, and at every tick before anything
// else. A stage is driven by one goroutine and shares nothing with other
// stages.
type aggStage struct {
	cfg  Aggregate
	keys []aggKey
	vals []aggVal // configured values, then start, end, flows
	keyW int      // key bytes, a multiple of 8
	kw   int      // key words
	// Accumulators in slot order: [0, nSum) sums, [nSum, nSum+nMin)
	// minima, the rest maxima. init holds each one's identity, which is
	// also what a record without the value adds.
	nSum, nMin int
	init       []uint64
	// startPos, endPos, flowsPos: where the three added values are.
	startPos, endPos, flowsPos int
	tab                        aggTable
	// maxSlots is the table's size at MaxKeys.
	maxSlots uint64
	plans    planCache[aggPlan]
	shapes   map[uint32]*ipfix.Layout
	// now is the processing time (ms), set by tick.
	now, lastScan, window int64
	rnd                   uint64
	buf                   []byte
	rec                   ipfix.Record
	msg                   ipfix.Message
	meta                  jsonl.Meta
	next                  sink
	n                     counts
	evicted, expired      uint64
	shapeErrs             uint64
	pub                   aggPub
	// Records taken but not yet in the table (see drain): the hash, key
	// words and accumulator inputs of each, copied out of the record.
	// pendKeyBytes is pendKeys' memory, where keys are built.
	pend         int
	pendH        [aggBatch]uint64
	pendKeys     []uint64
	pendKeyBytes []byte
	pendVals     []uint64
	touched      uint64
}

// aggBatch is how many records the stage takes before looking their slots
// up together.
const aggBatch = 32

type aggKey struct {
	ie    ipfix.InfoElement
	off   int // in the key, after the 4-byte mask
	width int
}

type aggVal struct {
	ie    ipfix.InfoElement
	fn    int
	width int
	pos   int // accumulator index in the slot
}

// aggPlan is where a template's fields go.
type aggPlan struct {
	mask uint32
	keys []aggSrc    // per present key
	vals []aggValSrc // per present configured value
	// absent: accumulators of configured values the template lacks.
	absent []int
	// start, end: time fields; flows: deltaFlowCount.
	start, end, flows int
	err               error
}

type aggSrc struct {
	field, off, width int
	conv              uint8 // 0 copy, 1 unsigned, 2 signed
}

type aggValSrc struct {
	field, pos int
	kind       uint8 // aggValUint, aggValMs, aggValSec
}

const (
	aggValUint = iota
	aggValMs
	aggValSec
)

func newAggregate(line int, a *Aggregate) (*aggStage, error) {
	s := &aggStage{cfg: *a, rnd: 0x9E3779B97F4A7C15, shapes: map[uint32]*ipfix.Layout{}}
	if s.cfg.MaxKeys == 0 {
		s.cfg.MaxKeys = defaultMaxKeys
	}
	if s.cfg.TemplateID == 0 {
		s.cfg.TemplateID = defaultAggTemplateID
	}
	if s.cfg.Interval == 0 && s.cfg.ActiveTimeout == 0 {
		s.cfg.ActiveTimeout = defaultActiveTimeout
	}
	if len(a.Keys) > 32 {
		return nil, errAt(line, "aggregate: at most 32 keys")
	}
	off := 4
	seen := map[string]bool{}
	for _, k := range a.Keys {
		ie, err := element(k)
		if err != nil {
			return nil, errAt(line, "aggregate: %v", err)
		}
		if seen[ie.Name] {
			return nil, errAt(line, "aggregate: key %s given twice", k)
		}
		seen[ie.Name] = true
		w := canonicalLength(ie.Type)
		if w == ipfix.VarLen {
			return nil, errAt(line, "aggregate: key %s is %s; variable-length keys are not supported", k, ie.Type)
		}
		s.keys = append(s.keys, aggKey{ie: ie, off: off, width: int(w)})
		off += int(w)
	}
	s.keyW = (off + 7) &^ 7
	values := a.Values
	if len(values) == 0 {
		values = []string{"octetDeltaCount", "packetDeltaCount"}
	}
	for _, v := range values {
		ie, err := element(v)
		if err != nil {
			return nil, errAt(line, "aggregate: %v", err)
		}
		switch ie.ID {
		case ieFlowStartMilliseconds, ieFlowEndMilliseconds, ieDeltaFlowCount:
			if ie.PEN == 0 {
				continue // always added
			}
		}
		if seen[ie.Name] {
			return nil, errAt(line, "aggregate: %s is both a key and a value, or given twice", v)
		}
		seen[ie.Name] = true
		fn := aggFnSum
		switch {
		case strings.HasPrefix(ie.Name, "minimum") || strings.HasPrefix(ie.Name, "flowStart"):
			fn = aggFnMin
		case strings.HasPrefix(ie.Name, "maximum") || strings.HasPrefix(ie.Name, "flowEnd"):
			fn = aggFnMax
		}
		switch ie.Type {
		case ipfix.TypeUnsigned8, ipfix.TypeUnsigned16, ipfix.TypeUnsigned32, ipfix.TypeUnsigned64:
		case ipfix.TypeDateTimeSeconds, ipfix.TypeDateTimeMilliseconds:
			if fn == aggFnSum {
				return nil, errAt(line, "aggregate: %s is a time; only minimum/maximum, flowStart/flowEnd times aggregate", v)
			}
		default:
			return nil, errAt(line, "aggregate: value %s is %s; values must be unsigned counters or times", v, ie.Type)
		}
		s.vals = append(s.vals, aggVal{ie: ie, fn: fn, width: int(canonicalLength(ie.Type))})
	}
	for _, id := range []uint16{ieFlowStartMilliseconds, ieFlowEndMilliseconds, ieDeltaFlowCount} {
		ie := *ipfix.Lookup(0, id)
		fn := aggFnSum
		if id == ieFlowStartMilliseconds {
			fn = aggFnMin
		} else if id == ieFlowEndMilliseconds {
			fn = aggFnMax
		}
		s.vals = append(s.vals, aggVal{ie: ie, fn: fn, width: 8})
	}
	s.kw = s.keyW / 8
	// Accumulators in slot order: sums, minima, maxima.
	s.init = make([]uint64, len(s.vals))
	pos := 0
	for _, fn := range []int{aggFnSum, aggFnMin, aggFnMax} {
		for i := range s.vals {
			if s.vals[i].fn != fn {
				continue
			}
			s.vals[i].pos = pos
			if fn == aggFnMin {
				s.init[pos] = math.MaxUint64
			}
			pos++
		}
		switch fn {
		case aggFnSum:
			s.nSum = pos
		case aggFnMin:
			s.nMin = pos - s.nSum
		}
	}
	nv := len(s.vals)
	s.startPos, s.endPos, s.flowsPos = s.vals[nv-3].pos, s.vals[nv-2].pos, s.vals[nv-1].pos
	// The table starts small and doubles up to maxSlots, which keeps
	// the load factor at most 2/3 at MaxKeys.
	s.maxSlots = uint64(1) << bits.Len64(uint64(s.cfg.MaxKeys)*3/2)
	s.tab = newAggTable(min(s.maxSlots, initialAggSlots), slotHeadWords+s.kw+nv, s.kw, rand.Uint64())
	// A stage dropped without Retire still gives a mapped table back.
	runtime.AddCleanup(s, (*tableMem).free, s.tab.mem)
	s.pendKeys = make([]uint64, aggBatch*s.kw)
	s.pendKeyBytes = unsafe.Slice((*byte)(unsafe.Pointer(&s.pendKeys[0])), len(s.pendKeys)*8)
	s.pendVals = make([]uint64, aggBatch*nv)
	s.msg = ipfix.Message{Version: ipfix.VersionIPFIX, DomainID: s.cfg.ObservationDomain}
	s.meta.Msg = &s.msg
	s.now = time.Now().UnixMilli()
	return s, nil
}

// BytesPerKey reports the table's memory per aggregate when it holds
// MaxKeys (the table is then at its largest).
func (s *aggStage) BytesPerKey() float64 {
	return float64(s.maxSlots) * float64(s.tab.stride*8) / float64(s.cfg.MaxKeys)
}

func (s *aggStage) plan(l *ipfix.Layout) *aggPlan {
	p := &aggPlan{start: -1, end: -1, flows: l.Index(0, ieDeltaFlowCount)}
	for i, k := range s.keys {
		j := l.Index(k.ie.PEN, k.ie.ID)
		if j < 0 {
			continue
		}
		f := &l.Fields[j]
		src := aggSrc{field: j, off: k.off, width: k.width}
		switch {
		case int(f.Length) == k.width:
		case f.Length != ipfix.VarLen && f.Length <= 8 && isUnsigned(k.ie.Type):
			src.conv = 1
		case f.Length != ipfix.VarLen && f.Length <= 8 && isSigned(k.ie.Type):
			src.conv = 2
		default:
			return &aggPlan{err: fmt.Errorf("key %s has length %d", k.ie.Name, f.Length)}
		}
		p.mask |= 1 << i
		p.keys = append(p.keys, src)
	}
	for _, v := range s.vals[:len(s.vals)-3] {
		j := l.Index(v.ie.PEN, v.ie.ID)
		if j < 0 {
			p.absent = append(p.absent, v.pos)
			continue
		}
		src := aggValSrc{field: j, pos: v.pos}
		switch v.ie.Type {
		case ipfix.TypeDateTimeMilliseconds:
			src.kind = aggValMs
		case ipfix.TypeDateTimeSeconds:
			src.kind = aggValSec
		}
		p.vals = append(p.vals, src)
	}
	for _, id := range startIDs {
		if j := l.Index(0, id); j >= 0 {
			p.start = j
			break
		}
	}
	for _, id := range endIDs {
		if j := l.Index(0, id); j >= 0 {
			p.end = j
			break
		}
	}
	return p
}

func isUnsigned(t ipfix.DataType) bool {
	return t >= ipfix.TypeUnsigned8 && t <= ipfix.TypeUnsigned64
}

func isSigned(t ipfix.DataType) bool { return t >= ipfix.TypeSigned8 && t <= ipfix.TypeSigned64 }

// timeMs reads a flow time field as milliseconds since the epoch.
func timeMs(m *jsonl.Meta, r *ipfix.Record, j int) int64 {
	if id := r.Layout.Fields[j].ID; id == ieFlowStartSysUpTime || id == ieFlowEndSysUpTime {
		if m.Msg == nil {
			return 0
		}
		return m.Msg.UptimeTime(uint32(r.Uint(j))).UnixMilli()
	}
	return r.UnixNano(j) / 1e6
}

func (s *aggStage) record(m *jsonl.Meta, r *ipfix.Record) {
	s.n.in++
	p := s.plans.get(r.Layout, s.plan)
	if p.err != nil {
		s.n.errs++
		return
	}
	b := s.pend
	kb := s.pendKeyBytes[b*s.keyW : (b+1)*s.keyW]
	clear(kb)
	binary.LittleEndian.PutUint32(kb, p.mask)
	for _, k := range p.keys {
		dst := kb[k.off : k.off+k.width]
		switch k.conv {
		case 0:
			putKey(dst, r.Bytes(k.field))
		case 1:
			putUint(dst, r.Uint(k.field))
		default:
			putUint(dst, uint64(r.Int(k.field)))
		}
	}
	s.pendH[b] = s.tab.hash(s.pendKeys[b*s.kw : (b+1)*s.kw])
	nv := len(s.vals)
	vals := s.pendVals[b*nv : (b+1)*nv]
	for _, i := range p.absent {
		vals[i] = s.init[i]
	}
	for _, v := range p.vals {
		var x uint64
		switch v.kind {
		case aggValUint:
			x = r.Uint(v.field)
		case aggValMs:
			x = uint64(timeMs(m, r, v.field))
		default:
			x = uint64(timeMs(m, r, v.field)) / 1000
		}
		vals[v.pos] = x
	}
	start, end := s.now, s.now
	if p.start >= 0 {
		start = timeMs(m, r, p.start)
	}
	if p.end >= 0 {
		end = timeMs(m, r, p.end)
		if p.start < 0 {
			start = end // not the processing time: it would follow the end
		}
	} else if p.start >= 0 {
		end = start
	}
	flows := uint64(1)
	if p.flows >= 0 {
		flows = r.Uint(p.flows)
	}
	vals[s.startPos], vals[s.endPos], vals[s.flowsPos] = uint64(start), uint64(end), flows
	s.pend++
	s.n.out++ // absorbed; emitted records are counted in emitted
	if s.pend == aggBatch {
		s.drain()
	}
}

// putKey copies a key value of its canonical width; the common widths
// without a call to memmove.
func putKey(dst, src []byte) {
	switch len(dst) {
	case 1:
		dst[0] = src[0]
	case 2:
		*(*[2]byte)(dst) = [2]byte(src)
	case 4:
		*(*[4]byte)(dst) = [4]byte(src)
	case 8:
		*(*[8]byte)(dst) = [8]byte(src)
	case 16:
		*(*[16]byte)(dst) = [16]byte(src)
	default:
		copy(dst, src)
	}
}

// drain puts the records taken since the last drain into the table, in
// the order they came. Their slots are read first, all together: the
// table is far larger than the caches, and independent loads wait for
// memory at the same time instead of one after the other. (A PREFETCHT0
// per record when it is taken measured twice as slow on this VM: the
// prefetches seem dropped on TLB misses, so nothing overlapped.)
func (s *aggStage) drain() {
	t := &s.tab
	w, stride := t.w, t.stride
	touch := s.touched
	for _, h := range s.pendH[:s.pend] {
		o := int(t.home(h)) * stride
		touch += w[o] + w[o+stride/2] + w[o+stride-1] // every line of a slot (up to 3)
	}
	s.touched = touch
	nv, kw := len(s.vals), s.kw
	for b := range s.pend {
		h, key := s.pendH[b], s.pendKeys[b*kw:(b+1)*kw]
		i, found := t.find(h, key)
		var slot []uint64
		if found {
			slot = t.slot(i)
		} else {
			switch {
			case t.count >= s.cfg.MaxKeys:
				s.evict()
				i, _ = t.find(h, key)
			case uint64(t.count+1)*3 > t.slots()*2 && t.slots() < s.maxSlots:
				t.resize(t.slots() * 2)
				i, _ = t.find(h, key)
			}
			slot = t.insert(i, h, key, s.init, s.now)
		}
		slot[slotLast] = uint64(s.now)
		s.accumulate(slot[slotHeadWords+kw:], s.pendVals[b*nv:(b+1)*nv])
	}
	s.pend = 0
}

// accumulate adds one record's inputs in to a slot's accumulators: sums
// saturate, minima and maxima keep theirs.
func (s *aggStage) accumulate(acc, in []uint64) {
	acc = acc[:len(in)]
	nSum, nMinMax := s.nSum, s.nSum+s.nMin
	for i := 0; i < nSum && i < len(in); i++ {
		sum, carry := bits.Add64(acc[i], in[i], 0)
		if carry != 0 {
			sum = math.MaxUint64
		}
		acc[i] = sum
	}
	for i := nSum; i < nMinMax && i < len(in); i++ {
		acc[i] = min(acc[i], in[i])
	}
	for i := nMinMax; i < len(in); i++ {
		acc[i] = max(acc[i], in[i])
	}
}

// evict emits the least recently updated of a few sampled aggregates.
func (s *aggStage) evict() {
	t := &s.tab
	best, bestLast := uint64(0), uint64(math.MaxUint64)
	for range aggEvictSample {
		s.rnd ^= s.rnd << 13
		s.rnd ^= s.rnd >> 7
		s.rnd ^= s.rnd << 17
		i := s.rnd & t.mask
		for t.w[int(i)*t.stride] == 0 {
			i = (i + 1) & t.mask
		}
		if last := t.w[int(i)*t.stride+slotLast]; last < bestLast {
			best, bestLast = i, last
		}
	}
	s.emit(t.slot(best))
	t.remove(best)
	s.evicted++
}

// emit sends the aggregate in slot downstream.
func (s *aggStage) emit(slot []uint64) {
	key := unsafe.Slice((*byte)(unsafe.Pointer(&slot[slotKey])), s.keyW)
	mask := binary.LittleEndian.Uint32(key)
	l := s.shapes[mask]
	if l == nil {
		if len(s.shapes) >= maxAggShapes {
			s.shapeErrs++
			return
		}
		var specs []ipfix.FieldSpec
		for i, k := range s.keys {
			if mask&(1<<i) != 0 {
				specs = append(specs, ipfix.FieldSpec{ID: k.ie.ID, PEN: k.ie.PEN, Length: uint16(k.width)})
			}
		}
		for _, v := range s.vals {
			specs = append(specs, ipfix.FieldSpec{ID: v.ie.ID, PEN: v.ie.PEN, Length: uint16(v.width)})
		}
		var err error
		if l, err = buildLayout(s.cfg.TemplateID+uint16(len(s.shapes)), specs); err != nil {
			s.shapeErrs++
			return
		}
		s.shapes[mask] = l
	}
	b := s.buf[:0]
	for i, k := range s.keys {
		if mask&(1<<i) != 0 {
			b = append(b, key[k.off:k.off+k.width]...)
		}
	}
	acc := slot[slotHeadWords+s.kw:]
	for _, v := range s.vals {
		x := acc[v.pos]
		if v.fn == aggFnMin && x == math.MaxUint64 {
			x = 0 // no record carried it
		}
		if v.width < 8 && x>>(8*v.width) != 0 {
			x = 1<<(8*v.width) - 1 // saturate
		}
		b = ipfix.AppendUint(b, x, v.width)
	}
	s.buf = b
	if !view(l, b, &s.rec) {
		s.shapeErrs++
		return
	}
	s.msg.ExportTime = uint32(s.now / 1000)
	s.next.record(&s.meta, &s.rec)
}

// tick advances processing time: it closes the interval and emits what
// timed out. flush emits everything and gives the table's memory back.
func (s *aggStage) tick(now time.Time, flush bool) {
	s.drain() // at the time the records came
	s.now = now.UnixMilli()
	if flush {
		s.emitAll()
		s.tab.resize(min(s.maxSlots, initialAggSlots))
		return
	}
	if iv := s.cfg.Interval.Milliseconds(); iv > 0 {
		w := s.now / iv
		if s.window == 0 {
			s.window = w
		} else if w != s.window {
			s.window = w
			s.emitAll()
			return
		}
	}
	if s.cfg.ActiveTimeout == 0 && s.cfg.IdleTimeout == 0 || s.now-s.lastScan < aggScanEvery.Milliseconds() {
		return
	}
	s.lastScan = s.now
	t := &s.tab
	active, idle := s.cfg.ActiveTimeout.Milliseconds(), s.cfg.IdleTimeout.Milliseconds()
	for i := uint64(0); i <= t.mask && t.count > 0; {
		if slot := t.slot(i); slot[slotHash] != 0 {
			first, last := int64(slot[slotFirst]), int64(slot[slotLast])
			if (active > 0 && s.now-first >= active) || (idle > 0 && s.now-last >= idle) {
				s.emit(slot)
				t.remove(i)
				s.expired++
				continue // the slot now holds a shifted entry: look again
			}
		}
		i++
	}
}

func (s *aggStage) emitAll() {
	t := &s.tab
	if t.count == 0 {
		return
	}
	for i := uint64(0); i <= t.mask; i++ {
		if slot := t.slot(i); slot[slotHash] != 0 {
			s.emit(slot)
			s.expired++
		}
	}
	t.clearAll()
}
