package frontend

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/sluice-flow/sluice/dataplane/offline/pcap"
)

// File types the API stores.
const (
	typePcap   = "pcap"
	typePcapNG = "pcapng"
	typeIPFIX  = "ipfix"
)

// sniff names the type of a file from its first bytes: a pcap or pcapng
// capture, or an IPFIX file (RFC 5655: messages back to back, the first
// with version 10 and a plausible length); "" for anything else.
func sniff(prefix []byte) string {
	if pcap.IsCapture(prefix) {
		if binary.BigEndian.Uint32(prefix) == 0x0a0d0d0a {
			return typePcapNG
		}
		return typePcap
	}
	if len(prefix) >= 16 && binary.BigEndian.Uint16(prefix) == 10 && binary.BigEndian.Uint16(prefix[2:]) >= 16 {
		return typeIPFIX
	}
	return ""
}

// Errors of a file's framing, found while it is stored.
var (
	errTruncated = errors.New("truncated")
	errFraming   = errors.New("corrupt framing")
)

// framer follows a file's framing while it streams by, without keeping
// it: IPFIX message lengths, pcap record lengths, pcapng block lengths.
// A file that ends inside a frame is truncated; a length that cannot be
// is corrupt. It checks the frames, not their contents: the jobs do that.
type framer struct {
	typ   string
	order binary.ByteOrder
	off   int64  // bytes seen
	hdr   []byte // the next frame header, as far as it came
	need  int    // header size wanted
	skip  int64  // body bytes left of the current frame
	err   error
	errAt int64
}

func newFramer(typ string) *framer {
	f := &framer{typ: typ, order: binary.BigEndian}
	switch typ {
	case typeIPFIX:
		f.need = 4 // version, length
	case typePcap:
		f.need = 24 // the global header first
	case typePcapNG:
		f.need = 12 // block type, length, byte-order magic of the first SHB
	}
	return f
}

func (f *framer) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && f.err == nil {
		if f.skip > 0 {
			k := min(int64(len(p)), f.skip)
			f.skip -= k
			f.off += k
			p = p[k:]
			continue
		}
		k := min(len(p), f.need-len(f.hdr))
		f.hdr = append(f.hdr, p[:k]...)
		f.off += int64(k)
		p = p[k:]
		if len(f.hdr) == f.need {
			f.frame()
		}
	}
	return n, nil
}

// frame reads a complete header and sets what to skip.
func (f *framer) frame() {
	h := f.hdr
	start := f.off - int64(len(h))
	bad := func() { f.err, f.errAt = errFraming, start }
	switch f.typ {
	case typeIPFIX:
		v, l := binary.BigEndian.Uint16(h), int64(binary.BigEndian.Uint16(h[2:]))
		if v != 10 || l < 16 {
			bad()
			return
		}
		f.skip = l - 4
	case typePcap:
		if len(h) == 24 { // global header
			if binary.LittleEndian.Uint32(h) == 0xa1b2c3d4 || binary.LittleEndian.Uint32(h) == 0xa1b23c4d {
				f.order = binary.LittleEndian
			}
			f.need = 16
			f.hdr = f.hdr[:0]
			return
		}
		incl := int64(f.order.Uint32(h[8:]))
		if incl > 1<<18 {
			bad()
			return
		}
		f.skip = incl
	case typePcapNG:
		typ := binary.LittleEndian.Uint32(h)
		if typ == 0x0a0d0d0a && len(h) < 12 {
			f.need = 12 // a section header: read its byte-order magic too
			return
		}
		if typ == 0x0a0d0d0a { // a section header sets the byte order
			switch binary.LittleEndian.Uint32(h[8:]) {
			case 0x1a2b3c4d:
				f.order = binary.LittleEndian
			case 0x4d3c2b1a:
				f.order = binary.BigEndian
			default:
				bad()
				return
			}
		}
		l := int64(f.order.Uint32(h[4:]))
		if l < 12 || l%4 != 0 || l > 1<<24 {
			bad()
			return
		}
		f.skip = l - int64(len(h))
		f.need = 8
	}
	f.hdr = f.hdr[:0]
}

// end reports the framing error of a file that ended here, if any.
func (f *framer) end() error {
	if f.err != nil {
		return fmt.Errorf("%w at byte %d", f.err, f.errAt)
	}
	if f.skip > 0 || len(f.hdr) > 0 {
		return fmt.Errorf("%w: the last frame ends past byte %d", errTruncated, f.off)
	}
	return nil
}

// uploadFile stores the request body as a file of the tenant.
func (s *Server) uploadFile(c *fasthttp.RequestCtx, tenant, _ string) {
	label := s.tenantLabel(tenant)
	if !s.redisUp.Load() {
		s.storeError(c, errors.New("redis down"))
		return
	}
	name := string(c.QueryArgs().Peek("name"))
	if len(name) > 255 || !utf8.ValidString(name) {
		fail(c, fasthttp.StatusBadRequest, apiError{Error: "bad_request", Param: "name", Message: "want at most 255 bytes of UTF-8"})
		return
	}
	if cl := c.Request.Header.ContentLength(); int64(cl) > s.cfg.MaxUploadBytes {
		fail(c, fasthttp.StatusRequestEntityTooLarge, apiError{Error: "too_large",
			Message: "a file may have " + strconv.FormatInt(s.cfg.MaxUploadBytes, 10) + " bytes"})
		return
	}
	if n, err := s.st.countFiles(c, tenant); err != nil {
		s.storeError(c, err)
		return
	} else if n >= int64(s.cfg.MaxFilesPerTenant) {
		fail(c, fasthttp.StatusConflict, apiError{Error: "file_limit", Message: "delete files first: at most " + itoa(s.cfg.MaxFilesPerTenant)})
		return
	}
	body := c.RequestBodyStream()
	if body == nil {
		body = bytes.NewReader(c.Request.Body())
	}
	br := bufio.NewReaderSize(body, 64<<10)
	prefix, _ := br.Peek(16)
	typ := sniff(prefix)
	if typ == "" {
		fail(c, fasthttp.StatusUnsupportedMediaType, apiError{Error: "unsupported_type",
			Message: "not a pcap, pcapng or IPFIX file", Allowed: []string{typePcap, typePcapNG, typeIPFIX}})
		return
	}
	id := newID()
	dir := filepath.Join(s.cfg.DataDir, "files", tenant)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		s.log.Error("frontend: data directory", "err", err)
		fail(c, fasthttp.StatusInternalServerError, apiError{Error: "internal"})
		return
	}
	final := filepath.Join(dir, id)
	tmp := final + ".part"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		s.log.Error("frontend: storing an upload", "err", err)
		fail(c, fasthttp.StatusInternalServerError, apiError{Error: "internal"})
		return
	}
	fr := newFramer(typ)
	n, err := io.Copy(io.MultiWriter(out, fr), io.LimitReader(br, s.cfg.MaxUploadBytes+1))
	cerr := out.Close()
	drop := func() { os.Remove(tmp) }
	cl := c.Request.Header.ContentLength() // -1 for chunked
	switch {
	case err != nil:
		drop()
		fail(c, fasthttp.StatusBadRequest, apiError{Error: "bad_upload", Message: "reading the body: " + err.Error()})
		return
	case n > s.cfg.MaxUploadBytes:
		drop()
		fail(c, fasthttp.StatusRequestEntityTooLarge, apiError{Error: "too_large",
			Message: "a file may have " + strconv.FormatInt(s.cfg.MaxUploadBytes, 10) + " bytes"})
		return
	case cl >= 0 && n != int64(cl):
		drop()
		fail(c, fasthttp.StatusBadRequest, apiError{Error: "bad_upload",
			Message: "the body ended after " + strconv.FormatInt(n, 10) + " of " + itoa(cl) + " bytes"})
		return
	case cerr != nil:
		drop()
		s.log.Error("frontend: storing an upload", "err", cerr)
		fail(c, fasthttp.StatusInternalServerError, apiError{Error: "internal"})
		return
	}
	if err := fr.end(); err != nil {
		drop()
		fail(c, fasthttp.StatusBadRequest, apiError{Error: "bad_file", Message: typ + " file: " + err.Error()})
		return
	}
	if err := os.Rename(tmp, final); err != nil {
		drop()
		fail(c, fasthttp.StatusInternalServerError, apiError{Error: "internal"})
		return
	}
	rec := &fileRecord{ID: id, Tenant: tenant, Name: name, Type: typ, Bytes: n, Created: time.Now().UnixMilli()}
	ok, err := s.st.createFile(c, rec, s.cfg.MaxFilesPerTenant, s.cfg.FileTTL)
	if err != nil || !ok {
		os.Remove(final)
		if err != nil {
			s.storeError(c, err)
		} else {
			fail(c, fasthttp.StatusConflict, apiError{Error: "file_limit", Message: "delete files first: at most " + itoa(s.cfg.MaxFilesPerTenant)})
		}
		return
	}
	s.m.uploads.add(1, label)
	s.m.uploadBytes.add(uint64(n), label)
	c.Response.Header.Set("Location", "/api/v1/files/"+id)
	writeJSON(c, fasthttp.StatusCreated, struct {
		ID    string `json:"id"`
		Type  string `json:"type"`
		Bytes int64  `json:"bytes"`
	}{id, typ, n})
}
