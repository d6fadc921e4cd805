package decode

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
	"github.com/sluice-flow/sluice/dataplane/offline/pcap"
)

// MaxInputFile bounds IPFIX and raw NetFlow files read whole into memory.
const MaxInputFile = 1 << 30

// Format is how Files writes records.
type Format int

const (
	// JSON writes one JSON object per record (the jsonl package's form).
	JSON Format = iota
	// Text writes a heading line per record, then one field per line.
	Text
)

// Files decodes captures (pcap, pcapng), IPFIX files (RFC 5655) and raw
// NetFlow payload files into a writer, with templates carried from file to
// file. Not safe for concurrent use.
type Files struct {
	// Port, when not 0, keeps only datagrams sent to this UDP port.
	Port   uint16
	Format Format
	// Datagrams counts the capture datagrams decoded.
	Datagrams uint64
	dec       *Decoder
	w         *bufio.Writer
	buf       []byte
	meta      jsonl.Meta // one for every record: the encoder's caches
}

// NewFiles returns a Files writing to w; scopeByPort scopes templates by
// exporter address and port.
func NewFiles(w io.Writer, scopeByPort bool) *Files {
	f := &Files{dec: New(), w: bufio.NewWriterSize(w, 256<<10)}
	f.dec.ScopeByPort = scopeByPort
	return f
}

// Stats returns what the decoder has counted so far.
func (f *Files) Stats() *Stats { return &f.dec.Stats }

// Flush writes out what is buffered.
func (f *Files) Flush() error { return f.w.Flush() }

// File decodes one file, telling captures from IPFIX and NetFlow files by
// their first bytes.
func (f *Files) File(name string) error {
	fh, err := os.Open(name)
	if err != nil {
		return err
	}
	defer fh.Close()
	br := bufio.NewReaderSize(fh, 1<<20)
	head, _ := br.Peek(4)
	if pcap.IsCapture(head) {
		return f.capture(br)
	}
	b, err := io.ReadAll(io.LimitReader(br, MaxInputFile+1))
	if err != nil {
		return err
	}
	if len(b) > MaxInputFile {
		return errors.New("file larger than 1 GiB")
	}
	if len(b) < 2 {
		return errors.New("file too short")
	}
	var none netip.AddrPort
	if b[0] == 0 && b[1] == ipfix.VersionIPFIX {
		// RFC 5655 file: messages back to back.
		for len(b) > 0 {
			n, err := f.dec.Decode(none, b, f.record)
			if n == 0 {
				return fmt.Errorf("at offset %d: %w", len(b), err)
			}
			b = b[n:]
		}
		return nil
	}
	// A raw NetFlow payload: one message.
	_, err = f.dec.Decode(none, b, f.record)
	return err
}

func (f *Files) capture(r io.Reader) error {
	pr, err := pcap.NewReader(r)
	if err != nil {
		return err
	}
	var dg pcap.Datagram
	for {
		err := pr.Next(&dg)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if f.Port != 0 && dg.Dst.Port() != f.Port {
			continue
		}
		f.Datagrams++
		b := dg.Payload
		for len(b) >= 4 {
			n, _ := f.dec.Decode(dg.Src, b, f.record)
			if n == 0 || b[1] != ipfix.VersionIPFIX {
				break
			}
			b = b[n:]
		}
	}
}

func (f *Files) record(r *Record) {
	m := &f.meta
	m.Exporter, m.Msg, m.Resolve = r.Exporter, r.Msg, r.Resolver
	if f.Format == Text {
		f.buf = AppendText(f.buf[:0], m, r.Rec)
	} else {
		f.buf = jsonl.AppendRecord(f.buf[:0], m, r.Rec)
	}
	f.w.Write(f.buf)
}

// AppendText renders a record for people: a heading line, then one field
// per line.
func AppendText(dst []byte, m *jsonl.Meta, r *ipfix.Record) []byte {
	dst = append(dst, "exporter "...)
	if m.Exporter.IsValid() {
		dst = m.Exporter.AppendTo(dst)
	} else {
		dst = append(dst, '-')
	}
	dst = append(dst, " version "...)
	dst = strconv.AppendUint(dst, uint64(m.Msg.Version), 10)
	dst = append(dst, " domain "...)
	dst = strconv.AppendUint(dst, uint64(m.Msg.DomainID), 10)
	dst = append(dst, " template "...)
	dst = strconv.AppendUint(dst, uint64(r.Layout.ID), 10)
	if r.Layout.Options {
		dst = append(dst, " (options)"...)
	}
	dst = append(dst, " exported "...)
	dst = m.Msg.Time().AppendFormat(dst, "2006-01-02 15:04:05Z07:00")
	dst = append(dst, '\n')
	for i := range r.Layout.Fields {
		fl := &r.Layout.Fields[i]
		dst = append(dst, "  "...)
		dst = append(dst, fl.Key...)
		for n := len(fl.Key); n < 32; n++ {
			dst = append(dst, ' ')
		}
		dst = append(dst, ' ')
		dst = jsonl.AppendValue(dst, m, fl.IE, r.Bytes(i), 0)
		dst = append(dst, '\n')
	}
	return append(dst, '\n')
}

// WriteSummary writes the counts of s: messages, sets, templates, records,
// and errors by reason.
func WriteSummary(w io.Writer, s *Stats) {
	fmt.Fprintf(w, "messages %d, sets %d, templates %d, options templates %d, withdrawals %d, data records %d, options records %d\n",
		s.Messages, s.Sets, s.Templates, s.OptionsTemplates, s.Withdrawals, s.DataRecords, s.OptionsRecords)
	if len(s.Errors) == 0 {
		fmt.Fprintln(w, "errors: none")
		return
	}
	reasons := make([]string, 0, len(s.Errors))
	for r := range s.Errors {
		reasons = append(reasons, r)
	}
	slices.Sort(reasons)
	fmt.Fprint(w, "errors:")
	for _, r := range reasons {
		fmt.Fprintf(w, " %s=%d", r, s.Errors[r])
	}
	fmt.Fprintln(w)
}
