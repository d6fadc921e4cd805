package pcap

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseHeaders feeds ParseHeaders the packets of the captures in
// testdata/, each under its link type: it never panics, and what it returns
// for a packet it accepts lies inside the packet and agrees with its
// lengths.
func FuzzParseHeaders(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.pcap*")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		r, err := NewReader(bytes.NewReader(b))
		if err != nil {
			f.Fatal(err)
		}
		var p Packet
		for r.NextPacket(&p) == nil {
			f.Add(p.LinkType, append([]byte(nil), p.Data...))
		}
	}
	if len(files) == 0 {
		f.Fatal("no seed captures in testdata/")
	}
	f.Fuzz(func(t *testing.T, link uint32, b []byte) {
		var h Headers
		if ParseHeaders(link, b, &h) != SkipNone {
			return
		}
		if len(h.Payload) > len(b) || h.PayloadLen < 0 || h.IPLen < h.PayloadLen {
			t.Fatalf("payload %d octets (IP says %d of %d) from a %d-octet packet", len(h.Payload), h.PayloadLen, h.IPLen, len(b))
		}
		if h.FragOff == 0 && len(h.Payload) > h.PayloadLen {
			t.Fatalf("payload %d octets beyond the IP length's %d", len(h.Payload), h.PayloadLen)
		}
	})
}
