package meter

import (
	"encoding/binary"

	"github.com/sluice-flow/sluice/dataplane/offline/pcap"
)

// EtherTypes.
const (
	etherTypeIPv4   = 0x0800
	etherTypeIPv6   = 0x86dd
	etherTypeVLAN   = 0x8100 // 802.1Q
	etherTypeQinQ   = 0x88a8 // 802.1ad
	etherTypeQinQv1 = 0x9100 // pre-standard stacked VLAN
	etherTypeMPLS   = 0x8847
	etherTypeMPLSmc = 0x8848
)

// IP protocol numbers.
const (
	protoHopByHop = 0
	protoICMP     = 1
	protoTCP      = 6
	protoUDP      = 17
	protoRouting  = 43
	protoFragment = 44
	protoAH       = 51
	protoICMPv6   = 58
	protoDestOpts = 60
	protoMobility = 135
	protoHIP      = 139
	protoShim6    = 140
	protoSCTP     = 132
	protoUDPLite  = 136
	protoDCCP     = 33
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

// packet is what the parser keeps of one captured packet: header values and
// a view of the transport payload (valid as long as the capture buffer).
type packet struct {
	ts       int64 // capture time, Unix nanoseconds
	v6       bool
	src, dst [16]byte // IPv4 in the first 4 octets
	proto    uint8
	ttl      uint8
	tcpFlags uint8
	vlan     uint16 // outer VLAN ID, 0 when untagged
	mpls     uint32 // top label stack entry (label, TC, S), 0 when none
	hasMPLS  bool
	sport    uint16
	dport    uint16
	icmp     uint16 // ICMP type<<8 | code
	ipLen    uint32 // IP total length (header and payload), as on the wire

	// Fragments: frag is set for any fragment; fragOff is the offset in
	// octets; fragMore is the MF flag; fragID the identification.
	frag     bool
	fragMore bool
	fragOff  uint16
	fragID   uint32
	// l4 tells that sport/dport (or icmp) were read from this packet.
	l4 bool

	payload []byte // transport payload as captured (may be cut by snaplen)
}

// parse decodes one captured packet of the given link type into p. It reads
// only the headers and allocates nothing; p.payload is a view into b.
func parse(linkType uint32, b []byte, p *packet) Reason {
	p.vlan, p.mpls, p.hasMPLS = 0, 0, false
	switch linkType {
	case pcap.LinkTypeEthernet:
		if len(b) < 14 {
			return ReasonTruncated
		}
		return parseEtherType(binary.BigEndian.Uint16(b[12:14]), b[14:], p)
	case pcap.LinkTypeLinuxSLL:
		if len(b) < 16 {
			return ReasonTruncated
		}
		return parseEtherType(binary.BigEndian.Uint16(b[14:16]), b[16:], p)
	case pcap.LinkTypeSLL2:
		if len(b) < 20 {
			return ReasonTruncated
		}
		return parseEtherType(binary.BigEndian.Uint16(b[0:2]), b[20:], p)
	case pcap.LinkTypeRaw, pcap.LinkTypeRawOBSD, pcap.LinkTypeIPv4, pcap.LinkTypeIPv6:
		return parseIP(b, p)
	case pcap.LinkTypeRawBSD:
		if len(b) > 0 && (b[0]>>4 == 4 || b[0]>>4 == 6) {
			return parseIP(b, p)
		}
		return parseLoopback(b, p)
	case pcap.LinkTypeNull, pcap.LinkTypeLoop:
		return parseLoopback(b, p)
	}
	return ReasonLinkType
}

// parseLoopback decodes a BSD loopback packet (4-byte address family in
// either byte order).
func parseLoopback(b []byte, p *packet) Reason {
	if len(b) < 4 {
		return ReasonTruncated
	}
	af := binary.LittleEndian.Uint32(b)
	if af > 0xffff {
		af = binary.BigEndian.Uint32(b)
	}
	switch af {
	case 2:
		return parseIPv4(b[4:], p)
	case 10, 23, 24, 28, 30:
		return parseIPv6(b[4:], p)
	}
	return ReasonNonIP
}

// parseEtherType pops VLAN tags (keeping the outer VLAN ID) and MPLS labels
// (keeping the top label) and parses the IP packet.
func parseEtherType(et uint16, b []byte, p *packet) Reason {
	for {
		switch et {
		case etherTypeIPv4:
			return parseIPv4(b, p)
		case etherTypeIPv6:
			return parseIPv6(b, p)
		case etherTypeVLAN, etherTypeQinQ, etherTypeQinQv1:
			if len(b) < 4 {
				return ReasonTruncated
			}
			if p.vlan == 0 {
				p.vlan = binary.BigEndian.Uint16(b[0:2]) & 0x0fff
			}
			et = binary.BigEndian.Uint16(b[2:4])
			b = b[4:]
		case etherTypeMPLS, etherTypeMPLSmc:
			for n := 0; ; n++ {
				if len(b) < 4 {
					return ReasonTruncated
				}
				if n == 0 {
					p.mpls = uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2])
					p.hasMPLS = true
				}
				bottom := b[2]&1 != 0
				b = b[4:]
				if bottom {
					break
				}
			}
			return parseIP(b, p)
		default:
			return ReasonNonIP
		}
	}
}

func parseIP(b []byte, p *packet) Reason {
	if len(b) == 0 {
		return ReasonTruncated
	}
	switch b[0] >> 4 {
	case 4:
		return parseIPv4(b, p)
	case 6:
		return parseIPv6(b, p)
	}
	return ReasonNonIP
}

func parseIPv4(b []byte, p *packet) Reason {
	if len(b) < 20 {
		return ReasonTruncated
	}
	if b[0]>>4 != 4 {
		return ReasonMalformed
	}
	hl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if total == 0 {
		total = len(b) // captured before segmentation offload filled it in
	}
	if hl < 20 || total < hl {
		return ReasonMalformed
	}
	if len(b) < hl {
		return ReasonTruncated
	}
	p.v6 = false
	p.src = [16]byte{}
	p.dst = [16]byte{}
	copy(p.src[:4], b[12:16])
	copy(p.dst[:4], b[16:20])
	p.proto = b[9]
	p.ttl = b[8]
	p.ipLen = uint32(total)
	fo := binary.BigEndian.Uint16(b[6:8])
	p.fragOff = (fo & 0x1fff) * 8
	p.fragMore = fo&0x2000 != 0
	p.frag = p.fragOff != 0 || p.fragMore
	p.fragID = uint32(binary.BigEndian.Uint16(b[4:6]))
	if len(b) > total {
		b = b[:total] // link-layer padding
	}
	return parseL4(b[hl:], p)
}

func parseIPv6(b []byte, p *packet) Reason {
	if len(b) < 40 {
		return ReasonTruncated
	}
	if b[0]>>4 != 6 {
		return ReasonMalformed
	}
	total := 40 + int(binary.BigEndian.Uint16(b[4:6]))
	if total == 40 && len(b) > 40 {
		total = len(b) // jumbogram or offloaded
	}
	p.v6 = true
	copy(p.src[:], b[8:24])
	copy(p.dst[:], b[24:40])
	p.ttl = b[7]
	p.ipLen = uint32(total)
	p.frag, p.fragMore, p.fragOff, p.fragID = false, false, 0, 0
	if len(b) > total {
		b = b[:total]
	}
	next := b[6]
	off := 40
	for {
		switch next {
		case protoHopByHop, protoRouting, protoDestOpts, protoAH, protoFragment, protoMobility, protoHIP, protoShim6:
		default:
			p.proto = next
			if off > len(b) {
				return ReasonTruncated
			}
			return parseL4(b[off:], p)
		}
		if off+8 > total {
			return ReasonMalformed
		}
		if off+8 > len(b) {
			return ReasonTruncated
		}
		h := b[off:]
		var n int
		switch next {
		case protoFragment:
			n = 8
			fo := binary.BigEndian.Uint16(h[2:4])
			p.fragOff = fo &^ 7
			p.fragMore = fo&1 != 0
			p.frag = p.fragOff != 0 || p.fragMore
			p.fragID = binary.BigEndian.Uint32(h[4:8])
			if p.fragOff != 0 {
				// Only the first fragment carries the next headers.
				p.proto = h[0]
				return parseL4(nil, p)
			}
		case protoAH:
			n = (int(h[1]) + 2) * 4
		default:
			n = (int(h[1]) + 1) * 8
		}
		next = h[0]
		off += n
	}
}

// parseL4 reads the transport header at b, the IP payload (cut to the IP
// length, maybe also by the snapshot length). A later fragment has no
// transport header: its ports come from the fragment table.
func parseL4(b []byte, p *packet) Reason {
	p.sport, p.dport, p.icmp, p.tcpFlags, p.l4, p.payload = 0, 0, 0, 0, false, nil
	if p.fragOff != 0 {
		return reasonNone
	}
	switch p.proto {
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
