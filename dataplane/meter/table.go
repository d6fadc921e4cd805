package meter

import (
	"encoding/binary"
	"math/bits"
)

// flowKey identifies a flow: the 5-tuple, the outer VLAN and, for ICMP,
// the type and code in place of the destination port (as IANA IEs 32 and
// 139 carry them). It is comparable and hashed as 40 octets.
type flowKey struct {
	src, dst     [16]byte
	sport, dport uint16
	vlan         uint16
	proto        uint8
	v6           bool
}

// reverse returns the key of the other direction. ICMP requests map to
// their replies, so a biflow holds an echo exchange.
func (k flowKey) reverse() flowKey {
	r := k
	r.src, r.dst = k.dst, k.src
	r.sport, r.dport = k.dport, k.sport
	if k.proto == protoICMP || k.proto == protoICMPv6 {
		r.sport = 0
		r.dport = icmpReply(k.dport, k.proto == protoICMPv6)
	}
	return r
}

// icmpReply maps an ICMP query type (type<<8|code) to its answer and back;
// other types map to themselves.
func icmpReply(tc uint16, v6 bool) uint16 {
	t, c := tc>>8, tc&0xff
	if v6 {
		switch t {
		case 128:
			t = 129
		case 129:
			t = 128
		}
	} else {
		switch t {
		case 8:
			t = 0
		case 0:
			t = 8
		case 13, 15, 17:
			t++
		case 14, 16, 18:
			t--
		}
	}
	return t<<8 | c
}

// Flow states.
const (
	stateFree uint8 = iota
	stateOpen
	stateClosing // TCP FIN seen (both ways for biflows): ends after closeLinger idle
)

// nilIdx ends the intrusive lists.
const nilIdx = -1

// flow is one entry of the table. Counters of the reverse direction are
// used only for biflows.
type flow struct {
	key                  flowKey
	start, last          int64 // Unix nanoseconds, capture time
	queued               int64 // last when the flow was put at the tail of its idle list
	octets, rOctets      uint64
	packets, rPackets    uint64
	mpls                 uint32
	prev, next           int32 // idle list (open or closing), least recently queued first
	aprev, anext         int32 // age list, oldest start first
	flags, rFlags        uint8
	initFlags, rInitFlag uint8
	minTTL, maxTTL       uint8
	rMinTTL, rMaxTTL     uint8
	fin                  uint8 // 1: FIN forward, 2: FIN reverse
	state                uint8
	hasMPLS              bool
	dpiLeft              uint8 // packets with payload still to inspect
}

// list is a doubly linked list threaded through flows by prev/next (or
// aprev/anext for the age list).
type list struct{ head, tail int32 }

func newList() list { return list{nilIdx, nilIdx} }

// hash mixes the key's 40 octets (wyhash's multiply-fold).
func (k *flowKey) hash(seed uint64) uint64 {
	a := binary.LittleEndian.Uint64(k.src[0:8]) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(k.src[8:16]), 31)
	b := binary.LittleEndian.Uint64(k.dst[0:8]) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(k.dst[8:16]), 31)
	c := uint64(k.sport)<<48 | uint64(k.dport)<<32 | uint64(k.vlan)<<16 | uint64(k.proto)<<8
	if k.v6 {
		c |= 1
	}
	h := mum(a^seed^0xa0761d6478bd642f, b^0xe7037ed1a0b428db)
	return mum(h^c, seed^0x8ebc6af09c88c6e3)
}

func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// chunkBits sizes the slab's chunks: the slab grows by chunks, so growing
// never copies flows and a flow's address stays put.
const chunkBits = 12

// slab holds the flows in chunks of 1<<chunkBits.
type slab struct {
	chunks [][]flow
	n      int32
}

func (s *slab) at(i int32) *flow { return &s.chunks[i>>chunkBits][i&(1<<chunkBits-1)] }

// add returns the index of a new flow at the end of the slab.
func (s *slab) add() int32 {
	if int(s.n>>chunkBits) == len(s.chunks) {
		s.chunks = append(s.chunks, make([]flow, 1<<chunkBits))
	}
	s.n++
	return s.n - 1
}

// slot is one entry of the index: the flow's slab index plus one (0 is
// empty) and the high bits of its hash, so most probes skip the slab.
type slot struct {
	tag uint32
	idx uint32
}

// index maps keys to slab indexes: open addressing with linear probing,
// at most half full, deletion by backward shift (no tombstones, so heavy
// flow churn keeps probes short). It allocates only when it grows.
type index struct {
	slots []slot
	mask  uint64
	n     int
	seed  uint64
}

func newIndex(hint int) index {
	n := 16
	for n < 2*hint {
		n *= 2
	}
	return index{slots: make([]slot, n), mask: uint64(n - 1), seed: 0x2d358dccaa6c78a5}
}

// find returns the slot position of k, or -1.
func (x *index) find(k *flowKey, flows *slab) (int32, bool) {
	h := k.hash(x.seed)
	tag := uint32(h >> 32)
	for i := h & x.mask; ; i = (i + 1) & x.mask {
		s := x.slots[i]
		if s.idx == 0 {
			return 0, false
		}
		if s.tag == tag && flows.at(int32(s.idx-1)).key == *k {
			return int32(s.idx - 1), true
		}
	}
}

func (x *index) insert(k *flowKey, idx int32, flows *slab) {
	if 2*(x.n+1) > len(x.slots) {
		x.grow(flows)
	}
	h := k.hash(x.seed)
	i := h & x.mask
	for x.slots[i].idx != 0 {
		i = (i + 1) & x.mask
	}
	x.slots[i] = slot{uint32(h >> 32), uint32(idx + 1)}
	x.n++
}

func (x *index) grow(flows *slab) {
	old := x.slots
	x.slots = make([]slot, 2*len(old))
	x.mask = uint64(len(x.slots) - 1)
	for _, s := range old {
		if s.idx == 0 {
			continue
		}
		i := flows.at(int32(s.idx-1)).key.hash(x.seed) & x.mask
		for x.slots[i].idx != 0 {
			i = (i + 1) & x.mask
		}
		x.slots[i] = s
	}
}

// remove deletes k (which must be present) and shifts the entries of its
// probe run back over the hole.
func (x *index) remove(k *flowKey, flows *slab) {
	h := k.hash(x.seed)
	i := h & x.mask
	for {
		s := x.slots[i]
		if s.idx == 0 {
			panic("BUG: meter: removing a flow not in the index")
		}
		if flows.at(int32(s.idx-1)).key == *k {
			break
		}
		i = (i + 1) & x.mask
	}
	x.n--
	for j := (i + 1) & x.mask; ; j = (j + 1) & x.mask {
		s := x.slots[j]
		if s.idx == 0 {
			break
		}
		home := flows.at(int32(s.idx-1)).key.hash(x.seed) & x.mask
		// Move s into the hole at i unless its home lies in (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			x.slots[i] = s
			i = j
		}
	}
	x.slots[i] = slot{}
}

// table is the flow table: an index from key to slab index, a slab with a
// free list, and three lists: open flows and closing flows by last packet,
// and all flows by start. It is owned by the meter's goroutine.
type table struct {
	index index
	flows slab
	free  []int32
	open  list
	close list
	age   list
}

func newTable(hint int) table {
	return table{
		index: newIndex(hint),
		open:  newList(),
		close: newList(),
		age:   newList(),
	}
}

func (t *table) len() int { return t.index.n }

// lookup returns the slab index of k's flow.
func (t *table) lookup(k *flowKey) (int32, bool) { return t.index.find(k, &t.flows) }

// insert adds a flow for k and returns its index; the caller fills it.
func (t *table) insert(k flowKey) int32 {
	var i int32
	if n := len(t.free); n > 0 {
		i = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		i = t.flows.add()
	}
	f := t.flows.at(i)
	*f = flow{key: k, state: stateOpen, prev: nilIdx, next: nilIdx, aprev: nilIdx, anext: nilIdx}
	t.index.insert(&f.key, i, &t.flows)
	t.pushIdle(&t.open, i)
	// age list: append at the tail
	f.aprev = t.age.tail
	if t.age.tail != nilIdx {
		t.flows.at(t.age.tail).anext = i
	} else {
		t.age.head = i
	}
	t.age.tail = i
	return i
}

// remove takes flow i out of the table and its lists.
func (t *table) remove(i int32) {
	f := t.flows.at(i)
	t.index.remove(&f.key, &t.flows)
	t.unlinkIdle(t.idleList(f), i)
	if f.aprev != nilIdx {
		t.flows.at(f.aprev).anext = f.anext
	} else {
		t.age.head = f.anext
	}
	if f.anext != nilIdx {
		t.flows.at(f.anext).aprev = f.aprev
	} else {
		t.age.tail = f.aprev
	}
	f.state = stateFree
	t.free = append(t.free, i)
}

func (t *table) idleList(f *flow) *list {
	if f.state == stateClosing {
		return &t.close
	}
	return &t.open
}

func (t *table) pushIdle(l *list, i int32) {
	f := t.flows.at(i)
	f.prev, f.next = l.tail, nilIdx
	if l.tail != nilIdx {
		t.flows.at(l.tail).next = i
	} else {
		l.head = i
	}
	l.tail = i
}

func (t *table) unlinkIdle(l *list, i int32) {
	f := t.flows.at(i)
	if f.prev != nilIdx {
		t.flows.at(f.prev).next = f.next
	} else {
		l.head = f.next
	}
	if f.next != nilIdx {
		t.flows.at(f.next).prev = f.prev
	} else {
		l.tail = f.prev
	}
	f.prev, f.next = nilIdx, nilIdx
}

// settle moves the flows at the head of list l that have seen packets
// since they were queued to its tail, until the head is the least recently
// seen flow of the list. Packets do not move their flow (that would write
// to two neighbouring flows per packet); the lists are put in order here,
// when a sweep or an eviction reads them.
func (t *table) settle(l *list) int32 {
	for i := l.head; i != nilIdx; i = l.head {
		f := t.flows.at(i)
		if f.last <= f.queued || l.tail == i {
			return i
		}
		f.queued = f.last
		t.unlinkIdle(l, i)
		t.pushIdle(l, i)
	}
	return nilIdx
}

// setClosing moves flow i from the open list to the closing list.
func (t *table) setClosing(i int32) {
	f := t.flows.at(i)
	if f.state == stateClosing {
		return
	}
	t.unlinkIdle(&t.open, i)
	f.state = stateClosing
	f.queued = f.last
	t.pushIdle(&t.close, i)
}
