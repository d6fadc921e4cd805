package meter

import (
	"encoding/binary"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// dpiMax bounds each inspected string; longer values are cut.
const dpiMax = 128

// dpiState is what light payload inspection found in a flow. It has fixed
// buffers so inspecting allocates nothing; it exists only with Config.DPI.
type dpiState struct {
	method   [8]byte
	host     [dpiMax]byte
	sni      [dpiMax]byte
	qname    [dpiMax]byte
	qtype    uint16
	mlen     uint8
	hlen     uint8
	slen     uint8
	qlen     uint8
	httpSeen bool
	dnsSeen  bool
}

// inspect reads p's payload: a TLS ClientHello, an HTTP request or a DNS
// message. Each value is kept from the first packet that has it.
func (d *dpiState) inspect(p *packet) {
	b := p.payload
	switch p.Proto {
	case protoTCP:
		if d.slen == 0 && len(b) > 5 && b[0] == 0x16 && b[1] == 3 {
			d.slen = uint8(copy(d.sni[:], tlsServerName(b)))
			return
		}
		if !d.httpSeen {
			d.http(b)
		}
		if !d.dnsSeen && (p.sport == 53 || p.dport == 53) && len(b) > 2 {
			d.dns(b[2:]) // DNS over TCP: two octets of length first
		}
	case protoUDP:
		if !d.dnsSeen && (p.sport == 53 || p.dport == 53 || p.sport == 5353 || p.dport == 5353) {
			d.dns(b)
		}
	}
}

// httpMethods are the request methods recognised (RFC 9110 and PATCH).
var httpMethods = [...]string{"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE"}

// http reads an HTTP/1 request line and its Host header.
func (d *dpiState) http(b []byte) {
	n := 0
	for _, m := range httpMethods {
		if len(b) > len(m) && b[len(m)] == ' ' && string(b[:len(m)]) == m {
			n = len(m)
			break
		}
	}
	if n == 0 {
		return
	}
	d.httpSeen = true
	d.mlen = uint8(copy(d.method[:], b[:n]))
	// Header lines: find "\nHost:" case-insensitively.
	for i := 0; i+6 <= len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		h := b[i+1:]
		if len(h) < 5 || h[4] != ':' || lower(h[0]) != 'h' || lower(h[1]) != 'o' || lower(h[2]) != 's' || lower(h[3]) != 't' {
			continue
		}
		v := h[5:]
		for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
			v = v[1:]
		}
		end := 0
		for end < len(v) && v[end] != '\r' && v[end] != '\n' {
			end++
		}
		v = v[:end]
		for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
			v = v[:len(v)-1]
		}
		d.hlen = uint8(copy(d.host[:], v))
		return
	}
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// tlsServerName returns the server_name of a TLS ClientHello starting at
// b (a record header first), or nil. The ClientHello must be within b.
func tlsServerName(b []byte) []byte {
	if len(b) < 5+4 || b[0] != 0x16 {
		return nil
	}
	rec := int(binary.BigEndian.Uint16(b[3:5]))
	b = b[5:]
	if rec < len(b) {
		b = b[:rec]
	}
	if len(b) < 4 || b[0] != 1 { // ClientHello
		return nil
	}
	hs := int(b[1])<<16 | int(b[2])<<8 | int(b[3])
	b = b[4:]
	if hs < len(b) {
		b = b[:hs]
	}
	// version(2) random(32)
	if len(b) < 34+1 {
		return nil
	}
	b = b[34:]
	if n := 1 + int(b[0]); n <= len(b) { // session id
		b = b[n:]
	} else {
		return nil
	}
	if len(b) < 2 {
		return nil
	}
	if n := 2 + int(binary.BigEndian.Uint16(b)); n <= len(b) { // cipher suites
		b = b[n:]
	} else {
		return nil
	}
	if len(b) < 1 {
		return nil
	}
	if n := 1 + int(b[0]); n <= len(b) { // compression methods
		b = b[n:]
	} else {
		return nil
	}
	if len(b) < 2 {
		return nil
	}
	ext := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if ext < len(b) {
		b = b[:ext]
	}
	for len(b) >= 4 {
		typ := binary.BigEndian.Uint16(b)
		n := int(binary.BigEndian.Uint16(b[2:]))
		if 4+n > len(b) {
			return nil
		}
		body := b[4 : 4+n]
		b = b[4+n:]
		if typ != 0 { // server_name
			continue
		}
		if len(body) < 2 {
			return nil
		}
		body = body[2:] // server name list length
		for len(body) >= 3 {
			nt := body[0]
			nl := int(binary.BigEndian.Uint16(body[1:3]))
			if 3+nl > len(body) {
				return nil
			}
			if nt == 0 { // host_name
				return body[3 : 3+nl]
			}
			body = body[3+nl:]
		}
		return nil
	}
	return nil
}

// dns reads the first question of a DNS message: its name (dotted, without
// the final dot) and type.
func (d *dpiState) dns(b []byte) {
	if len(b) < 12 || binary.BigEndian.Uint16(b[4:6]) == 0 {
		return
	}
	if op := (b[2] >> 3) & 0xf; op != 0 { // standard query only
		return
	}
	q := b[12:]
	n := 0
	for {
		if len(q) == 0 {
			return
		}
		l := int(q[0])
		if l == 0 {
			q = q[1:]
			break
		}
		if l&0xc0 != 0 || 1+l > len(q) { // no compression in a first question
			return
		}
		if n > 0 && n < dpiMax {
			d.qname[n] = '.'
			n++
		}
		n += copy(d.qname[n:], q[1:1+l])
		q = q[1+l:]
	}
	if len(q) < 2 {
		return
	}
	if n == 0 { // the root
		d.qname[0] = '.'
		n = 1
	}
	d.qlen = uint8(n)
	d.qtype = binary.BigEndian.Uint16(q)
	d.dnsSeen = true
}

// appendFields appends the DPI fields in template order: httpRequestMethod,
// httpRequestHost, sslServerName, dnsQName (variable length) and dnsQRType.
func (d *dpiState) appendFields(b []byte) []byte {
	b = ipfix.AppendVarlen(b, d.method[:d.mlen])
	b = ipfix.AppendVarlen(b, d.host[:d.hlen])
	b = ipfix.AppendVarlen(b, d.sni[:d.slen])
	b = ipfix.AppendVarlen(b, d.qname[:d.qlen])
	return binary.BigEndian.AppendUint16(b, d.qtype)
}
