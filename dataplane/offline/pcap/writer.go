package pcap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"
)

// WriterConfig sets the file header of a Writer.
type WriterConfig struct {
	// LinkType is the link-layer type of every packet: LinkTypeEthernet,
	// LinkTypeRaw, LinkTypeNull, LinkTypeLoop, LinkTypeLinuxSLL,
	// LinkTypeSLL2, LinkTypeIPv4 or LinkTypeIPv6 for WriteUDP; any value
	// for WritePacket.
	LinkType uint32
	// Nanosecond selects nanosecond timestamps (magic 0xa1b23c4d) instead
	// of microseconds.
	Nanosecond bool
	// ByteOrder of the file; nil means little-endian.
	ByteOrder binary.ByteOrder
	// Snaplen is the snapshot length written in the header; 0 means
	// MaxPacketSize. Longer packets are refused.
	Snaplen uint32
}

// Writer writes a classic pcap file. It is meant for tests: WriteUDP builds
// a complete frame with valid IPv4 or IPv6 and UDP checksums.
// It is not safe for concurrent use.
type Writer struct {
	w     io.Writer
	cfg   WriterConfig
	ipID  uint16
	frame []byte
	rec   []byte
}

// ErrWriter is wrapped by the errors of Writer for arguments it cannot
// write.
var ErrWriter = errors.New("pcap: cannot write packet")

// NewWriter writes the header of a little-endian, microsecond classic pcap
// file with the given link type to w and returns a Writer for its packets.
func NewWriter(w io.Writer, linkType uint32) (*Writer, error) {
	return NewWriterConfig(w, WriterConfig{LinkType: linkType})
}

// NewWriterConfig is NewWriter with a choice of timestamp resolution, byte
// order and snapshot length.
func NewWriterConfig(w io.Writer, cfg WriterConfig) (*Writer, error) {
	if cfg.ByteOrder == nil {
		cfg.ByteOrder = binary.LittleEndian
	}
	if cfg.Snaplen == 0 {
		cfg.Snaplen = MaxPacketSize
	}
	var h [24]byte
	magic := uint32(magicMicro)
	if cfg.Nanosecond {
		magic = magicNano
	}
	o := cfg.ByteOrder
	o.PutUint32(h[0:4], magic)
	o.PutUint16(h[4:6], 2)
	o.PutUint16(h[6:8], 4)
	o.PutUint32(h[16:20], cfg.Snaplen)
	o.PutUint32(h[20:24], cfg.LinkType)
	if _, err := w.Write(h[:]); err != nil {
		return nil, fmt.Errorf("pcap: writing file header: %w", err)
	}
	return &Writer{w: w, cfg: cfg}, nil
}

// WriteUDP writes one packet holding a UDP datagram from src to dst, framed
// for the Writer's link type. src and dst must both be IPv4 (or
// IPv4-mapped IPv6) or both IPv6. Ethernet frames are padded to the
// 60-byte minimum.
func (w *Writer) WriteUDP(t time.Time, src, dst netip.AddrPort, payload []byte) error {
	sa, da := src.Addr().Unmap(), dst.Addr().Unmap()
	if !sa.IsValid() || !da.IsValid() || sa.Is4() != da.Is4() {
		return fmt.Errorf("%w: addresses %v and %v are not of one IP family", ErrWriter, src.Addr(), dst.Addr())
	}
	v4 := sa.Is4()
	b := w.frame[:0]
	switch w.cfg.LinkType {
	case LinkTypeEthernet:
		b = append(b, 0x02, 0, 0, 0, 0, 0x02) // destination MAC, locally administered
		b = append(b, 0x02, 0, 0, 0, 0, 0x01) // source MAC
		b = binary.BigEndian.AppendUint16(b, etherType(v4))
	case LinkTypeLinuxSLL:
		b = binary.BigEndian.AppendUint16(b, 0) // packet type: to us
		b = binary.BigEndian.AppendUint16(b, 1) // ARPHRD_ETHER
		b = binary.BigEndian.AppendUint16(b, 6) // address length
		b = append(b, 0x02, 0, 0, 0, 0, 0x01, 0, 0)
		b = binary.BigEndian.AppendUint16(b, etherType(v4))
	case LinkTypeSLL2:
		b = binary.BigEndian.AppendUint16(b, etherType(v4))
		b = binary.BigEndian.AppendUint16(b, 0) // reserved
		b = binary.BigEndian.AppendUint32(b, 1) // interface index
		b = binary.BigEndian.AppendUint16(b, 1) // ARPHRD_ETHER
		b = append(b, 0, 6)                     // packet type, address length
		b = append(b, 0x02, 0, 0, 0, 0, 0x01, 0, 0)
	case LinkTypeNull, LinkTypeLoop:
		af := uint32(2)
		if !v4 {
			af = 24 // AF_INET6 on NetBSD and OpenBSD
		}
		var h [4]byte
		if w.cfg.LinkType == LinkTypeNull {
			w.cfg.ByteOrder.PutUint32(h[:], af)
		} else {
			binary.BigEndian.PutUint32(h[:], af)
		}
		b = append(b, h[:]...)
	case LinkTypeRaw:
	case LinkTypeIPv4, LinkTypeIPv6:
		if v4 != (w.cfg.LinkType == LinkTypeIPv4) {
			return fmt.Errorf("%w: wrong IP version for link type %d", ErrWriter, w.cfg.LinkType)
		}
	default:
		return fmt.Errorf("%w: WriteUDP does not support link type %d", ErrWriter, w.cfg.LinkType)
	}
	var err error
	if v4 {
		b, err = AppendIPv4UDP(b, w.ipID, netip.AddrPortFrom(sa, src.Port()), netip.AddrPortFrom(da, dst.Port()), payload)
		w.ipID++
	} else {
		b, err = AppendIPv6UDP(b, src, dst, payload)
	}
	if err != nil {
		return err
	}
	if w.cfg.LinkType == LinkTypeEthernet {
		for len(b) < 60 {
			b = append(b, 0)
		}
	}
	w.frame = b
	return w.WritePacket(t, b)
}

func etherType(v4 bool) uint16 {
	if v4 {
		return etherTypeIPv4
	}
	return etherTypeIPv6
}

// WritePacket writes one record holding data, a frame of the Writer's link
// type, captured whole.
func (w *Writer) WritePacket(t time.Time, data []byte) error {
	if uint64(len(data)) > uint64(w.cfg.Snaplen) {
		return fmt.Errorf("%w: packet of %d bytes exceeds the snapshot length %d", ErrWriter, len(data), w.cfg.Snaplen)
	}
	sec := t.Unix()
	if sec < 0 || sec > 1<<32-1 {
		return fmt.Errorf("%w: time %v out of range", ErrWriter, t)
	}
	frac := uint32(t.Nanosecond())
	if !w.cfg.Nanosecond {
		frac /= 1000
	}
	var h [16]byte
	o := w.cfg.ByteOrder
	o.PutUint32(h[0:4], uint32(sec))
	o.PutUint32(h[4:8], frac)
	o.PutUint32(h[8:12], uint32(len(data)))
	o.PutUint32(h[12:16], uint32(len(data)))
	r := append(w.rec[:0], h[:]...)
	r = append(r, data...)
	w.rec = r
	if _, err := w.w.Write(r); err != nil {
		return fmt.Errorf("pcap: writing record: %w", err)
	}
	return nil
}

// AppendIPv4UDP appends an IPv4 packet (no options, don't-fragment set,
// TTL 64) holding a UDP datagram, with both checksums, to b.
func AppendIPv4UDP(b []byte, id uint16, src, dst netip.AddrPort, payload []byte) ([]byte, error) {
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	if !s.Is4() || !d.Is4() {
		return b, fmt.Errorf("%w: %v and %v are not IPv4 addresses", ErrWriter, src.Addr(), dst.Addr())
	}
	if len(payload) > 65535-28 {
		return b, fmt.Errorf("%w: UDP payload of %d bytes too large for IPv4", ErrWriter, len(payload))
	}
	sa, da := s.As4(), d.As4()
	start := len(b)
	b = append(b, 0x45, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(28+len(payload)))
	b = binary.BigEndian.AppendUint16(b, id)
	b = binary.BigEndian.AppendUint16(b, 0x4000) // don't fragment
	b = append(b, 64, protoUDP, 0, 0)            // TTL, protocol, checksum
	b = append(b, sa[:]...)
	b = append(b, da[:]...)
	binary.BigEndian.PutUint16(b[start+10:], ^uint16(sum16(0, b[start:start+20])))

	var pseudo [12]byte
	copy(pseudo[0:4], sa[:])
	copy(pseudo[4:8], da[:])
	pseudo[9] = protoUDP
	binary.BigEndian.PutUint16(pseudo[10:12], uint16(8+len(payload)))
	return appendUDP(b, sum16(0, pseudo[:]), src.Port(), dst.Port(), payload), nil
}

// AppendIPv6UDP appends an IPv6 packet (hop limit 64, no extension
// headers) holding a UDP datagram, with its checksum, to b.
func AppendIPv6UDP(b []byte, src, dst netip.AddrPort, payload []byte) ([]byte, error) {
	s, d := src.Addr(), dst.Addr()
	if !s.Is6() || !d.Is6() {
		return b, fmt.Errorf("%w: %v and %v are not IPv6 addresses", ErrWriter, s, d)
	}
	if len(payload) > 65535-8 {
		return b, fmt.Errorf("%w: UDP payload of %d bytes too large", ErrWriter, len(payload))
	}
	sa, da := s.As16(), d.As16()
	b = append(b, 0x60, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(8+len(payload)))
	b = append(b, protoUDP, 64)
	b = append(b, sa[:]...)
	b = append(b, da[:]...)

	var pseudo [40]byte
	copy(pseudo[0:16], sa[:])
	copy(pseudo[16:32], da[:])
	binary.BigEndian.PutUint32(pseudo[32:36], uint32(8+len(payload)))
	pseudo[39] = protoUDP
	return appendUDP(b, sum16(0, pseudo[:]), src.Port(), dst.Port(), payload), nil
}

// appendUDP appends a UDP header and payload; sum is the one's-complement
// sum of the pseudo-header.
func appendUDP(b []byte, sum uint32, sport, dport uint16, payload []byte) []byte {
	start := len(b)
	b = binary.BigEndian.AppendUint16(b, sport)
	b = binary.BigEndian.AppendUint16(b, dport)
	b = binary.BigEndian.AppendUint16(b, uint16(8+len(payload)))
	b = append(b, 0, 0)
	b = append(b, payload...)
	c := ^uint16(sum16(sum, b[start:]))
	if c == 0 {
		c = 0xffff // zero means "no checksum"
	}
	binary.BigEndian.PutUint16(b[start+6:], c)
	return b
}

// sum16 adds the 16-bit big-endian words of b (odd length padded with a
// zero byte) to sum in one's-complement arithmetic, folded to 16 bits.
func sum16(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return sum
}
