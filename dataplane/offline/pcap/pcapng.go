package pcap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"time"
)

// pcapng block types.
const (
	blockSHB = 0x0a0d0d0a // Section Header Block
	blockIDB = 0x00000001 // Interface Description Block
	blockPB  = 0x00000002 // Packet Block (obsolete)
	blockSPB = 0x00000003 // Simple Packet Block
	blockEPB = 0x00000006 // Enhanced Packet Block

	byteOrderMagic = 0x1a2b3c4d
)

// Interface Description Block options used here.
const (
	optEndOfOpt = 0
	optTSResol  = 9  // if_tsresol: timestamp resolution
	optTSOffset = 14 // if_tsoffset: seconds added to every timestamp
)

// maxInterfaces bounds the Interface Description Blocks kept per section.
const maxInterfaces = 1 << 16

// iface is what the Reader keeps of an Interface Description Block.
type iface struct {
	linkType uint32
	snaplen  uint32
	tsresol  uint8 // raw if_tsresol: 10^-v seconds, or 2^-(v&0x7f) if the top bit is set
	tsoffset int64 // if_tsoffset, seconds
}

var pow10 = [...]uint64{
	1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9,
	1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
}

// time converts a pcapng timestamp, counted in the interface's units, to a
// time. It handles every if_tsresol value without overflow or panic.
func (f *iface) time(ts uint64) time.Time {
	var sec, nsec uint64
	v := uint(f.tsresol & 0x7f)
	if f.tsresol&0x80 == 0 { // units of 10^-v seconds
		if v < uint(len(pow10)) {
			sec, nsec = ts/pow10[v], ts%pow10[v]
			if v <= 9 {
				nsec *= pow10[9-v]
			} else {
				nsec /= pow10[v-9]
			}
		} else if e := v - 9; e < uint(len(pow10)) { // ts < 2^64 < 10^v: no whole seconds
			nsec = ts / pow10[e]
		}
	} else { // units of 2^-v seconds
		switch {
		case v == 0:
			sec = ts
		case v < 64:
			sec = ts >> v
			hi, lo := bits.Mul64(ts&(1<<v-1), 1e9)
			nsec = hi<<(64-v) | lo>>v
		default:
			hi, _ := bits.Mul64(ts, 1e9)
			nsec = hi >> (v - 64)
		}
	}
	return time.Unix(int64(sec)+f.tsoffset, int64(nsec)).UTC()
}

// readSectionHeader reads the first Section Header Block of a file, whose
// type (the pcapng magic) is already in r.hdr[0:4].
func (r *Reader) readSectionHeader() error {
	if _, err := io.ReadFull(r.br, r.hdr[4:16]); err != nil {
		return truncated("section header block", err)
	}
	return r.parseSectionHeader(r.hdr[4:16])
}

// parseSectionHeader handles a Section Header Block given h, its 12 bytes
// after the block type: total length, byte-order magic, major and minor
// version. It sets the byte order of the section, forgets the interfaces of
// the previous section and skips the rest of the block.
func (r *Reader) parseSectionHeader(h []byte) error {
	switch {
	case binary.BigEndian.Uint32(h[4:8]) == byteOrderMagic:
		r.order = binary.BigEndian
	case binary.LittleEndian.Uint32(h[4:8]) == byteOrderMagic:
		r.order = binary.LittleEndian
	default:
		return fmt.Errorf("%w: bad byte-order magic in section header", ErrMalformed)
	}
	length := r.order.Uint32(h[0:4])
	if err := checkBlockLength(blockSHB, length, 28); err != nil {
		return err
	}
	if major := r.order.Uint16(h[8:10]); major != 1 {
		return fmt.Errorf("%w: pcapng version %d.%d", ErrUnsupportedVersion, major, r.order.Uint16(h[10:12]))
	}
	r.ifaces = r.ifaces[:0]
	// The section length (8 bytes) and the options are not needed.
	return r.skipBlock(length, 16)
}

// checkBlockLength validates a block's total length against the minimum for
// its type and the format's alignment rule.
func checkBlockLength(typ, length, min uint32) error {
	if length < min || length%4 != 0 {
		return fmt.Errorf("%w: block type %#x has bad length %d", ErrMalformed, typ, length)
	}
	return nil
}

// skipBlock discards the rest of a block of the given total length of which
// consumed bytes were read, and checks the trailing copy of the length.
// It does not buffer the block, so it does not limit its size.
func (r *Reader) skipBlock(length, consumed uint32) error {
	n := int64(length) - int64(consumed) - 4
	for n > 0 {
		step := n
		if step > 1<<30 {
			step = 1 << 30
		}
		d, err := r.br.Discard(int(step))
		n -= int64(d)
		if err != nil {
			return truncated("block", err)
		}
	}
	t := r.hdr[24:28]
	if _, err := io.ReadFull(r.br, t); err != nil {
		return truncated("block", err)
	}
	if r.order.Uint32(t) != length {
		return fmt.Errorf("%w: trailing block length %d does not match %d", ErrMalformed, r.order.Uint32(t), length)
	}
	return nil
}

// readBody reads the rest of a block, after its 8-byte type and length, into
// r.buf and checks its trailing length. It returns the body without the
// trailing length.
func (r *Reader) readBody(typ, length uint32) ([]byte, error) {
	if length > MaxBlockSize {
		return nil, fmt.Errorf("%w: block type %#x of %d bytes", ErrBlockTooLarge, typ, length)
	}
	body := r.grow(int(length) - 8)
	if _, err := io.ReadFull(r.br, body); err != nil {
		return nil, truncated("block", err)
	}
	end := len(body) - 4
	if r.order.Uint32(body[end:]) != length {
		return nil, fmt.Errorf("%w: trailing block length %d does not match %d", ErrMalformed, r.order.Uint32(body[end:]), length)
	}
	return body[:end], nil
}

// nextNG reads pcapng blocks until a packet block holds a UDP datagram, or
// reads one packet block into raw when raw is not nil.
func (r *Reader) nextNG(d *Datagram, raw *Packet) error {
	for {
		h := r.hdr[:8]
		if n, err := io.ReadFull(r.br, h); err != nil {
			if n == 0 && errors.Is(err, io.EOF) {
				return io.EOF
			}
			return truncated("block header", err)
		}
		if binary.BigEndian.Uint32(h[0:4]) == magicNG {
			// A new section, whose byte order may differ: its length
			// is read once the byte-order magic is known.
			if _, err := io.ReadFull(r.br, r.hdr[8:16]); err != nil {
				return truncated("section header block", err)
			}
			if err := r.parseSectionHeader(r.hdr[4:16]); err != nil {
				return err
			}
			continue
		}
		typ := r.order.Uint32(h[0:4])
		length := r.order.Uint32(h[4:8])
		switch typ {
		case blockIDB:
			if err := checkBlockLength(typ, length, 20); err != nil {
				return err
			}
			body, err := r.readBody(typ, length)
			if err != nil {
				return err
			}
			if err := r.addInterface(body); err != nil {
				return err
			}
		case blockEPB, blockPB:
			if err := checkBlockLength(typ, length, 32); err != nil {
				return err
			}
			body, err := r.readBody(typ, length)
			if err != nil {
				return err
			}
			var id uint32
			if typ == blockEPB {
				id = r.order.Uint32(body[0:4])
			} else {
				id = uint32(r.order.Uint16(body[0:2]))
			}
			if id >= uint32(len(r.ifaces)) {
				return fmt.Errorf("%w: packet on undefined interface %d", ErrMalformed, id)
			}
			ts := uint64(r.order.Uint32(body[4:8]))<<32 | uint64(r.order.Uint32(body[8:12]))
			caplen := r.order.Uint32(body[12:16])
			if caplen > uint32(len(body)-20) || caplen > MaxPacketSize {
				return fmt.Errorf("%w: captured length %d exceeds its block", ErrMalformed, caplen)
			}
			r.stats.Packets++
			f := &r.ifaces[id]
			if raw != nil {
				raw.Time, raw.LinkType = f.time(ts), f.linkType
				raw.OrigLen, raw.Data = r.order.Uint32(body[16:20]), body[20:20+caplen]
				r.link = f.linkType
				return nil
			}
			if r.decodeLink(f.linkType, body[20:20+caplen], d) {
				d.Time = f.time(ts)
				return nil
			}
		case blockSPB:
			if err := checkBlockLength(typ, length, 16); err != nil {
				return err
			}
			body, err := r.readBody(typ, length)
			if err != nil {
				return err
			}
			if len(r.ifaces) == 0 {
				return fmt.Errorf("%w: simple packet block without an interface", ErrMalformed)
			}
			f := &r.ifaces[0]
			data := body[4:] // includes padding
			if n := r.order.Uint32(body[0:4]); n < uint32(len(data)) {
				data = data[:n]
			}
			if f.snaplen > 0 && f.snaplen < uint32(len(data)) {
				data = data[:f.snaplen]
			}
			r.stats.Packets++
			if raw != nil {
				raw.Time, raw.LinkType = time.Time{}, f.linkType
				raw.OrigLen, raw.Data = r.order.Uint32(body[0:4]), data
				r.link = f.linkType
				return nil
			}
			if r.decodeLink(f.linkType, data, d) {
				d.Time = time.Time{}
				return nil
			}
		default:
			if err := checkBlockLength(typ, length, 12); err != nil {
				return err
			}
			if err := r.skipBlock(length, 8); err != nil {
				return err
			}
		}
	}
}

// addInterface records an Interface Description Block, given its body
// without type, length and trailing length.
func (r *Reader) addInterface(body []byte) error {
	if len(r.ifaces) >= maxInterfaces {
		return fmt.Errorf("%w: more than %d interfaces in a section", ErrMalformed, maxInterfaces)
	}
	f := iface{
		linkType: uint32(r.order.Uint16(body[0:2])),
		snaplen:  r.order.Uint32(body[4:8]),
		tsresol:  6,
	}
	opts := body[8:]
	for len(opts) >= 4 {
		code := r.order.Uint16(opts[0:2])
		n := int(r.order.Uint16(opts[2:4]))
		if code == optEndOfOpt || 4+n > len(opts) {
			break
		}
		v := opts[4 : 4+n]
		switch {
		case code == optTSResol && n == 1:
			f.tsresol = v[0]
		case code == optTSOffset && n == 8:
			f.tsoffset = int64(r.order.Uint64(v))
		}
		step := 4 + (n+3)&^3
		if step > len(opts) {
			break
		}
		opts = opts[step:]
	}
	r.ifaces = append(r.ifaces, f)
	return nil
}
