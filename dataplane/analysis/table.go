package analysis

import (
	"bytes"
	"container/heap"
	"encoding/binary"
	"slices"
)

// table counts per key, up to a bound on distinct keys. A key first seen
// when the table is full is not added: its records go to over.
//
// It is an open-addressing hash table with linear probing: slots hold 32
// bits of the key's hash and the index of its entry, so a probe reads one
// small slot and the key is compared only when those bits agree. Entries
// (key and counters) are kept in the order keys came.
type table[K keyArray] struct {
	slots   []hslot // power of two; idx 0 is empty
	shift   uint    // 64 - log2(len(slots))
	entries []entry[K]
	max     int
	over    Totals
}

type hslot struct {
	tag uint32 // low hash bits
	idx uint32 // entry index + 1
}

type entry[K keyArray] struct {
	key K
	c   counts
}

const minSlots = 1024

func newTable[K keyArray](max int) *table[K] {
	return &table[K]{slots: make([]hslot, minSlots), shift: 64 - 10, max: max}
}

// hashKey hashes a key's bytes 8 at a time (keys are multiples of 8
// long): a multiply per word, and a final mix so the high bits, which
// pick the slot, depend on every input bit.
func hashKey(b []byte) uint64 {
	h := uint64(0x9E3779B97F4A7C15)
	for len(b) >= 8 {
		h = (h ^ binary.LittleEndian.Uint64(b)) * 0xBF58476D1CE4E5B9
		h ^= h >> 31
		b = b[8:]
	}
	h *= 0x94D049BB133111EB
	return h ^ h>>29
}

func (t *table[K]) add(k *K, c counts) {
	h := hashKey(keyBytes(k))
	tag := uint32(h)
	mask := uint64(len(t.slots) - 1)
	for i := h >> t.shift; ; i = (i + 1) & mask {
		s := t.slots[i]
		if s.idx == 0 {
			if len(t.entries) >= t.max {
				t.over.add(c)
				return
			}
			t.entries = append(t.entries, entry[K]{key: *k, c: c})
			t.slots[i] = hslot{tag: tag, idx: uint32(len(t.entries))}
			if len(t.entries)*4 > len(t.slots)*3 {
				t.grow()
			}
			return
		}
		if s.tag == tag {
			if e := &t.entries[s.idx-1]; e.key == *k {
				e.c.add(c)
				return
			}
		}
	}
}

// grow doubles the slots and places every entry again.
func (t *table[K]) grow() {
	t.slots = make([]hslot, 2*len(t.slots))
	t.shift--
	mask := uint64(len(t.slots) - 1)
	for n := range t.entries {
		h := hashKey(keyBytes(&t.entries[n].key))
		i := h >> t.shift
		for t.slots[i].idx != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = hslot{tag: uint32(h), idx: uint32(n + 1)}
	}
}

// len is the number of keys held.
func (t *table[K]) len() int { return len(t.entries) }

// key returns entry i's key.
func (t *table[K]) key(i int32) *K { return &t.entries[i].key }

// top returns the indices of the n keys with the most m, most first. Ties
// go to the larger other counters, then to the smaller key bytes, so the
// order is the same on every run.
func (t *table[K]) top(n int, m Metric) []int32 {
	less := func(a, b int32) bool { // a ranks below b
		ea, eb := &t.entries[a], &t.entries[b]
		return rankBelow(&ea.c, &eb.c, m, keyBytes(&ea.key), keyBytes(&eb.key))
	}
	return topIndices(len(t.entries), n, less)
}

// Totals count records and their counters. As a result's Overflow, they
// count the records a bounded table had no room for: keys (or hosts and
// conversations) first seen after it held Input.MaxKeys. Those are in no
// row, series or edge; a result's Total still includes them.
type Totals struct {
	Records uint64 `json:"records"`
	Octets  uint64 `json:"octets"`
	Packets uint64 `json:"packets"`
	Flows   uint64 `json:"flows"`
}

func (o *Totals) add(c counts) {
	o.Records++
	o.Octets += c.octets
	o.Packets += c.packets
	o.Flows += c.flows
}

// rankBelow reports whether (ca, ka) ranks below (cb, kb) by m.
func rankBelow(ca, cb *counts, m Metric, ka, kb []byte) bool {
	for _, x := range [3]Metric{m, (m + 1) % 3, (m + 2) % 3} {
		if va, vb := ca.get(x), cb.get(x); va != vb {
			return va < vb
		}
	}
	return bytes.Compare(ka, kb) > 0
}

// topIndices selects the n highest of count items with a bounded min-heap
// and returns them highest first.
func topIndices(count, n int, less func(a, b int32) bool) []int32 {
	h := &minHeap{less: less}
	for i := range int32(count) {
		if len(h.ix) < n {
			heap.Push(h, i)
			continue
		}
		if n > 0 && less(h.ix[0], i) {
			h.ix[0] = i
			heap.Fix(h, 0)
		}
	}
	out := h.ix
	slices.SortFunc(out, func(a, b int32) int {
		switch {
		case less(b, a):
			return -1
		case less(a, b):
			return 1
		}
		return 0
	})
	return out
}

type minHeap struct {
	ix   []int32
	less func(a, b int32) bool
}

func (h *minHeap) Len() int           { return len(h.ix) }
func (h *minHeap) Less(i, j int) bool { return h.less(h.ix[i], h.ix[j]) }
func (h *minHeap) Swap(i, j int)      { h.ix[i], h.ix[j] = h.ix[j], h.ix[i] }
func (h *minHeap) Push(x any)         { h.ix = append(h.ix, x.(int32)) }
func (h *minHeap) Pop() any {
	x := h.ix[len(h.ix)-1]
	h.ix = h.ix[:len(h.ix)-1]
	return x
}

// keyIndex maps keys to dense indices 0, 1, 2... in the order they came,
// with the same open addressing as table; the caller keeps what the
// indices point at.
type keyIndex[K keyArray] struct {
	slots []hslot
	shift uint
	keys  []K
}

func newKeyIndex[K keyArray]() *keyIndex[K] {
	return &keyIndex[K]{slots: make([]hslot, minSlots), shift: 64 - 10}
}

// find returns k's index, or -1 and the slot where it would go.
func (x *keyIndex[K]) find(k *K) (idx int32, at uint64, tag uint32) {
	h := hashKey(keyBytes(k))
	tag = uint32(h)
	mask := uint64(len(x.slots) - 1)
	for i := h >> x.shift; ; i = (i + 1) & mask {
		s := x.slots[i]
		if s.idx == 0 {
			return -1, i, tag
		}
		if s.tag == tag && x.keys[s.idx-1] == *k {
			return int32(s.idx - 1), i, tag
		}
	}
}

// get returns k's index, adding k if it is new.
func (x *keyIndex[K]) get(k *K) int32 {
	idx, at, tag := x.find(k)
	if idx >= 0 {
		return idx
	}
	x.keys = append(x.keys, *k)
	x.slots[at] = hslot{tag: tag, idx: uint32(len(x.keys))}
	if len(x.keys)*4 > len(x.slots)*3 {
		x.slots = make([]hslot, 2*len(x.slots))
		x.shift--
		mask := uint64(len(x.slots) - 1)
		for n := range x.keys {
			h := hashKey(keyBytes(&x.keys[n]))
			i := h >> x.shift
			for x.slots[i].idx != 0 {
				i = (i + 1) & mask
			}
			x.slots[i] = hslot{tag: uint32(h), idx: uint32(n + 1)}
		}
	}
	return int32(len(x.keys) - 1)
}

func (x *keyIndex[K]) has(k *K) bool {
	idx, _, _ := x.find(k)
	return idx >= 0
}

func (x *keyIndex[K]) len() int { return len(x.keys) }
