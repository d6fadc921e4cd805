package collector

import (
	"net/netip"
	"sync/atomic"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/template"
)

// heldOverhead is what one held set costs beyond its body, for the bounds.
const heldOverhead = 96

// heldSet is a data set waiting for its template, with what decoding it
// later needs from its message.
type heldSet struct {
	arrived     int64
	src         netip.AddrPort
	transport   int
	session     *tcpSession
	exportTime  uint32
	sequence    uint32
	sysUptime   uint32
	exportNanos uint32
	body        []byte // owned copy
}

type heldQueue struct {
	key   template.Key
	sets  []heldSet
	bytes int
}

// held is a loop's buffer of data sets waiting for their templates, bounded
// in age, per exporter and (with the other loops) in total. Queues are by
// template key, so a TCP session's data waits for that session's template
// alone (RFC 7011 section 8); each TCP session counts as an exporter of its
// own for the bound. Owned by the loop goroutine; total is shared.
type held struct {
	cfg         *HeldConfig
	total       *atomic.Int64
	queues      map[template.Key]*heldQueue
	perExporter map[heldScope]int
	sets        int
	bytes       int64
	keyBuf      []template.Key
}

// heldScope is what the per-exporter bound applies to: an exporter scope
// over UDP, or one TCP session.
type heldScope struct {
	exporter netip.AddrPort
	session  uint64
}

func scopeOf(k template.Key) heldScope { return heldScope{k.Exporter, k.Session} }

func newHeld(cfg *HeldConfig, total *atomic.Int64) *held {
	return &held{cfg: cfg, total: total, queues: map[template.Key]*heldQueue{}, perExporter: map[heldScope]int{}}
}

// add holds a copy of body. It fails with the drop reason when a bound would
// be passed.
func (h *held) add(k template.Key, now int64, m *ipfix.Message, o origin, body []byte) (DropReason, bool) {
	size := len(body) + heldOverhead
	if h.perExporter[scopeOf(k)]+size > int(h.cfg.PerExporterBytes) {
		return DropHeldOverflow, false
	}
	if h.total.Add(int64(size)) > int64(h.cfg.TotalBytes) {
		h.total.Add(-int64(size))
		return DropHeldOverflow, false
	}
	q := h.queues[k]
	if q == nil {
		q = &heldQueue{key: k}
		h.queues[k] = q
	}
	q.sets = append(q.sets, heldSet{
		arrived: now, src: o.src, transport: o.transport, session: o.session,
		exportTime: m.ExportTime, sequence: m.Sequence, sysUptime: m.SysUptime, exportNanos: m.ExportNanos,
		body: append([]byte(nil), body...),
	})
	q.bytes += size
	h.perExporter[scopeOf(k)] += size
	h.sets++
	h.bytes += int64(size)
	return 0, true
}

// take removes and returns the queue for k, or nil.
func (h *held) take(k template.Key) *heldQueue {
	q := h.queues[k]
	if q == nil {
		return nil
	}
	delete(h.queues, k)
	h.forget(k, len(q.sets), q.bytes)
	return q
}

func (h *held) forget(k template.Key, sets, size int) {
	h.sets -= sets
	h.bytes -= int64(size)
	h.total.Add(-int64(size))
	sc := scopeOf(k)
	if left := h.perExporter[sc] - size; left > 0 {
		h.perExporter[sc] = left
	} else {
		delete(h.perExporter, sc)
	}
}

// keys returns the keys with held sets; the slice is reused by the next call.
func (h *held) keys() []template.Key {
	h.keyBuf = h.keyBuf[:0]
	for k := range h.queues {
		h.keyBuf = append(h.keyBuf, k)
	}
	return h.keyBuf
}

// expire drops sets held past MaxAge and reports how many per call of drop.
func (h *held) expire(now int64, drop func(sets int)) {
	limit := now - int64(h.cfg.MaxAge)
	for k, q := range h.queues {
		n, size := 0, 0
		for n < len(q.sets) && q.sets[n].arrived <= limit {
			size += len(q.sets[n].body) + heldOverhead
			n++
		}
		if n == 0 {
			continue
		}
		clear(q.sets[:n])
		q.sets = q.sets[n:]
		q.bytes -= size
		h.forget(k, n, size)
		if len(q.sets) == 0 {
			delete(h.queues, k)
		}
		drop(n)
	}
}

// dropAll empties the buffer (shutdown) and returns the sets dropped.
func (h *held) dropAll() int {
	return h.dropWhere(func(template.Key) bool { return true })
}

// dropSession drops the sets held for a TCP session's templates (the
// session closed) and returns how many.
func (h *held) dropSession(id uint64) int {
	if len(h.queues) == 0 {
		return 0
	}
	return h.dropWhere(func(k template.Key) bool { return k.Session == id })
}

func (h *held) dropWhere(match func(template.Key) bool) int {
	n := 0
	for k, q := range h.queues {
		if !match(k) {
			continue
		}
		n += len(q.sets)
		h.forget(k, len(q.sets), q.bytes)
		delete(h.queues, k)
	}
	return n
}
