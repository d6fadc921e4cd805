package pcap

import (
	"encoding/binary"
	"net/netip"
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
	protoUDP      = 17
	protoRouting  = 43
	protoFragment = 44
	protoAH       = 51
	protoDestOpts = 60
)

// skip is why a packet holds no datagram.
type skip uint8

const (
	skipNone skip = iota
	skipNonIP
	skipNonUDP
	skipFragment
	skipTruncated
	skipMalformed
	skipLink
)

// decodeLink decodes one captured packet of the given link type. It fills
// d's endpoints and payload and returns true if the packet holds a whole
// UDP datagram; otherwise it counts the reason in r.stats.
func (r *Reader) decodeLink(linkType uint32, pkt []byte, d *Datagram) bool {
	r.link = linkType
	switch decodeLink(linkType, pkt, d) {
	case skipNone:
		r.stats.Datagrams++
		return true
	case skipNonIP:
		r.stats.NonIP++
	case skipNonUDP:
		r.stats.NonUDP++
	case skipFragment:
		r.stats.Fragment++
	case skipTruncated:
		r.stats.Truncated++
	case skipMalformed:
		r.stats.Malformed++
	case skipLink:
		r.stats.UnsupportedLink++
	}
	return false
}

func decodeLink(linkType uint32, pkt []byte, d *Datagram) skip {
	switch linkType {
	case LinkTypeEthernet:
		if len(pkt) < 14 {
			return skipTruncated
		}
		return decodeEtherType(binary.BigEndian.Uint16(pkt[12:14]), pkt[14:], d)
	case LinkTypeLinuxSLL:
		if len(pkt) < 16 {
			return skipTruncated
		}
		return decodeEtherType(binary.BigEndian.Uint16(pkt[14:16]), pkt[16:], d)
	case LinkTypeSLL2:
		if len(pkt) < 20 {
			return skipTruncated
		}
		return decodeEtherType(binary.BigEndian.Uint16(pkt[0:2]), pkt[20:], d)
	case LinkTypeRaw, LinkTypeRawOBSD, LinkTypeIPv4, LinkTypeIPv6:
		// Told apart by the version nibble; like Wireshark, an IPv6
		// packet on LINKTYPE_IPV4 (or the reverse) is decoded anyway.
		return decodeIP(pkt, d)
	case LinkTypeRawBSD:
		// DLT 12 is raw IP except on OpenBSD, where it is loopback. A
		// loopback header starts with 0x00 or a small address family,
		// never with an IP version nibble.
		if len(pkt) > 0 && (pkt[0]>>4 == 4 || pkt[0]>>4 == 6) {
			return decodeIP(pkt, d)
		}
		return decodeLoopback(pkt, d)
	case LinkTypeNull, LinkTypeLoop:
		return decodeLoopback(pkt, d)
	}
	return skipLink
}

// decodeLoopback decodes a BSD loopback packet: a 4-byte address family, in
// the byte order of the capturing host (NULL) or in network order (LOOP).
// Both orders are accepted for both link types.
func decodeLoopback(pkt []byte, d *Datagram) skip {
	if len(pkt) < 4 {
		return skipTruncated
	}
	af := binary.LittleEndian.Uint32(pkt)
	if af > 0xffff {
		af = binary.BigEndian.Uint32(pkt)
	}
	switch af {
	case 2: // AF_INET everywhere
		return decodeIPv4(pkt[4:], d)
	case 10, 23, 24, 28, 30: // AF_INET6: Linux, Windows, NetBSD/OpenBSD, FreeBSD, Darwin
		return decodeIPv6(pkt[4:], d)
	}
	return skipNonIP
}

// decodeEtherType decodes the payload of a frame with the given EtherType,
// after popping any VLAN tags and MPLS labels.
func decodeEtherType(et uint16, pkt []byte, d *Datagram) skip {
	for {
		switch et {
		case etherTypeIPv4:
			return decodeIPv4(pkt, d)
		case etherTypeIPv6:
			return decodeIPv6(pkt, d)
		case etherTypeVLAN, etherTypeQinQ, etherTypeQinQv1:
			if len(pkt) < 4 {
				return skipTruncated
			}
			et = binary.BigEndian.Uint16(pkt[2:4])
			pkt = pkt[4:]
		case etherTypeMPLS, etherTypeMPLSmc:
			for {
				if len(pkt) < 4 {
					return skipTruncated
				}
				bottom := pkt[2]&1 != 0
				pkt = pkt[4:]
				if bottom {
					break
				}
			}
			// No protocol field follows an MPLS label stack: guess from
			// the IP version nibble.
			return decodeIP(pkt, d)
		default:
			return skipNonIP
		}
	}
}

// decodeIP decodes an IPv4 or IPv6 packet, told apart by its version.
func decodeIP(pkt []byte, d *Datagram) skip {
	if len(pkt) == 0 {
		return skipTruncated
	}
	switch pkt[0] >> 4 {
	case 4:
		return decodeIPv4(pkt, d)
	case 6:
		return decodeIPv6(pkt, d)
	}
	return skipNonIP
}

func decodeIPv4(pkt []byte, d *Datagram) skip {
	if len(pkt) < 20 {
		return skipTruncated
	}
	if pkt[0]>>4 != 4 {
		return skipMalformed
	}
	hl := int(pkt[0]&0x0f) * 4
	if hl < 20 {
		return skipMalformed
	}
	total := int(binary.BigEndian.Uint16(pkt[2:4]))
	if total == 0 {
		// Captured before segmentation offload filled it in: the
		// packet is as long as what was captured.
		total = len(pkt)
	}
	if total < hl {
		return skipMalformed
	}
	if len(pkt) < hl {
		return skipTruncated
	}
	if pkt[9] != protoUDP {
		return skipNonUDP
	}
	frag := binary.BigEndian.Uint16(pkt[6:8])
	if frag&0x1fff != 0 {
		return skipFragment // not the first fragment
	}
	more := frag&0x2000 != 0
	if len(pkt) > total {
		pkt = pkt[:total] // link-layer padding
	}
	var src, dst [4]byte
	copy(src[:], pkt[12:16])
	copy(dst[:], pkt[16:20])
	why := decodeUDP(pkt[hl:], total-hl, more, d)
	if why == skipNone {
		d.Src = netip.AddrPortFrom(netip.AddrFrom4(src), d.Src.Port())
		d.Dst = netip.AddrPortFrom(netip.AddrFrom4(dst), d.Dst.Port())
	}
	return why
}

func decodeIPv6(pkt []byte, d *Datagram) skip {
	if len(pkt) < 40 {
		return skipTruncated
	}
	if pkt[0]>>4 != 6 {
		return skipMalformed
	}
	total := 40 + int(binary.BigEndian.Uint16(pkt[4:6]))
	if total == 40 {
		// A jumbogram or a packet captured before segmentation
		// offload: as long as what was captured.
		total = len(pkt)
	}
	if len(pkt) > total {
		pkt = pkt[:total] // link-layer padding
	}
	next := pkt[6]
	off := 40
	more := false
	for next != protoUDP {
		switch next {
		case protoHopByHop, protoRouting, protoDestOpts, protoAH, protoFragment:
		default:
			return skipNonUDP
		}
		if off+8 > total {
			return skipMalformed
		}
		if off+8 > len(pkt) {
			return skipTruncated
		}
		h := pkt[off:]
		var n int
		switch next {
		case protoFragment:
			n = 8
			fo := binary.BigEndian.Uint16(h[2:4])
			if fo&0xfff8 != 0 {
				return skipFragment // not the first fragment
			}
			more = fo&1 != 0
		case protoAH:
			n = (int(h[1]) + 2) * 4
		default:
			n = (int(h[1]) + 1) * 8
		}
		next = h[0]
		off += n
	}
	if off > total {
		return skipMalformed
	}
	if off > len(pkt) {
		return skipTruncated
	}
	why := decodeUDP(pkt[off:], total-off, more, d)
	if why == skipNone {
		var src, dst [16]byte
		copy(src[:], pkt[8:24])
		copy(dst[:], pkt[24:40])
		d.Src = netip.AddrPortFrom(netip.AddrFrom16(src), d.Src.Port())
		d.Dst = netip.AddrPortFrom(netip.AddrFrom16(dst), d.Dst.Port())
	}
	return why
}

// decodeUDP decodes a UDP datagram from the captured bytes of an IP
// payload whose length according to the IP header is iplen. more tells that
// the packet is a first fragment. On success it sets d.Payload and the
// ports of d.Src and d.Dst; the caller sets the addresses.
func decodeUDP(pkt []byte, iplen int, more bool, d *Datagram) skip {
	if len(pkt) < 8 {
		switch {
		case more:
			return skipFragment
		case iplen < 8:
			return skipMalformed
		}
		return skipTruncated
	}
	n := int(binary.BigEndian.Uint16(pkt[4:6]))
	switch {
	case n > iplen && more:
		return skipFragment // the rest of the datagram is in later fragments
	case n < 8 || n > iplen:
		return skipMalformed
	case n > len(pkt):
		return skipTruncated
	}
	d.Src = netip.AddrPortFrom(netip.Addr{}, binary.BigEndian.Uint16(pkt[0:2]))
	d.Dst = netip.AddrPortFrom(netip.Addr{}, binary.BigEndian.Uint16(pkt[2:4]))
	d.Payload = pkt[8:n]
	return skipNone
}
