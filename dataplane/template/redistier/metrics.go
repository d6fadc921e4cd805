package redistier

import (
	"sync/atomic"

	"github.com/sluice-flow/sluice/dataplane/promtext"
)

// metrics are the store's counters, written by the workers and the loops'
// enqueue calls, read at scrape time.
type metrics struct {
	hits         atomic.Uint64 // templates fetched for a local miss or change
	misses       atomic.Uint64 // local misses Redis could not answer when asked
	warmed       atomic.Uint64 // templates loaded by WarmUp
	written      atomic.Uint64 // values written (new or changed template)
	unchanged    atomic.Uint64 // write-throughs that only refreshed the TTL
	stale        atomic.Uint64 // writes refused: Redis held a newer definition
	deletes      atomic.Uint64 // withdrawals deleted
	removed      atomic.Uint64 // local copies dropped because Redis lost them
	errors       atomic.Uint64 // failed Redis operations
	badValues    atomic.Uint64 // stored templates that did not decode
	queueDrops   atomic.Uint64 // work dropped: queue full
	pendingDrops atomic.Uint64 // writes dropped: pending set full while Redis was down
	invalidated  atomic.Uint64 // invalidation messages for template keys
	resyncs      atomic.Uint64 // write-backs after Redis came back
	pending      atomic.Int64  // writes waiting for Redis
	connected    atomic.Bool

	learnToUse histogram
}

// latencyBounds are the learn-to-use histogram's upper bounds in seconds.
var latencyBounds = [...]float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300, 1800}

// histogram is a fixed-bucket Prometheus histogram safe for concurrent use.
type histogram struct {
	counts [len(latencyBounds) + 1]atomic.Uint64
	sum    atomic.Int64 // nanoseconds
}

func (h *histogram) observe(nanos int64) {
	if nanos < 0 {
		nanos = 0 // clocks of two pods disagree
	}
	s := float64(nanos) / 1e9
	i := 0
	for i < len(latencyBounds) && s > latencyBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(nanos)
}

// The shared tier's metric families.
var (
	sharedHits         = promtext.Counter("sluice_template_shared_hits_total", "Templates a local miss or change fetched from Redis.")
	sharedMisses       = promtext.Counter("sluice_template_shared_misses_total", "Local template misses Redis could not answer when asked.")
	sharedWarmed       = promtext.Counter("sluice_template_shared_warmed_total", "Templates loaded from Redis at start (warm-up).")
	sharedWrites       = promtext.Counter("sluice_template_shared_writes_total", "Template write-throughs to Redis by result: written (new or changed), unchanged (TTL refreshed only), stale (Redis held a newer definition).")
	sharedDeletes      = promtext.Counter("sluice_template_shared_deletes_total", "Template withdrawals deleted from Redis.")
	sharedRemoved      = promtext.Counter("sluice_template_shared_removed_total", "Local copies of shared templates dropped because Redis no longer had them.")
	sharedErrors       = promtext.Counter("sluice_template_shared_errors_total", "Failed Redis operations (the collector went on with its local tiers).")
	sharedBadValues    = promtext.Counter("sluice_template_shared_bad_values_total", "Stored templates that did not decode.")
	sharedQueueDrops   = promtext.Counter("sluice_template_shared_queue_drops_total", "Shared-tier work dropped because its queue was full.")
	sharedPendingDrops = promtext.Counter("sluice_template_shared_pending_drops_total", "Writes dropped because the pending set was full while Redis was unavailable.")
	sharedInvalidated  = promtext.Counter("sluice_template_shared_invalidations_total", "Invalidations received for template keys.")
	sharedResyncs      = promtext.Counter("sluice_template_shared_resyncs_total", "Write-backs of locally learned templates after Redis came back.")
	sharedPending      = promtext.Gauge("sluice_template_shared_pending", "Writes waiting for Redis to come back.")
	sharedUp           = promtext.Gauge("sluice_template_shared_up", "1 when the last Redis operation succeeded.")
	sharedLearnToUse   = promtext.Histogram("sluice_template_shared_learn_to_use_seconds",
		"Time from a template being learned on one pod to this pod using it (fetched for held data or a changed definition).", latencyBounds[:])
)

// AppendMetrics appends the shared tier's metrics in Prometheus text format.
func (s *Store) AppendMetrics(dst []byte) []byte {
	m := &s.m
	w := promtext.NewWriter(dst)
	w.Uint(sharedHits, m.hits.Load())
	w.Uint(sharedMisses, m.misses.Load())
	w.Uint(sharedWarmed, m.warmed.Load())
	w.Uint(sharedWrites, m.written.Load(), "result", "written")
	w.Uint(sharedWrites, m.unchanged.Load(), "result", "unchanged")
	w.Uint(sharedWrites, m.stale.Load(), "result", "stale")
	w.Uint(sharedDeletes, m.deletes.Load())
	w.Uint(sharedRemoved, m.removed.Load())
	w.Uint(sharedErrors, m.errors.Load())
	w.Uint(sharedBadValues, m.badValues.Load())
	w.Uint(sharedQueueDrops, m.queueDrops.Load())
	w.Uint(sharedPendingDrops, m.pendingDrops.Load())
	w.Uint(sharedInvalidated, m.invalidated.Load())
	w.Uint(sharedResyncs, m.resyncs.Load())
	w.Int(sharedPending, max(m.pending.Load(), 0))
	up := uint64(0)
	if m.connected.Load() {
		up = 1
	}
	w.Uint(sharedUp, up)
	var buckets [len(latencyBounds) + 1]uint64
	for i := range buckets {
		buckets[i] = m.learnToUse.counts[i].Load()
	}
	w.Histogram(sharedLearnToUse, buckets[:], float64(m.learnToUse.sum.Load())/1e9)
	return w.Bytes()
}
