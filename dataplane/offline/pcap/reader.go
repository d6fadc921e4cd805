package pcap

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"
)

// Link-layer header types (the LINKTYPE_ values of the pcap and pcapng
// formats) that the Reader decodes.
const (
	LinkTypeNull     = 0   // BSD loopback: 4-byte address family in the capturing host's byte order
	LinkTypeEthernet = 1   // Ethernet II, with optional 802.1Q/802.1ad tags
	LinkTypeRawBSD   = 12  // raw IP on most BSDs (DLT_RAW); loopback on OpenBSD, told apart by content
	LinkTypeRawOBSD  = 14  // raw IP on OpenBSD (DLT_RAW)
	LinkTypeRaw      = 101 // raw IPv4 or IPv6, no link-layer header
	LinkTypeLoop     = 108 // OpenBSD loopback: 4-byte address family in network byte order
	LinkTypeLinuxSLL = 113 // Linux cooked capture v1
	LinkTypeIPv4     = 228 // raw IPv4
	LinkTypeIPv6     = 229 // raw IPv6
	LinkTypeSLL2     = 276 // Linux cooked capture v2
)

// Size limits applied to length fields before any buffer is sized by them.
const (
	// MaxPacketSize is the largest captured packet length accepted in a
	// classic pcap record or pcapng packet block (tcpdump's default
	// snapshot length).
	MaxPacketSize = 256 << 10
	// MaxBlockSize is the largest pcapng block that is read into memory:
	// a packet of MaxPacketSize plus room for its block header and options.
	// Blocks that are skipped are not read into memory and are not limited.
	MaxBlockSize = MaxPacketSize + 64<<10
)

// Sentinel errors. Errors returned for malformed input wrap one of these
// (test with errors.Is); a capture cut short wraps io.ErrUnexpectedEOF.
var (
	ErrNotCapture         = errors.New("pcap: not a pcap or pcapng file")
	ErrBlockTooLarge      = errors.New("pcap: record or block too large")
	ErrMalformed          = errors.New("pcap: malformed capture")
	ErrUnsupportedVersion = errors.New("pcap: unsupported format version")
)

// Magic numbers, as read in big-endian order from the first four bytes.
const (
	magicMicro        = 0xa1b2c3d4
	magicNano         = 0xa1b23c4d
	magicMicroSwapped = 0xd4c3b2a1
	magicNanoSwapped  = 0x4d3cb2a1
	magicNG           = 0x0a0d0d0a // pcapng Section Header Block type, a palindrome
)

// IsCapture reports whether prefix starts with the magic number of a classic
// pcap file (either byte order, microsecond or nanosecond timestamps) or of a
// pcapng file.
func IsCapture(prefix []byte) bool {
	if len(prefix) < 4 {
		return false
	}
	switch binary.BigEndian.Uint32(prefix) {
	case magicMicro, magicNano, magicMicroSwapped, magicNanoSwapped, magicNG:
		return true
	}
	return false
}

// Datagram is one UDP payload found in a capture. Payload is a view into the
// reader's buffer, valid until the next call to Next.
type Datagram struct {
	Time    time.Time // capture time in UTC; zero for pcapng Simple Packet Blocks
	Src     netip.AddrPort
	Dst     netip.AddrPort
	Payload []byte
}

// Packet is one captured packet as read by NextPacket, before any link-layer
// decoding. Data is a view into the reader's buffer, valid until the next
// call to Next or NextPacket.
type Packet struct {
	Time     time.Time // capture time in UTC; zero for pcapng Simple Packet Blocks
	LinkType uint32    // LINKTYPE_ value of the packet's interface
	OrigLen  uint32    // length on the wire; len(Data) is less when the snapshot length cut it
	Data     []byte
}

// Stats counts what a Reader has seen. Every packet read by Next is either
// returned as a datagram or counted under exactly one skip reason, so
// Packets equals Datagrams plus Skipped() when only Next is used. Packets
// returned by NextPacket count in Packets alone.
type Stats struct {
	Packets         uint64 // packet records and packet blocks read
	Datagrams       uint64 // UDP datagrams returned by Next
	NonIP           uint64 // link-layer payload is not IPv4 or IPv6 (ARP, LLC, ...)
	NonUDP          uint64 // IP packet that does not carry UDP (TCP, ICMP, ...)
	Fragment        uint64 // IP fragment that does not hold a whole UDP datagram
	Truncated       uint64 // captured length shorter than the headers or the UDP length
	Malformed       uint64 // inconsistent IP or UDP header (bad IHL, UDP length beyond the IP packet, ...)
	UnsupportedLink uint64 // link-layer type the Reader does not decode
}

// Skipped returns the number of packets that were not returned as datagrams.
func (s Stats) Skipped() uint64 {
	return s.NonIP + s.NonUDP + s.Fragment + s.Truncated + s.Malformed + s.UnsupportedLink
}

// Reader reads UDP datagrams from a classic pcap or a pcapng capture.
// It is not safe for concurrent use.
type Reader struct {
	br  *bufio.Reader
	ng  bool
	err error // sticky error, returned by every Next after the first

	// classic pcap
	order    binary.ByteOrder
	nano     bool
	snaplen  uint32
	linkType uint32

	// pcapng: the interfaces of the current section
	ifaces []iface

	link uint32 // link type of the last packet read

	hdr   [28]byte // fixed-size headers
	buf   []byte   // record or block body, reused
	hdrs  Headers  // headers of the last packet
	stats Stats
}

// NewReader reads the file header from r and returns a Reader positioned at
// the first packet. It returns an error wrapping ErrNotCapture when r does
// not start with a pcap or pcapng magic number. The Reader buffers r.
func NewReader(r io.Reader) (*Reader, error) {
	rd := &Reader{br: bufio.NewReaderSize(r, 64<<10)}
	if _, err := io.ReadFull(rd.br, rd.hdr[:4]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, ErrNotCapture
		}
		return nil, fmt.Errorf("pcap: reading file header: %w", err)
	}
	switch binary.BigEndian.Uint32(rd.hdr[:4]) {
	case magicMicro:
		rd.order = binary.BigEndian
	case magicNano:
		rd.order, rd.nano = binary.BigEndian, true
	case magicMicroSwapped:
		rd.order = binary.LittleEndian
	case magicNanoSwapped:
		rd.order, rd.nano = binary.LittleEndian, true
	case magicNG:
		rd.ng = true
		if err := rd.readSectionHeader(); err != nil {
			return nil, err
		}
		return rd, nil
	default:
		return nil, ErrNotCapture
	}
	if err := rd.readFileHeader(); err != nil {
		return nil, err
	}
	rd.link = rd.linkType
	return rd, nil
}

// readFileHeader reads the rest of a classic pcap file header, after the
// magic number.
func (r *Reader) readFileHeader() error {
	h := r.hdr[4:24]
	if _, err := io.ReadFull(r.br, h); err != nil {
		return truncated("file header", err)
	}
	if major := r.order.Uint16(h[0:2]); major != 2 {
		return fmt.Errorf("%w: pcap version %d.%d", ErrUnsupportedVersion, major, r.order.Uint16(h[2:4]))
	}
	// h[4:8] thiszone and h[8:12] sigfigs are unused in practice.
	r.snaplen = r.order.Uint32(h[12:16])
	// The low 16 bits are the link type; the high bits may carry FCS
	// information, which the UDP length makes irrelevant here.
	r.linkType = r.order.Uint32(h[16:20]) & 0xffff
	return nil
}

// truncated wraps a read error met inside a record, block or header.
func truncated(what string, err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("pcap: truncated %s: %w", what, err)
}

// Format returns "pcap" or "pcapng".
func (r *Reader) Format() string {
	if r.ng {
		return "pcapng"
	}
	return "pcap"
}

// LinkType returns the link-layer type (a LINKTYPE_ value) of the packet
// last read; for a classic pcap file, that of the file. In a pcapng file it
// is 0 (LinkTypeNull) until a packet has been read, and it may change from
// packet to packet.
func (r *Reader) LinkType() uint32 { return r.link }

// Stats returns the counters so far.
func (r *Reader) Stats() Stats { return r.stats }

// Next stores the next UDP datagram of the capture in d. It returns io.EOF at
// the end of the capture and an error for malformed or truncated input;
// after an error every later call returns the same error. Packets that hold
// no complete UDP datagram are skipped and counted in Stats; IP fragments
// are not reassembled. d.Payload is valid until the next call to Next.
func (r *Reader) Next(d *Datagram) error {
	if r.err != nil {
		return r.err
	}
	var err error
	if r.ng {
		err = r.nextNG(d, nil)
	} else {
		err = r.nextPcap(d, nil)
	}
	if err != nil {
		r.err = err
	}
	return err
}

// NextPacket stores the next captured packet, of any link type and
// content, in p: no link-layer decoding, nothing skipped. It returns io.EOF
// at the end of the capture and an error for malformed or truncated input,
// as Next does. p.Data is valid until the next call to Next or NextPacket.
// It allocates nothing in steady state.
func (r *Reader) NextPacket(p *Packet) error {
	if r.err != nil {
		return r.err
	}
	var err error
	if r.ng {
		err = r.nextNG(nil, p)
	} else {
		err = r.nextPcap(nil, p)
	}
	if err != nil {
		r.err = err
	}
	return err
}

// nextPcap reads classic pcap records until one holds a UDP datagram, or
// reads one record into raw when raw is not nil.
func (r *Reader) nextPcap(d *Datagram, raw *Packet) error {
	// Allow captured lengths somewhat above the snapshot length (some
	// writers do not count the link-layer header) but not far above it.
	limit := uint32(MaxPacketSize)
	if r.snaplen > 0 && r.snaplen < limit-65536 {
		limit = r.snaplen + 65536
	}
	for {
		h := r.hdr[:16]
		if n, err := io.ReadFull(r.br, h); err != nil {
			if n == 0 && errors.Is(err, io.EOF) {
				return io.EOF
			}
			return truncated("record header", err)
		}
		sec := r.order.Uint32(h[0:4])
		frac := r.order.Uint32(h[4:8])
		caplen := r.order.Uint32(h[8:12])
		if caplen > limit {
			return fmt.Errorf("%w: record of %d bytes (snapshot length %d)", ErrBlockTooLarge, caplen, r.snaplen)
		}
		data := r.grow(int(caplen))
		if _, err := io.ReadFull(r.br, data); err != nil {
			return truncated("record", err)
		}
		r.stats.Packets++
		if raw != nil {
			raw.Time = r.pcapTime(sec, frac)
			raw.LinkType, raw.OrigLen, raw.Data = r.linkType, r.order.Uint32(h[12:16]), data
			return nil
		}
		if !r.decodeLink(r.linkType, data, d) {
			continue
		}
		d.Time = r.pcapTime(sec, frac)
		return nil
	}
}

// pcapTime converts a classic pcap record's timestamp.
func (r *Reader) pcapTime(sec, frac uint32) time.Time {
	if r.nano {
		return time.Unix(int64(sec), int64(frac)).UTC()
	}
	return time.Unix(int64(sec), int64(frac)*1000).UTC()
}

// grow returns r.buf resliced to n bytes, reallocating only when n exceeds
// its capacity. Callers bound n by MaxBlockSize.
func (r *Reader) grow(n int) []byte {
	if n > cap(r.buf) {
		c := 4096
		for c < n {
			c *= 2
		}
		if c > MaxBlockSize && n <= MaxBlockSize {
			c = MaxBlockSize
		}
		r.buf = make([]byte, c)
	}
	return r.buf[:n]
}
