package ring

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// alignedMem returns MemSize(size) zero bytes starting on a cache line.
func alignedMem(size int) []byte {
	n := MemSize(size)
	words := make([]uint64, (n+lineSize)/8)
	b := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)
	off := (lineSize - int(uintptr(unsafe.Pointer(&b[0]))%lineSize)) % lineSize
	return b[off : off+n : off+n]
}

// put reserves n bytes, fills them with fill and commits m of them. It
// fails the test if there is no room.
func put(t *testing.T, p *Producer, n, m int, fill byte) {
	t.Helper()
	b := p.Reserve(n)
	if b == nil {
		t.Fatalf("Reserve(%d) = nil", n)
	}
	if len(b) != n || cap(b) != n {
		t.Fatalf("Reserve(%d): len %d cap %d", n, len(b), cap(b))
	}
	for i := range b {
		b[i] = fill
	}
	p.Commit(m)
}

// get takes the next entry and checks it is m bytes of fill.
func get(t *testing.T, c *Consumer, m int, fill byte) {
	t.Helper()
	b := c.Next()
	if b == nil {
		t.Fatalf("Next = nil, want %d bytes", m)
	}
	if len(b) != m || cap(b) != m {
		t.Fatalf("Next: len %d cap %d, want %d", len(b), cap(b), m)
	}
	if !bytes.Equal(b, bytes.Repeat([]byte{fill}, m)) {
		t.Fatalf("Next: entry of %d bytes has wrong content", m)
	}
	c.Release()
}

func wantLen(t *testing.T, r *Ring, want int) {
	t.Helper()
	if got := r.Len(); got != want {
		t.Fatalf("Len = %d, want %d", got, want)
	}
}

func TestRoundCap(t *testing.T) {
	f := func(in, want int) {
		t.Helper()
		if got := roundCap(in); got != want {
			t.Errorf("roundCap(%d) = %d, want %d", in, got, want)
		}
	}
	f(-1, MinCap)
	f(0, MinCap)
	f(4096, 4096)
	f(4097, 8192)
	f(65536, 65536)
	f(100000, 131072)
	f(MaxCap-1, MaxCap)
	f(MaxCap, MaxCap)
	f(MaxCap+1, MaxCap)
	f(math.MaxInt, MaxCap)

	if got := New(5000).Cap(); got != 8192 {
		t.Errorf("New(5000).Cap() = %d", got)
	}
	if got := New(0).MaxEntry(); got != 1024 {
		t.Errorf("MaxEntry of a 4 KiB ring = %d, want 1024", got)
	}
	if got := maxEntryFor(1 << 30); got != MaxEntryLimit {
		t.Errorf("maxEntryFor(1 GiB) = %d, want %d", got, MaxEntryLimit)
	}
}

func TestNewAligned(t *testing.T) {
	for range 20 {
		r := New(4096)
		if a := uintptr(unsafe.Pointer(&r.mem[0])) % lineSize; a != 0 {
			t.Fatalf("ring memory at offset %d in a cache line", a)
		}
	}
}

func TestEmptyAndFull(t *testing.T) {
	r := New(4096)
	p, c := r.Producer(), r.Consumer()
	if c.Next() != nil {
		t.Fatal("Next on an empty ring")
	}
	wantLen(t, r, 0)
	// 64 entries of 60 bytes: 64-byte frames fill 4096 exactly.
	for i := range 64 {
		put(t, p, 60, 60, byte(i))
	}
	wantLen(t, r, 4096)
	if p.Reserve(0) != nil {
		t.Fatal("Reserve(0) on a full ring")
	}
	get(t, c, 60, 0)
	wantLen(t, r, 4096-64)
	if p.Reserve(61) != nil { // 72-byte frame, 64 free
		t.Fatal("Reserve(61) with 64 bytes free")
	}
	put(t, p, 60, 60, 64)
	for i := 1; i <= 64; i++ {
		get(t, c, 60, byte(i))
	}
	if c.Next() != nil {
		t.Fatal("Next after draining")
	}
	wantLen(t, r, 0)
	if r.Refused() != 0 {
		t.Fatalf("Refused = %d after full-ring refusals", r.Refused())
	}
}

func TestEntrySizes(t *testing.T) {
	r := New(4096)
	p, c := r.Producer(), r.Consumer()
	maxN := r.MaxEntry()
	for _, n := range []int{0, 1, 7, 8, 9, maxN - 1, maxN} {
		put(t, p, n, n, byte(n))
		wantLen(t, r, int(frameSize(n)))
		get(t, c, n, byte(n))
		wantLen(t, r, 0)
	}
	if frameSize(0) != 8 || frameSize(4) != 8 || frameSize(5) != 16 || frameSize(12) != 16 {
		t.Fatal("frameSize does not pad 4+n to 8")
	}
	if b := p.Reserve(maxN + 1); b != nil {
		t.Fatal("Reserve(MaxEntry+1) succeeded")
	}
	if b := p.Reserve(1 << 20); b != nil {
		t.Fatal("Reserve(1 MiB) succeeded")
	}
	if got := r.Refused(); got != 2 {
		t.Fatalf("Refused = %d, want 2", got)
	}
	wantLen(t, r, 0)
}

func TestExactFitAtEnd(t *testing.T) {
	r := New(4096)
	p, c := r.Producer(), r.Consumer()
	// Frames of 1024: the fourth ends exactly at the end of the area.
	for i := range 4 {
		put(t, p, 1020, 1020, byte(i))
	}
	wantLen(t, r, 4096)
	if p.pos != 4096 {
		t.Fatalf("head = %d, want 4096 (no wrap gap)", p.pos)
	}
	for i := range 4 {
		get(t, c, 1020, byte(i))
	}
	// The next entry starts at index 0 without a marker.
	put(t, p, 1, 1, 9)
	if got := binary.NativeEndian.Uint32(r.mem[HeaderSize:]); got != 1 {
		t.Fatalf("length header at index 0 = %#x, want 1", got)
	}
	get(t, c, 1, 9)
	wantLen(t, r, 0)
}

func TestWrapMarker(t *testing.T) {
	r := New(4096)
	p, c := r.Producer(), r.Consumer()
	// Four 1008-byte frames leave 64 bytes at the end.
	for i := range 4 {
		put(t, p, 1000, 1000, byte(i))
	}
	get(t, c, 1000, 0)
	// 1008 free at the start, 64 at the end: a 1008-byte frame fits behind
	// the 64-byte gap, a 1016-byte one does not.
	if p.Reserve(1005) != nil {
		t.Fatal("Reserve(1005) succeeded with 1072 bytes free but a 64-byte gap to skip")
	}
	put(t, p, 1004, 1004, 4)
	wantLen(t, r, 4096)
	if got := binary.NativeEndian.Uint32(r.mem[HeaderSize+4032:]); got != wrapMarker {
		t.Fatalf("no wrap marker at 4032: %#x", got)
	}
	for i := 1; i <= 4; i++ {
		n := 1000
		if i == 4 {
			n = 1004
		}
		get(t, c, n, byte(i))
	}
	wantLen(t, r, 0)
	if p.pos != 4096+1008 || c.pos != p.pos {
		t.Fatalf("head %d tail %d, want both %d", p.pos, c.pos, 4096+1008)
	}
}

func TestCommitShorter(t *testing.T) {
	r := New(4096)
	p, c := r.Producer(), r.Consumer()
	put(t, p, 100, 10, 7)
	wantLen(t, r, 16)
	put(t, p, 100, 0, 8)
	wantLen(t, r, 24)
	get(t, c, 10, 7)
	get(t, c, 0, 8)
	wantLen(t, r, 0)

	// Shortened after a wrap: the entry stays at the start.
	for range 3 {
		put(t, p, 1000, 1000, 1)
	}
	for range 3 {
		get(t, c, 1000, 1)
	}
	// head at 3048, 1048 left at the end, a 1032-byte frame fits there.
	put(t, p, 1024, 1024, 2)
	get(t, c, 1024, 2)
	// 16 left at the end: reserve 1024 wraps, commit 3.
	put(t, p, 1024, 3, 3)
	wantLen(t, r, 16+8)
	get(t, c, 3, 3)
	wantLen(t, r, 0)
}

func TestReserveReplacesReservation(t *testing.T) {
	r := New(4096)
	p, c := r.Producer(), r.Consumer()
	p.Reserve(500)
	put(t, p, 5, 5, 1)
	wantLen(t, r, 16)
	get(t, c, 5, 1)
	// A refused Reserve also drops the earlier one.
	p.Reserve(5)
	if p.Reserve(r.MaxEntry()+1) != nil {
		t.Fatal("oversized Reserve succeeded")
	}
	mustPanic(t, "Commit after refused Reserve", func() { p.Commit(0) })
}

func TestNextTwice(t *testing.T) {
	r := New(4096)
	p, c := r.Producer(), r.Consumer()
	put(t, p, 3, 3, 1)
	put(t, p, 4, 4, 2)
	a, b := c.Next(), c.Next()
	if &a[0] != &b[0] || len(a) != 3 {
		t.Fatal("Next twice did not return the same entry")
	}
	c.Release()
	get(t, c, 4, 2)
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s did not panic", what)
		}
	}()
	f()
}

func TestMisuse(t *testing.T) {
	r := New(4096)
	p, c := r.Producer(), r.Consumer()
	mustPanic(t, "Commit without Reserve", func() { p.Commit(0) })
	mustPanic(t, "Reserve(-1)", func() { p.Reserve(-1) })
	p.Reserve(10)
	mustPanic(t, "Commit(11) after Reserve(10)", func() { p.Commit(11) })
	mustPanic(t, "Commit(-1)", func() { p.Commit(-1) })
	p.Commit(10)
	mustPanic(t, "second Commit", func() { p.Commit(0) })
	mustPanic(t, "Release without Next", func() { c.Release() })
	c.Next()
	c.Release()
	mustPanic(t, "second Release", func() { c.Release() })

	// An entry length beyond MaxEntry or past head is corruption.
	put(t, p, 1, 1, 1)
	binary.NativeEndian.PutUint32(r.mem[HeaderSize+16:], 2000)
	mustPanic(t, "Next over a corrupt length", func() { c.Next() })
	binary.NativeEndian.PutUint32(r.mem[HeaderSize+16:], 5)
	mustPanic(t, "Next over a length past head", func() { c.Next() })
}

func TestLenAccounting(t *testing.T) {
	r := New(8192)
	p, c := r.Producer(), r.Consumer()
	rng := rand.New(rand.NewPCG(1, 2))
	var sizes []int
	used := 0
	for step := range 20000 {
		if rng.IntN(2) == 0 {
			n := rng.IntN(r.MaxEntry() + 1)
			if b := p.Reserve(n); b != nil {
				p.Commit(n)
				sizes = append(sizes, n)
			}
		} else if b := c.Next(); b != nil {
			if len(b) != sizes[0] {
				t.Fatalf("step %d: entry of %d bytes, want %d", step, len(b), sizes[0])
			}
			sizes = sizes[1:]
			c.Release()
		}
		used = int(p.pos - c.pos)
		wantLen(t, r, used)
		if used > r.Cap() {
			t.Fatalf("step %d: %d bytes in use", step, used)
		}
	}
}

func TestAttach(t *testing.T) {
	mem := alignedMem(4096)
	a, err := On(mem, true)
	if err != nil {
		t.Fatal(err)
	}
	pa := a.Producer()
	put(t, pa, 10, 10, 1)
	put(t, pa, 20, 20, 2)

	b, err := On(mem, false)
	if err != nil {
		t.Fatal(err)
	}
	if b.Len() != a.Len() || b.Cap() != 4096 {
		t.Fatalf("attached ring: Len %d Cap %d, formatted: Len %d", b.Len(), b.Cap(), a.Len())
	}
	cb := b.Consumer()
	get(t, cb, 10, 1)
	wantLen(t, a, 24) // the release shows through the shared tail
	put(t, pa, 30, 30, 3)
	get(t, cb, 20, 2)
	get(t, cb, 30, 3)
	wantLen(t, a, 0)
	if cb.Next() != nil {
		t.Fatal("Next on the attached ring after draining")
	}

	// Attaching again resumes at the shared head and tail.
	put(t, pa, 40, 40, 4)
	b2, err := On(mem, false)
	if err != nil {
		t.Fatal(err)
	}
	get(t, b2.Consumer(), 40, 4)

	// A producer can attach too and continue where the other stopped.
	pb := b2.Producer()
	put(t, pb, 50, 50, 5)
	get(t, a.Consumer(), 50, 5)
}

func TestOnErrors(t *testing.T) {
	f := func(name string, mem []byte, init bool, want error) {
		t.Helper()
		r, err := On(mem, init)
		if !errors.Is(err, want) || r != nil {
			t.Errorf("%s: On = %v, %v; want %v", name, r, err, want)
		}
	}
	good := func() []byte {
		mem := alignedMem(4096)
		if _, err := On(mem, true); err != nil {
			t.Fatal(err)
		}
		return mem
	}

	f("zeroed memory", alignedMem(4096), false, ErrMagic)
	f("too small", alignedMem(4096)[:HeaderSize+2048], true, ErrSize)
	f("not a power of two", alignedMem(8192)[:HeaderSize+5000], true, ErrSize)
	f("header only", alignedMem(4096)[:HeaderSize], false, ErrSize)
	f("nil", nil, true, ErrSize)
	f("misaligned", alignedMem(8192)[4:4+MemSize(4096)], true, ErrAlign)
	f("misaligned attach", alignedMem(8192)[1:1+MemSize(4096)], false, ErrAlign)

	mem := good()
	mem[offMagic] ^= 0xff
	f("bad magic", mem, false, ErrMagic)

	mem = good()
	binary.NativeEndian.PutUint32(mem[offVersion:], Version+1)
	f("bad version", mem, false, ErrVersion)

	mem = good()
	binary.NativeEndian.PutUint32(mem[offHdrSize:], 128)
	f("bad header size", mem, false, ErrVersion)

	mem = good()
	binary.NativeEndian.PutUint64(mem[offCap:], 8192)
	f("size mismatch", mem, false, ErrSize)

	// A formatted 8 KiB ring seen through a 4 KiB window.
	big := alignedMem(8192)
	if _, err := On(big, true); err != nil {
		t.Fatal(err)
	}
	f("wrong size", big[:MemSize(4096)], false, ErrSize)

	for _, ht := range [][2]uint64{{8, 16}, {8192, 0}, {12, 0}, {16, 4}} {
		mem = good()
		binary.NativeEndian.PutUint64(mem[offHead:], ht[0])
		binary.NativeEndian.PutUint64(mem[offTail:], ht[1])
		f("corrupt head/tail", mem, false, ErrCorrupt)
	}

	// Formatting overwrites whatever was there.
	mem = good()
	mem[offMagic] ^= 0xff
	binary.NativeEndian.PutUint64(mem[offHead:], 12)
	if _, err := On(mem, true); err != nil {
		t.Fatalf("formatting garbage: %v", err)
	}
	if _, err := On(mem, false); err != nil {
		t.Fatalf("attaching after formatting: %v", err)
	}
}

func TestNoAllocs(t *testing.T) {
	r := New(1 << 16)
	p, c := r.Producer(), r.Consumer()
	c.Wait(time.Millisecond, nil) // makes the timer
	n := testing.AllocsPerRun(1000, func() {
		b := p.Reserve(100)
		b[0] = 1
		p.Commit(90)
		c.Wait(time.Second, nil)
		if e := c.Next(); len(e) != 90 {
			panic("lost entry")
		}
		c.Release()
		c.Next()
	})
	if n != 0 {
		t.Fatalf("Reserve/Commit/Wait/Next/Release: %v allocations per run", n)
	}
}

func TestWaitWakesAndTimesOut(t *testing.T) {
	mem := alignedMem(4096)
	ra, err := On(mem, true)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := On(mem, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		consumer *Ring
	}{
		{"channel", ra},
		{"polling", rb}, // rb never hands out its Producer
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, c := ra.Producer(), tc.consumer.Consumer()
			start := time.Now()
			c.Wait(30*time.Millisecond, nil)
			if el := time.Since(start); el < 30*time.Millisecond {
				t.Errorf("Wait(30ms) on an empty ring returned after %v", el)
			}
			c.Wait(0, nil)
			c.Wait(-1, nil)

			done := make(chan struct{})
			go func() {
				time.Sleep(20 * time.Millisecond)
				close(done)
			}()
			start = time.Now()
			c.Wait(time.Minute, done)
			if el := time.Since(start); el > 30*time.Second {
				t.Errorf("Wait ignored done for %v", el)
			}

			for range 20 {
				go func() {
					time.Sleep(5 * time.Millisecond)
					put(t, p, 8, 8, 1)
				}()
				start = time.Now()
				for c.Next() == nil {
					c.Wait(time.Minute, nil)
					if time.Since(start) > 30*time.Second {
						t.Fatal("Wait slept through a Commit")
					}
				}
				c.Release()
			}

			// With an entry there Wait returns at once.
			put(t, p, 1, 1, 1)
			start = time.Now()
			c.Wait(time.Minute, nil)
			if el := time.Since(start); el > 10*time.Second {
				t.Errorf("Wait with an entry ready took %v", el)
			}
			get(t, c, 1, 1)
		})
	}
	if got := binary.NativeEndian.Uint32(mem[offWaiting:]); got != 0 {
		t.Fatalf("sleeping flag left at %d", got)
	}
}

// Stress entries: their size follows from their sequence number; entries
// of 12 bytes or more carry the sequence number and a CRC-32 of the rest,
// shorter ones a pattern from the sequence number.
const stressEntries = 200_000

func stressSize(seq uint64, maxN int) int {
	h := seq * 0x9e3779b97f4a7c15
	switch h >> 61 {
	case 0:
		return int((h >> 20) % 12)
	case 1:
		return int((h >> 20) % uint64(maxN+1)) // anything up to MaxEntry
	default:
		return int((h >> 20) % 1500)
	}
}

func fillStress(b []byte, seq uint64) {
	if len(b) < 12 {
		for i := range b {
			b[i] = byte(seq) + byte(i)
		}
		return
	}
	binary.LittleEndian.PutUint64(b, seq)
	x := seq
	for i := 8; i < len(b)-4; i++ {
		x = x*6364136223846793005 + 1442695040888963407
		b[i] = byte(x >> 56)
	}
	binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.ChecksumIEEE(b[:len(b)-4]))
}

func checkStress(b []byte, seq uint64, maxN int) error {
	if want := stressSize(seq, maxN); len(b) != want {
		return fmt.Errorf("entry %d: %d bytes, want %d", seq, len(b), want)
	}
	if len(b) < 12 {
		for i := range b {
			if b[i] != byte(seq)+byte(i) {
				return fmt.Errorf("entry %d: byte %d is %#x", seq, i, b[i])
			}
		}
		return nil
	}
	if got := binary.LittleEndian.Uint64(b); got != seq {
		return fmt.Errorf("entry %d: sequence number %d", seq, got)
	}
	if crc32.ChecksumIEEE(b[:len(b)-4]) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return fmt.Errorf("entry %d: checksum mismatch", seq)
	}
	return nil
}

// runStress pushes entries from a producer goroutine to a consumer
// goroutine and checks every one. Some reservations are longer than the
// entry and shortened at Commit. A third goroutine samples Len.
func runStress(t *testing.T, p *Producer, c *Consumer, r *Ring, entries uint64) {
	t.Helper()
	maxN := r.MaxEntry()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errc := make(chan error, 2)
	wg.Add(3)
	go func() {
		defer wg.Done()
		for seq := uint64(0); seq < entries; seq++ {
			n := stressSize(seq, maxN)
			extra := 0
			if seq%3 == 0 {
				extra = min(int(seq%97), maxN-n)
			}
			var b []byte
			for {
				if b = p.Reserve(n + extra); b != nil {
					break
				}
				select {
				case <-stop:
					return
				default:
				}
				runtime.Gosched()
			}
			fillStress(b[:n], seq)
			p.Commit(n)
		}
	}()
	go func() {
		defer wg.Done()
		defer close(stop)
		for seq := uint64(0); seq < entries; seq++ {
			var b []byte
			for {
				if b = c.Next(); b != nil {
					break
				}
				c.Wait(time.Second, nil)
			}
			if err := checkStress(b, seq, maxN); err != nil {
				errc <- err
				return
			}
			c.Release()
		}
		if b := c.Next(); b != nil {
			errc <- fmt.Errorf("entry after the last one: %d bytes", len(b))
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n := r.Len(); n < 0 || n > r.Cap() {
				errc <- fmt.Errorf("Len = %d", n)
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if r.Len() != 0 {
		t.Errorf("Len = %d after the run", r.Len())
	}
}

func TestStress(t *testing.T) {
	r := New(64 << 10)
	runStress(t, r.Producer(), r.Consumer(), r, stressEntries)
}
