package collector

import (
	"encoding/json"
	"net/netip"
	"sort"
	"strconv"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/template"
)

// ExporterStatus describes one (exporter scope, observation domain) for the
// admin API.
type ExporterStatus struct {
	Exporter          string    `json:"exporter"`
	ObservationDomain uint32    `json:"observation_domain"`
	Version           uint16    `json:"version"`
	Transport         string    `json:"transport"`
	FirstSeen         time.Time `json:"first_seen"`
	LastSeen          time.Time `json:"last_seen"`
	Messages          uint64    `json:"messages"`
	Records           uint64    `json:"records"`
	SequenceLost      uint64    `json:"sequence_lost"`
	OutOfOrder        uint64    `json:"out_of_order"`
	SequenceResets    uint64    `json:"sequence_resets"`
	Templates         int       `json:"templates"`
	// Options holds the latest options record of each options template,
	// keyed by template ID.
	Options map[string]json.RawMessage `json:"options,omitempty"`
}

// Exporters returns the status of every exporter seen, sorted.
func (c *Collector) Exporters() []ExporterStatus {
	counts := map[ExporterKey]int{}
	c.shared.Range(func(t *template.Template) bool {
		counts[ExporterKey{t.Key.Exporter, t.Key.Domain, t.Key.Version}]++
		return true
	})
	var out []ExporterStatus
	for _, e := range c.exporters.snapshot() {
		exp := exporterName(e.key.Exporter)
		tr := "udp"
		if e.transport.Load() == transportTCP+1 {
			tr = "tcp"
		}
		out = append(out, ExporterStatus{
			Exporter: exp, ObservationDomain: e.key.Domain, Version: e.key.Version, Transport: tr,
			FirstSeen: time.Unix(0, e.firstSeen).UTC(), LastSeen: time.Unix(0, e.lastSeen.Load()).UTC(),
			Messages: e.messages.Load(), Records: e.records.Load(), SequenceLost: e.lost.Load(),
			OutOfOrder: e.outOfOrd.Load(), SequenceResets: e.resets.Load(), Templates: counts[e.key],
			Options: e.optionsSnapshot(),
		})
	}
	return out
}

func (e *exporterStats) optionsSnapshot() map[string]json.RawMessage {
	e.optMu.Lock()
	defer e.optMu.Unlock()
	if len(e.options) == 0 {
		return nil
	}
	out := make(map[string]json.RawMessage, len(e.options))
	for id, v := range e.options {
		out[strconv.Itoa(int(id))] = v
	}
	return out
}

// Options returns the latest options record values of an exporter scope and
// domain by options template ID, as JSON objects.
func (c *Collector) Options(k ExporterKey) map[string]json.RawMessage {
	c.exporters.mu.Lock()
	e := c.exporters.m[k]
	c.exporters.mu.Unlock()
	if e == nil {
		return nil
	}
	return e.optionsSnapshot()
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
	Exporter          string          `json:"exporter"`
	ObservationDomain uint32          `json:"observation_domain"`
	Version           uint16          `json:"version"`
	TemplateID        uint16          `json:"template_id"`
	Options           bool            `json:"options"`
	Fingerprint       string          `json:"fingerprint"`
	Learned           time.Time       `json:"learned"`
	Expires           *time.Time      `json:"expires,omitempty"`
	TCPSession        uint64          `json:"tcp_session,omitempty"`
	RecordLength      int             `json:"record_length"` // -1 for variable length
	Fields            []TemplateField `json:"fields"`
}

// TemplateList returns every live template, sorted.
func (c *Collector) TemplateList() []TemplateStatus {
	var ts []*template.Template
	c.shared.Range(func(t *template.Template) bool {
		ts = append(ts, t)
		return true
	})
	sort.Slice(ts, func(i, j int) bool {
		a, b := ts[i].Key, ts[j].Key
		return compareKeys(a.Exporter, b.Exporter, a.Domain, b.Domain, a.Version, b.Version, a.ID, b.ID) < 0
	})
	out := make([]TemplateStatus, 0, len(ts))
	for _, t := range ts {
		exp := exporterName(t.Key.Exporter)
		s := TemplateStatus{
			Exporter: exp, ObservationDomain: t.Key.Domain, Version: t.Key.Version, TemplateID: t.Key.ID,
			Options: t.Layout.Options, Fingerprint: fingerprintHex(t.Layout.Fingerprint),
			Learned: time.Unix(0, t.Learned).UTC(), TCPSession: t.Session, RecordLength: t.Layout.RecordLen,
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

// AppendMetrics appends the collector's metrics in Prometheus text format.
// Per-loop counters are summed here, at scrape time.
func (c *Collector) AppendMetrics(dst []byte) []byte {
	w := promWriter{b: dst}
	sum := func(f func(s *loopStats) uint64) float64 {
		var n uint64
		for _, l := range c.loops {
			n += f(l.stats)
		}
		return float64(n)
	}
	w.head("sluice_packets_total", "counter", "UDP datagrams and TCP messages received.")
	for i, tr := range []string{"udp", "tcp"} {
		w.sample("sluice_packets_total", sum(func(s *loopStats) uint64 { return s.packets[i].Load() }), "transport", tr)
	}
	w.head("sluice_received_bytes_total", "counter", "Bytes of flow export received.")
	for i, tr := range []string{"udp", "tcp"} {
		w.sample("sluice_received_bytes_total", sum(func(s *loopStats) uint64 { return s.bytes[i].Load() }), "transport", tr)
	}
	w.head("sluice_messages_total", "counter", "Messages decoded, by protocol version.")
	for i, v := range []string{"5", "9", "10"} {
		w.sample("sluice_messages_total", sum(func(s *loopStats) uint64 { return s.messages[i].Load() }), "version", v)
	}
	w.head("sluice_sets_total", "counter", "Sets seen in IPFIX and NetFlow v9 messages.")
	w.sample("sluice_sets_total", sum(func(s *loopStats) uint64 { return s.sets.Load() }))
	w.head("sluice_collected_records_total", "counter", "Data records accepted by the collector and queued to the mediator.")
	w.sample("sluice_collected_records_total", sum(func(s *loopStats) uint64 { return s.records.Load() }))
	w.head("sluice_templates_learned_total", "counter", "Templates learned (new or changed).")
	w.sample("sluice_templates_learned_total", sum(func(s *loopStats) uint64 { return s.templates.Load() }))
	w.head("sluice_template_refreshes_total", "counter", "Retransmissions of known templates.")
	w.sample("sluice_template_refreshes_total", sum(func(s *loopStats) uint64 { return s.refreshes.Load() }))
	w.head("sluice_template_redefinitions_total", "counter", "Templates replaced by a different definition.")
	w.sample("sluice_template_redefinitions_total", sum(func(s *loopStats) uint64 { return s.redefinitions.Load() }))
	w.head("sluice_template_withdrawals_total", "counter", "Template withdrawals, by whether they were honoured (TCP) or ignored (UDP).")
	w.sample("sluice_template_withdrawals_total", sum(func(s *loopStats) uint64 { return s.withdrawals.Load() }), "action", "honoured")
	w.sample("sluice_template_withdrawals_total", sum(func(s *loopStats) uint64 { return s.withdrawIgn.Load() }), "action", "ignored")
	w.head("sluice_templates", "gauge", "Templates currently known.")
	w.sample("sluice_templates", float64(c.shared.Len()))
	w.head("sluice_held_sets", "gauge", "Data sets held until their template arrives.")
	w.sample("sluice_held_sets", sum(func(s *loopStats) uint64 { return uint64(s.heldSets.Load()) }))
	w.head("sluice_held_bytes", "gauge", "Bytes held until their templates arrive.")
	w.sample("sluice_held_bytes", float64(c.heldTotal.Load()))
	w.head("sluice_held_released_sets_total", "counter", "Held data sets decoded once their template arrived.")
	w.sample("sluice_held_released_sets_total", sum(func(s *loopStats) uint64 { return s.heldReleased.Load() }))
	w.head("sluice_dropped_records_total", "counter", "Data records lost after decoding, by reason.")
	for r := range numDropReasons {
		w.sample("sluice_dropped_records_total", sum(func(s *loopStats) uint64 { return s.droppedRecs[r].Load() }), "reason", r.String())
	}
	w.head("sluice_dropped_sets_total", "counter", "Data sets or datagrams lost before their records could be counted, by reason.")
	for r := range numDropReasons {
		w.sample("sluice_dropped_sets_total", sum(func(s *loopStats) uint64 { return s.droppedSets[r].Load() }), "reason", r.String())
	}
	w.head("sluice_malformed_total", "counter", "Malformed messages, sets and records rejected by the decoder, by reason.")
	for i, e := range ipfix.Errors {
		w.sample("sluice_malformed_total", sum(func(s *loopStats) uint64 { return s.codecDrops[i].Load() }), "reason", e.Reason())
	}
	w.sample("sluice_malformed_total", sum(func(s *loopStats) uint64 { return s.codecDrops[len(ipfix.Errors)].Load() }), "reason", "other")
	w.head("sluice_trailing_octets_datagrams_total", "counter", "UDP datagrams with octets after their IPFIX message (ignored).")
	w.sample("sluice_trailing_octets_datagrams_total", sum(func(s *loopStats) uint64 { return s.trailing.Load() }))
	w.head("sluice_lost_withdrawal_entries_total", "counter", "Withdrawal notices the ring could not take (the withdrawal itself was applied).")
	w.sample("sluice_lost_withdrawal_entries_total", sum(func(s *loopStats) uint64 { return s.lostWithdrawals.Load() }))
	w.head("sluice_tcp_backpressure_total", "counter", "Times TCP input waited for ring room.")
	w.sample("sluice_tcp_backpressure_total", sum(func(s *loopStats) uint64 { return s.backpressure.Load() }))
	w.head("sluice_tcp_sessions_refused_total", "counter", "TCP sessions refused: too many open.")
	w.sample("sluice_tcp_sessions_refused_total", float64(c.refusedSessions.Load()))
	w.head("sluice_tcp_sessions", "gauge", "Open TCP sessions.")
	w.sample("sluice_tcp_sessions", float64(c.tcpOpen.Load()))
	w.head("sluice_udp_batches_total", "counter", "recvmmsg calls that returned datagrams.")
	w.sample("sluice_udp_batches_total", sum(func(s *loopStats) uint64 { return s.udpBatches.Load() }))
	ports := map[uint16]bool{}
	for _, l := range c.listeners {
		if l.Network == "udp" {
			ports[l.Addr.Port()] = true
		}
	}
	if drops, ok := socketDrops(ports); ok {
		w.head("sluice_udp_socket_drops_total", "counter", "Datagrams the kernel dropped on the UDP listeners' sockets (receive buffer full).")
		w.sample("sluice_udp_socket_drops_total", float64(drops))
	}
	w.head("sluice_ring_bytes", "gauge", "Bytes queued in each loop's ring.")
	for i, l := range c.loops {
		w.sample("sluice_ring_bytes", float64(l.ring.Len()), "loop", strconv.Itoa(i))
	}
	w.head("sluice_ring_capacity_bytes", "gauge", "Capacity of each loop's ring.")
	for i, l := range c.loops {
		w.sample("sluice_ring_capacity_bytes", float64(l.ring.Cap()), "loop", strconv.Itoa(i))
	}
	exps := c.exporters.snapshot()
	w.head("sluice_exporter_records_total", "counter", "Data records accepted per exporter and observation domain.")
	for _, e := range exps {
		w.sample("sluice_exporter_records_total", float64(e.records.Load()), exporterLabels(e)...)
	}
	w.head("sluice_exporter_messages_total", "counter", "Messages per exporter and observation domain.")
	for _, e := range exps {
		w.sample("sluice_exporter_messages_total", float64(e.messages.Load()), exporterLabels(e)...)
	}
	w.head("sluice_sequence_lost_total", "counter", "Loss per sequence numbers: records (IPFIX, v5) or packets (v9).")
	for _, e := range exps {
		w.sample("sluice_sequence_lost_total", float64(e.lost.Load()), exporterLabels(e)...)
	}
	w.head("sluice_sequence_out_of_order_total", "counter", "Messages that arrived after later ones.")
	for _, e := range exps {
		w.sample("sluice_sequence_out_of_order_total", float64(e.outOfOrd.Load()), exporterLabels(e)...)
	}
	w.head("sluice_sequence_resets_total", "counter", "Sequence number jumps taken for exporter restarts.")
	for _, e := range exps {
		w.sample("sluice_sequence_resets_total", float64(e.resets.Load()), exporterLabels(e)...)
	}
	return w.b
}

// exporterName shows a scope: the address, with the port when templates are
// scoped by port; "other" for the registry's overflow entry.
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
