package analysis

import (
	"bytes"
	"container/heap"
	"slices"
)

// table counts per key, up to a bound on distinct keys. A key first seen
// when the table is full is not added: its records go to over.
type table[K keyArray] struct {
	idx  map[K]int32
	keys []K
	cnt  []counts
	max  int
	over Totals
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

func newTable[K keyArray](max int) *table[K] {
	return &table[K]{idx: make(map[K]int32, min(max, 1024)), max: max}
}

func (t *table[K]) add(k *K, c counts) {
	if i, ok := t.idx[*k]; ok {
		t.cnt[i].add(c)
		return
	}
	if len(t.keys) >= t.max {
		t.over.add(c)
		return
	}
	t.idx[*k] = int32(len(t.keys))
	t.keys = append(t.keys, *k)
	t.cnt = append(t.cnt, c)
}

// top returns the indices of the n keys with the most m, most first. Ties
// go to the larger other counters, then to the smaller key bytes, so the
// order is the same on every run.
func (t *table[K]) top(n int, m Metric) []int32 {
	less := func(a, b int32) bool { // a ranks below b
		return rankBelow(&t.cnt[a], &t.cnt[b], m, keyBytes(&t.keys[a]), keyBytes(&t.keys[b]))
	}
	return topIndices(len(t.keys), n, less)
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
