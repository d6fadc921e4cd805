package pcap

import "encoding/binary"

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

// IPv6 extension headers ParseHeaders walks over.
const (
	protoHopByHop = 0
	protoRouting  = 43
	protoFragment = 44
	protoAH       = 51
	protoDestOpts = 60
	protoMobility = 135
	protoHIP      = 139
	protoShim6    = 140
)

// Skip says why ParseHeaders could not read a packet's IP header.
type Skip uint8

// Skip reasons.
const (
	SkipNone      Skip = iota
	SkipLinkType       // a link-layer type ParseHeaders does not decode
	SkipNonIP          // not IPv4 or IPv6 (ARP, LLDP, ...)
	SkipTruncated      // the snapshot length cut a header
	SkipMalformed      // inconsistent header (bad IHL, version, lengths)
)

// Headers is what ParseHeaders reads of a captured packet's link-layer and
// IP headers. Payload is a view into the captured bytes, valid as long as
// they are.
type Headers struct {
	V6       bool
	Src, Dst [16]byte // IPv4 in the first 4 octets, the rest zero
	// Proto is the transport protocol: after IPv6 extension headers, and
	// for a later IPv6 fragment the one its fragment header names.
	Proto   uint8
	TTL     uint8 // or hop limit
	VLAN    uint16
	MPLS    uint32 // top label stack entry (label, TC, S) when HasMPLS
	HasMPLS bool
	// IPLen is the IP total length (headers and payload) as on the wire.
	IPLen int
	// Frag is set for any fragment; FragOff is its offset in octets,
	// FragMore the more-fragments flag, FragID the identification.
	Frag, FragMore bool
	FragOff        uint16
	FragID         uint32
	// Payload is the IP payload after the extension headers, cut to the
	// IP length and maybe by the snapshot length; PayloadLen is its length
	// according to the IP header. A later fragment (FragOff != 0) has
	// the fragment's bytes.
	Payload    []byte
	PayloadLen int
}

// ParseHeaders decodes the link-layer and IP headers of one captured packet
// of the given link type into p: VLAN tags (the outer ID is kept) and MPLS
// labels (the top entry is kept) are popped, IPv6 extension headers are
// walked. It allocates nothing.
func ParseHeaders(linkType uint32, b []byte, p *Headers) Skip {
	p.VLAN, p.MPLS, p.HasMPLS = 0, 0, false
	switch linkType {
	case LinkTypeEthernet:
		if len(b) < 14 {
			return SkipTruncated
		}
		return parseEtherType(binary.BigEndian.Uint16(b[12:14]), b[14:], p)
	case LinkTypeLinuxSLL:
		if len(b) < 16 {
			return SkipTruncated
		}
		return parseEtherType(binary.BigEndian.Uint16(b[14:16]), b[16:], p)
	case LinkTypeSLL2:
		if len(b) < 20 {
			return SkipTruncated
		}
		return parseEtherType(binary.BigEndian.Uint16(b[0:2]), b[20:], p)
	case LinkTypeRaw, LinkTypeRawOBSD, LinkTypeIPv4, LinkTypeIPv6:
		// Told apart by the version nibble; like Wireshark, an IPv6
		// packet on LINKTYPE_IPV4 (or the reverse) is decoded anyway.
		return parseIP(b, p)
	case LinkTypeRawBSD:
		// DLT 12 is raw IP except on OpenBSD, where it is loopback. A
		// loopback header starts with 0x00 or a small address family,
		// never with an IP version nibble.
		if len(b) > 0 && (b[0]>>4 == 4 || b[0]>>4 == 6) {
			return parseIP(b, p)
		}
		return parseLoopback(b, p)
	case LinkTypeNull, LinkTypeLoop:
		return parseLoopback(b, p)
	}
	return SkipLinkType
}

// parseLoopback decodes a BSD loopback packet: a 4-byte address family, in
// the byte order of the capturing host (NULL) or in network order (LOOP).
// Both orders are accepted for both link types.
func parseLoopback(b []byte, p *Headers) Skip {
	if len(b) < 4 {
		return SkipTruncated
	}
	af := binary.LittleEndian.Uint32(b)
	if af > 0xffff {
		af = binary.BigEndian.Uint32(b)
	}
	switch af {
	case 2: // AF_INET everywhere
		return parseIPv4(b[4:], p)
	case 10, 23, 24, 28, 30: // AF_INET6: Linux, Windows, NetBSD/OpenBSD, FreeBSD, Darwin
		return parseIPv6(b[4:], p)
	}
	return SkipNonIP
}

func parseEtherType(et uint16, b []byte, p *Headers) Skip {
	for {
		switch et {
		case etherTypeIPv4:
			return parseIPv4(b, p)
		case etherTypeIPv6:
			return parseIPv6(b, p)
		case etherTypeVLAN, etherTypeQinQ, etherTypeQinQv1:
			if len(b) < 4 {
				return SkipTruncated
			}
			if p.VLAN == 0 {
				p.VLAN = binary.BigEndian.Uint16(b[0:2]) & 0x0fff
			}
			et = binary.BigEndian.Uint16(b[2:4])
			b = b[4:]
		case etherTypeMPLS, etherTypeMPLSmc:
			for n := 0; ; n++ {
				if len(b) < 4 {
					return SkipTruncated
				}
				if n == 0 {
					p.MPLS = uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2])
					p.HasMPLS = true
				}
				bottom := b[2]&1 != 0
				b = b[4:]
				if bottom {
					break
				}
			}
			// No protocol field follows an MPLS label stack: guess from
			// the IP version nibble.
			return parseIP(b, p)
		default:
			return SkipNonIP
		}
	}
}

func parseIP(b []byte, p *Headers) Skip {
	if len(b) == 0 {
		return SkipTruncated
	}
	switch b[0] >> 4 {
	case 4:
		return parseIPv4(b, p)
	case 6:
		return parseIPv6(b, p)
	}
	return SkipNonIP
}

func parseIPv4(b []byte, p *Headers) Skip {
	if len(b) < 20 {
		return SkipTruncated
	}
	if b[0]>>4 != 4 {
		return SkipMalformed
	}
	hl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if total == 0 {
		// Captured before segmentation offload filled it in: the
		// packet is as long as what was captured.
		total = len(b)
	}
	if hl < 20 || total < hl {
		return SkipMalformed
	}
	if len(b) < hl {
		return SkipTruncated
	}
	p.V6 = false
	p.Src, p.Dst = [16]byte{}, [16]byte{}
	copy(p.Src[:4], b[12:16])
	copy(p.Dst[:4], b[16:20])
	p.Proto, p.TTL, p.IPLen = b[9], b[8], total
	fo := binary.BigEndian.Uint16(b[6:8])
	p.FragOff = (fo & 0x1fff) * 8
	p.FragMore = fo&0x2000 != 0
	p.Frag = p.FragOff != 0 || p.FragMore
	p.FragID = uint32(binary.BigEndian.Uint16(b[4:6]))
	if len(b) > total {
		b = b[:total] // link-layer padding
	}
	p.Payload, p.PayloadLen = b[hl:], total-hl
	return SkipNone
}

func parseIPv6(b []byte, p *Headers) Skip {
	if len(b) < 40 {
		return SkipTruncated
	}
	if b[0]>>4 != 6 {
		return SkipMalformed
	}
	total := 40 + int(binary.BigEndian.Uint16(b[4:6]))
	if total == 40 && len(b) > 40 {
		// A jumbogram or a packet captured before segmentation
		// offload: as long as what was captured.
		total = len(b)
	}
	p.V6 = true
	copy(p.Src[:], b[8:24])
	copy(p.Dst[:], b[24:40])
	p.TTL, p.IPLen = b[7], total
	p.Frag, p.FragMore, p.FragOff, p.FragID = false, false, 0, 0
	if len(b) > total {
		b = b[:total] // link-layer padding
	}
	next := b[6]
	off := 40
	for {
		switch next {
		case protoHopByHop, protoRouting, protoDestOpts, protoAH, protoFragment, protoMobility, protoHIP, protoShim6:
		default:
			p.Proto = next
			if off > total {
				return SkipMalformed
			}
			if off > len(b) {
				return SkipTruncated
			}
			p.Payload, p.PayloadLen = b[off:], total-off
			return SkipNone
		}
		if off+8 > total {
			return SkipMalformed
		}
		if off+8 > len(b) {
			return SkipTruncated
		}
		h := b[off:]
		var n int
		switch next {
		case protoFragment:
			n = 8
			fo := binary.BigEndian.Uint16(h[2:4])
			p.FragOff = fo &^ 7
			p.FragMore = fo&1 != 0
			p.Frag = p.FragOff != 0 || p.FragMore
			p.FragID = binary.BigEndian.Uint32(h[4:8])
			if p.FragOff != 0 {
				// Only the first fragment carries the next headers.
				p.Proto = h[0]
				p.Payload, p.PayloadLen = b[off+8:], total-off-8
				return SkipNone
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
