package meter

import (
	"encoding/binary"

	"github.com/sluice-flow/sluice/dataplane/offline/pcap"
)

// IP protocol numbers.
const (
	protoICMP    = 1
	protoTCP     = 6
	protoUDP     = 17
	protoDCCP    = 33
	protoICMPv6  = 58
	protoSCTP    = 132
	protoUDPLite = 136
)

// Reason is why a packet was not metered. Its String is the label used in
// the summary and in Stats.Skipped.
type Reason uint8

// Skip reasons.
const (
	reasonNone      Reason = iota
	ReasonLinkType         // link-layer type the meter does not decode
	ReasonNonIP            // not IPv4 or IPv6 (ARP, LLDP, ...)
	ReasonTruncated        // snapshot length cut the IP or transport header
	ReasonMalformed        // inconsistent header (bad IHL, version, lengths)
	ReasonFragment         // a later IP fragment whose first fragment was not seen (or not kept: table full)
	ReasonCapture          // the capture file itself is truncated or malformed (what follows is lost)
	numReasons
)

var reasonNames = [numReasons]string{
	"", "link_type", "non_ip", "truncated", "malformed", "fragment_unmatched", "capture_error",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// packet is what the parser keeps of one captured packet: the link and IP
// headers as pcap.ParseHeaders reads them, and the transport header with a
// view of its payload (valid as long as the capture buffer).
type packet struct {
	pcap.Headers
	ts       int64 // capture time, Unix nanoseconds
	tcpFlags uint8
	sport    uint16
	dport    uint16
	icmp     uint16 // ICMP type<<8 | code
	// l4 tells that sport/dport (or icmp) were read from this packet.
	l4 bool

	payload []byte // transport payload as captured (may be cut by snaplen)
}

// skipReasons maps the header parser's reasons to the meter's.
var skipReasons = [...]Reason{
	pcap.SkipNone:      reasonNone,
	pcap.SkipLinkType:  ReasonLinkType,
	pcap.SkipNonIP:     ReasonNonIP,
	pcap.SkipTruncated: ReasonTruncated,
	pcap.SkipMalformed: ReasonMalformed,
}

// parse decodes one captured packet of the given link type into p. It reads
// only the headers and allocates nothing; p.payload is a view into b.
func parse(linkType uint32, b []byte, p *packet) Reason {
	if why := pcap.ParseHeaders(linkType, b, &p.Headers); why != pcap.SkipNone {
		if int(why) < len(skipReasons) {
			return skipReasons[why]
		}
		return ReasonMalformed
	}
	return parseL4(p.Payload, p)
}

// parseL4 reads the transport header at b, the IP payload (cut to the IP
// length, maybe also by the snapshot length). A later fragment has no
// transport header: its ports come from the fragment table.
func parseL4(b []byte, p *packet) Reason {
	p.sport, p.dport, p.icmp, p.tcpFlags, p.l4, p.payload = 0, 0, 0, 0, false, nil
	if p.FragOff != 0 {
		return reasonNone
	}
	switch p.Proto {
	case protoTCP:
		if len(b) < 14 {
			return ReasonTruncated
		}
		p.sport = binary.BigEndian.Uint16(b[0:2])
		p.dport = binary.BigEndian.Uint16(b[2:4])
		p.tcpFlags = b[13]
		p.l4 = true
		if hl := int(b[12]>>4) * 4; hl >= 20 && hl <= len(b) {
			p.payload = b[hl:]
		}
	case protoUDP, protoUDPLite:
		if len(b) < 8 {
			return ReasonTruncated
		}
		p.sport = binary.BigEndian.Uint16(b[0:2])
		p.dport = binary.BigEndian.Uint16(b[2:4])
		p.l4 = true
		p.payload = b[8:]
	case protoSCTP, protoDCCP:
		if len(b) < 4 {
			return ReasonTruncated
		}
		p.sport = binary.BigEndian.Uint16(b[0:2])
		p.dport = binary.BigEndian.Uint16(b[2:4])
		p.l4 = true
	case protoICMP, protoICMPv6:
		if len(b) < 2 {
			return ReasonTruncated
		}
		p.icmp = uint16(b[0])<<8 | uint16(b[1])
		p.l4 = true
	}
	return reasonNone
}
