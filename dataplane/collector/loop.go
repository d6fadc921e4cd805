package collector

import (
	"bytes"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"

	"github.com/sluice-flow/sluice/dataplane/entry"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/ring"
	"github.com/sluice-flow/sluice/dataplane/template"
)

// Transport of a message.
const (
	transportUDP = 0
	transportTCP = 1
)

// origin says where a message came from.
type origin struct {
	src       netip.AddrPort // the exporter's real address
	transport int
	session   *tcpSession // nil for UDP
}

// sessionID is the transport session templates of o belong to: the TCP
// session's number, 0 for UDP (RFC 7011 section 8).
func (o *origin) sessionID() uint64 {
	if o.session == nil {
		return 0
	}
	return o.session.id
}

// loop is one event loop's state. Everything here is owned by the loop's
// goroutine; only stats (atomics) and the ring's consumer end are touched
// by others.
type loop struct {
	c        *Collector
	idx      int // the loop's index: its ring's, and its socket's in the steering array
	scoping  template.Scoping
	cache    *template.Cache
	held     *held
	streams  map[streamKey]*stream
	last     *stream // the stream of the previous message
	ring     *ring.Ring
	prod     *ring.Producer
	stats    *loopStats
	announce map[template.Key]uint64 // template fingerprints sent on this ring
	// sessionKeys lists the exporter registry entries of each open TCP
	// session on this loop, to fold them when it closes.
	sessionKeys map[uint64][]template.DomainKey

	now    int64 // Unix nanoseconds, read once per wake-up
	msg    ipfix.Message
	tr     ipfix.TemplateRecord
	rec    ipfix.Record
	hdr    entry.Header
	udp    *udpBatch // recvmmsg state, created on first use
	udpFDs []int     // the UDP listener sockets this loop reads
	// sweepQueued keeps at most one sweep waiting in gnet's task queue,
	// so a loop that waits for ring room (where TCP sessions cannot be
	// paused, tcphold.go) does not pile them up.
	sweepQueued atomic.Bool
	stop        <-chan struct{}

	// TCP sessions paused for ring room, and the spill (tcphold.go).
	el         gnet.EventLoop // set by loopFor before the loop handles anything
	paused     []*tcpSession  // sessions to wake, oldest first
	spill      []byte         // entries waiting for ring room
	spillHead  int            // offset of the oldest entry in spill
	epfd       int            // the loop's epoll fd; epollUnknown, epollNone
	tcpReserve int            // ring bytes free for a TCP session to begin a message
	resumeFree int            // ring bytes free for paused sessions to resume
	// waiting tells the resumer to watch this loop's ring; resumeQueued
	// keeps one resume at a time in gnet's task queue. Set by the loop
	// (waiting) and the resumer (resumeQueued); read by both.
	waiting      atomic.Bool
	resumeQueued atomic.Bool
}

func newLoop(c *Collector, idx int, r *ring.Ring) *loop {
	return &loop{
		c:        c,
		idx:      idx,
		scoping:  template.Scoping{ByPort: c.cfg.ScopeByPort},
		cache:    template.NewCache(c.shared),
		held:     newHeld(&c.cfg.Held, &c.heldTotal),
		streams:  make(map[streamKey]*stream),
		ring:     r,
		prod:     r.Producer(),
		stats:    &loopStats{},
		announce: make(map[template.Key]uint64),
		stop:     c.stopping,

		sessionKeys: make(map[uint64][]template.DomainKey),
		epfd:        epollUnknown,
		// TCP leaves the last eighth of the ring to UDP, and resumes once
		// half of it is free: fewer, longer pauses.
		tcpReserve: r.Cap() / 8,
		resumeFree: r.Cap() / 2,
	}
}

// streamKey identifies a stream of sequence numbers: RFC 7011 numbers
// messages per transport session (a UDP source address and port, or a TCP
// connection) and observation domain.
type streamKey struct {
	src     netip.AddrPort
	session uint64
	domain  uint32
	version uint16
}

// stream is a loop's state for one stream: the counters of its exporter
// scope (shared) and the loop's own sequence tracking.
type stream struct {
	key   streamKey
	stats *exporterStats
	gen   uint64 // registry generation the stats pointer belongs to
	seq   seqState
	rate  *exporterRate // the exporter address's rate limit; nil without one
}

// stream finds the state of the stream m belongs to; dk is its template
// scope. Consecutive messages mostly come from the same stream, so the
// previous answer is tried first.
func (l *loop) stream(o origin, dk template.DomainKey, m *ipfix.Message) *stream {
	k := streamKey{src: o.src, session: dk.Session, domain: m.DomainID, version: m.Version}
	gen := l.c.exporters.gen.Load()
	if e := l.last; e != nil && e.key == k && e.gen == gen {
		return e
	}
	e := l.streams[k]
	if e == nil || e.gen != gen {
		if len(l.streams) > maxTrackedExporters {
			clear(l.streams) // bounded; the registry keeps the counters
			l.last = nil
		}
		e = &stream{key: k, stats: l.c.exporters.get(dk, l.now), gen: gen}
		if l.c.cfg.RateLimit.on() {
			e.rate = l.c.rates.get(o.src.Addr())
		}
		l.streams[k] = e
		if dk.Session != 0 {
			keys := l.sessionKeys[dk.Session]
			if !slices.Contains(keys, dk) && len(keys) < maxSessionDomains {
				l.sessionKeys[dk.Session] = append(keys, dk)
			}
		}
	}
	l.last = e
	return e
}

const (
	maxTrackedExporters = 1 << 16
	// maxSessionDomains bounds the registry entries a TCP session's close
	// folds; entries of further domains stay until they idle out.
	maxSessionDomains = 1 << 10
)

// handle processes one message from o. TCP framing errors are the caller's;
// everything wrong inside a message is counted here.
func (l *loop) handle(b []byte, o origin) {
	st := l.stats
	st.packets[o.transport].Add(1)
	st.bytes[o.transport].Add(uint64(len(b)))
	m := &l.msg
	if err := m.Decode(b); err != nil {
		st.codecDrop(err)
		l.c.limiter.Warn(l.c.log, "dropped malformed message", "exporter", o.src.String(), "reason", ipfix.Reason(err))
		return
	}
	if o.transport == transportUDP && m.Length < len(b) && m.Version == ipfix.VersionIPFIX {
		st.trailing.Add(1) // the message is decoded; what follows it is ignored
	}
	switch m.Version {
	case ipfix.VersionNetFlow5:
		st.messages[0].Add(1)
	case ipfix.VersionNetFlow9:
		st.messages[1].Add(1)
	default:
		st.messages[2].Add(1)
	}
	// RFC 7011 section 8: templates over UDP belong to (exporter, domain),
	// over TCP to the transport session.
	dk := l.scoping.Domain(o.src, o.sessionID(), m.DomainID, m.Version)
	es := l.stream(o, dk, m)
	ex := es.stats
	ex.lastSeen.Store(l.now)
	ex.messages.Add(1)
	ex.loops.add(l.idx)

	if m.Version == ipfix.VersionNetFlow5 {
		n := int(m.Count)
		l.hdr = entry.Header{
			Kind: entry.KindData, Version: m.Version, Domain: m.DomainID, Exporter: o.src,
			TemplateID: ipfix.V5TemplateID, Fingerprint: ipfix.V5Layout().Fingerprint,
			ExportTime: m.ExportTime, Sequence: m.Sequence, SysUptime: m.SysUptime,
			ExportNanos: m.ExportNanos, Records: uint32(n), Session: o.sessionID(), Received: l.now,
		}
		if es.rate != nil && !l.c.allowData(es.rate, l.now, n, len(m.Body())) {
			st.droppedRecs[DropRateLimit].Add(uint64(n))
			ex.refused[DropRateLimit].Add(uint64(n))
		} else if reason, ok := l.push(&l.hdr, m.Body(), o); ok {
			st.records.Add(uint64(n))
			ex.records.Add(uint64(n))
		} else {
			st.droppedRecs[reason].Add(uint64(n))
		}
		l.checkSeq(es, m.Sequence, uint32(n), true)
		return
	}

	records := 0
	complete := true        // every data set's template was known
	var withdrewAll [2]bool // per message: templates, options templates
	var set ipfix.Set
	sets := m.Sets()
	for sets.Next(&set) {
		st.sets.Add(1)
		switch set.Kind {
		case ipfix.SetTemplate, ipfix.SetOptionsTemplate:
			l.learn(dk, &set, o, ex, &withdrewAll)
		case ipfix.SetData:
			k := dk.Key(set.ID)
			t := l.cache.Get(k, l.now)
			if t == nil {
				complete = false
				if l.held.queues[k] == nil && l.c.remote != nil && k.Session == 0 {
					// First set held for k: ask the other pods. Not for
					// TCP, whose templates belong to the session.
					l.c.remote.Missing(k)
				}
				l.hold(k, set.Body, m, o, ex)
				continue
			}
			if l.held.queues[k] != nil {
				// Learned elsewhere since: older held data goes first.
				l.release(k, t)
			}
			n, ok := l.data(t, set.Body, m, o, ex, es.rate, l.now)
			records += n
			complete = complete && ok
		}
	}
	if err := sets.Err(); err != nil {
		st.codecDrop(err)
		complete = false
	}
	if m.Version == ipfix.VersionNetFlow9 {
		l.checkSeq(es, m.Sequence, 1, true)
	} else {
		l.checkSeq(es, m.Sequence, uint32(records), complete)
	}
}

// data validates a data set against t, counts its records and hands it to
// the ring. received is when the set's message was read. It returns the
// number of records, and false if the set was malformed (its record count is
// then unknown).
func (l *loop) data(t *template.Template, body []byte, m *ipfix.Message, o origin, ex *exporterStats, rate *exporterRate, received int64) (int, bool) {
	lay := t.Layout
	n := 0
	if lay.RecordLen > 0 {
		n = len(body) / lay.RecordLen
	} else {
		it := ipfix.NewDataIter(lay, body)
		for it.Next(&l.rec) {
			n++
		}
		if err := it.Err(); err != nil {
			// The set is malformed: keep nothing of it rather than a
			// prefix whose boundaries may be wrong.
			l.stats.codecDrop(err)
			return 0, false
		}
	}
	if n == 0 {
		return 0, true
	}
	if lay.Options {
		l.keepOptions(ex, lay, body, m)
	}
	l.stats.dataSets.Add(1)
	if rate != nil && !lay.Options && !l.c.allowData(rate, l.now, n, len(body)) {
		l.stats.droppedRecs[DropRateLimit].Add(uint64(n))
		ex.refused[DropRateLimit].Add(uint64(n))
		return n, true
	}
	if reason, ok := l.announced(t, o); !ok {
		l.stats.droppedRecs[reason].Add(uint64(n))
		return n, true
	}
	l.hdr = entry.Header{
		Kind: entry.KindData, Version: m.Version, Domain: m.DomainID, Exporter: o.src,
		TemplateID: lay.ID, Fingerprint: lay.Fingerprint, ExportTime: m.ExportTime,
		Sequence: m.Sequence, SysUptime: m.SysUptime, ExportNanos: m.ExportNanos, Records: uint32(n),
		Session: t.Key.Session, Received: received,
	}
	if reason, ok := l.push(&l.hdr, body, o); !ok {
		l.stats.droppedRecs[reason].Add(uint64(n))
		return n, true
	}
	l.stats.records.Add(uint64(n))
	ex.records.Add(uint64(n))
	return n, true
}

// announced makes sure the ring carried t's definition before data that
// needs it.
func (l *loop) announced(t *template.Template, o origin) (DropReason, bool) {
	if fp, ok := l.announce[t.Key]; ok && fp == t.Layout.Fingerprint {
		return 0, true
	}
	lay := t.Layout
	h := entry.Header{
		Kind: entry.KindTemplate, Version: t.Key.Version, Domain: t.Key.Domain,
		Exporter: t.Key.Exporter, TemplateID: lay.ID, Fingerprint: lay.Fingerprint, Session: t.Key.Session,
	}
	if lay.Options {
		h.Flags |= entry.FlagOptions
	}
	if lay.V9 {
		h.Flags |= entry.FlagV9
	}
	if len(l.announce) >= maxAnnounced {
		// Bounded: forget every announcement, and tell the consumer to
		// forget its layouts too, so both sides agree on what was sent.
		if reason, ok := l.push(&entry.Header{Kind: entry.KindReset}, nil, o); !ok {
			return reason, false
		}
		clear(l.announce)
	}
	if reason, ok := l.push(&h, lay.Raw, o); !ok {
		return reason, false
	}
	l.announce[t.Key] = lay.Fingerprint
	return 0, true
}

const maxAnnounced = 1 << 16

// push writes one entry into the ring. UDP input drops when the ring is full;
// TCP input never does: what the ring cannot take goes to the spill, which
// enters the ring first once it has room, and the session pauses before its
// next message (tcphold.go). On failure it returns the reason; the caller
// counts what was lost.
func (l *loop) push(h *entry.Header, body []byte, o origin) (DropReason, bool) {
	n := entry.HeaderLen + len(body)
	if n > l.ring.MaxEntry() {
		return DropTooLargeForRing, false
	}
	var buf []byte
	if l.spillHead == len(l.spill) || l.flushSpill() {
		buf = l.prod.Reserve(n)
	}
	if buf == nil {
		if o.transport == transportUDP {
			return DropRingFull, false
		}
		if l.consumersGone() {
			// Shutting down with the consumer gone: nothing more can be
			// delivered.
			return DropShutdown, false
		}
		l.toSpill(h, body)
		return 0, true
	}
	entry.Put(buf, h)
	copy(buf[entry.HeaderLen:], body)
	l.prod.Commit(n)
	return 0, true
}

// learn handles a template or options template set of scope dk.
func (l *loop) learn(dk template.DomainKey, set *ipfix.Set, o origin, ex *exporterStats, withdrewAll *[2]bool) {
	st := l.stats
	it := set.Templates()
	for it.Next(&l.tr) {
		tr := &l.tr
		k := dk.Key(tr.ID)
		if tr.Withdrawal() {
			if tr.ID < ipfix.MinDataSetID {
				// One withdraw-all of each kind per message is enough,
				// and repeats would each scan the whole store.
				kind := btoi(tr.Options)
				if withdrewAll[kind] {
					continue
				}
				withdrewAll[kind] = true
			}
			l.withdraw(dk, tr, o)
			continue
		}
		old := l.cache.Get(k, l.now)
		same := old != nil && old.Layout.Options == tr.Options && bytes.Equal(old.Layout.Raw, tr.Raw)
		if same {
			// A retransmission: refresh the lifetime, compile nothing.
			// A TCP session's template lives as long as the session.
			st.refreshes.Add(1)
			if k.Session == 0 {
				old.Refresh(l.now + int64(l.c.cfg.TemplateLifetime))
				l.cache.Keep(old) // in case it expired between Get and Refresh
				if l.c.remote != nil {
					l.c.remote.Refreshed(old)
				}
			}
			continue
		}
		if old == nil {
			// Bounded in total, per exporter and per domain: refuse new
			// templates rather than grow without end on input that
			// invents exporters, domains or IDs. Checked before compiling
			// so a refusal costs little; TryPut below decides.
			if r := l.c.shared.Room(k); r != template.Admitted {
				l.refuseTemplate(ex, r, k)
				continue
			}
		}
		lay, err := ipfix.Compile(tr)
		if err != nil {
			st.codecDrop(err)
			continue
		}
		var expires int64
		if k.Session == 0 {
			expires = l.now + int64(l.c.cfg.TemplateLifetime)
		}
		t := template.New(k, lay, l.now, expires)
		if old != nil {
			st.redefinitions.Add(1)
			l.cache.Put(t)
		} else if r := l.cache.TryPut(t); r != template.Admitted {
			l.refuseTemplate(ex, r, k)
			continue
		}
		st.templates.Add(1)
		l.c.hooks.templateLearned(TemplateEvent{Exporter: k.Exporter, Domain: k.Domain, ID: k.ID,
			Version: k.Version, TCPSession: k.Session, Options: lay.Options})
		// Announce at once, not only with data that uses it: a template
		// may be needed only inside another's subTemplateList.
		l.announced(t, o)
		if l.c.remote != nil && k.Session == 0 {
			l.c.remote.Learned(t)
		}
		l.release(k, t)
	}
	if err := it.Err(); err != nil {
		st.codecDrop(err)
	}
}

// refuseTemplate counts a template a bound refused, for the loop and for
// its exporter, and logs it (rate-limited).
func (l *loop) refuseTemplate(ex *exporterStats, r template.Refusal, k template.Key) {
	reason := DropTemplateLimit
	switch r {
	case template.RefusedExporter:
		reason = DropExporterTemplateLimit
	case template.RefusedDomain:
		reason = DropDomainTemplateLimit
	}
	l.stats.droppedSets[reason].Add(1)
	ex.refused[reason].Add(1)
	l.c.boundLog.Warn(l.c.log, "template refused", "exporter", exporterName(k.Exporter), "domain", k.Domain,
		"template", k.ID, "reason", reason.String())
}

// withdraw honours a withdrawal in scope dk over TCP; over UDP RFC 7011
// section 8.4 says to ignore it (templates there expire instead). Only the
// session's own templates go: never the exporter's UDP templates, nor
// another session's, and nothing shared (TCP templates never are).
func (l *loop) withdraw(dk template.DomainKey, tr *ipfix.TemplateRecord, o origin) {
	if !dk.HonoursWithdrawals() {
		l.stats.withdrawIgn.Add(1)
		return
	}
	l.stats.withdrawals.Add(1)
	if tr.ID >= ipfix.MinDataSetID {
		k := dk.Key(tr.ID)
		if old := l.cache.Get(k, l.now); old != nil {
			l.cache.Delete(k, old)
		}
	} else {
		// The set's kind says which (as in the offline decoder).
		options := tr.Options
		l.cache.DeleteWhere(func(t *template.Template) bool {
			return t.Key.DomainKey() == dk && t.Layout.Options == options
		})
	}
	h := entry.Header{Kind: entry.KindWithdrawal, Version: dk.Version, Domain: dk.Domain, Exporter: o.src, TemplateID: tr.ID, Session: dk.Session}
	if _, ok := l.push(&h, nil, o); !ok {
		// Consumers ignore withdrawals today; count the lost entry anyway.
		l.stats.lostWithdrawals.Add(1)
	}
}

// hold keeps a data set whose template is unknown.
func (l *loop) hold(k template.Key, body []byte, m *ipfix.Message, o origin, ex *exporterStats) {
	if reason, ok := l.held.add(k, l.now, m, o, body); !ok {
		l.stats.droppedSets[reason].Add(1)
		ex.refused[reason].Add(1)
		return
	}
	l.stats.heldSets.Store(int64(l.held.sets))
	l.stats.heldBytes.Store(l.held.bytes)
}

// release decodes, in arrival order, the data sets held for k.
func (l *loop) release(k template.Key, t *template.Template) {
	q := l.held.take(k)
	if q == nil {
		return
	}
	for i := range q.sets {
		hs := &q.sets[i]
		m := &ipfix.Message{Version: k.Version, DomainID: k.Domain, ExportTime: hs.exportTime,
			Sequence: hs.sequence, SysUptime: hs.sysUptime, ExportNanos: hs.exportNanos}
		ex := l.c.exporters.get(k.DomainKey(), l.now)
		var rate *exporterRate
		if l.c.cfg.RateLimit.on() {
			rate = l.c.rates.get(hs.src.Addr())
		}
		l.data(t, hs.body, m, origin{src: hs.src, transport: hs.transport, session: hs.session}, ex, rate, hs.arrived)

		l.stats.heldReleased.Add(1)
	}
	l.stats.heldSets.Store(int64(l.held.sets))
	l.stats.heldBytes.Store(l.held.bytes)
}

// sweep runs periodically on the loop: it ages out held data sets and
// releases those whose template another loop has learned meanwhile.
func (l *loop) sweep(now int64) {
	l.now = now
	for _, k := range l.held.keys() {
		if t := l.cache.Get(k, now); t != nil {
			l.release(k, t)
		}
	}
	l.held.expire(now, func(sets int) {
		l.stats.droppedSets[DropTemplateTimeout].Add(uint64(sets))
	})
	l.stats.heldSets.Store(int64(l.held.sets))
	l.stats.heldBytes.Store(l.held.bytes)
}

// sessionClosed drops the templates a TCP session defined (RFC 7011 section
// 8: they live as long as the session) and the data held for them, which
// can no longer come (counted as template_timeout). Its exporter entries
// leave the API; their counts stay in the metrics.
func (l *loop) sessionClosed(s *tcpSession) {
	for _, t := range l.cache.DeleteWhere(func(t *template.Template) bool { return t.Key.Session == s.id }) {
		delete(l.announce, t.Key) // the session's templates were announced on its loop alone
	}
	if n := l.held.dropSession(s.id); n > 0 {
		l.stats.droppedSets[DropTemplateTimeout].Add(uint64(n))
		l.stats.heldSets.Store(int64(l.held.sets))
		l.stats.heldBytes.Store(l.held.bytes)
	}
	keys := l.sessionKeys[s.id]
	delete(l.sessionKeys, s.id)
	for _, dk := range keys {
		delete(l.streams, streamKey{src: s.remote, session: s.id, domain: dk.Domain, version: dk.Version})
	}
	if l.last != nil && l.last.key.session == s.id {
		l.last = nil
	}
	if keys != nil {
		l.c.exporters.closeSession(keys, l.now)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
