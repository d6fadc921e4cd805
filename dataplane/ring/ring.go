package ring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"sync/atomic"
	"time"
	"unsafe"
)

const (
	// HeaderSize is the number of bytes in front of the entry area in the
	// memory given to On.
	HeaderSize = 256
	// MinCap and MaxCap bound the size of the entry area.
	MinCap = 4 << 10
	MaxCap = 1 << 30
	// MaxEntryLimit caps MaxEntry on large rings.
	MaxEntryLimit = 256 << 10
	// Version is the layout version written to and checked in the header.
	// Version 2 added the generation, index and count of a file ring, the
	// producer's closed flag and the consumer's checkpoint.
	Version = 2

	magic    = 0x47524c53 // "SLRG" in memory on little-endian machines
	lineSize = 64

	// Header offsets. Each group written by one side has a line of its own.
	offMagic   = 0   // uint32, written last when formatting
	offVersion = 4   // uint32
	offCap     = 8   // uint64, size of the entry area
	offHdrSize = 16  // uint32, HeaderSize
	offGen     = 24  // uint64, the producer's generation (Meta), set when formatting
	offIndex   = 32  // uint32, Meta.Index
	offCount   = 36  // uint32, Meta.Count
	offHead    = 64  // uint64, written by the producer
	offRefused = 72  // uint64, written by the producer
	offClosed  = 80  // uint32, written by the producer: nothing more will come
	offTail    = 128 // uint64, written by the consumer
	offCheck   = 136 // uint64, written by the consumer: see Checkpoint
	offWaiting = 192 // uint32, written by the consumer, read by the producer

	frameHeader = 4
	frameAlign  = 8
	wrapMarker  = ^uint32(0)
)

// Errors returned by On, wrapped with details.
var (
	ErrSize    = errors.New("ring: bad memory size")
	ErrAlign   = errors.New("ring: memory not 8-byte aligned")
	ErrMagic   = errors.New("ring: no ring header")
	ErrVersion = errors.New("ring: unsupported layout version")
	ErrCorrupt = errors.New("ring: corrupt header")
)

// Ring is a single-producer single-consumer ring of variable-length entries
// over a byte buffer. Make one with New or On; the zero value is not usable.
type Ring struct {
	mem      []byte
	size     uint64
	maxEntry int
	head     *atomic.Uint64
	tail     *atomic.Uint64
	refused  *atomic.Uint64
	closed   *atomic.Uint32
	check    *atomic.Uint64
	// localProducer is set once Producer is called: only then can a Commit
	// in this process wake the consumer through notify.
	localProducer atomic.Bool
	localConsumer atomic.Bool

	_    [lineSize]byte
	prod Producer
	_    [lineSize]byte
	cons Consumer
	_    [lineSize]byte
}

// Producer is the writing end of a Ring. It belongs to one goroutine.
type Producer struct {
	data     []byte
	mask     uint64
	size     uint64
	maxEntry int
	head     *atomic.Uint64
	tail     *atomic.Uint64
	refused  *atomic.Uint64
	closed   *atomic.Uint32
	waiting  *atomic.Uint32
	notify   chan struct{}

	pos       uint64 // head as this side knows it
	tailCache uint64 // last tail loaded; reloaded only when the ring looks full
	resv      int    // length reserved, -1 when nothing is reserved
	resvIdx   uint64 // index of the reserved entry's length header
	resvSkip  uint64 // bytes skipped at the end of the area by a wrap
}

// Consumer is the reading end of a Ring. It belongs to one goroutine.
type Consumer struct {
	ring     *Ring
	data     []byte
	mask     uint64
	size     uint64
	maxEntry int
	head     *atomic.Uint64
	tail     *atomic.Uint64
	check    *atomic.Uint64
	waiting  *atomic.Uint32
	notify   chan struct{}

	pos       uint64 // read position: tail plus what Skip moved past
	headCache uint64 // last head loaded; reloaded only when the ring looks empty
	adv       uint64 // bytes Release moves tail by; 0 when no entry is held
	timer     *time.Timer
}

// roundCap returns size rounded up to a power of two within [MinCap, MaxCap].
func roundCap(size int) int {
	switch {
	case size <= MinCap:
		return MinCap
	case size >= MaxCap:
		return MaxCap
	}
	return 1 << bits.Len(uint(size-1))
}

// MemSize returns the length of the memory On needs for a ring with room
// for size bytes of entries (rounded as New rounds it): the size to give a
// shared file before mapping it.
func MemSize(size int) int { return HeaderSize + roundCap(size) }

// maxEntryFor is the largest payload accepted by a ring of the given size.
// A quarter of the area always fits, even behind a wrap that wastes up to
// one frame at the end of the area.
func maxEntryFor(size uint64) int { return int(min(size/4, MaxEntryLimit)) }

func frameSize(n int) uint64 {
	return uint64(n+frameHeader+frameAlign-1) &^ (frameAlign - 1)
}

// New makes a ring in process memory with room for size bytes of entries,
// rounded up to a power of two between MinCap and MaxCap.
func New(size int) *Ring {
	n := MemSize(size)
	words := make([]uint64, (n+lineSize)/8)
	b := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)
	// Start on a cache line so head and tail do not share one.
	off := (lineSize - int(uintptr(unsafe.Pointer(&b[0]))%lineSize)) % lineSize
	r, err := On(b[off:off+n:off+n], true)
	if err != nil {
		panic("BUG: ring: " + err.Error())
	}
	return r
}

// On builds a ring over mem, which must be 8-byte aligned (64-byte aligned
// is better; a page-aligned mapping is) and exactly MemSize(c) bytes long
// for some c. With init it formats mem as an empty ring; without, it
// attaches to the ring already in mem, checking its header, so that two
// processes mapping one file share one ring. The caller keeps mem mapped
// for as long as the Ring is used.
func On(mem []byte, init bool) (*Ring, error) {
	if len(mem) < HeaderSize+MinCap {
		return nil, fmt.Errorf("%w: %d bytes, need at least %d", ErrSize, len(mem), HeaderSize+MinCap)
	}
	if uintptr(unsafe.Pointer(unsafe.SliceData(mem)))%8 != 0 {
		return nil, ErrAlign
	}
	size := uint64(len(mem) - HeaderSize)
	if size > MaxCap || size&(size-1) != 0 {
		return nil, fmt.Errorf("%w: entry area of %d bytes is not a power of two between %d and %d", ErrSize, size, MinCap, MaxCap)
	}
	if init {
		clear(mem[:HeaderSize])
		binary.NativeEndian.PutUint32(mem[offVersion:], Version)
		binary.NativeEndian.PutUint64(mem[offCap:], size)
		binary.NativeEndian.PutUint32(mem[offHdrSize:], HeaderSize)
		u32(mem, offMagic).Store(magic)
	} else {
		if err := checkIdent(mem); err != nil {
			return nil, err
		}
		if c := binary.NativeEndian.Uint64(mem[offCap:]); c != size {
			return nil, fmt.Errorf("%w: header says %d bytes of entries, memory holds %d", ErrSize, c, size)
		}
		h, t := u64(mem, offHead).Load(), u64(mem, offTail).Load()
		if t > h || h-t > size || h%frameAlign != 0 || t%frameAlign != 0 {
			return nil, fmt.Errorf("%w: head %d, tail %d", ErrCorrupt, h, t)
		}
	}

	r := &Ring{
		mem:      mem,
		size:     size,
		maxEntry: maxEntryFor(size),
		head:     u64(mem, offHead),
		tail:     u64(mem, offTail),
		refused:  u64(mem, offRefused),
		closed:   u32(mem, offClosed),
		check:    u64(mem, offCheck),
	}
	data := mem[HeaderSize:]
	notify := make(chan struct{}, 1)
	waiting := u32(mem, offWaiting)
	r.prod = Producer{
		data: data, mask: size - 1, size: size, maxEntry: r.maxEntry,
		head: r.head, tail: r.tail, refused: r.refused, closed: r.closed, waiting: waiting, notify: notify,
		resv: -1,
	}
	r.cons = Consumer{
		ring: r, data: data, mask: size - 1, size: size, maxEntry: r.maxEntry,
		head: r.head, tail: r.tail, check: r.check, waiting: waiting, notify: notify,
	}
	return r, nil
}

// checkIdent checks the magic, the version and the header size.
func checkIdent(mem []byte) error {
	if got := u32(mem, offMagic).Load(); got != magic {
		return fmt.Errorf("%w: magic %#x", ErrMagic, got)
	}
	if v := binary.NativeEndian.Uint32(mem[offVersion:]); v != Version {
		return fmt.Errorf("%w: %d, want %d", ErrVersion, v, Version)
	}
	if h := binary.NativeEndian.Uint32(mem[offHdrSize:]); h != HeaderSize {
		return fmt.Errorf("%w: header size %d, want %d", ErrVersion, h, HeaderSize)
	}
	return nil
}

func u64(mem []byte, off int) *atomic.Uint64 { return (*atomic.Uint64)(unsafe.Pointer(&mem[off])) }
func u32(mem []byte, off int) *atomic.Uint32 { return (*atomic.Uint32)(unsafe.Pointer(&mem[off])) }

// Producer returns the writing end, which starts at the head in the shared
// header when Producer is first called. Only one goroutine may use it, and a
// shared ring has one producer across all processes.
func (r *Ring) Producer() *Producer {
	if r.localProducer.CompareAndSwap(false, true) {
		r.prod.pos, r.prod.tailCache = r.head.Load(), r.tail.Load()
	}
	return &r.prod
}

// Consumer returns the reading end, which starts at the tail in the shared
// header when Consumer is first called. Only one goroutine may use it, and a
// shared ring has one consumer across all processes.
func (r *Ring) Consumer() *Consumer {
	if r.localConsumer.CompareAndSwap(false, true) {
		r.cons.pos, r.cons.headCache = r.tail.Load(), r.head.Load()
	}
	return &r.cons
}

// Len returns the bytes in use, framing, padding and wrap gaps included:
// approximate while the ends move, never above Cap. Safe from any goroutine.
func (r *Ring) Len() int {
	t := r.tail.Load() // tail first: head only grows, so head >= this tail
	h := r.head.Load()
	if h < t {
		return 0
	}
	return int(min(h-t, r.size))
}

// Cap returns the size of the entry area in bytes.
func (r *Ring) Cap() int { return int(r.size) }

// MaxEntry returns the largest payload Reserve accepts: a quarter of Cap,
// at most MaxEntryLimit (256 KiB). A quarter guarantees that an entry of
// that size fits whenever the ring is empty, even behind a wrap gap.
func (r *Ring) MaxEntry() int { return r.maxEntry }

// Refused returns how many Reserve calls asked for more than MaxEntry.
// Safe from any goroutine.
func (r *Ring) Refused() uint64 { return r.refused.Load() }

// Reserve returns a writable slice of exactly n bytes (its capacity is n
// too) inside the ring, valid until Commit, or nil if there is no room now
// or n is above MaxEntry (counted in Refused). It never blocks and never
// allocates. A Reserve drops any earlier reservation not yet committed.
func (p *Producer) Reserve(n int) []byte {
	if n < 0 {
		panic("BUG: ring: Reserve of a negative length")
	}
	p.resv = -1
	if n > p.maxEntry {
		p.refused.Add(1)
		return nil
	}
	rec := frameSize(n)
	idx := p.pos & p.mask
	var skip uint64
	if room := p.size - idx; room < rec {
		skip = room // a multiple of 8, so the marker fits
	}
	end := p.pos + skip + rec
	if end-p.tailCache > p.size {
		p.tailCache = p.tail.Load()
		if end-p.tailCache > p.size {
			return nil
		}
	}
	if skip != 0 {
		// In free space, so invisible until Commit publishes head.
		binary.NativeEndian.PutUint32(p.data[idx:], wrapMarker)
		idx = 0
	}
	p.resv, p.resvIdx, p.resvSkip = n, idx, skip
	start := idx + frameHeader
	return p.data[start : start+uint64(n) : start+uint64(n)]
}

// Commit publishes the entry reserved last, holding its first m bytes
// (0 <= m <= the reserved length). If the consumer sleeps in Wait on this
// Ring, Commit wakes it; otherwise it costs one more atomic load.
func (p *Producer) Commit(m int) {
	if p.resv < 0 {
		panic("BUG: ring: Commit without Reserve")
	}
	if m < 0 || m > p.resv {
		panic("BUG: ring: Commit length out of the reserved range")
	}
	binary.NativeEndian.PutUint32(p.data[p.resvIdx:], uint32(m))
	p.pos += p.resvSkip + frameSize(m)
	p.resv = -1
	p.head.Store(p.pos) // release: the entry's bytes before head
	if p.waiting.Load() != 0 {
		select {
		case p.notify <- struct{}{}:
		default:
		}
	}
}

// Next returns the oldest committed entry, a view into the ring valid until
// Release, or nil if the ring is empty. Calling Next again before Release
// returns the same entry. It never blocks and never allocates.
func (c *Consumer) Next() []byte {
	if c.pos == c.headCache {
		c.headCache = c.head.Load() // acquire: pairs with Commit's store
		if c.pos == c.headCache {
			return nil
		}
	}
	idx := c.pos & c.mask
	n := binary.NativeEndian.Uint32(c.data[idx:])
	var skip uint64
	if n == wrapMarker {
		skip = c.size - idx
		idx = 0
		n = binary.NativeEndian.Uint32(c.data[0:])
	}
	if n > uint32(c.maxEntry) || skip+frameSize(int(n)) > c.headCache-c.pos {
		panic("BUG: ring: corrupt entry header")
	}
	c.adv = skip + frameSize(int(n))
	start := idx + frameHeader
	return c.data[start : start+uint64(n) : start+uint64(n)]
}

// Release frees the entry returned by Next, and any Skip moved past; their
// bytes may be overwritten from then on.
func (c *Consumer) Release() {
	c.Skip()
	c.Publish()
}

// Skip moves past the entry returned by Next without freeing it: the view
// Next gave stays valid, and its space closed to the producer, until
// Publish. Entries skipped and not yet published are what a consumer that
// dies reads again from the file; Checkpoint tells its successor how far
// that goes.
func (c *Consumer) Skip() {
	if c.adv == 0 {
		panic("BUG: ring: Skip or Release without Next")
	}
	c.pos += c.adv
	c.adv = 0
}

// Publish frees every entry Skip moved past: one atomic store.
func (c *Consumer) Publish() {
	c.tail.Store(c.pos) // release: reads of the entries before tail
}

// Pos returns the read position: a byte counter that Skip and Release
// advance, comparable with Checkpointed.
func (c *Consumer) Pos() uint64 { return c.pos }

// Checkpoint records the read position in the header (one atomic store):
// a consumer that calls it after Skip and before handing the entry on lets
// a successor attached to the same file tell, with Checkpointed, which of
// the entries it reads again were handed on before.
func (c *Consumer) Checkpoint() { c.check.Store(c.pos) }

// Checkpointed returns the position the last Checkpoint recorded; entries
// ending at or before it, and after the tail, were handed on by an earlier
// consumer that never released them. Safe from any goroutine.
func (r *Ring) Checkpointed() uint64 { return r.check.Load() }

// Close tells the consumer that the producer will commit nothing more (a
// collector that stopped cleanly). It is the producer's to call.
func (p *Producer) Close() { p.closed.Store(1) }

// Closed reports whether the producer called Close. Safe from any
// goroutine.
func (r *Ring) Closed() bool { return r.closed.Load() != 0 }

// Meta says which producer formatted a ring kept in a file: the
// generation (a number new at each producer start) and the ring's index
// among Count rings. It is written once, when the ring is formatted.
type Meta struct {
	Generation uint64
	Index      int
	Count      int
}

// Meta returns what the header says of the producer. Safe from any
// goroutine.
func (r *Ring) Meta() Meta {
	return Meta{
		Generation: binary.NativeEndian.Uint64(r.mem[offGen:]),
		Index:      int(binary.NativeEndian.Uint32(r.mem[offIndex:])),
		Count:      int(binary.NativeEndian.Uint32(r.mem[offCount:])),
	}
}

func (r *Ring) setMeta(m Meta) {
	binary.NativeEndian.PutUint64(r.mem[offGen:], m.Generation)
	binary.NativeEndian.PutUint32(r.mem[offIndex:], uint32(m.Index))
	binary.NativeEndian.PutUint32(r.mem[offCount:], uint32(m.Count))
}

// ready reports whether an entry is committed and not yet released.
func (c *Consumer) ready() bool {
	if c.pos != c.headCache {
		return true
	}
	c.headCache = c.head.Load()
	return c.pos != c.headCache
}

// Polling bounds for a consumer that no Commit can wake.
const (
	pollMin = 50 * time.Microsecond
	pollMax = time.Millisecond
)

// Wait blocks until an entry may be available, timeout passes or done is
// closed; call it when Next returns nil. It returns at once if an entry is
// there or timeout <= 0, so it costs one atomic load while entries flow.
// Wake-ups may be spurious: call Next again.
//
// When this Ring value has handed out its Producer, the producer is in this
// process and Wait sleeps on a channel: it sets the sleeping flag in the
// shared header, checks head once more and blocks; Commit loads the flag
// and, only when it is set, sends on the channel without blocking. Otherwise
// (typically a mediator that attached with On(mem, false) to a ring filled
// by another process) no channel can reach it and Wait polls head instead,
// sleeping 50 µs at first and backing off to 1 ms, which bounds the added
// latency when the ring goes from idle to busy. The sleeping flag is left
// alone then, so a producer elsewhere never pays for a send.
func (c *Consumer) Wait(timeout time.Duration, done <-chan struct{}) {
	if c.ready() || timeout <= 0 {
		return
	}
	if !c.ring.localProducer.Load() {
		c.poll(timeout, done)
		return
	}
	c.startTimer(timeout)
	defer c.stopTimer()
	defer c.waiting.Store(0)
	for {
		c.waiting.Store(1)
		// Either this load sees the new head or Commit's load sees the flag:
		// both sides store then load, and Go's atomics are sequentially
		// consistent.
		if c.ready() {
			return
		}
		select {
		case <-c.notify:
			// A token may be stale from an earlier wake-up; check, and
			// sleep again if nothing came.
			if c.ready() {
				return
			}
		case <-c.timer.C:
			return
		case <-done:
			return
		}
	}
}

func (c *Consumer) poll(timeout time.Duration, done <-chan struct{}) {
	deadline := time.Now().Add(timeout)
	defer c.stopTimer()
	for d := pollMin; ; d = min(2*d, pollMax) {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		c.startTimer(min(d, left))
		select {
		case <-c.timer.C:
		case <-done:
			return
		}
		if c.ready() {
			return
		}
	}
}

// startTimer arms the consumer's one timer, made on first use. Since Go
// 1.23 Reset drops a stale expiry, so no draining is needed.
func (c *Consumer) startTimer(d time.Duration) {
	if c.timer == nil {
		c.timer = time.NewTimer(d)
		return
	}
	c.timer.Reset(d)
}

func (c *Consumer) stopTimer() {
	if c.timer != nil {
		c.timer.Stop()
	}
}
