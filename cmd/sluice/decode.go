package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"

	"github.com/sluice-flow/sluice/dataplane/offline/decode"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
	"github.com/sluice-flow/sluice/dataplane/offline/pcap"
)

// maxInputFile bounds IPFIX and raw NetFlow files read whole into memory.
const maxInputFile = 1 << 30

func runDecode(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("decode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Uint("port", 0, "only UDP datagrams to this destination port (pcap input; 0 = any)")
	format := fs.String("format", "json", "output format: json (one object per line) or text")
	scopePort := fs.Bool("scope-port", false, "scope templates by exporter address and port (default: address only)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: sluice decode [--port N] [--format json|text] [--scope-port] FILE...\n\n"+
			"Decodes pcap/pcapng captures (UDP on any port, IPv4 and IPv6), IPFIX files (RFC 5655)\n"+
			"and raw NetFlow v9/v5 payload files. Templates carry over from file to file.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("decode: no input files")
	}
	if *format != "json" && *format != "text" {
		return fmt.Errorf("decode: unknown format %q (json or text)", *format)
	}
	if *port > 65535 {
		return fmt.Errorf("decode: port %d out of range", *port)
	}
	w := bufio.NewWriterSize(stdout, 256<<10)
	d := &fileDecoder{dec: decode.New(), w: w, text: *format == "text", port: uint16(*port)}
	d.dec.ScopeByPort = *scopePort
	var firstErr error
	for _, name := range fs.Args() {
		if err := d.file(name); err != nil {
			fmt.Fprintf(stderr, "sluice decode: %s: %v\n", name, err)
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	d.summary(stderr)
	return firstErr
}

type fileDecoder struct {
	dec  *decode.Decoder
	w    *bufio.Writer
	buf  []byte
	text bool
	port uint16
	// Datagrams and bytes decoded from captures and files.
	datagrams uint64
}

func (d *fileDecoder) file(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	head, _ := br.Peek(4)
	if pcap.IsCapture(head) {
		return d.capture(br)
	}
	b, err := io.ReadAll(io.LimitReader(br, maxInputFile+1))
	if err != nil {
		return err
	}
	if len(b) > maxInputFile {
		return errors.New("file larger than 1 GiB")
	}
	if len(b) < 2 {
		return errors.New("file too short")
	}
	var none netip.AddrPort
	if b[0] == 0 && b[1] == ipfix.VersionIPFIX {
		// RFC 5655 file: messages back to back.
		for len(b) > 0 {
			n, err := d.dec.Decode(none, b, d.record)
			if n == 0 {
				return fmt.Errorf("at offset %d: %w", len(b), err)
			}
			b = b[n:]
		}
		return nil
	}
	// A raw NetFlow payload: one message.
	_, err = d.dec.Decode(none, b, d.record)
	return err
}

func (d *fileDecoder) capture(r io.Reader) error {
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
		if d.port != 0 && dg.Dst.Port() != d.port {
			continue
		}
		d.datagrams++
		b := dg.Payload
		for len(b) >= 4 {
			n, _ := d.dec.Decode(dg.Src, b, d.record)
			if n == 0 || b[1] != ipfix.VersionIPFIX {
				break
			}
			b = b[n:]
		}
	}
}

func (d *fileDecoder) record(r *decode.Record) {
	m := jsonl.Meta{Exporter: r.Exporter, Msg: r.Msg, Resolve: r.Resolver}
	if d.text {
		d.buf = appendText(d.buf[:0], &m, r.Rec)
	} else {
		d.buf = jsonl.AppendRecord(d.buf[:0], &m, r.Rec)
	}
	d.w.Write(d.buf)
}

// appendText renders a record for people: a heading line, then one field per
// line.
func appendText(dst []byte, m *jsonl.Meta, r *ipfix.Record) []byte {
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
		f := &r.Layout.Fields[i]
		dst = append(dst, "  "...)
		dst = append(dst, f.Key...)
		for n := len(f.Key); n < 32; n++ {
			dst = append(dst, ' ')
		}
		dst = append(dst, ' ')
		dst = jsonl.AppendValue(dst, m, f.IE, r.Bytes(i), 0)
		dst = append(dst, '\n')
	}
	return append(dst, '\n')
}

func (d *fileDecoder) summary(w io.Writer) {
	s := &d.dec.Stats
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
