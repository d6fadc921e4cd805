package collector

import (
	"cmp"
	"slices"

	"github.com/sluice-flow/sluice/dataplane/template"
)

// closedSessions is the session number of the registry entry that keeps,
// per (exporter scope, domain, version), the counters of TCP sessions that
// have closed. Open sessions each have their own entry for the API; once
// closed they are folded in here, so the per-exporter metrics stay monotonic
// and the API shows the exporter (as "closed") until it has been idle as long
// as any exporter may be.
const closedSessions = ^uint64(0)

// closeSession folds the entries of a closed TCP session (keys, all of one
// session) into their closed-sessions entries and forgets them. Loops must
// drop their own pointers to them (only the session's loop has any).
func (r *exporterRegistry) closeSession(keys []template.DomainKey, now int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		e := r.m[k]
		if e == nil {
			continue // evicted meanwhile
		}
		r.remove(k)
		ck := k
		ck.Session = closedSessions
		c := r.m[ck]
		if c == nil {
			if len(r.m) >= maxExporters {
				if r.overflow == nil {
					r.overflow = &exporterStats{firstSeen: now}
				}
				c = r.overflow
			} else {
				c = &exporterStats{key: ck, firstSeen: e.firstSeen}
				r.add(ck, c)
			}
		}
		if last := e.lastSeen.Load(); last > c.lastSeen.Load() {
			c.lastSeen.Store(last)
		}
		c.messages.Add(e.messages.Load())
		c.records.Add(e.records.Load())
		c.lost.Add(e.lost.Load())
		c.outOfOrd.Add(e.outOfOrd.Load())
		c.resets.Add(e.resets.Load())
		c.loops.addAll(&e.loops)
		for _, rr := range exporterRefusals {
			c.refused[rr].Add(e.refused[rr].Load())
		}
	}
}

// groupOf is the metrics' view of an entry: UDP and every TCP session of one
// exporter scope, domain and version add up to one series.
func groupOf(k template.DomainKey) ExporterKey {
	return ExporterKey{Exporter: k.Exporter, Domain: k.Domain, Version: k.Version}
}

// totals returns the counters summed per (exporter scope, domain, version),
// closed TCP sessions included, sorted: one entry per metrics series (the
// overflow entry, whose key is the zero key, stays one). The entries are
// copies; their key's Session is 0.
func (r *exporterRegistry) totals() []*exporterStats {
	byGroup := map[ExporterKey]*exporterStats{}
	var out []*exporterStats
	for _, e := range r.snapshot() {
		g := groupOf(e.key)
		t := byGroup[g]
		if t == nil {
			t = &exporterStats{key: template.DomainKey{Exporter: g.Exporter, Domain: g.Domain, Version: g.Version}}
			byGroup[g] = t
			out = append(out, t)
		}
		t.messages.Add(e.messages.Load())
		t.records.Add(e.records.Load())
		t.lost.Add(e.lost.Load())
		t.outOfOrd.Add(e.outOfOrd.Load())
		t.resets.Add(e.resets.Load())
		for _, rr := range exporterRefusals {
			t.refused[rr].Add(e.refused[rr].Load())
		}
		t.excessDomains.Add(e.excessDomains.Load())
	}
	return out
}

// compareDomainKeys orders by exporter, domain, version, then transport
// session (UDP, session 0, first).
func compareDomainKeys(a, b template.DomainKey) int {
	if c := compareKeys(a.Exporter, b.Exporter, a.Domain, b.Domain, a.Version, b.Version, 0, 0); c != 0 {
		return c
	}
	return cmp.Compare(a.Session, b.Session)
}

// sortByKey sorts registry entries by compareDomainKeys.
func sortByKey(es []*exporterStats) {
	slices.SortStableFunc(es, func(a, b *exporterStats) int { return compareDomainKeys(a.key, b.key) })
}
