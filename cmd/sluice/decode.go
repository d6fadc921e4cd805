package main

import (
	"fmt"
	"io"

	"github.com/sluice-flow/sluice/dataplane/offline/decode"
)

// runDecode is `sluice decode FILE...`.
func runDecode(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("decode", "[--port N] [--format json|text] [--scope-port] FILE...",
		"Decodes pcap/pcapng captures (UDP on any port, IPv4 and IPv6), IPFIX files (RFC 5655)\n"+
			"and raw NetFlow v9/v5 payload files. Templates carry over from file to file.", stderr)
	port := fs.Uint("port", 0, "only UDP datagrams to this destination port (pcap input; 0 = any)")
	format := fs.String("format", "json", "output format: json (one object per line) or text")
	scopePort := fs.Bool("scope-port", false, "scope templates by exporter address and port (default: address only)")
	if err := parseFlags(fs, args, 1, stdout); err != nil {
		return err
	}
	d := decode.NewFiles(stdout, *scopePort)
	switch *format {
	case "json":
	case "text":
		d.Format = decode.Text
	default:
		return usageError{fmt.Errorf("unknown format %q (json or text)", *format)}
	}
	if *port > 65535 {
		return usageError{fmt.Errorf("port %d out of range", *port)}
	}
	d.Port = uint16(*port)
	var firstErr error
	for _, name := range fs.Args() {
		if err := d.File(name); err != nil {
			fmt.Fprintf(stderr, "sluice decode: %s: %v\n", name, err)
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	if err := d.Flush(); err != nil {
		return err
	}
	decode.WriteSummary(stderr, d.Stats())
	return firstErr
}
