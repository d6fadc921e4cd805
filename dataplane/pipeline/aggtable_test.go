package pipeline

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// tableModel drives an aggTable with ops read from b and checks it against
// a Go map after each: find, insert with a count in the first accumulator,
// remove, grow. kw is the key words (1 to 6); with collide every key
// hashes to one of four values, so probe runs are long and slots with
// equal hash words hold different keys: only the word comparison tells
// them apart. Keys differ from a base key in one byte, any byte of any
// word.
func tableModel(t *testing.T, b []byte, kw int, collide bool) {
	const stride0 = slotHeadWords + 1
	tab := newAggTable(16, stride0+kw, kw, 0x1234)
	hash := tab.hash
	if collide {
		hash = func(key []uint64) uint64 { return (key[kw-1]%4)<<62 | 1 }
	}
	mkKey := func(x byte, at int) []uint64 {
		k := make([]uint64, kw)
		for i := range k {
			k[i] = 0x0102030405060708 * uint64(i+1)
		}
		buf := make([]byte, 8*kw)
		for i := range k {
			binary.NativeEndian.PutUint64(buf[8*i:], k[i])
		}
		buf[at%len(buf)] ^= x
		for i := range k {
			k[i] = binary.NativeEndian.Uint64(buf[8*i:])
		}
		return k
	}
	type mkey [6]uint64
	asMap := func(k []uint64) (m mkey) { copy(m[:], k); return m }
	model := map[mkey]uint64{}
	keys := map[mkey][]uint64{}
	for len(b) >= 3 {
		op, x, at := b[0]%8, b[1], int(b[2])
		b = b[3:]
		key := mkKey(x, at)
		mk := asMap(key)
		h := hash(key)
		i, found := tab.find(h, key)
		_, want := model[mk]
		if found != want {
			t.Fatalf("key %x: found %v, want %v", key, found, want)
		}
		switch {
		case op < 5: // add
			if !found {
				if uint64(tab.count+1)*4 > tab.slots()*3 {
					if tab.slots() >= 1<<12 {
						continue
					}
					tab.resize(tab.slots() * 2)
					i, _ = tab.find(h, key)
				}
				tab.insert(i, h, key, []uint64{0}, 0)
				keys[mk] = key
			}
			tab.slot(i)[slotKey+kw]++
			model[mk]++
		case op < 7 && found:
			tab.remove(i)
			delete(model, mk)
			delete(keys, mk)
		case op == 7 && tab.slots() < 1<<12:
			tab.resize(tab.slots() * 2)
		}
		if tab.count != len(model) {
			t.Fatalf("count %d, want %d", tab.count, len(model))
		}
	}
	used := 0
	for i := range tab.slots() {
		if tab.slot(i)[slotHash] != 0 {
			used++
		}
	}
	if used != len(model) {
		t.Fatalf("%d slots used for %d keys", used, len(model))
	}
	for mk, n := range model {
		key := keys[mk]
		i, ok := tab.find(hash(key), key)
		if !ok || tab.slot(i)[slotKey+kw] != n {
			t.Fatalf("key %x: found %v, count %d, want %d", key, ok, tab.slot(i)[slotKey+kw], n)
		}
	}
}

// TestAggTableModel: random ops on keys of 1 to 6 words, with real and
// colliding hashes, against a map.
func TestAggTableModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 19))
	for kw := 1; kw <= 6; kw++ {
		for _, collide := range []bool{false, true} {
			for range 20 {
				b := make([]byte, 3*3000)
				for i := range b {
					b[i] = byte(rng.UintN(256))
				}
				// Few distinct keys now and then: more hits and removes.
				if rng.IntN(2) == 0 {
					for i := 1; i < len(b); i += 3 {
						b[i] &= 7
					}
				}
				tableModel(t, b, kw, collide)
			}
		}
	}
}

func FuzzAggTable(f *testing.F) {
	f.Add([]byte{0, 1, 2, 0, 1, 2, 5, 1, 2, 7, 0, 0, 1, 3, 9}, uint8(3), true)
	f.Add([]byte{1, 255, 23, 2, 254, 16, 6, 255, 23, 3, 1, 8}, uint8(1), false)
	f.Fuzz(func(t *testing.T, b []byte, kw uint8, collide bool) {
		tableModel(t, b, 1+int(kw%6), collide)
	})
}

// Homes spread over the whole table: at the load of a million keys in
// 2^21 slots a key sits on average half a slot from its home, as linear
// probing promises (the index of the first version, h|1 masked, put
// every home on an odd slot and doubled that).
func TestAggTableProbeLength(t *testing.T) {
	const slots = 1 << 16
	tab := newAggTable(slots, slotHeadWords+2+2, 2, 99)
	rng := rand.New(rand.NewPCG(1, 2))
	var even int
	for range slots / 2 {
		key := []uint64{rng.Uint64(), rng.Uint64()}
		h := tab.hash(key)
		if tab.home(h)%2 == 0 {
			even++
		}
		i, _ := tab.find(h, key)
		tab.insert(i, h, key, []uint64{0, 0}, 0)
	}
	var dist uint64
	for i := range tab.slots() {
		if h := tab.slot(i)[slotHash]; h != 0 {
			dist += (i - tab.home(h)) & tab.mask
		}
	}
	mean := float64(dist) / float64(tab.count)
	if mean > 0.7 || even < slots/5 || even > slots*3/10 {
		t.Errorf("mean distance from home %.2f slots; %d of %d homes even", mean, even, tab.count)
	}
}
