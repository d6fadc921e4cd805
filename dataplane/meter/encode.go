package meter

import (
	"encoding/binary"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// Enterprise numbers of the elements that IANA does not register.
const (
	// PENReverse is RFC 5103's reverse information element PEN.
	PENReverse = 29305
	// PENCERT is CERT's PEN, whose elements YAF exports and libfixbuf's
	// ipfixDump (--yaf) names; a reverse CERT element sets bit 0x4000.
	PENCERT = 6871
)

// Template IDs.
const (
	TemplateIPv4 = 256
	TemplateIPv6 = 257
)

// CERT (PEN 6871) elements used.
const (
	certInitialTCPFlags        = 14
	certReverseInitialTCPFlags = 14 | 0x4000
	certDNSQRType              = 175
	certDNSQName               = 179
	certSSLServerName          = 294
)

// templateFields returns the fields of the IPv4 or IPv6 template.
func templateFields(v6, biflow, dpi bool) []ipfix.FieldSpec {
	f := []ipfix.FieldSpec{}
	if v6 {
		f = append(f, ipfix.FieldSpec{ID: 27, Length: 16}, ipfix.FieldSpec{ID: 28, Length: 16}) // source/destinationIPv6Address
	} else {
		f = append(f, ipfix.FieldSpec{ID: 8, Length: 4}, ipfix.FieldSpec{ID: 12, Length: 4}) // source/destinationIPv4Address
	}
	icmp := uint16(32) // icmpTypeCodeIPv4
	if v6 {
		icmp = 139 // icmpTypeCodeIPv6
	}
	f = append(f,
		ipfix.FieldSpec{ID: 7, Length: 2},    // sourceTransportPort
		ipfix.FieldSpec{ID: 11, Length: 2},   // destinationTransportPort
		ipfix.FieldSpec{ID: 4, Length: 1},    // protocolIdentifier
		ipfix.FieldSpec{ID: icmp, Length: 2}, // icmpTypeCode
		ipfix.FieldSpec{ID: 1, Length: 8},    // octetDeltaCount
		ipfix.FieldSpec{ID: 2, Length: 8},    // packetDeltaCount
		ipfix.FieldSpec{ID: 152, Length: 8},  // flowStartMilliseconds
		ipfix.FieldSpec{ID: 153, Length: 8},  // flowEndMilliseconds
		ipfix.FieldSpec{ID: 6, Length: 2},    // tcpControlBits
		ipfix.FieldSpec{ID: 58, Length: 2},   // vlanId
		ipfix.FieldSpec{ID: 70, Length: 3},   // mplsTopLabelStackSection
		ipfix.FieldSpec{ID: 52, Length: 1},   // minimumTTL
		ipfix.FieldSpec{ID: 53, Length: 1},   // maximumTTL
		ipfix.FieldSpec{ID: 136, Length: 1},  // flowEndReason
	)
	if biflow {
		f = append(f,
			ipfix.FieldSpec{ID: certInitialTCPFlags, Length: 1, PEN: PENCERT},
			ipfix.FieldSpec{ID: certReverseInitialTCPFlags, Length: 1, PEN: PENCERT},
			ipfix.FieldSpec{ID: 1, Length: 8, PEN: PENReverse},  // reverseOctetDeltaCount
			ipfix.FieldSpec{ID: 2, Length: 8, PEN: PENReverse},  // reversePacketDeltaCount
			ipfix.FieldSpec{ID: 6, Length: 2, PEN: PENReverse},  // reverseTcpControlBits
			ipfix.FieldSpec{ID: 52, Length: 1, PEN: PENReverse}, // reverseMinimumTTL
			ipfix.FieldSpec{ID: 53, Length: 1, PEN: PENReverse}, // reverseMaximumTTL
		)
	}
	if dpi {
		f = append(f,
			ipfix.FieldSpec{ID: 459, Length: ipfix.VarLen}, // httpRequestMethod
			ipfix.FieldSpec{ID: 460, Length: ipfix.VarLen}, // httpRequestHost
			ipfix.FieldSpec{ID: certSSLServerName, Length: ipfix.VarLen, PEN: PENCERT},
			ipfix.FieldSpec{ID: certDNSQName, Length: ipfix.VarLen, PEN: PENCERT},
			ipfix.FieldSpec{ID: certDNSQRType, Length: 2, PEN: PENCERT},
		)
	}
	return f
}

// Templates returns the template records the meter exports under cfg:
// TemplateIPv4, then TemplateIPv6.
func Templates(cfg Config) [2][]byte {
	return [2][]byte{
		ipfix.AppendTemplateRecord(nil, TemplateIPv4, templateFields(false, cfg.Biflow, cfg.DPI)),
		ipfix.AppendTemplateRecord(nil, TemplateIPv6, templateFields(true, cfg.Biflow, cfg.DPI)),
	}
}

// encoder builds IPFIX messages of flow records: the templates in the
// first message, then data sets. Finished messages go to emit, which must
// not keep them. Owned by the meter's goroutine.
type encoder struct {
	w       ipfix.MessageWriter
	maxLen  int
	biflow  bool
	dpi     bool
	tpls    [2][]byte
	tplSent bool
	buf     []byte
	rec     []byte
	open    bool
	setID   uint16
	emit    func([]byte)
}

func (e *encoder) init(cfg Config, emit func([]byte)) {
	e.w = ipfix.MessageWriter{DomainID: cfg.ObservationDomain}
	e.maxLen = cfg.MessageSize
	e.biflow, e.dpi = cfg.Biflow, cfg.DPI
	e.tpls = Templates(cfg)
	e.buf = make([]byte, 0, cfg.MessageSize+ipfix.HeaderLenIPFIX)
	e.rec = make([]byte, 0, 1024)
	e.emit = emit
}

func (e *encoder) begin(now int64) {
	e.buf = e.w.Begin(e.buf[:0], exportSeconds(now))
	e.open, e.setID = true, 0
	if !e.tplSent {
		// Templates once: a file, or the one message stream the sink sees.
		e.buf = e.w.BeginSet(e.buf, ipfix.TemplateSetID)
		e.buf = append(e.buf, e.tpls[0]...)
		e.buf = append(e.buf, e.tpls[1]...)
		e.w.AddTemplates(2)
		e.buf = e.w.EndSet(e.buf)
		e.tplSent = true
	}
}

func exportSeconds(ns int64) uint32 {
	if ns <= 0 {
		return 0
	}
	return uint32(ns / 1e9)
}

// add appends flow f's record; now is the capture clock.
func (e *encoder) add(f *flow, d *dpiState, reason uint8, now int64) {
	e.rec = e.appendRecord(e.rec[:0], f, d, reason)
	id := uint16(TemplateIPv4)
	if f.key.v6 {
		id = TemplateIPv6
	}
	need := len(e.rec)
	if e.setID != id {
		need += ipfix.SetHeaderLen
	}
	if e.open && e.w.Len(e.buf)+need > e.maxLen {
		e.finish(now)
	}
	if !e.open {
		e.begin(now)
	}
	if e.setID != id {
		if e.setID != 0 {
			e.buf = e.w.EndSet(e.buf)
		}
		e.buf = e.w.BeginSet(e.buf, id)
		e.setID = id
	}
	e.buf = append(e.buf, e.rec...)
	e.w.AddRecords(1)
}

// finish closes the open message with the export time now (the capture
// clock: the time the message leaves the metering process, in its time)
// and emits it.
func (e *encoder) finish(now int64) {
	if !e.open {
		return
	}
	if e.setID != 0 {
		e.buf = e.w.EndSet(e.buf)
	}
	binary.BigEndian.PutUint32(e.buf[4:8], exportSeconds(now))
	msg, err := e.w.Finish(e.buf)
	e.open, e.setID = false, 0
	if err != nil {
		panic("BUG: meter: message longer than MessageSize")
	}
	e.emit(msg)
	e.buf = e.buf[:0]
}

func (e *encoder) appendRecord(b []byte, f *flow, d *dpiState, reason uint8) []byte {
	k := &f.key
	if k.v6 {
		b = append(b, k.src[:]...)
		b = append(b, k.dst[:]...)
	} else {
		b = append(b, k.src[:4]...)
		b = append(b, k.dst[:4]...)
	}
	icmp := k.proto == protoICMP || k.proto == protoICMPv6
	if icmp {
		b = append(b, 0, 0, 0, 0)
	} else {
		b = binary.BigEndian.AppendUint16(b, k.sport)
		b = binary.BigEndian.AppendUint16(b, k.dport)
	}
	b = append(b, k.proto)
	if icmp {
		b = binary.BigEndian.AppendUint16(b, k.dport)
	} else {
		b = append(b, 0, 0)
	}
	b = binary.BigEndian.AppendUint64(b, f.octets)
	b = binary.BigEndian.AppendUint64(b, f.packets)
	b = binary.BigEndian.AppendUint64(b, uint64(f.start/1e6))
	b = binary.BigEndian.AppendUint64(b, uint64(f.last/1e6))
	b = binary.BigEndian.AppendUint16(b, uint16(f.flags))
	b = binary.BigEndian.AppendUint16(b, k.vlan)
	b = append(b, byte(f.mpls>>16), byte(f.mpls>>8), byte(f.mpls))
	minTTL, maxTTL := f.minTTL, f.maxTTL
	if f.packets == 0 {
		minTTL = 0
	}
	b = append(b, minTTL, maxTTL, reason)
	if e.biflow {
		b = append(b, f.initFlags, f.rInitFlag)
		b = binary.BigEndian.AppendUint64(b, f.rOctets)
		b = binary.BigEndian.AppendUint64(b, f.rPackets)
		b = binary.BigEndian.AppendUint16(b, uint16(f.rFlags))
		rMin := f.rMinTTL
		if f.rPackets == 0 {
			rMin = 0
		}
		b = append(b, rMin, f.rMaxTTL)
	}
	if e.dpi {
		b = d.appendFields(b)
	}
	return b
}
