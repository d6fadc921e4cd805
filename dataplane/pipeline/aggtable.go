package pipeline

import (
	"math/bits"
	"runtime/debug"
)

// aggTable is the aggregate stage's hash table: open addressing with
// linear probing and backward-shift deletion over one array of 8-octet
// words. A slot is stride words: the key's hash (0: empty), the first and
// last update, the key (kw words), then the accumulators. Keys are
// compared a word at a time, after the hash word, which filters almost
// every other key in a probe run. A slot's home is the top bits of its
// hash, so growing only needs the stored hashes.
//
// The words live in a tableMem: on Linux a large table is its own
// mapping advised for transparent huge pages (one TLB entry per 2 MiB
// instead of per 4 KiB: lookups at a million keys miss the TLB as well
// as the caches), released at once when the table grows.
type aggTable struct {
	w      []uint64
	stride int    // words per slot
	kw     int    // key words
	shift  uint   // 64 - log2(slots)
	mask   uint64 // slots - 1
	count  int
	seed   uint64
	mem    *tableMem
}

// Word offsets in a slot.
const (
	slotHash, slotFirst, slotLast, slotKey = 0, 1, 2, 3
	slotHeadWords                          = 3
)

// newAggTable returns a table of slots (a power of two) slots of stride
// words, kw of them the key.
func newAggTable(slots uint64, stride, kw int, seed uint64) aggTable {
	t := aggTable{stride: stride, kw: kw, seed: seed, mem: &tableMem{}}
	t.setSlots(slots)
	return t
}

func (t *aggTable) setSlots(slots uint64) {
	if slots&(slots-1) != 0 || slots == 0 {
		panic("BUG: aggregate table size not a power of two")
	}
	t.mem.alloc(int(slots) * t.stride)
	t.w = t.mem.words
	t.mask = slots - 1
	t.shift = uint(64 - bits.TrailingZeros64(slots))
}

func (t *aggTable) slots() uint64 { return t.mask + 1 }

// bytes is the table's memory.
func (t *aggTable) bytes() int { return len(t.w) * 8 }

// home is where a hash's probe run starts. A shift by 64 (one slot) is 0.
func (t *aggTable) home(h uint64) uint64 { return h >> t.shift }

// hash mixes the key's words with the table's seed (a multiply-fold per
// word, as wyhash does); the result is never 0, which marks empty slots.
func (t *aggTable) hash(key []uint64) uint64 {
	h := t.seed
	for _, w := range key {
		h = mulFold(h^w, 0xe7037ed1a0b428db)
	}
	return mulFold(h, 0xa0761d6478bd642f) | 1
}

func mulFold(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// find returns the index of key's slot, or of the empty slot where it
// would go. h is t.hash(key).
func (t *aggTable) find(h uint64, key []uint64) (uint64, bool) {
	w, stride, mask := t.w, t.stride, t.mask
	for i := t.home(h); ; i = (i + 1) & mask {
		s := w[int(i)*stride:]
		if s[slotHash] == h && wordsEqual(s[slotKey:], key) {
			return i, true
		}
		if s[slotHash] == 0 {
			return i, false
		}
	}
}

// wordsEqual reports whether a starts with key.
func wordsEqual(a, key []uint64) bool {
	a = a[:len(key)]
	for i, x := range key {
		if a[i] != x {
			return false
		}
	}
	return true
}

// slot returns slot i's words.
func (t *aggTable) slot(i uint64) []uint64 {
	o := int(i) * t.stride
	return t.w[o : o+t.stride : o+t.stride]
}

// insert puts key into the empty slot i (from find) with the
// accumulators' starting values init.
func (t *aggTable) insert(i, h uint64, key, init []uint64, now int64) []uint64 {
	s := t.slot(i)
	s[slotHash], s[slotFirst], s[slotLast] = h, uint64(now), uint64(now)
	copy(s[slotKey:slotKey+t.kw], key)
	copy(s[slotKey+t.kw:], init)
	t.count++
	return s
}

// remove deletes slot i by shifting the rest of its probe run back (no
// tombstones).
func (t *aggTable) remove(i uint64) {
	for {
		j := i
		for {
			j = (j + 1) & t.mask
			hj := t.w[int(j)*t.stride]
			if hj == 0 {
				clear(t.slot(i))
				t.count--
				return
			}
			home := t.home(hj)
			// Move j into i unless its home lies cyclically in (i, j].
			if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
				copy(t.slot(i), t.slot(j))
				i = j
				break
			}
		}
	}
}

// resize moves every entry into a table of slots slots; the old memory is
// released at once.
func (t *aggTable) resize(slots uint64) {
	old := *t.mem
	*t.mem = tableMem{}
	oldW := t.w
	t.setSlots(slots)
	for o := 0; o < len(oldW); o += t.stride {
		h := oldW[o]
		if h == 0 {
			continue
		}
		i := t.home(h)
		for t.w[int(i)*t.stride] != 0 {
			i = (i + 1) & t.mask
		}
		copy(t.slot(i), oldW[o:o+t.stride])
	}
	old.free()
}

// clearAll empties the table and keeps its size.
func (t *aggTable) clearAll() {
	clear(t.w)
	t.count = 0
}

// tableMem is the memory of an aggregate table: a mapping of its own
// (Linux, large tables) or the Go heap.
type tableMem struct {
	words  []uint64
	mapped []byte // the mapping, nil on the heap
	// huge: the mapping is advised for transparent huge pages.
	huge bool
}

// mapMinBytes: smaller tables stay on the Go heap (they fit the TLB's
// reach with 4 KiB pages, and a mapping rounds up to 2 MiB).
const mapMinBytes = 8 << 20

// alloc gives the empty m n zeroed words.
func (m *tableMem) alloc(n int) {
	if n*8 >= mapMinBytes && m.mapWords(n) {
		return
	}
	m.words = make([]uint64, n)
}

// free releases m's memory; m may be allocated again. The table's owner
// frees it when it no longer needs the memory, and a cleanup when the
// owner is collected.
func (m *tableMem) free() {
	if m.mapped != nil {
		m.unmap()
	} else if len(m.words)*8 >= freeOldTableBytes {
		// Garbage now, but with nothing else allocating the next
		// collection is far off and RSS would keep it: hand it back.
		m.words = nil
		debug.FreeOSMemory()
	}
	m.words, m.mapped, m.huge = nil, nil, false
}
