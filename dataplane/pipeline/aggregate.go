package pipeline

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"runtime/debug"
	"strings"
	"time"

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
	slotHead                = 24 // hash, first update, last update
	initialAggSlots         = 1024
	// freeOldTableBytes: tables this large go back to the OS when the
	// table doubles.
	freeOldTableBytes            = 32 << 20
	aggFnSum, aggFnMin, aggFnMax = 0, 1, 2
)

var (
	startIDs = [...]uint16{ieFlowStartMilliseconds, ieFlowStartSeconds, ieFlowStartMicroseconds, ieFlowStartNanoseconds, ieFlowStartSysUpTime}
	endIDs   = [...]uint16{ieFlowEndMilliseconds, ieFlowEndSeconds, ieFlowEndMicroseconds, ieFlowEndNanoseconds, ieFlowEndSysUpTime}
)

// aggStage is RFC 7015 aggregation over an open-addressing table with a
// bound on keys. Each slot is one stride of the arena: hash (0: empty),
// first and last update (ms), the key (presence mask then key values at
// canonical widths), then the values as uint64. Records go into the table
// aggBatch at a time, and at every tick before anything else.
type aggStage struct {
	cfg    Aggregate
	keys   []aggKey
	vals   []aggVal // configured values, then start, end, flows
	keyW   int      // key bytes, a multiple of 8
	stride int
	mask   uint64 // slots - 1
	arena  []byte
	// maxSlots is the table's size at MaxKeys.
	maxSlots uint64
	count    int
	seed     maphash.Seed
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
	// and value inputs of each, copied out of the record.
	pend     int
	pendH    [aggBatch]uint64
	pendKeys []byte
	pendVals []uint64
	pendHas  []bool
	touched  uint64
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
}

// aggPlan is where a template's fields go.
type aggPlan struct {
	mask uint32
	keys []aggSrc // per present key
	vals []int    // input field per value, -1 if absent
	// start, end: time fields and their kind; flows: deltaFlowCount.
	start, end, flows int
	err               error
}

type aggSrc struct {
	field, off, width int
	conv              uint8 // 0 copy, 1 unsigned, 2 signed
}

func newAggregate(line int, a *Aggregate) (*aggStage, error) {
	s := &aggStage{cfg: *a, seed: maphash.MakeSeed(), rnd: 0x9E3779B97F4A7C15, shapes: map[uint32]*ipfix.Layout{}}
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
	s.stride = slotHead + s.keyW + 8*len(s.vals)
	// The table starts small and doubles up to maxSlots, which keeps
	// the load factor at most 2/3 at MaxKeys.
	s.maxSlots = uint64(1) << bits.Len64(uint64(s.cfg.MaxKeys)*3/2)
	slots := min(s.maxSlots, initialAggSlots)
	s.mask = slots - 1
	s.arena = make([]byte, int(slots)*s.stride)
	s.pendKeys = make([]byte, aggBatch*s.keyW)
	s.pendVals = make([]uint64, aggBatch*len(s.vals))
	s.pendHas = make([]bool, aggBatch*len(s.vals))
	s.msg = ipfix.Message{Version: ipfix.VersionIPFIX, DomainID: s.cfg.ObservationDomain}
	s.meta.Msg = &s.msg
	s.now = time.Now().UnixMilli()
	return s, nil
}

// BytesPerKey reports the table's memory per aggregate when it holds
// MaxKeys (the table is then at its largest).
func (s *aggStage) BytesPerKey() float64 {
	return float64(s.maxSlots) * float64(s.stride) / float64(s.cfg.MaxKeys)
}

// grow doubles the table and places every aggregate again.
func (s *aggStage) grow() {
	old, oldSlots := s.arena, s.mask+1
	slots := oldSlots * 2
	s.arena = make([]byte, int(slots)*s.stride)
	s.mask = slots - 1
	for i := range oldSlots {
		o := int(i) * s.stride
		h := binary.LittleEndian.Uint64(old[o:])
		if h == 0 {
			continue
		}
		j := h & s.mask
		for binary.LittleEndian.Uint64(s.arena[int(j)*s.stride:]) != 0 {
			j = (j + 1) & s.mask
		}
		copy(s.arena[int(j)*s.stride:], old[o:o+s.stride])
	}
	if len(old) >= freeOldTableBytes {
		// The old table is garbage, but with nothing else allocating the
		// next collection is far off and RSS would keep both: return it.
		old = nil
		debug.FreeOSMemory()
	}
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
		p.vals = append(p.vals, l.Index(v.ie.PEN, v.ie.ID))
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
	key := s.pendKeys[s.pend*s.keyW : (s.pend+1)*s.keyW]
	clear(key)
	binary.LittleEndian.PutUint32(key, p.mask)
	for _, k := range p.keys {
		dst := key[k.off : k.off+k.width]
		switch k.conv {
		case 0:
			copy(dst, r.Bytes(k.field))
		case 1:
			putUint(dst, r.Uint(k.field))
		default:
			putUint(dst, uint64(r.Int(k.field)))
		}
	}
	s.pendH[s.pend] = maphash.Bytes(s.seed, key) | 1
	nv := len(s.vals)
	vals, has := s.pendVals[s.pend*nv:(s.pend+1)*nv], s.pendHas[s.pend*nv:(s.pend+1)*nv]
	for i, j := range p.vals {
		has[i] = j >= 0
		if j < 0 {
			continue
		}
		var v uint64
		if s.vals[i].ie.Type == ipfix.TypeDateTimeSeconds || s.vals[i].ie.Type == ipfix.TypeDateTimeMilliseconds {
			v = uint64(timeMs(m, r, j))
			if s.vals[i].ie.Type == ipfix.TypeDateTimeSeconds {
				v /= 1000
			}
		} else {
			v = r.Uint(j)
		}
		vals[i] = v
	}
	n := len(p.vals)
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
	vals[n], vals[n+1], vals[n+2] = uint64(start), uint64(end), flows
	has[n], has[n+1], has[n+2] = true, true, true
	s.pend++
	s.n.out++ // absorbed; emitted records are counted in emitted
	if s.pend == aggBatch {
		s.drain()
	}
}

// drain puts the records taken since the last drain into the table, in
// the order they came. Their slots are read first, all together: the
// table is far larger than the caches, and independent loads wait for
// memory at the same time instead of one after the other.
func (s *aggStage) drain() {
	t := s.touched
	for _, h := range s.pendH[:s.pend] {
		o := int(h&s.mask) * s.stride
		t += binary.LittleEndian.Uint64(s.arena[o:]) + uint64(s.arena[o+s.stride-1])
	}
	s.touched = t
	nv := len(s.vals)
	for b := range s.pend {
		h, key := s.pendH[b], s.pendKeys[b*s.keyW:(b+1)*s.keyW]
		o, found := s.find(h, key)
		if !found {
			switch {
			case s.count >= s.cfg.MaxKeys:
				s.evict()
				o, _ = s.find(h, key)
			case uint64(s.count+1)*3 > (s.mask+1)*2 && s.mask+1 < s.maxSlots:
				s.grow()
				o, _ = s.find(h, key)
			}
			s.insert(o, h, key)
		}
		slot := s.arena[o : o+s.stride]
		binary.LittleEndian.PutUint64(slot[16:], uint64(s.now))
		vals := slot[slotHead+s.keyW:]
		in, has := s.pendVals[b*nv:(b+1)*nv], s.pendHas[b*nv:(b+1)*nv]
		for i, v := range in {
			if has[i] {
				accumulate(vals[8*i:], s.vals[i].fn, v)
			}
		}
	}
	s.pend = 0
}

func accumulate(b []byte, fn int, v uint64) {
	cur := binary.LittleEndian.Uint64(b)
	switch fn {
	case aggFnSum:
		s, carry := bits.Add64(cur, v, 0)
		if carry != 0 {
			s = math.MaxUint64
		}
		cur = s
	case aggFnMin:
		cur = min(cur, v)
	case aggFnMax:
		cur = max(cur, v)
	}
	binary.LittleEndian.PutUint64(b, cur)
}

// find returns the offset of key's slot, or of the empty slot where it
// would go.
func (s *aggStage) find(h uint64, key []byte) (int, bool) {
	i := h & s.mask
	for {
		o := int(i) * s.stride
		sh := binary.LittleEndian.Uint64(s.arena[o:])
		if sh == 0 {
			return o, false
		}
		if sh == h && bytes.Equal(s.arena[o+slotHead:o+slotHead+s.keyW], key) {
			return o, true
		}
		i = (i + 1) & s.mask
	}
}

func (s *aggStage) insert(o int, h uint64, key []byte) {
	slot := s.arena[o : o+s.stride]
	binary.LittleEndian.PutUint64(slot, h)
	binary.LittleEndian.PutUint64(slot[8:], uint64(s.now))
	copy(slot[slotHead:], key)
	vals := slot[slotHead+s.keyW:]
	for i := range s.vals {
		v := uint64(0)
		if s.vals[i].fn == aggFnMin {
			v = math.MaxUint64
		}
		binary.LittleEndian.PutUint64(vals[8*i:], v)
	}
	s.count++
}

// remove deletes the slot at index i by shifting the rest of its probe
// run back (no tombstones).
func (s *aggStage) remove(i uint64) {
	for {
		j := i
		for {
			j = (j + 1) & s.mask
			oj := int(j) * s.stride
			hj := binary.LittleEndian.Uint64(s.arena[oj:])
			if hj == 0 {
				oi := int(i) * s.stride
				clear(s.arena[oi : oi+s.stride])
				s.count--
				return
			}
			home := hj & s.mask
			// Move j into i unless its home lies cyclically in (i, j].
			if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
				oi := int(i) * s.stride
				copy(s.arena[oi:oi+s.stride], s.arena[oj:oj+s.stride])
				i = j
				break
			}
		}
	}
}

// evict emits the least recently updated of a few sampled aggregates.
func (s *aggStage) evict() {
	best, bestLast := uint64(0), int64(math.MaxInt64)
	for range aggEvictSample {
		s.rnd ^= s.rnd << 13
		s.rnd ^= s.rnd >> 7
		s.rnd ^= s.rnd << 17
		i := s.rnd & s.mask
		for binary.LittleEndian.Uint64(s.arena[int(i)*s.stride:]) == 0 {
			i = (i + 1) & s.mask
		}
		if last := int64(binary.LittleEndian.Uint64(s.arena[int(i)*s.stride+16:])); last < bestLast {
			best, bestLast = i, last
		}
	}
	s.emit(int(best) * s.stride)
	s.remove(best)
	s.evicted++
}

// emit sends the aggregate in the slot at offset o downstream.
func (s *aggStage) emit(o int) {
	slot := s.arena[o : o+s.stride]
	key := slot[slotHead : slotHead+s.keyW]
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
	vals := slot[slotHead+s.keyW:]
	for i, v := range s.vals {
		x := binary.LittleEndian.Uint64(vals[8*i:])
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
// timed out. flush emits everything.
func (s *aggStage) tick(now time.Time, flush bool) {
	s.drain() // at the time the records came
	s.now = now.UnixMilli()
	if flush {
		s.emitAll()
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
	active, idle := s.cfg.ActiveTimeout.Milliseconds(), s.cfg.IdleTimeout.Milliseconds()
	for i := uint64(0); i <= s.mask && s.count > 0; {
		o := int(i) * s.stride
		if binary.LittleEndian.Uint64(s.arena[o:]) != 0 {
			first := int64(binary.LittleEndian.Uint64(s.arena[o+8:]))
			last := int64(binary.LittleEndian.Uint64(s.arena[o+16:]))
			if (active > 0 && s.now-first >= active) || (idle > 0 && s.now-last >= idle) {
				s.emit(o)
				s.remove(i)
				s.expired++
				continue // the slot now holds a shifted entry: look again
			}
		}
		i++
	}
}

func (s *aggStage) emitAll() {
	if s.count == 0 {
		return
	}
	for i := uint64(0); i <= s.mask; i++ {
		o := int(i) * s.stride
		if binary.LittleEndian.Uint64(s.arena[o:]) != 0 {
			s.emit(o)
			s.expired++
		}
	}
	clear(s.arena)
	s.count = 0
}
