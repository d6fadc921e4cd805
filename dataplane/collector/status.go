package collector

import (
	"encoding/json"
	"net/netip"
	"sort"
	"strconv"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/promtext"
	"github.com/sluice-flow/sluice/dataplane/template"
)

// ExporterStatus describes, for the admin API, one exporter scope and
// observation domain over UDP, or one TCP session's view of an observation
// domain: RFC 7011 section 8 keeps their templates and sequence numbers
// apart, and so do these entries. A TCP session's entry goes when the
// session closes (its counts stay in the metrics).
type ExporterStatus struct {
	// Exporter is the exporter scope: its address, with the port when
	// templates are scoped by port; "other" for exporters past the
	// registry's bound.
	Exporter          string `json:"exporter"`
	ObservationDomain uint32 `json:"observation_domain"`
	Version           uint16 `json:"version"`
	// Transport is "udp", "tcp", or "tls" for an open session from a
	// tls:// listener (closed sessions of either add up as "tcp").
	Transport string `json:"transport"`
	// TCPSession numbers the TCP session (as in TemplateStatus); 0 for
	// UDP.
	TCPSession uint64 `json:"tcp_session,omitempty"`
	// Closed marks the entry that sums the TCP sessions of this exporter
	// and domain that have closed; it stays until the exporter has been
	// idle for two hours.
	Closed         bool      `json:"closed,omitempty"`
	FirstSeen      time.Time `json:"first_seen"`
	LastSeen       time.Time `json:"last_seen"`
	Messages       uint64    `json:"messages"`
	Records        uint64    `json:"records"`
	SequenceLost   uint64    `json:"sequence_lost"`
	OutOfOrder     uint64    `json:"out_of_order"`
	SequenceResets uint64    `json:"sequence_resets"`
	// Loops are the event loops that received these messages, by index
	// (as the loop label of the metrics). With eBPF steering a UDP
	// exporter and domain is seen by one loop, whatever its source ports.
	Loops []int `json:"loops"`
	// Templates counts the live templates of this scope.
	Templates int `json:"templates"`
	// Refused counts, by reason, what this entry's exporter and domain
	// lost to its own bounds (template_limit, exporter_template_limit,
	// domain_template_limit, held_overflow, rate_limit; domain_limit on an
	// excess entry: the domains whose counters it took). Zero counts are
	// left out.
	Refused map[string]uint64 `json:"refused,omitempty"`
	// Excess marks the entry that counts, for an exporter past
	// max_domains_per_exporter, the messages of its further domains
	// (observation_domain and version are 0).
	Excess bool `json:"excess,omitempty"`
	// Options holds the latest options record of each options template,
	// keyed by template ID, as JSON objects (formatted when read).
	Options map[string]json.RawMessage `json:"options,omitempty"`
}

// Exporters returns the status of every exporter seen: one entry per UDP
// exporter scope and domain, one per open TCP session and domain, sorted by
// exporter, domain, version, then TCP session (UDP first). The slice is
// never nil, so an empty list is [] in JSON. Safe for concurrent use; it
// takes the registry's and the template store's locks briefly and formats
// options records after.
func (c *Collector) Exporters() []ExporterStatus {
	counts := map[template.DomainKey]int{}
	c.shared.Range(func(t *template.Template) bool {
		counts[t.Key.DomainKey()]++
		return true
	})
	es := c.exporters.snapshot()
	sortByKey(es)
	out := make([]ExporterStatus, 0, len(es))
	for _, e := range es {
		session, closed := e.key.Session, e.key.Session == closedSessions
		if closed {
			session = 0
		}
		s := ExporterStatus{
			Exporter: exporterName(e.key.Exporter), ObservationDomain: e.key.Domain, Version: e.key.Version,
			Transport: c.transportName(e.key.Session), TCPSession: session, Closed: closed,
			FirstSeen: time.Unix(0, e.firstSeen).UTC(), LastSeen: time.Unix(0, e.lastSeen.Load()).UTC(),
			Messages: e.messages.Load(), Records: e.records.Load(), SequenceLost: e.lost.Load(),
			OutOfOrder: e.outOfOrd.Load(), SequenceResets: e.resets.Load(), Templates: counts[e.key],
			Loops:   e.loops.list(),
			Options: e.optionsJSON(), Refused: e.refusedMap(), Excess: isExcess(e.key),
		}
		out = append(out, s)
	}
	return out
}

// refusedMap returns the non-zero refusal counts by reason name, or nil.
func (e *exporterStats) refusedMap() map[string]uint64 {
	var m map[string]uint64
	put := func(k string, v uint64) {
		if v == 0 {
			return
		}
		if m == nil {
			m = map[string]uint64{}
		}
		m[k] = v
	}
	for _, r := range exporterRefusals {
		put(r.String(), e.refused[r].Load())
	}
	put(domainLimit, e.excessDomains.Load())
	return m
}

func (c *Collector) transportName(session uint64) string {
	if session == 0 {
		return "udp"
	}
	if _, ok := c.tlsSessions.Load(session); ok {
		return "tls"
	}
	return "tcp"
}

// Options returns the latest options records of an exporter scope and
// domain over UDP by options template ID, as JSON objects; nil if there are
// none. (A TCP session's are in its Exporters entry.)
func (c *Collector) Options(k ExporterKey) map[string]json.RawMessage {
	c.exporters.mu.Lock()
	e := c.exporters.m[template.DomainKey{Exporter: k.Exporter, Domain: k.Domain, Version: k.Version}]
	c.exporters.mu.Unlock()
	if e == nil {
		return nil
	}
	return e.optionsJSON()
}

// TemplateField is one field of a template in the admin API.
type TemplateField struct {
	Name   string `json:"name"`
	ID     uint16 `json:"id"`
	PEN    uint32 `json:"pen,omitempty"`
	Length int    `json:"length"` // -1 for variable length
	Type   string `json:"type"`
	Scope  bool   `json:"scope,omitempty"`
}

// TemplateStatus describes one template for the admin API.
type TemplateStatus struct {
	// Exporter is the exporter scope, as in ExporterStatus.
	Exporter          string `json:"exporter"`
	ObservationDomain uint32 `json:"observation_domain"`
	Version           uint16 `json:"version"`
	TemplateID        uint16 `json:"template_id"`
	Options           bool   `json:"options"`
	Fingerprint       string `json:"fingerprint"`
	// Transport is "udp", "tcp" or "tls": a TCP (or TLS) template belongs
	// to its session (TCPSession) and lives as long as it; a UDP one
	// expires unless retransmitted (Expires).
	Transport    string          `json:"transport"`
	TCPSession   uint64          `json:"tcp_session,omitempty"`
	Learned      time.Time       `json:"learned"`
	Expires      *time.Time      `json:"expires,omitempty"`
	RecordLength int             `json:"record_length"` // -1 for variable length
	Fields       []TemplateField `json:"fields"`
}

// TemplateList returns every live template, sorted by exporter, domain,
// version, TCP session (UDP first), then template ID. The slice is never
// nil. Safe for concurrent use.
func (c *Collector) TemplateList() []TemplateStatus {
	var ts []*template.Template
	c.shared.Range(func(t *template.Template) bool {
		ts = append(ts, t)
		return true
	})
	sort.Slice(ts, func(i, j int) bool {
		a, b := ts[i].Key, ts[j].Key
		if c := compareDomainKeys(a.DomainKey(), b.DomainKey()); c != 0 {
			return c < 0
		}
		return a.ID < b.ID
	})
	out := make([]TemplateStatus, 0, len(ts))
	for _, t := range ts {
		s := TemplateStatus{
			Exporter: exporterName(t.Key.Exporter), ObservationDomain: t.Key.Domain, Version: t.Key.Version,
			TemplateID: t.Key.ID, Options: t.Layout.Options, Fingerprint: fingerprintHex(t.Layout.Fingerprint),
			Transport: c.transportName(t.Key.Session), TCPSession: t.Key.Session,
			Learned: time.Unix(0, t.Learned).UTC(), RecordLength: t.Layout.RecordLen,
		}
		if e := t.Expires(); e != 0 {
			tm := time.Unix(0, e).UTC()
			s.Expires = &tm
		}
		for _, f := range t.Layout.Fields {
			length := int(f.Length)
			if f.Length == ipfix.VarLen {
				length = -1
			}
			s.Fields = append(s.Fields, TemplateField{Name: f.Key, ID: f.ID, PEN: f.PEN, Length: length,
				Type: f.IE.Type.String(), Scope: f.Scope})
		}
		out = append(out, s)
	}
	return out
}

func fingerprintHex(v uint64) string {
	const digits = "0123456789abcdef"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b[:])
}

// The collector's metric families.
var (
	packetsTotal          = promtext.Counter("sluice_packets_total", "UDP datagrams and TCP messages received.")
	receivedBytesTotal    = promtext.Counter("sluice_received_bytes_total", "Bytes of flow export received.")
	messagesTotal         = promtext.Counter("sluice_messages_total", "Messages decoded, by protocol version.")
	setsTotal             = promtext.Counter("sluice_sets_total", "Sets seen in IPFIX and NetFlow v9 messages.")
	collectedRecordsTotal = promtext.Counter("sluice_collected_records_total", "Data records accepted by the collector and queued to the mediator.")
	templatesLearnedTotal = promtext.Counter("sluice_templates_learned_total", "Templates learned (new or changed).")
	templateRefreshes     = promtext.Counter("sluice_template_refreshes_total", "Retransmissions of known templates.")
	templateRedefinitions = promtext.Counter("sluice_template_redefinitions_total", "Templates replaced by a different definition.")
	templateWithdrawals   = promtext.Counter("sluice_template_withdrawals_total", "Template withdrawals, by whether they were honoured (TCP) or ignored (UDP).")
	templatesKnown        = promtext.Gauge("sluice_templates", "Templates currently known.")
	heldSetsGauge         = promtext.Gauge("sluice_held_sets", "Data sets held until their template arrives.")
	heldBytesGauge        = promtext.Gauge("sluice_held_bytes", "Bytes held until their templates arrive.")
	heldReleasedTotal     = promtext.Counter("sluice_held_released_sets_total", "Held data sets decoded once their template arrived.")
	droppedRecordsTotal   = promtext.Counter("sluice_dropped_records_total", "Data records lost after decoding, by reason.")
	droppedSetsTotal      = promtext.Counter("sluice_dropped_sets_total", "Data sets or datagrams lost before their records could be counted, by reason.")
	malformedTotal        = promtext.Counter("sluice_malformed_total", "Malformed messages, sets and records rejected by the decoder, by reason.")
	trailingOctetsTotal   = promtext.Counter("sluice_trailing_octets_datagrams_total", "UDP datagrams with octets after their IPFIX message (ignored).")
	lostWithdrawalsTotal  = promtext.Counter("sluice_lost_withdrawal_entries_total", "Withdrawal notices the ring could not take (the withdrawal itself was applied).")
	tcpBackpressureTotal  = promtext.Counter("sluice_tcp_backpressure_total", "Times a TCP session paused for ring room (the loop goes on serving the others).")
	tcpBackpressureSecs   = promtext.Counter("sluice_tcp_backpressure_seconds_total", "Time TCP sessions spent paused for ring room, added as each pause ends.")
	tcpPausedSessions     = promtext.Gauge("sluice_tcp_paused_sessions", "TCP sessions paused for ring room now.")
	tcpSpillBytes         = promtext.Gauge("sluice_tcp_spill_bytes", "Bytes of entries from a TCP message begun before the ring filled, waiting for ring room.")
	tcpRefusedTotal       = promtext.Counter("sluice_tcp_sessions_refused_total", "TCP sessions refused, by reason: too many open (max_sessions), too many from one address (max_sessions_per_exporter), source outside allow_exporters (not_allowed).")
	tcpSessions           = promtext.Gauge("sluice_tcp_sessions", "Open TCP sessions.")
	udpBatchesTotal       = promtext.Counter("sluice_udp_batches_total", "recvmmsg calls that returned datagrams.")
	udpSocketDropsTotal   = promtext.Counter("sluice_udp_socket_drops_total", "Datagrams the kernel dropped on the UDP listeners' sockets (receive buffer full).")
	ringBytes             = promtext.Gauge("sluice_ring_bytes", "Bytes queued in each loop's ring.")
	loopDatagramsTotal    = promtext.Counter("sluice_loop_datagrams_total", "UDP datagrams each event loop received.")
	templateLookupsTotal  = promtext.Counter("sluice_template_cache_lookups_total", "Template lookups of each event loop: hit (its own cache), shared (fetched from the process-wide store), miss (unknown).")
	ringCapacityBytes     = promtext.Gauge("sluice_ring_capacity_bytes", "Capacity of each loop's ring.")
	exporterRecordsTotal  = promtext.Counter("sluice_exporter_records_total", "Data records accepted per exporter and observation domain.")
	exporterMessagesTotal = promtext.Counter("sluice_exporter_messages_total", "Messages per exporter and observation domain.")
	sequenceLostTotal     = promtext.Counter("sluice_sequence_lost_total", "Loss per sequence numbers: records (IPFIX, v5) or packets (v9).")
	sequenceOutOfOrder    = promtext.Counter("sluice_sequence_out_of_order_total", "Messages that arrived after later ones.")
	sequenceResetsTotal   = promtext.Counter("sluice_sequence_resets_total", "Sequence number jumps taken for exporter restarts.")
	tlsFailuresTotal      = promtext.Counter("sluice_tls_sessions_failed_total", "TLS sessions that ended before reaching an event loop, by reason: handshake (failed, or a client certificate missing or not verified under mutual TLS), register (no loop took it).")
	tlsReloadsTotal       = promtext.Counter("sluice_tls_reloads_total", "Reloads of the tls:// listeners' certificate, key and client CA files, by outcome: changed (new files in use), failed (the loaded ones stay).")
	exporterRefusedTotal  = promtext.Counter("sluice_exporter_refused_total", "What an exporter lost to its own bounds, by reason: templates (template_limit, exporter_template_limit, domain_template_limit) and data sets (held_overflow, rate_limit) refused, domains past max_domains_per_exporter (domain_limit).")
)

// AppendMetrics appends the collector's metrics in Prometheus text format.
// Per-loop counters are summed here, at scrape time.
func (c *Collector) AppendMetrics(dst []byte) []byte {
	w := promtext.NewWriter(dst)
	sum := func(f func(s *loopStats) uint64) uint64 {
		var n uint64
		for _, l := range c.loops {
			n += f(l.stats)
		}
		return n
	}
	for i, tr := range []string{"udp", "tcp"} {
		w.Uint(packetsTotal, sum(func(s *loopStats) uint64 { return s.packets[i].Load() }), "transport", tr)
	}
	for i, tr := range []string{"udp", "tcp"} {
		w.Uint(receivedBytesTotal, sum(func(s *loopStats) uint64 { return s.bytes[i].Load() }), "transport", tr)
	}
	for i, v := range []string{"5", "9", "10"} {
		w.Uint(messagesTotal, sum(func(s *loopStats) uint64 { return s.messages[i].Load() }), "version", v)
	}
	w.Uint(setsTotal, sum(func(s *loopStats) uint64 { return s.sets.Load() }))
	w.Uint(collectedRecordsTotal, sum(func(s *loopStats) uint64 { return s.records.Load() }))
	w.Uint(templatesLearnedTotal, sum(func(s *loopStats) uint64 { return s.templates.Load() }))
	w.Uint(templateRefreshes, sum(func(s *loopStats) uint64 { return s.refreshes.Load() }))
	w.Uint(templateRedefinitions, sum(func(s *loopStats) uint64 { return s.redefinitions.Load() }))
	w.Uint(templateWithdrawals, sum(func(s *loopStats) uint64 { return s.withdrawals.Load() }), "action", "honoured")
	w.Uint(templateWithdrawals, sum(func(s *loopStats) uint64 { return s.withdrawIgn.Load() }), "action", "ignored")
	w.Int(templatesKnown, int64(c.shared.Len()))
	var held int64
	for _, l := range c.loops {
		held += l.stats.heldSets.Load()
	}
	w.Int(heldSetsGauge, held)
	w.Int(heldBytesGauge, c.heldTotal.Load())
	w.Uint(heldReleasedTotal, sum(func(s *loopStats) uint64 { return s.heldReleased.Load() }))
	for r := range numDropReasons {
		w.Uint(droppedRecordsTotal, sum(func(s *loopStats) uint64 { return s.droppedRecs[r].Load() }), "reason", r.String())
	}
	for r := range numDropReasons {
		w.Uint(droppedSetsTotal, sum(func(s *loopStats) uint64 { return s.droppedSets[r].Load() }), "reason", r.String())
	}
	for i, e := range ipfix.Errors {
		w.Uint(malformedTotal, sum(func(s *loopStats) uint64 { return s.codecDrops[i].Load() }), "reason", e.Reason())
	}
	w.Uint(malformedTotal, sum(func(s *loopStats) uint64 { return s.codecDrops[len(ipfix.Errors)].Load() }), "reason", "other")
	w.Uint(trailingOctetsTotal, sum(func(s *loopStats) uint64 { return s.trailing.Load() }))
	w.Uint(lostWithdrawalsTotal, sum(func(s *loopStats) uint64 { return s.lostWithdrawals.Load() }))
	w.Uint(tcpBackpressureTotal, sum(func(s *loopStats) uint64 { return s.backpressure.Load() }))
	w.Float(tcpBackpressureSecs, float64(sum(func(s *loopStats) uint64 { return s.backpressureNanos.Load() }))/1e9)
	var paused, spilled int64
	for _, l := range c.loops {
		paused += l.stats.pausedSessions.Load()
		spilled += l.stats.spillBytes.Load()
	}
	w.Int(tcpPausedSessions, paused)
	w.Int(tcpSpillBytes, spilled)
	for r := range numSessionRefusals {
		w.Uint(tcpRefusedTotal, c.refusedSessions[r].Load(), "reason", sessionRefusalNames[r])
	}
	w.Int(tcpSessions, c.tcpOpen.Load())
	if c.tls.files != nil {
		for r := range numTLSFailures {
			w.Uint(tlsFailuresTotal, c.tls.failures[r].Load(), "reason", tlsFailureNames[r])
		}
		ok, failed := c.tls.files.Reloads()
		w.Uint(tlsReloadsTotal, ok, "outcome", "changed")
		w.Uint(tlsReloadsTotal, failed, "outcome", "failed")
	}
	w.Uint(udpBatchesTotal, sum(func(s *loopStats) uint64 { return s.udpBatches.Load() }))
	ports := map[uint16]bool{}
	for _, l := range c.listeners {
		if l.Network == "udp" {
			ports[l.Addr.Port()] = true
		}
	}
	if drops, ok := socketDrops(ports); ok {
		w.Uint(udpSocketDropsTotal, drops)
	}
	for i, l := range c.loops {
		w.Int(ringBytes, int64(l.ring.Len()), "loop", strconv.Itoa(i))
	}
	for i, l := range c.loops {
		w.Uint(loopDatagramsTotal, l.stats.packets[transportUDP].Load(), "loop", strconv.Itoa(i))
	}
	for i, l := range c.loops {
		hit, shared, miss := l.cache.Lookups()
		loop := strconv.Itoa(i)
		w.Uint(templateLookupsTotal, hit, "loop", loop, "result", "hit")
		w.Uint(templateLookupsTotal, shared, "loop", loop, "result", "shared")
		w.Uint(templateLookupsTotal, miss, "loop", loop, "result", "miss")
	}
	c.appendSteerMetrics(&w)
	for i, l := range c.loops {
		w.Int(ringCapacityBytes, int64(l.ring.Cap()), "loop", strconv.Itoa(i))
	}
	exps := c.exporters.totals() // one series per exporter scope and domain
	labels := make([][]string, len(exps))
	for i, e := range exps {
		labels[i] = exporterLabels(e)
	}
	// Per-exporter families are shown even before the first exporter.
	for _, pf := range perExporterFamilies {
		w.Head(pf.family)
		for i, e := range exps {
			w.Uint(pf.family, pf.value(e), labels[i]...)
		}
	}
	// Refusals: only the non-zero series, so a quiet collector's scrape
	// does not grow by a series per exporter and reason.
	w.Head(exporterRefusedTotal)
	for i, e := range exps {
		for _, r := range exporterRefusals {
			if v := e.refused[r].Load(); v > 0 {
				w.Uint(exporterRefusedTotal, v, append(labels[i][:len(labels[i]):len(labels[i])], "reason", r.String())...)
			}
		}
		if v := e.excessDomains.Load(); v > 0 {
			w.Uint(exporterRefusedTotal, v, append(labels[i][:len(labels[i]):len(labels[i])], "reason", domainLimit)...)
		}
	}
	return w.Bytes()
}

// exporterName shows a scope: the address, with the port when templates are
// scoped by port; "other" for the registry's overflow entry.
// perExporterFamilies are the metric families with one series per exporter
// scope and domain.
var perExporterFamilies = []struct {
	family *promtext.Family
	value  func(*exporterStats) uint64
}{
	{exporterRecordsTotal, func(e *exporterStats) uint64 { return e.records.Load() }},
	{exporterMessagesTotal, func(e *exporterStats) uint64 { return e.messages.Load() }},
	{sequenceLostTotal, func(e *exporterStats) uint64 { return e.lost.Load() }},
	{sequenceOutOfOrder, func(e *exporterStats) uint64 { return e.outOfOrd.Load() }},
	{sequenceResetsTotal, func(e *exporterStats) uint64 { return e.resets.Load() }},
}

func exporterName(a netip.AddrPort) string {
	switch {
	case !a.IsValid():
		return "other"
	case a.Port() != 0:
		return a.String()
	}
	return a.Addr().String()
}

func exporterLabels(e *exporterStats) []string {
	exp := exporterName(e.key.Exporter)
	return []string{"exporter", exp, "domain", strconv.Itoa(int(e.key.Domain)), "version", strconv.Itoa(int(e.key.Version))}
}
