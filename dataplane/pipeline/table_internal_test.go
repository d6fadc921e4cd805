package pipeline

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
)

// The aggregate table's backward-shift delete keeps every remaining key
// findable: random inserts and removes on a small, crowded table checked
// against a map.
func TestAggTableRemove(t *testing.T) {
	for _, maxKeys := range []int{1, 2, 5, 10, 21} {
		s, err := newAggregate(1, &Aggregate{Keys: []string{"sourceTransportPort"}, MaxKeys: maxKeys})
		if err != nil {
			t.Fatal(err)
		}
		tab := &s.tab
		rng := rand.New(rand.NewPCG(uint64(maxKeys), 7))
		key := func(k uint16) []uint64 { return []uint64{1 | uint64(k)<<32} }
		model := map[uint16]bool{}
		const universe = 64
		for op := range 20000 {
			k := uint16(rng.IntN(universe))
			b := key(k)
			i, found := tab.find(tab.hash(b), b)
			if found != model[k] {
				t.Fatalf("max %d op %d: key %d found %v, want %v", maxKeys, op, k, found, model[k])
			}
			switch {
			case !found && len(model) < maxKeys:
				tab.insert(i, tab.hash(b), b, s.init, 0)
				model[k] = true
			case found && rng.IntN(3) > 0:
				tab.remove(i)
				delete(model, k)
			}
			if tab.count != len(model) {
				t.Fatalf("count %d, want %d", tab.count, len(model))
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
			for k := range model {
				if _, ok := tab.find(tab.hash(key(k)), key(k)); !ok {
					t.Fatalf("max %d op %d: key %d lost", maxKeys, op, k)
				}
			}
		}
	}
}

// TestAggTableGrow: the table starts small, doubles as keys come, keeps
// every key findable across the moves, and stops growing at its bound.
func TestAggTableGrow(t *testing.T) {
	const maxKeys = 20000
	s, err := newAggregate(1, &Aggregate{Keys: []string{"sourceTransportPort", "destinationTransportPort"}, MaxKeys: maxKeys})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.tab.slots(); got != initialAggSlots {
		t.Fatalf("starts with %d slots, want %d", got, initialAggSlots)
	}
	l := mustLayout(t, []ipfix.FieldSpec{{ID: 7, Length: 2}, {ID: 11, Length: 2}, {ID: 1, Length: 8}})
	var out nullSink
	s.next = &out
	var r ipfix.Record
	for k := range maxKeys {
		b := binary.BigEndian.AppendUint16(nil, uint16(k))
		b = binary.BigEndian.AppendUint16(b, uint16(k>>16))
		b = binary.BigEndian.AppendUint64(b, uint64(k))
		it := ipfix.NewDataIter(l, b)
		it.Next(&r)
		s.record(nil, &r)
		s.drain()
		if uint64(s.tab.count)*3 > s.tab.slots()*2 {
			t.Fatalf("%d keys in %d slots: over 2/3", s.tab.count, s.tab.slots())
		}
	}
	if s.tab.count != maxKeys || s.tab.slots() != s.maxSlots || s.evicted != 0 || out.n != 0 {
		t.Fatalf("count %d slots %d (max %d) evicted %d emitted %d", s.tab.count, s.tab.slots(), s.maxSlots, s.evicted, out.n)
	}
	for k := range maxKeys {
		key := make([]byte, s.keyW)
		binary.LittleEndian.PutUint32(key, 3)
		binary.BigEndian.PutUint16(key[4:], uint16(k))
		binary.BigEndian.PutUint16(key[6:], uint16(k>>16))
		w := []uint64{binary.NativeEndian.Uint64(key)} // the table reads keys as native words
		if _, ok := s.tab.find(s.tab.hash(w), w); !ok {
			t.Fatalf("key %d lost by growing", k)
		}
	}
}

type nullSink struct{ n int }

func (s *nullSink) record(*jsonl.Meta, *ipfix.Record) { s.n++ }

func mustLayout(t *testing.T, specs []ipfix.FieldSpec) *ipfix.Layout {
	t.Helper()
	l, err := buildLayout(256, specs)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// The trie against a slow reference: the longest listed prefix that holds
// the address, the later row for a prefix listed twice.
func TestNetTableLongestPrefix(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	randAddr := func(v6 bool) netip.Addr {
		if v6 {
			var b [16]byte
			binary.BigEndian.PutUint64(b[:], rng.Uint64()&0xffff_f000_0000_0000|0x2001_0000_0000_0000)
			binary.BigEndian.PutUint64(b[8:], rng.Uint64())
			return netip.AddrFrom16(b)
		}
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], rng.Uint32()&0xff0f_ffff|0x0a00_0000)
		return netip.AddrFrom4(b)
	}
	var prefixes []netip.Prefix
	var csv strings.Builder
	csv.WriteString("prefix,row\n")
	for i := range 1000 {
		v6 := i%2 == 1
		bitsMax := 32
		if v6 {
			bitsMax = 128
		}
		p := netip.PrefixFrom(randAddr(v6), rng.IntN(bitsMax+1))
		if i%50 == 0 && len(prefixes) > 0 {
			p = prefixes[rng.IntN(len(prefixes))] // listed again
		}
		prefixes = append(prefixes, p.Masked())
		csv.WriteString(p.String() + "," + strconv.Itoa(i) + "\n")
	}
	tab, err := readNetTable(strings.NewReader(csv.String()), "gen.csv")
	if err != nil {
		t.Fatal(err)
	}
	for n := range 10000 {
		a := randAddr(n%2 == 1)
		if n%3 == 0 {
			p := prefixes[rng.IntN(len(prefixes))]
			a = p.Addr() // the start of a prefix
			if p.Addr().Is4() != (n%2 == 0) {
				continue
			}
		}
		want, wantBits := -1, -1
		for i, p := range prefixes {
			if p.Contains(a) && p.Bits() >= wantBits {
				want, wantBits = i, p.Bits()
			}
		}
		got := tab.lookup(a.AsSlice())
		if want < 0 {
			if got != -1 {
				t.Fatalf("%v: row %d, want none", a, got)
			}
			continue
		}
		if got < 0 || tab.rows[got][0] != strconv.Itoa(want) {
			t.Fatalf("%v: row %d, want %d (%v)", a, got, want, prefixes[want])
		}
	}
}
