package meter

import (
	"time"
)

// IANA flowEndReason (IE 136) values.
const (
	EndIdle      = 1 // idle timeout
	EndActive    = 2 // active timeout
	EndOfFlow    = 3 // TCP FIN or RST
	EndForced    = 4 // end of the captures
	EndResources = 5 // table full (MaxFlows)
)

// TCP flags.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// sweepInterval is how often (capture time) flows are checked for
// timeouts and the open message is finished.
const sweepInterval = int64(time.Second)

// closeLinger is how long a closing TCP flow (FIN seen) waits for its last
// ACKs before it is exported, capped by the idle timeout.
const closeLinger = int64(time.Second)

// fragTimeout is how long a first fragment's ports are kept for the
// later fragments (capture time).
const fragTimeout = int64(30 * time.Second)

// dpiPackets is how many packets with payload of a flow DPI reads.
const dpiPackets = 4

type fragKey struct {
	src, dst [16]byte
	id       uint32
	proto    uint8
	v6       bool
}

type fragEntry struct {
	sport, dport, icmp uint16
	expires            int64
}

// Meter is a metering and exporting process (RFC 7011 terms): it takes
// captured packets, keeps flows, and hands their IPFIX records to a Sink.
// Time is the capture's: packet timestamps drive every timeout, so the
// same captures give the same records. A Meter is not safe for concurrent
// use; one goroutine owns it, and the Sink and Progress callbacks run on
// that goroutine.
type Meter struct {
	cfg           Config
	idle, active  int64
	linger        int64
	t             table
	dpi           []dpiState // parallel to the flow slab with Config.DPI
	frags         map[fragKey]fragEntry
	clock         int64 // latest capture time seen, Unix nanoseconds
	nextSweep     int64
	enc           encoder
	sink          Sink
	err           error // first sink error
	stats         Stats
	pkt           packet
	closed        bool
	progressState progressState
}

// New returns a meter that sends its IPFIX messages to sink.
func New(cfg Config, sink Sink) (*Meter, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	hint := min(cfg.MaxFlows, 4096)
	m := &Meter{
		cfg:    cfg,
		idle:   int64(cfg.IdleTimeout),
		active: int64(cfg.ActiveTimeout),
		linger: min(closeLinger, int64(cfg.IdleTimeout)),
		t:      newTable(hint),
		frags:  make(map[fragKey]fragEntry),
		sink:   sink,
	}
	if cfg.DPI {
		m.dpi = make([]dpiState, 0, hint)
	}
	m.enc.init(cfg, m.emit)
	return m, nil
}

// emit hands a finished message to the sink.
func (m *Meter) emit(msg []byte) {
	m.stats.Messages++
	if m.err != nil {
		return
	}
	if err := m.sink.Message(msg); err != nil {
		m.err = err
	}
}

// Stats returns the counters so far.
func (m *Meter) Stats() Stats {
	s := m.stats
	s.FlowsOpen = m.t.len()
	return s
}

// Packet meters one captured packet of the given link type (a pcap
// LINKTYPE_ value). ts is its capture time in Unix nanoseconds; 0 (unknown,
// as in pcapng simple packet blocks) takes the latest time seen. data is
// only read during the call. Packet allocates nothing once the flow table
// has grown to its working size.
func (m *Meter) Packet(ts int64, linkType uint32, data []byte) {
	m.stats.Packets++
	m.stats.Bytes += uint64(len(data))
	if ts == 0 {
		ts = m.clock
	}
	if ts > m.clock {
		m.clock = ts
		if ts >= m.nextSweep {
			m.sweep()
			m.nextSweep = ts + sweepInterval
		}
	}
	p := &m.pkt
	p.ts = ts
	if r := parse(linkType, data, p); r != reasonNone {
		m.stats.Skipped[r]++
		return
	}
	if p.Frag {
		if r := m.fragment(p); r != reasonNone {
			m.stats.Skipped[r]++
			return
		}
	}
	m.account(p)
}

// hasPorts reports whether the protocol's header starts with ports (or,
// for ICMP, type and code) that the flow key uses.
func hasPorts(proto uint8) bool {
	switch proto {
	case protoTCP, protoUDP, protoUDPLite, protoSCTP, protoDCCP, protoICMP, protoICMPv6:
		return true
	}
	return false
}

// fragment gives a later fragment the ports of its first fragment, and
// remembers a first fragment's ports.
func (m *Meter) fragment(p *packet) Reason {
	if !hasPorts(p.Proto) {
		return reasonNone
	}
	k := fragKey{src: p.Src, dst: p.Dst, id: p.FragID, proto: p.Proto, v6: p.V6}
	if p.FragOff == 0 {
		if !p.l4 {
			return ReasonTruncated
		}
		if len(m.frags) >= m.cfg.MaxFragments {
			for fk, e := range m.frags {
				if e.expires < m.clock {
					delete(m.frags, fk)
				}
			}
			if len(m.frags) >= m.cfg.MaxFragments {
				// The first fragment is metered; its later ones will
				// be skipped as unmatched.
				m.stats.FragmentTableFull++
				return reasonNone
			}
		}
		m.frags[k] = fragEntry{p.sport, p.dport, p.icmp, p.ts + fragTimeout}
		return reasonNone
	}
	e, ok := m.frags[k]
	if !ok || e.expires < p.ts {
		return ReasonFragment
	}
	p.sport, p.dport, p.icmp = e.sport, e.dport, e.icmp
	m.stats.Fragments++
	return reasonNone
}

// account adds packet p to its flow.
func (m *Meter) account(p *packet) {
	ts := p.ts
	k := flowKey{src: p.Src, dst: p.Dst, proto: p.Proto, vlan: p.VLAN, v6: p.V6}
	if p.Proto == protoICMP || p.Proto == protoICMPv6 {
		k.dport = p.icmp
	} else {
		k.sport, k.dport = p.sport, p.dport
	}
	i, ok := m.t.lookup(&k)
	rev := false
	if !ok && m.cfg.Biflow {
		rk := k.reverse()
		if i, ok = m.t.lookup(&rk); ok {
			rev = true
		}
	}
	if ok {
		f := m.t.flows.at(i)
		switch {
		case ts-f.last > m.idle:
			m.export(i, EndIdle)
			ok = false
		case ts-f.start >= m.active:
			m.export(i, EndActive)
			ok = false
		case f.state == stateClosing && p.Proto == protoTCP && p.tcpFlags&(tcpSYN|tcpACK) == tcpSYN:
			m.export(i, EndOfFlow) // a new connection on the same ports
			ok = false
		}
		if !ok {
			rev = false
		}
	}
	if !ok {
		if m.t.len() >= m.cfg.MaxFlows {
			victim := m.t.settle(&m.t.close)
			if victim == nilIdx {
				victim = m.t.settle(&m.t.open)
			}
			m.export(victim, EndResources)
			m.stats.EarlyExports++
		}
		i = m.t.insert(k)
		f := m.t.flows.at(i)
		f.start, f.last, f.queued = ts, ts, ts
		f.minTTL, f.rMinTTL = 255, 255
		f.initFlags = p.tcpFlags
		f.mpls, f.hasMPLS = p.MPLS, p.HasMPLS
		if m.dpi != nil {
			f.dpiLeft = dpiPackets
			if int(i) >= len(m.dpi) {
				m.dpi = append(m.dpi, dpiState{})
			} else {
				m.dpi[i] = dpiState{}
			}
		}
	}
	f := m.t.flows.at(i)
	if ts > f.last {
		f.last = ts
	}
	if ts < f.start {
		f.start = ts
	}
	m.stats.Metered++
	m.stats.Octets += uint64(p.IPLen)
	var dir uint8 = 1
	if rev {
		dir = 2
		if f.rPackets == 0 {
			f.rInitFlag = p.tcpFlags
		}
		f.rPackets++
		f.rOctets += uint64(p.IPLen)
		f.rFlags |= p.tcpFlags
		f.rMinTTL = min(f.rMinTTL, p.TTL)
		f.rMaxTTL = max(f.rMaxTTL, p.TTL)
	} else {
		f.packets++
		f.octets += uint64(p.IPLen)
		f.flags |= p.tcpFlags
		f.minTTL = min(f.minTTL, p.TTL)
		f.maxTTL = max(f.maxTTL, p.TTL)
	}
	if f.dpiLeft > 0 && len(p.payload) > 0 {
		f.dpiLeft--
		m.dpi[i].inspect(p)
	}
	if p.Proto != protoTCP {
		return
	}
	switch {
	case p.tcpFlags&tcpRST != 0:
		m.export(i, EndOfFlow)
	case p.tcpFlags&tcpFIN != 0:
		f.fin |= dir
		if !m.cfg.Biflow || f.fin == 3 {
			m.t.setClosing(i)
		}
	}
}

// export sends flow i's record and removes it from the table.
func (m *Meter) export(i int32, reason uint8) {
	f := m.t.flows.at(i)
	var d *dpiState
	if m.dpi != nil {
		d = &m.dpi[i]
	}
	m.enc.add(f, d, reason, m.clock)
	m.stats.Flows++
	m.t.remove(i)
}

// sweep exports the flows whose timeouts passed at m.clock and finishes
// the open message, so records leave at most a second (capture time)
// after their flow ended.
func (m *Meter) sweep() {
	now := m.clock
	for i := m.t.settle(&m.t.close); i != nilIdx && now-m.t.flows.at(i).last > m.linger; i = m.t.settle(&m.t.close) {
		m.export(i, EndOfFlow)
	}
	for i := m.t.settle(&m.t.open); i != nilIdx && now-m.t.flows.at(i).last > m.idle; i = m.t.settle(&m.t.open) {
		m.export(i, EndIdle)
	}
	for i := m.t.age.head; i != nilIdx && now-m.t.flows.at(i).start >= m.active; i = m.t.age.head {
		m.export(i, EndActive)
	}
	m.enc.finish(now)
}

// Flush exports the flows whose timeouts have passed at the latest capture
// time and hands the open message to the sink.
func (m *Meter) Flush() error {
	m.sweep()
	return m.err
}

// Close ends every open flow (flowEndReason 4, forced end), hands the last
// message to the sink and closes it. The meter cannot be used afterwards.
func (m *Meter) Close() error {
	if m.closed {
		return m.err
	}
	m.closed = true
	m.sweep()
	for i := m.t.age.head; i != nilIdx; i = m.t.age.head {
		m.export(i, EndForced)
	}
	m.enc.finish(m.clock)
	if err := m.sink.Close(); err != nil && m.err == nil {
		m.err = err
	}
	return m.err
}
