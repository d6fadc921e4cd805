package collector

import (
	"cmp"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/template"
)

// DropReason says why input was lost. Counters are indexed by it.
type DropReason uint8

// Drop reasons beyond the codec's own (ipfix.Error reasons, counted by
// name in codecDrops).
const (
	DropRingFull              DropReason = iota // UDP data found the loop's ring full
	DropTemplateTimeout                         // held data set aged out before its template came
	DropHeldOverflow                            // held-records buffer full
	DropTruncated                               // UDP datagram longer than the receive buffer
	DropTCPFraming                              // TCP stream with a length that lies; session closed
	DropTooLargeForRing                         // data set larger than a ring entry may be
	DropShutdown                                // held sets at shutdown, or data the stopped consumer cannot take
	DropTCPPartial                              // an incomplete message left in a TCP session when it closed
	DropTemplateLimit                           // template refused: the store is full
	DropExporterTemplateLimit                   // template refused: its exporter holds MaxTemplatesPerExporter
	DropDomainTemplateLimit                     // template refused: its domain holds MaxTemplatesPerDomain
	DropNotAllowed                              // datagram from a source outside AllowExporters
	DropRateLimit                               // over the exporter's rate limit
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	DropRingFull:        "ring_full",
	DropTemplateTimeout: "template_timeout",
	DropHeldOverflow:    "held_overflow",
	DropTruncated:       "truncated_datagram",
	DropTCPFraming:      "tcp_framing",
	DropTooLargeForRing: "set_too_large",
	DropShutdown:        "shutdown",
	DropTCPPartial:      "tcp_partial",
	DropTemplateLimit:   "template_limit",

	DropExporterTemplateLimit: "exporter_template_limit",
	DropDomainTemplateLimit:   "domain_template_limit",
	DropNotAllowed:            "not_allowed",
	DropRateLimit:             "rate_limit",
}

// domainLimit is the per-exporter refusal reason of a new observation
// domain (or TCP session's view of one) that got no registry entry of its
// own: its counters went to the exporter's excess entry.
const domainLimit = "domain_limit"

// exporterRefusals are the reasons counted per exporter (see
// exporterStats.refused), in the order metrics and the API show them.
var exporterRefusals = []DropReason{DropTemplateLimit, DropExporterTemplateLimit, DropDomainTemplateLimit, DropHeldOverflow, DropRateLimit}

func (r DropReason) String() string { return dropReasonNames[r] }

// loopStats are one loop's counters. The loop writes them; scrapes read
// them concurrently, hence the atomics (uncontended, so cheap).
type loopStats struct {
	packets           [2]atomic.Uint64 // by transport: 0 udp, 1 tcp
	bytes             [2]atomic.Uint64
	messages          [3]atomic.Uint64 // by version: 0 v5, 1 v9, 2 ipfix
	sets              atomic.Uint64
	dataSets          atomic.Uint64
	records           atomic.Uint64 // data records put into the ring
	templates         atomic.Uint64 // templates learned (new or changed)
	refreshes         atomic.Uint64 // retransmissions of known templates
	redefinitions     atomic.Uint64
	withdrawals       atomic.Uint64
	withdrawIgn       atomic.Uint64 // withdrawals over UDP, ignored
	heldSets          atomic.Int64  // gauge
	heldBytes         atomic.Int64  // gauge
	heldReleased      atomic.Uint64 // held sets decoded after their template came
	droppedSets       [numDropReasons]atomic.Uint64
	droppedRecs       [numDropReasons]atomic.Uint64
	codecDrops        [32]atomic.Uint64 // indexed like ipfix.Errors
	backpressure      atomic.Uint64     // TCP sessions paused (or loop waits) for ring room
	backpressureNanos atomic.Uint64     // time they spent so, added when each ends
	pausedSessions    atomic.Int64      // gauge: TCP sessions paused now
	spillBytes        atomic.Int64      // gauge: bytes in the spill
	trailing          atomic.Uint64     // datagrams with octets after their message
	lostWithdrawals   atomic.Uint64     // withdrawal entries the ring could not take
	udpBatches        atomic.Uint64     // recvmmsg calls that returned data
}

var codecIndex = func() map[*ipfix.Error]int {
	m := make(map[*ipfix.Error]int, len(ipfix.Errors))
	for i, e := range ipfix.Errors {
		m[e] = i
	}
	return m
}()

func (s *loopStats) codecDrop(err error) {
	if e, ok := err.(*ipfix.Error); ok {
		if i, ok := codecIndex[e]; ok {
			s.codecDrops[i].Add(1)
			return
		}
	}
	s.codecDrops[len(ipfix.Errors)].Add(1)
}

// ExporterKey identifies an exporter scope and observation domain.
type ExporterKey struct {
	Exporter netip.AddrPort
	Domain   uint32
	Version  uint16
}

// exporterStats are per (exporter scope, transport session, domain)
// counters, shared by the loops that see the exporter.
type exporterStats struct {
	key       template.DomainKey
	firstSeen int64
	lastSeen  atomic.Int64
	messages  atomic.Uint64
	records   atomic.Uint64
	lost      atomic.Uint64 // missing per sequence numbers
	outOfOrd  atomic.Uint64
	resets    atomic.Uint64
	// loops are the event loops that received the entry's messages.
	loops loopSet
	// refused counts what this exporter lost to its own bounds, by the
	// reasons in exporterRefusals.
	refused [numDropReasons]atomic.Uint64
	// excessDomains counts, on an excess entry, the domains whose counters
	// it took.
	excessDomains atomic.Uint64
	// options holds the latest options records' values by template, for
	// the API (sampling rate, interface names, system init time).
	optMu   sync.Mutex
	options map[uint16]*optionsRecord // by options template ID
}

// exporterRegistry holds every exporter's counters. Loops cache the
// pointers, so the lock is taken once per new exporter per loop.
//
// It is bounded: past maxExporters, new exporters share one overflow entry
// (shown as exporter "other"), and entries idle for longer than
// exporterIdle are evicted. gen changes on eviction so loops drop cached
// pointers.
type exporterRegistry struct {
	mu       sync.Mutex
	m        map[template.DomainKey]*exporterStats
	overflow *exporterStats
	gen      atomic.Uint64
	seen     func(template.DomainKey) // called for each new entry; must not block
	// perAddr counts each exporter address's entries; past maxDomains a
	// new one shares the address's excess entry (Version 0).
	perAddr    map[netip.Addr]int
	maxDomains int
}

// excessKey is the key of the entry the domains of scope e past
// maxDomains share. No message has version 0.
func excessKey(e netip.AddrPort) template.DomainKey { return template.DomainKey{Exporter: e} }

func isExcess(k template.DomainKey) bool { return k.Version == 0 && k.Exporter.IsValid() }

// add files e under k and counts it for its address (r.mu held).
func (r *exporterRegistry) add(k template.DomainKey, e *exporterStats) {
	r.m[k] = e
	if !isExcess(k) {
		if r.perAddr == nil {
			r.perAddr = map[netip.Addr]int{}
		}
		r.perAddr[k.Exporter.Addr()]++
	}
}

// remove forgets the entry under k (r.mu held).
func (r *exporterRegistry) remove(k template.DomainKey) {
	if _, ok := r.m[k]; !ok {
		return
	}
	delete(r.m, k)
	if isExcess(k) {
		return
	}
	a := k.Exporter.Addr()
	if n := r.perAddr[a] - 1; n > 0 {
		r.perAddr[a] = n
	} else {
		delete(r.perAddr, a)
	}
}

const (
	maxExporters = 1 << 14
	exporterIdle = 2 * time.Hour
)

func (r *exporterRegistry) get(k template.DomainKey, now int64) *exporterStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[template.DomainKey]*exporterStats)
	}
	e := r.m[k]
	if e == nil {
		if len(r.m) >= maxExporters {
			if r.overflow == nil {
				r.overflow = &exporterStats{firstSeen: now}
			}
			return r.overflow
		}
		if r.maxDomains > 0 && r.perAddr[k.Exporter.Addr()] >= r.maxDomains {
			xk := excessKey(k.Exporter)
			x := r.m[xk]
			if x == nil {
				x = &exporterStats{key: xk, firstSeen: now}
				r.add(xk, x)
			}
			x.excessDomains.Add(1)
			return x
		}
		e = &exporterStats{key: k, firstSeen: now}
		r.add(k, e)
		if r.seen != nil {
			r.seen(k)
		}
	}
	return e
}

// evict forgets exporters not seen since before now-exporterIdle.
func (r *exporterRegistry) evict(now int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, e := range r.m {
		if last := e.lastSeen.Load(); last != 0 && now-last > int64(exporterIdle) {
			r.remove(k)
			n++
		}
	}
	if n > 0 {
		r.gen.Add(1)
	}
}

func (r *exporterRegistry) snapshot() []*exporterStats {
	r.mu.Lock()
	out := make([]*exporterStats, 0, len(r.m))
	for _, e := range r.m {
		out = append(out, e)
	}
	if r.overflow != nil {
		out = append(out, r.overflow)
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].key, out[j].key
		return compareKeys(a.Exporter, b.Exporter, a.Domain, b.Domain, a.Version, b.Version, 0, 0) < 0
	})
	return out
}

// compareKeys orders by exporter, domain, version, then template ID.
func compareKeys(ea, eb netip.AddrPort, da, db uint32, va, vb, ia, ib uint16) int {
	if c := ea.Compare(eb); c != 0 {
		return c
	}
	switch {
	case da != db:
		return cmp.Compare(da, db)
	case va != vb:
		return cmp.Compare(va, vb)
	}
	return cmp.Compare(ia, ib)
}

// loopSet is a set of event loop indices (below 1024, Config.Loops' bound),
// safe for concurrent use.
type loopSet [1024 / 64]atomic.Uint64

// add puts loop i in the set; a loop already in it costs a load.
func (s *loopSet) add(i int) {
	w, bit := &s[i/64], uint64(1)<<(i%64)
	if w.Load()&bit == 0 {
		w.Or(bit)
	}
}

// addAll puts the loops of o in the set.
func (s *loopSet) addAll(o *loopSet) {
	for i := range s {
		if v := o[i].Load(); v != 0 {
			s[i].Or(v)
		}
	}
}

// list returns the set's loops in increasing order (never nil).
func (s *loopSet) list() []int {
	out := []int{}
	for i := range s {
		v := s[i].Load()
		for b := range 64 {
			if v&(1<<b) != 0 {
				out = append(out, i*64+b)
			}
		}
	}
	return out
}
