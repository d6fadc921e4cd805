package collector

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"time"

	"github.com/sluice-flow/sluice/dataplane/entry"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
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

// loop is one event loop's state. Everything here is owned by the loop's
// goroutine; only stats (atomics) and the ring's consumer end are touched
// by others.
type loop struct {
	c        *Collector
	idx      int
	cache    *template.Cache
	held     *held
	exp      map[ExporterKey]*exporterState
	last     *exporterState // the exporter of the previous message
	ring     *ring.Ring
	prod     *ring.Producer
	stats    *loopStats
	announce map[template.Key]uint64 // template fingerprints sent on this ring

	now  int64 // Unix nanoseconds, read once per wake-up
	msg  ipfix.Message
	tr   ipfix.TemplateRecord
	rec  ipfix.Record
	hdr  entry.Header
	udp  *udpBatch // recvmmsg state, created on first use
	stop <-chan struct{}
}

func newLoop(c *Collector, idx int) *loop {
	r := ring.New(c.cfg.RingSize)
	return &loop{
		c:        c,
		idx:      idx,
		cache:    template.NewCache(c.shared),
		held:     newHeld(&c.cfg.Held, &c.heldTotal),
		exp:      make(map[ExporterKey]*exporterState),
		ring:     r,
		prod:     r.Producer(),
		stats:    &loopStats{},
		announce: make(map[template.Key]uint64),
		stop:     c.stopping,
	}
}

func (l *loop) scope(src netip.AddrPort) netip.AddrPort {
	if l.c.cfg.ScopeByPort {
		return src
	}
	return netip.AddrPortFrom(src.Addr(), 0)
}

// exporterState is a loop's view of one exporter scope and domain: its
// shared counters and the loop's own sequence tracking.
type exporterState struct {
	key   ExporterKey
	stats *exporterStats
	seq   seqState
}

// exporter finds k's state; consecutive messages mostly come from the same
// exporter, so the previous answer is checked before the map.
func (l *loop) exporter(k ExporterKey) *exporterState {
	if e := l.last; e != nil && e.key == k {
		return e
	}
	e := l.exp[k]
	if e == nil {
		if len(l.exp) > maxTrackedExporters {
			clear(l.exp) // bounded; the registry keeps the counters
		}
		e = &exporterState{key: k, stats: l.c.exporters.get(k, l.now)}
		l.exp[k] = e
	}
	l.last = e
	return e
}

const maxTrackedExporters = 1 << 16

// handle processes one message from o. It reports false when a TCP session
// must be closed (malformed framing is handled by the caller).
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
		st.droppedSets[DropTrailing].Add(1)
	}
	switch m.Version {
	case ipfix.VersionNetFlow5:
		st.messages[0].Add(1)
	case ipfix.VersionNetFlow9:
		st.messages[1].Add(1)
	default:
		st.messages[2].Add(1)
	}
	ek := ExporterKey{l.scope(o.src), m.DomainID, m.Version}
	es := l.exporter(ek)
	ex := es.stats
	ex.lastSeen.Store(l.now)
	ex.messages.Add(1)
	ex.transport.Store(uint32(o.transport + 1))

	if m.Version == ipfix.VersionNetFlow5 {
		n := int(m.Count)
		l.hdr = entry.Header{
			Kind: entry.KindData, Version: m.Version, Domain: m.DomainID, Exporter: o.src,
			TemplateID: ipfix.V5TemplateID, Fingerprint: ipfix.V5Layout().Fingerprint,
			ExportTime: m.ExportTime, Sequence: m.Sequence, SysUptime: m.SysUptime,
			ExportNanos: m.ExportNanos, Records: uint32(n),
		}
		if reason, ok := l.push(&l.hdr, m.Body(), o); ok {
			st.records.Add(uint64(n))
			ex.records.Add(uint64(n))
		} else {
			st.droppedRecs[reason].Add(uint64(n))
		}
		l.checkSeq(es, m.Sequence, uint32(n), true)
		return
	}

	records := 0
	complete := true // every data set's template was known
	var set ipfix.Set
	sets := m.Sets()
	for sets.Next(&set) {
		st.sets.Add(1)
		switch set.Kind {
		case ipfix.SetTemplate, ipfix.SetOptionsTemplate:
			l.learn(ek, &set, o)
		case ipfix.SetData:
			k := template.Key{Exporter: ek.Exporter, Domain: ek.Domain, Version: ek.Version, ID: set.ID}
			t := l.cache.Get(k, l.now)
			if t == nil {
				complete = false
				if l.held.queues[k] == nil && l.c.remote != nil {
					l.c.remote.Missing(k) // first set held for k: ask the other pods
				}
				l.hold(k, set.Body, m, o)
				continue
			}
			records += l.data(t, set.Body, m, o, ex)
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
// the ring. It returns the number of records.
func (l *loop) data(t *template.Template, body []byte, m *ipfix.Message, o origin, ex *exporterStats) int {
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
			return 0
		}
	}
	if n == 0 {
		return 0
	}
	if lay.Options {
		l.keepOptions(ex, lay, body, m)
	}
	l.stats.dataSets.Add(1)
	if reason, ok := l.announced(t, o); !ok {
		l.stats.droppedRecs[reason].Add(uint64(n))
		return n
	}
	l.hdr = entry.Header{
		Kind: entry.KindData, Version: m.Version, Domain: m.DomainID, Exporter: o.src,
		TemplateID: lay.ID, Fingerprint: lay.Fingerprint, ExportTime: m.ExportTime,
		Sequence: m.Sequence, SysUptime: m.SysUptime, ExportNanos: m.ExportNanos, Records: uint32(n),
	}
	if reason, ok := l.push(&l.hdr, body, o); !ok {
		l.stats.droppedRecs[reason].Add(uint64(n))
		return n
	}
	l.stats.records.Add(uint64(n))
	ex.records.Add(uint64(n))
	return n
}

// keepOptions remembers the last options record of each options template
// per exporter (sampling rate, interface names, system init time), for the
// API and for later stages. Options records are rare; this path may
// allocate.
func (l *loop) keepOptions(ex *exporterStats, lay *ipfix.Layout, body []byte, m *ipfix.Message) {
	it := ipfix.NewDataIter(lay, body)
	var last ipfix.Record
	found := false
	for it.Next(&l.rec) {
		last, found = l.rec, true
	}
	if !found {
		return
	}
	meta := jsonl.Meta{Msg: m}
	b := []byte{'{'}
	for i := range lay.Fields {
		f := &lay.Fields[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, f.Key...)
		b = append(b, '"', ':')
		b = jsonl.AppendValue(b, &meta, f.IE, last.Bytes(i), ipfix.MaxListDepth)
	}
	b = append(b, '}')
	ex.optMu.Lock()
	if ex.options == nil {
		ex.options = make(map[uint16]json.RawMessage)
	}
	if len(ex.options) < 256 || ex.options[lay.ID] != nil {
		ex.options[lay.ID] = b
	}
	ex.optMu.Unlock()
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
		Exporter: t.Key.Exporter, TemplateID: lay.ID, Fingerprint: lay.Fingerprint,
	}
	if lay.Options {
		h.Flags |= entry.FlagOptions
	}
	if lay.V9 {
		h.Flags |= entry.FlagV9
	}
	if reason, ok := l.push(&h, lay.Raw, o); !ok {
		return reason, false
	}
	if len(l.announce) > maxAnnounced {
		clear(l.announce) // bounded; definitions are simply sent again
	}
	l.announce[t.Key] = lay.Fingerprint
	return 0, true
}

const maxAnnounced = 1 << 16

// push writes one entry into the ring. UDP input drops when the ring is full;
// TCP input waits for room (backpressure: the loop stops reading). On
// failure it returns the reason; the caller counts what was lost.
func (l *loop) push(h *entry.Header, body []byte, o origin) (DropReason, bool) {
	n := entry.HeaderLen + len(body)
	if n > l.ring.MaxEntry() {
		return DropTooLargeForRing, false
	}
	buf := l.prod.Reserve(n)
	if buf == nil {
		if o.transport == transportUDP {
			return DropRingFull, false
		}
		l.stats.backpressure.Add(1)
		for buf == nil {
			select {
			case <-l.stop:
				// Shutting down with the consumer gone: nothing more
				// can be delivered.
				return DropRingFull, false
			default:
			}
			time.Sleep(50 * time.Microsecond)
			buf = l.prod.Reserve(n)
		}
	}
	entry.Put(buf, h)
	copy(buf[entry.HeaderLen:], body)
	l.prod.Commit(n)
	return 0, true
}

// learn handles a template or options template set.
func (l *loop) learn(ek ExporterKey, set *ipfix.Set, o origin) {
	st := l.stats
	it := set.Templates()
	withdrewAll := false
	for it.Next(&l.tr) {
		tr := &l.tr
		k := template.Key{Exporter: ek.Exporter, Domain: ek.Domain, Version: ek.Version, ID: tr.ID}
		if tr.Withdrawal() {
			if tr.ID < ipfix.MinDataSetID {
				// A set holds one kind of template: one withdraw-all
				// per set is enough, and repeats would each scan the
				// whole store.
				if withdrewAll {
					continue
				}
				withdrewAll = true
			}
			l.withdraw(k, tr, o)
			continue
		}
		old := l.cache.Get(k, l.now)
		if old != nil && old.Layout.Options == tr.Options && bytes.Equal(old.Layout.Raw, tr.Raw) {
			// A retransmission: refresh the lifetime, compile nothing.
			st.refreshes.Add(1)
			if old.Session == 0 {
				old.Refresh(l.now + int64(l.c.cfg.TemplateLifetime))
			}
			if l.c.remote != nil {
				l.c.remote.Refreshed(old)
			}
			continue
		}
		lay, err := ipfix.Compile(tr)
		if err != nil {
			st.codecDrop(err)
			continue
		}
		var expires int64
		var session uint64
		if o.session != nil {
			session = o.session.id
		} else {
			expires = l.now + int64(l.c.cfg.TemplateLifetime)
		}
		t := template.New(k, lay, l.now, expires, session)
		if old != nil {
			st.redefinitions.Add(1)
		}
		l.cache.Put(t)
		st.templates.Add(1)
		if l.c.remote != nil {
			l.c.remote.Learned(t)
		}
		l.release(k, t)
	}
	if err := it.Err(); err != nil {
		st.codecDrop(err)
	}
}

// withdraw honours a withdrawal over TCP; over UDP RFC 7011 section 8.4 says
// to ignore it (templates there expire instead).
func (l *loop) withdraw(k template.Key, tr *ipfix.TemplateRecord, o origin) {
	if o.transport == transportUDP {
		l.stats.withdrawIgn.Add(1)
		return
	}
	l.stats.withdrawals.Add(1)
	if tr.ID >= ipfix.MinDataSetID {
		if old := l.cache.Get(k, l.now); old != nil {
			l.cache.Delete(k, old)
			if l.c.remote != nil {
				l.c.remote.Withdrawn(k)
			}
		}
	} else {
		options := tr.ID == ipfix.WithdrawAllOptionsTemplates
		gone := l.cache.DeleteWhere(func(t *template.Template) bool {
			return t.Key.Exporter == k.Exporter && t.Key.Domain == k.Domain &&
				t.Key.Version == k.Version && t.Layout.Options == options
		})
		for _, t := range gone {
			if l.c.remote != nil {
				l.c.remote.Withdrawn(t.Key)
			}
		}
	}
	h := entry.Header{Kind: entry.KindWithdrawal, Version: k.Version, Domain: k.Domain, Exporter: o.src, TemplateID: tr.ID}
	if reason, ok := l.push(&h, nil, o); !ok {
		// Consumers ignore withdrawals today; count the lost entry anyway.
		l.stats.droppedSets[reason].Add(1)
	}
}

// hold keeps a data set whose template is unknown.
func (l *loop) hold(k template.Key, body []byte, m *ipfix.Message, o origin) {
	if reason, ok := l.held.add(k, l.now, m, o, body); !ok {
		l.stats.droppedSets[reason].Add(1)
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
		ex := l.exporter(ExporterKey{k.Exporter, k.Domain, k.Version}).stats
		l.data(t, hs.body, m, origin{src: hs.src, transport: hs.transport, session: hs.session}, ex)
		l.stats.heldReleased.Add(1)
	}
	l.held.recycle(q)
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
// 8: they live as long as the session).
func (l *loop) sessionClosed(s *tcpSession) {
	l.cache.DeleteWhere(func(t *template.Template) bool { return t.Session == s.id })
}
