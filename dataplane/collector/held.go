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
// in age, per exporter and (with the other loops) in total. Owned by the
// loop goroutine; total is shared.
type held struct {
	cfg         *HeldConfig
	total       *atomic.Int64
	queues      map[template.Key]*heldQueue
	perExporter map[netip.AddrPort]int
	sets        int
	bytes       int64
	keyBuf      []template.Key
}

func newHeld(cfg *HeldConfig, total *atomic.Int64) *held {
	return &held{cfg: cfg, total: total, queues: map[template.Key]*heldQueue{}, perExporter: map[netip.AddrPort]int{}}
}

// add holds a copy of body. It fails with the drop reason when a bound would
// be passed.
func (h *held) add(k template.Key, now int64, m *ipfix.Message, o origin, body []byte) (DropReason, bool) {
	size := len(body) + heldOverhead
	if h.perExporter[k.Exporter]+size > h.cfg.PerExporterBytes {
		return DropHeldOverflow, false
	}
	if h.total.Add(int64(size)) > h.cfg.TotalBytes {
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
	h.perExporter[k.Exporter] += size
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
	h.forget(k.Exporter, len(q.sets), q.bytes)
	return q
}

func (h *held) forget(exporter netip.AddrPort, sets, size int) {
	h.sets -= sets
	h.bytes -= int64(size)
	h.total.Add(-int64(size))
	if left := h.perExporter[exporter] - size; left > 0 {
		h.perExporter[exporter] = left
	} else {
		delete(h.perExporter, exporter)
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
		h.forget(k.Exporter, n, size)
		if len(q.sets) == 0 {
			delete(h.queues, k)
		}
		drop(n)
	}
}

// dropAll empties the buffer (shutdown) and returns the sets dropped.
func (h *held) dropAll() int {
	n := 0
	for k, q := range h.queues {
		n += len(q.sets)
		h.forget(k.Exporter, len(q.sets), q.bytes)
		delete(h.queues, k)
	}
	return n
}
