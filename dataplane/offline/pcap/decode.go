package pcap

import (
	"encoding/binary"
	"net/netip"
)

const protoUDP = 17

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
	switch decodeLink(linkType, pkt, d, &r.hdrs) {
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

// decodeLink reads the packet's headers with ParseHeaders into p, then the
// UDP datagram.
func decodeLink(linkType uint32, pkt []byte, d *Datagram, p *Headers) skip {
	switch ParseHeaders(linkType, pkt, p) {
	case SkipNone:
	case SkipLinkType:
		return skipLink
	case SkipNonIP:
		return skipNonIP
	case SkipTruncated:
		return skipTruncated
	default:
		return skipMalformed
	}
	if p.Proto != protoUDP {
		return skipNonUDP
	}
	if p.FragOff != 0 {
		return skipFragment // not the first fragment
	}
	why := decodeUDP(p.Payload, p.PayloadLen, p.FragMore, d)
	if why == skipNone {
		var src, dst netip.Addr
		if p.V6 {
			src, dst = netip.AddrFrom16(p.Src), netip.AddrFrom16(p.Dst)
		} else {
			src, dst = netip.AddrFrom4([4]byte(p.Src[:4])), netip.AddrFrom4([4]byte(p.Dst[:4]))
		}
		d.Src = netip.AddrPortFrom(src, d.Src.Port())
		d.Dst = netip.AddrPortFrom(dst, d.Dst.Port())
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
