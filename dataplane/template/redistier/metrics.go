package redistier

import (
	"strconv"
	"sync/atomic"
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

func appendCounter(dst []byte, name, help string, v uint64) []byte {
	dst = appendHead(dst, name, "counter", help)
	dst = append(dst, name...)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, v, 10)
	return append(dst, '\n')
}

func appendHead(dst []byte, name, typ, help string) []byte {
	dst = append(dst, "# HELP "...)
	dst = append(dst, name...)
	dst = append(dst, ' ')
	dst = append(dst, help...)
	dst = append(dst, "\n# TYPE "...)
	dst = append(dst, name...)
	dst = append(dst, ' ')
	dst = append(dst, typ...)
	return append(dst, '\n')
}

func appendLabeled(dst []byte, name, label, value string, v uint64) []byte {
	dst = append(dst, name...)
	dst = append(dst, '{')
	dst = append(dst, label...)
	dst = append(dst, '=', '"')
	dst = append(dst, value...)
	dst = append(dst, '"', '}', ' ')
	dst = strconv.AppendUint(dst, v, 10)
	return append(dst, '\n')
}

// AppendMetrics appends the shared tier's metrics in Prometheus text format.
func (s *Store) AppendMetrics(dst []byte) []byte {
	m := &s.m
	dst = appendCounter(dst, "sluice_template_shared_hits_total",
		"Templates a local miss or change fetched from Redis.", m.hits.Load())
	dst = appendCounter(dst, "sluice_template_shared_misses_total",
		"Local template misses Redis could not answer when asked.", m.misses.Load())
	dst = appendCounter(dst, "sluice_template_shared_warmed_total",
		"Templates loaded from Redis at start (warm-up).", m.warmed.Load())
	const writes = "sluice_template_shared_writes_total"
	dst = appendHead(dst, writes, "counter",
		"Template write-throughs to Redis by result: written (new or changed), unchanged (TTL refreshed only), stale (Redis held a newer definition).")
	dst = appendLabeled(dst, writes, "result", "written", m.written.Load())
	dst = appendLabeled(dst, writes, "result", "unchanged", m.unchanged.Load())
	dst = appendLabeled(dst, writes, "result", "stale", m.stale.Load())
	dst = appendCounter(dst, "sluice_template_shared_deletes_total",
		"Template withdrawals deleted from Redis.", m.deletes.Load())
	dst = appendCounter(dst, "sluice_template_shared_removed_total",
		"Local copies of shared templates dropped because Redis no longer had them.", m.removed.Load())
	dst = appendCounter(dst, "sluice_template_shared_errors_total",
		"Failed Redis operations (the collector went on with its local tiers).", m.errors.Load())
	dst = appendCounter(dst, "sluice_template_shared_bad_values_total",
		"Stored templates that did not decode.", m.badValues.Load())
	dst = appendCounter(dst, "sluice_template_shared_queue_drops_total",
		"Shared-tier work dropped because its queue was full.", m.queueDrops.Load())
	dst = appendCounter(dst, "sluice_template_shared_pending_drops_total",
		"Writes dropped because the pending set was full while Redis was unavailable.", m.pendingDrops.Load())
	dst = appendCounter(dst, "sluice_template_shared_invalidations_total",
		"Invalidations received for template keys.", m.invalidated.Load())
	dst = appendCounter(dst, "sluice_template_shared_resyncs_total",
		"Write-backs of locally learned templates after Redis came back.", m.resyncs.Load())
	dst = appendHead(dst, "sluice_template_shared_pending", "gauge", "Writes waiting for Redis to come back.")
	dst = append(dst, "sluice_template_shared_pending "...)
	dst = strconv.AppendInt(dst, max(m.pending.Load(), 0), 10)
	dst = append(dst, '\n')
	dst = appendHead(dst, "sluice_template_shared_up", "gauge", "1 when the last Redis operation succeeded.")
	up := "0"
	if m.connected.Load() {
		up = "1"
	}
	dst = append(dst, "sluice_template_shared_up "...)
	dst = append(dst, up...)
	dst = append(dst, '\n')

	const lat = "sluice_template_shared_learn_to_use_seconds"
	dst = appendHead(dst, lat, "histogram",
		"Time from a template being learned on one pod to this pod using it (fetched for held data or a changed definition).")
	var cum uint64
	for i := range m.learnToUse.counts {
		cum += m.learnToUse.counts[i].Load()
		dst = append(dst, lat+`_bucket{le="`...)
		if i < len(latencyBounds) {
			dst = strconv.AppendFloat(dst, latencyBounds[i], 'g', -1, 64)
		} else {
			dst = append(dst, "+Inf"...)
		}
		dst = append(dst, '"', '}', ' ')
		dst = strconv.AppendUint(dst, cum, 10)
		dst = append(dst, '\n')
	}
	dst = append(dst, lat+"_sum "...)
	dst = strconv.AppendFloat(dst, float64(m.learnToUse.sum.Load())/1e9, 'g', -1, 64)
	dst = append(dst, '\n')
	dst = append(dst, lat+"_count "...)
	dst = strconv.AppendUint(dst, cum, 10)
	return append(dst, '\n')
}
