package mediator

import (
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/sluice-flow/sluice/dataplane/entry"
	"github.com/sluice-flow/sluice/dataplane/promtext"
	"github.com/sluice-flow/sluice/dataplane/ratelog"
)

// A collector counts an exporter's sequence-number gaps while it runs, but
// a restarted one starts without the sequence state of its predecessor, so
// the UDP datagrams lost while it was away would go uncounted. The mediator
// sees both generations in order (the old one drained first), so it counts
// them: it keeps, per UDP (exporter, domain), the sequence number it
// expects next, and compares it with the first data entry of a newer
// generation. Within a generation it only follows the numbers: the
// collector counts those gaps.

// maxSeqTracked bounds the (exporter, domain) pairs followed; when full the
// table is cleared, so one restart's gaps of the pairs dropped go
// uncounted.
const maxSeqTracked = 1 << 16

// settle is how long a gap stays pending before it is counted. While the
// new collector starts, an exporter's datagrams can land on more than one
// of its loops, so the mediator may read a later message before an earlier
// one; an earlier one read within this time narrows the gap.
const settle = time.Second

type seqKey struct {
	exporter netip.AddrPort
	domain   uint32
	version  uint16
}

type seqState struct {
	gen  uint64 // ring generation of the last entry
	seq  uint32 // its message's sequence number
	next uint32 // the sequence number the next message should carry
	// A gap found at a generation change: [lo, hi) of the sequence
	// space, pending (records or messages not seen yet) until since+settle.
	lo, hi, pending uint32
	since           time.Time
	v9              bool // the numbers count messages, not records
}

// restartGaps counts sequence numbers skipped across collector restarts.
// observe and commit run on Run's goroutine; the counters are read by others.
type restartGaps struct {
	states  map[seqKey]*seqState
	lastKey seqKey
	last    *seqState
	open    []*seqState // states with a pending gap
	logs    ratelog.Limiter
	// records: IPFIX and NetFlow v5 number data records; messages:
	// NetFlow v9 numbers export packets.
	records, messages atomic.Uint64
}

// observe follows data entry h of a ring of generation gen.
func (g *restartGaps) observe(gen uint64, h *entry.Header, log *slog.Logger) {
	if h.Session != 0 {
		return // TCP: a restart ends the session, and TCP loses nothing
	}
	k := seqKey{h.Exporter, h.Domain, h.Version}
	st := g.last
	if st == nil || k != g.lastKey {
		if g.states == nil {
			g.states = map[seqKey]*seqState{}
		}
		st = g.states[k]
		if st == nil {
			if len(g.states) >= maxSeqTracked {
				g.commit(time.Time{}, true)
				clear(g.states)
			}
			st = &seqState{gen: gen, seq: h.Sequence + 1, v9: h.Version == 9} // seq differs: the last case starts it
			g.states[k] = st
		}
		g.lastKey, g.last = k, st
	}
	switch {
	case gen == st.gen && h.Sequence == st.seq:
		// Another set of the same message.
		if h.Version != 9 {
			st.next += h.Records
		}
		return
	case gen == st.gen && st.pending > 0 && h.Sequence-st.lo < st.hi-st.lo:
		// Inside the gap: read late, not lost.
		n := h.Records
		if h.Version == 9 {
			n = 1
		}
		st.pending -= min(n, st.pending)
		return
	case gen > st.gen:
		g.settle(st)
		// Serial number arithmetic (RFC 1982): a small step forward is
		// loss; a step back or a huge one is an exporter restart.
		if gap := h.Sequence - st.next; gap != 0 && gap < 1<<31 {
			st.lo, st.hi, st.pending, st.since = st.next, h.Sequence, gap, time.Now()
			g.open = append(g.open, st)
			g.logs.Warn(log, "sequence numbers skipped across a collector restart",
				"exporter", h.Exporter, "domain", h.Domain, "expected", st.next, "got", h.Sequence, "gap", gap)
		}
	}
	st.gen, st.seq = max(st.gen, gen), h.Sequence
	if h.Version == 9 {
		st.next = h.Sequence + 1
	} else {
		st.next = h.Sequence + h.Records
	}
}

// settle counts st's pending gap.
func (g *restartGaps) settle(st *seqState) {
	if st.pending == 0 {
		return
	}
	if st.v9 {
		g.messages.Add(uint64(st.pending))
	} else {
		g.records.Add(uint64(st.pending))
	}
	st.pending = 0
}

// commit counts the gaps pending for longer than settle (all with force).
func (g *restartGaps) commit(now time.Time, force bool) {
	kept := g.open[:0]
	for _, st := range g.open {
		if st.pending != 0 && !force && now.Sub(st.since) < settle {
			kept = append(kept, st)
			continue
		}
		g.settle(st)
	}
	clear(g.open[len(kept):])
	g.open = kept
}

var restartLost = promtext.Counter("sluice_mediator_restart_sequence_lost_total",
	"Sequence numbers skipped between the last data of a collector and the first of its successor, per unit "+
		"(records for IPFIX and NetFlow v5, messages for NetFlow v9): UDP datagrams lost while the collector restarted (split pod).")

func (g *restartGaps) appendMetrics(w *promtext.Writer) {
	w.Uint(restartLost, g.records.Load(), "unit", "records")
	w.Uint(restartLost, g.messages.Load(), "unit", "messages")
}
