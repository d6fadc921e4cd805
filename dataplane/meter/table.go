package meter

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
	octets, rOctets      uint64
	packets, rPackets    uint64
	mpls                 uint32
	prev, next           int32 // idle list (open or closing), least recently seen first
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

// table is the flow table: a map from key to slab index, a slab with a
// free list, and three lists: open flows and closing flows by last packet,
// and all flows by start. It is owned by the meter's goroutine.
type table struct {
	index map[flowKey]int32
	flows []flow
	free  []int32
	open  list
	close list
	age   list
}

func newTable(hint int) table {
	return table{
		index: make(map[flowKey]int32, hint),
		flows: make([]flow, 0, hint),
		open:  newList(),
		close: newList(),
		age:   newList(),
	}
}

func (t *table) len() int { return len(t.index) }

// insert adds a flow for k and returns its index; the caller fills it.
func (t *table) insert(k flowKey) int32 {
	var i int32
	if n := len(t.free); n > 0 {
		i = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		t.flows = append(t.flows, flow{})
		i = int32(len(t.flows) - 1)
	}
	f := &t.flows[i]
	*f = flow{key: k, state: stateOpen, prev: nilIdx, next: nilIdx, aprev: nilIdx, anext: nilIdx}
	t.index[k] = i
	t.pushIdle(&t.open, i)
	// age list: append at the tail
	f.aprev = t.age.tail
	if t.age.tail != nilIdx {
		t.flows[t.age.tail].anext = i
	} else {
		t.age.head = i
	}
	t.age.tail = i
	return i
}

// remove takes flow i out of the table and its lists.
func (t *table) remove(i int32) {
	f := &t.flows[i]
	delete(t.index, f.key)
	t.unlinkIdle(t.idleList(f), i)
	if f.aprev != nilIdx {
		t.flows[f.aprev].anext = f.anext
	} else {
		t.age.head = f.anext
	}
	if f.anext != nilIdx {
		t.flows[f.anext].aprev = f.aprev
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
	f := &t.flows[i]
	f.prev, f.next = l.tail, nilIdx
	if l.tail != nilIdx {
		t.flows[l.tail].next = i
	} else {
		l.head = i
	}
	l.tail = i
}

func (t *table) unlinkIdle(l *list, i int32) {
	f := &t.flows[i]
	if f.prev != nilIdx {
		t.flows[f.prev].next = f.next
	} else {
		l.head = f.next
	}
	if f.next != nilIdx {
		t.flows[f.next].prev = f.prev
	} else {
		l.tail = f.prev
	}
	f.prev, f.next = nilIdx, nilIdx
}

// touch moves flow i to the tail of its idle list (most recently seen).
func (t *table) touch(i int32) {
	l := t.idleList(&t.flows[i])
	if l.tail == i {
		return
	}
	t.unlinkIdle(l, i)
	t.pushIdle(l, i)
}

// setClosing moves flow i from the open list to the closing list.
func (t *table) setClosing(i int32) {
	f := &t.flows[i]
	if f.state == stateClosing {
		return
	}
	t.unlinkIdle(&t.open, i)
	f.state = stateClosing
	t.pushIdle(&t.close, i)
}
