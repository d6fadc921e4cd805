package export

import (
	"net/netip"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
)

// FlowMessage field numbers of goflow2 v2's pb/flow.proto.
const (
	fmType             = 1
	fmSamplingRate     = 3
	fmSequenceNum      = 4
	fmSrcAddr          = 6
	fmDstAddr          = 7
	fmBytes            = 9
	fmPackets          = 10
	fmSamplerAddress   = 11
	fmNextHop          = 12
	fmSrcAs            = 14
	fmDstAs            = 15
	fmSrcNet           = 16
	fmDstNet           = 17
	fmInIf             = 18
	fmOutIf            = 19
	fmProto            = 20
	fmSrcPort          = 21
	fmDstPort          = 22
	fmIPTos            = 23
	fmForwardingStatus = 24
	fmIPTTL            = 25
	fmTCPFlags         = 26
	fmSrcMac           = 27
	fmDstMac           = 28
	fmVlanID           = 29
	fmEtype            = 30
	fmIcmpType         = 31
	fmIcmpCode         = 32
	fmSrcVlan          = 33
	fmDstVlan          = 34
	fmFragmentID       = 35
	fmFragmentOffset   = 36
	fmIPv6FlowLabel    = 37
	fmIPFlags          = 38
	fmObservationDom   = 70
	fmObservationPoint = 71
	fmMplsLabel        = 81
	fmMplsIP           = 82
	fmBgpNextHop       = 100
	fmTimeReceivedNs   = 110
	fmTimeFlowStartNs  = 111
	fmTimeFlowEndNs    = 112
)

// FlowMessage.FlowType values.
const (
	flowTypeNetFlowV5 = 2
	flowTypeNetFlowV9 = 3
	flowTypeIPFIX     = 4
)

// Protobuf wire types.
const (
	wireVarint = 0
	wireBytes  = 2
)

// maxMplsIP bounds the mpls_ip entries kept from one record (a record
// carries one top label address; more only in odd templates).
const maxMplsIP = 4

// flowMsg is one FlowMessage gathered from a record before encoding. Byte
// fields are views into the record (or into sampler) and are valid as long
// as the record is.
type flowMsg struct {
	typ, seq, domain, point                uint32
	samplingRate, bytes, packets           uint64
	received, start, end                   uint64
	srcAddr, dstAddr, nextHop, bgpNextHop  []byte
	srcAs, dstAs, srcNet, dstNet           uint32
	inIf, outIf, proto, srcPort, dstPort   uint32
	tos, fwd, ttl, tcpFlags, etype         uint32
	srcMac, dstMac                         uint64
	vlan, srcVlan, dstVlan                 uint32
	icmpType, icmpCode, fragID, fragOffset uint32
	flowLabel, ipFlags                     uint32
	mplsLabel                              [3]uint32
	mplsLabels                             int // labels set: highest index + 1
	mplsIP                                 [maxMplsIP][]byte
	mplsIPs                                int
	sampler                                [16]byte
	samplerLen                             int
}

// samplingKey scopes a sampling rate learned from options records, as
// goflow2 does: exporter address, protocol version, observation domain.
type samplingKey struct {
	exporter netip.Addr
	version  uint16
	domain   uint32
}

// maxSamplingKeys bounds the sampling rates remembered.
const maxSamplingKeys = 1 << 16

// goflowEncoder turns records into goflow2 FlowMessages. It is driven by one
// goroutine (the output's caller) and keeps the sampling rates that options
// records announce.
type goflowEncoder struct {
	msg      flowMsg
	sampling map[samplingKey]uint32
	lastKey  samplingKey
	lastRate uint32
	lastOK   bool
}

func newGoflowEncoder() *goflowEncoder {
	return &goflowEncoder{sampling: make(map[samplingKey]uint32)}
}

// options learns the sampling rate an options record carries
// (samplingPacketInterval, samplerRandomInterval or samplingInterval, in
// goflow2's order of preference). It reports whether r was an options
// record: those are not flows and are not encoded.
func (e *goflowEncoder) options(m *jsonl.Meta, r *ipfix.Record) bool {
	if !r.Layout.Options {
		return false
	}
	i := r.Layout.Index(0, 305)
	if i < 0 {
		i = r.Layout.Index(0, 50)
	}
	if i < 0 {
		i = r.Layout.Index(0, 34)
	}
	if i < 0 {
		return true
	}
	k := samplingKey{m.Exporter.Addr(), m.Msg.Version, m.Msg.DomainID}
	if _, ok := e.sampling[k]; !ok && len(e.sampling) >= maxSamplingKeys {
		clear(e.sampling)
	}
	rate := uint32(r.Uint(i))
	e.sampling[k] = rate
	if e.lastOK && e.lastKey == k {
		e.lastRate = rate
	}
	return true
}

// rate returns the sampling rate known for a data record's origin.
func (e *goflowEncoder) rate(m *jsonl.Meta) uint32 {
	if m.Msg.Version == ipfix.VersionNetFlow5 {
		return uint32(m.Msg.SamplingInterval & 0x3fff)
	}
	if len(e.sampling) == 0 {
		return 0
	}
	k := samplingKey{m.Exporter.Addr(), m.Msg.Version, m.Msg.DomainID}
	if !e.lastOK || e.lastKey != k {
		e.lastKey, e.lastOK = k, true
		e.lastRate = e.sampling[k]
	}
	return e.lastRate
}

// appendRecord appends r as one length-delimited FlowMessage (a varint
// length, then the message: what goflow2 writes with protodelim). It returns
// dst unchanged and false for options records, which goflow2 does not emit
// either. It does not allocate.
func (e *goflowEncoder) appendRecord(dst []byte, m *jsonl.Meta, r *ipfix.Record) ([]byte, bool) {
	if e.options(m, r) {
		return dst, false
	}
	f := &e.msg
	f.fill(m, r)
	f.samplingRate = uint64(e.rate(m))
	return f.appendDelimited(dst), true
}

// fill sets f from a data record, following goflow2's producer: the same
// elements feed the same fields (see the mapping table in README.md).
func (f *flowMsg) fill(m *jsonl.Meta, r *ipfix.Record) {
	*f = flowMsg{}
	msg := m.Msg
	switch msg.Version {
	case ipfix.VersionNetFlow5:
		f.typ = flowTypeNetFlowV5
		f.etype = 0x800
	case ipfix.VersionNetFlow9:
		f.typ = flowTypeNetFlowV9
	default:
		f.typ = flowTypeIPFIX
	}
	f.seq, f.domain = msg.Sequence, msg.DomainID
	if m.Received > 0 {
		f.received = uint64(m.Received)
	}
	if a := m.Exporter.Addr().Unmap(); a.Is4() {
		*(*[4]byte)(f.sampler[:]) = a.As4()
		f.samplerLen = 4
	} else if a.IsValid() {
		f.sampler = a.As16()
		f.samplerLen = 16
	}
	// Without times in the record, the flow is placed at the export time.
	base := uint64(msg.ExportTime) * 1e9
	if msg.Version == ipfix.VersionNetFlow5 {
		base += uint64(msg.ExportNanos % 1e9)
	}
	f.start, f.end = base, base
	fields := r.Layout.Fields
	for i := range fields {
		fd := &fields[i]
		if fd.PEN != 0 {
			continue
		}
		f.field(m, r, i, fd.ID, base)
	}
}

// field maps field i of r (IANA element id).
func (f *flowMsg) field(m *jsonl.Meta, r *ipfix.Record, i int, id uint16, base uint64) {
	v := r.Bytes(i)
	u32 := func() uint32 { return uint32(ipfix.Uint(v)) }
	switch id {
	case 138: // observationPointId
		f.point = u32()
	case 1, 23: // octetDeltaCount, postOctetDeltaCount
		f.bytes = ipfix.Uint(v)
	case 2, 24: // packetDeltaCount, postPacketDeltaCount
		f.packets = ipfix.Uint(v)
	case 7:
		f.srcPort = u32()
	case 11:
		f.dstPort = u32()
	case 4:
		f.proto = u32()
	case 16:
		f.srcAs = u32()
	case 17:
		f.dstAs = u32()
	case 10:
		f.inIf = u32()
	case 14:
		f.outIf = u32()
	case 89:
		f.fwd = u32()
	case 5:
		f.tos = u32()
	case 6:
		f.tcpFlags = u32()
	case 52: // minimumTTL
		f.ttl = u32()
	case 60: // ipVersion
		if len(v) > 0 {
			switch v[0] {
			case 4:
				f.etype = 0x800
			case 6:
				f.etype = 0x86dd
			}
		}
	case 8:
		f.addr(&f.srcAddr, v, 0x800)
	case 12:
		f.addr(&f.dstAddr, v, 0x800)
	case 27:
		f.addr(&f.srcAddr, v, 0x86dd)
	case 28:
		f.addr(&f.dstAddr, v, 0x86dd)
	case 9, 29:
		f.srcNet = u32()
	case 13, 30:
		f.dstNet = u32()
	case 15, 62:
		f.nextHop = v
	case 18, 63:
		f.bgpNextHop = v
	case 32, 139: // icmpTypeCodeIPv4, icmpTypeCodeIPv6
		tc := uint16(ipfix.Uint(v))
		f.icmpType, f.icmpCode = uint32(tc>>8), uint32(tc&0xff)
	case 176, 178:
		f.icmpType = u32()
	case 177, 179:
		f.icmpCode = u32()
	case 56, 81: // sourceMacAddress, postSourceMacAddress
		f.srcMac = ipfix.Uint(v)
	case 80, 57: // destinationMacAddress, postDestinationMacAddress
		f.dstMac = ipfix.Uint(v)
	case 58: // vlanId
		f.vlan = u32()
		f.srcVlan = f.vlan
	case 59: // postVlanId
		f.dstVlan = u32()
	case 54:
		f.fragID = u32()
	case 88:
		f.fragOffset = u32()
	case 197: // fragmentFlags: goflow2 keeps the IPv4 header's three flag bits
		f.ipFlags = u32() >> 5
	case 31:
		f.flowLabel = u32()
	case 70, 71, 72: // mplsTopLabelStackSection, mplsLabelStackSection2, 3
		k := int(id - 70)
		f.mplsLabel[k] = u32() >> 4
		f.mplsLabels = max(f.mplsLabels, k+1)
	case 47, 140: // mplsTopLabelIPv4Address, mplsTopLabelIPv6Address
		if f.mplsIPs < maxMplsIP {
			f.mplsIP[f.mplsIPs] = v
			f.mplsIPs++
		}
	case 312: // dataLinkFrameSize: one sampled frame
		f.bytes, f.packets = ipfix.Uint(v), 1
	case 21, 22: // flowEndSysUpTime, flowStartSysUpTime: NetFlow v9/v5 only
		if m.Msg.Version == ipfix.VersionIPFIX {
			return
		}
		t := uint64(m.Msg.UptimeTime(uint32(ipfix.Uint(v))).UnixNano())
		if id == 22 {
			f.start = t
		} else {
			f.end = t
		}
	case 150, 152, 154, 156: // flowStart{Seconds,Milli,Micro,Nano}seconds
		f.start = uint64(max(r.UnixNano(i), 0))
	case 151, 153, 155, 157:
		f.end = uint64(max(r.UnixNano(i), 0))
	case 158: // flowStartDeltaMicroseconds: before the export time
		f.start = base - ipfix.Uint(v)*1000
	case 159:
		f.end = base - ipfix.Uint(v)*1000
	}
}

// addr sets an address as goflow2 does: the first one seen, then any later
// one that is not all zeroes (a template with both IPv4 and IPv6 fields).
func (f *flowMsg) addr(dst *[]byte, v []byte, etype uint32) {
	if len(v) == 0 || (len(*dst) != 0 && allZeroes(v)) {
		return
	}
	*dst = v
	f.etype = etype
}

func allZeroes(v []byte) bool {
	for _, b := range v {
		if b != 0 {
			return false
		}
	}
	return true
}

// appendDelimited appends the varint length and the message. The message
// is written after room for the longest length prefix and moved down once
// its length is known.
func (f *flowMsg) appendDelimited(dst []byte) []byte {
	const room = 3 // a message is far below 2^21 octets
	start := len(dst)
	dst = append(dst, 0, 0, 0)
	dst = f.appendTo(dst)
	n := len(dst) - start - room
	if n >= 1<<21 {
		panic("BUG: export: FlowMessage longer than 2 MiB")
	}
	var p [room]byte
	k := len(appendVarint(p[:0], uint64(n)))
	copy(dst[start:], p[:k])
	copy(dst[start+k:], dst[start+room:])
	return dst[:start+k+n]
}

// appendTo appends the message's fields in field-number order, leaving out
// zero values as proto3 does.
func (f *flowMsg) appendTo(b []byte) []byte {
	b = appendUintField(b, fmType, uint64(f.typ))
	b = appendUintField(b, fmSamplingRate, f.samplingRate)
	b = appendUintField(b, fmSequenceNum, uint64(f.seq))
	b = appendBytesField(b, fmSrcAddr, f.srcAddr)
	b = appendBytesField(b, fmDstAddr, f.dstAddr)
	b = appendUintField(b, fmBytes, f.bytes)
	b = appendUintField(b, fmPackets, f.packets)
	b = appendBytesField(b, fmSamplerAddress, f.sampler[:f.samplerLen])
	b = appendBytesField(b, fmNextHop, f.nextHop)
	b = appendUintField(b, fmSrcAs, uint64(f.srcAs))
	b = appendUintField(b, fmDstAs, uint64(f.dstAs))
	b = appendUintField(b, fmSrcNet, uint64(f.srcNet))
	b = appendUintField(b, fmDstNet, uint64(f.dstNet))
	b = appendUintField(b, fmInIf, uint64(f.inIf))
	b = appendUintField(b, fmOutIf, uint64(f.outIf))
	b = appendUintField(b, fmProto, uint64(f.proto))
	b = appendUintField(b, fmSrcPort, uint64(f.srcPort))
	b = appendUintField(b, fmDstPort, uint64(f.dstPort))
	b = appendUintField(b, fmIPTos, uint64(f.tos))
	b = appendUintField(b, fmForwardingStatus, uint64(f.fwd))
	b = appendUintField(b, fmIPTTL, uint64(f.ttl))
	b = appendUintField(b, fmTCPFlags, uint64(f.tcpFlags))
	b = appendUintField(b, fmSrcMac, f.srcMac)
	b = appendUintField(b, fmDstMac, f.dstMac)
	b = appendUintField(b, fmVlanID, uint64(f.vlan))
	b = appendUintField(b, fmEtype, uint64(f.etype))
	b = appendUintField(b, fmIcmpType, uint64(f.icmpType))
	b = appendUintField(b, fmIcmpCode, uint64(f.icmpCode))
	b = appendUintField(b, fmSrcVlan, uint64(f.srcVlan))
	b = appendUintField(b, fmDstVlan, uint64(f.dstVlan))
	b = appendUintField(b, fmFragmentID, uint64(f.fragID))
	b = appendUintField(b, fmFragmentOffset, uint64(f.fragOffset))
	b = appendUintField(b, fmIPv6FlowLabel, uint64(f.flowLabel))
	b = appendUintField(b, fmIPFlags, uint64(f.ipFlags))
	b = appendUintField(b, fmObservationDom, uint64(f.domain))
	b = appendUintField(b, fmObservationPoint, uint64(f.point))
	if f.mplsLabels > 0 { // packed repeated uint32
		n := 0
		for _, l := range f.mplsLabel[:f.mplsLabels] {
			n += varintLen(uint64(l))
		}
		b = appendTag(b, fmMplsLabel, wireBytes)
		b = appendVarint(b, uint64(n))
		for _, l := range f.mplsLabel[:f.mplsLabels] {
			b = appendVarint(b, uint64(l))
		}
	}
	for _, ip := range f.mplsIP[:f.mplsIPs] { // repeated bytes: empty ones count
		b = appendTag(b, fmMplsIP, wireBytes)
		b = appendVarint(b, uint64(len(ip)))
		b = append(b, ip...)
	}
	b = appendBytesField(b, fmBgpNextHop, f.bgpNextHop)
	b = appendUintField(b, fmTimeReceivedNs, f.received)
	b = appendUintField(b, fmTimeFlowStartNs, f.start)
	b = appendUintField(b, fmTimeFlowEndNs, f.end)
	return b
}

func appendTag(b []byte, num, wire int) []byte {
	return appendVarint(b, uint64(num)<<3|uint64(wire))
}

func appendUintField(b []byte, num int, v uint64) []byte {
	if v == 0 {
		return b
	}
	return appendVarint(appendTag(b, num, wireVarint), v)
}

func appendBytesField(b []byte, num int, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = appendVarint(appendTag(b, num, wireBytes), uint64(len(v)))
	return append(b, v...)
}

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func varintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
