package pcap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the fuzz seed captures in testdata/")

// seedCaptures returns the small captures kept in testdata/ as fuzz seeds,
// by file name. They are deterministic, so TestSeeds can check the files.
func seedCaptures(t testing.TB) map[string][]byte {
	t.Helper()
	seeds := map[string][]byte{}
	v4a := netip.MustParseAddrPort("192.0.2.10:50000")
	v4b := netip.MustParseAddrPort("198.51.100.1:4739")
	v6a := netip.MustParseAddrPort("[2001:db8::10]:50000")
	v6b := netip.MustParseAddrPort("[2001:db8::1]:2055")
	ts := time.Date(2024, 7, 2, 12, 0, 0, 123456789, time.UTC)
	for _, c := range []struct {
		name string
		cfg  WriterConfig
	}{
		{"eth_le_micro.pcap", WriterConfig{LinkType: LinkTypeEthernet}},
		{"raw_be_nano.pcap", WriterConfig{LinkType: LinkTypeRaw, ByteOrder: binary.BigEndian, Nanosecond: true}},
		{"sll_le_nano.pcap", WriterConfig{LinkType: LinkTypeLinuxSLL, Nanosecond: true}},
		{"sll2_be_micro.pcap", WriterConfig{LinkType: LinkTypeSLL2, ByteOrder: binary.BigEndian}},
		{"null_be_micro.pcap", WriterConfig{LinkType: LinkTypeNull, ByteOrder: binary.BigEndian}},
	} {
		var buf bytes.Buffer
		w, err := NewWriterConfig(&buf, c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		// An IPFIX message header, then a NetFlow v9 one.
		if err := w.WriteUDP(ts, v4a, v4b, []byte{0, 10, 0, 16, 0x66, 0x84, 0x9d, 0x30, 0, 0, 0, 1, 0, 0, 0, 1}); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteUDP(ts.Add(time.Second), v6a, v6b, []byte{0, 9, 0, 0, 0, 0, 0, 1, 0x66, 0x84, 0x9d, 0x31, 0, 0, 0, 2, 0, 0, 0, 0}); err != nil {
			t.Fatal(err)
		}
		seeds[c.name] = buf.Bytes()
	}

	// Packets that are skipped, on Ethernet.
	var buf bytes.Buffer
	w, _ := NewWriter(&buf, LinkTypeEthernet)
	good := ip4(t, "192.0.2.1:1000", "192.0.2.2:2000", []byte("datagram"))
	big := ip4(t, "192.0.2.1:1000", "192.0.2.2:2000", make([]byte, 64))
	for _, frame := range [][]byte{
		eth(etherTypeIPv4, good, etherTypeQinQ, etherTypeVLAN),
		eth(etherTypeIPv4, frag4(big, 24, 0, true)),
		eth(etherTypeIPv4, frag4(big, 48, 3, false)),
		eth(etherTypeIPv6, withExt(ip6(t, "[2001:db8::1]:1", "[2001:db8::2]:2", []byte("v6")), protoRouting, make([]byte, 6))),
		eth(etherTypeIPv4, good)[:40],
		eth(0x0806, make([]byte, 28)),
		eth(etherTypeMPLS, append([]byte{0, 1, 1, 64}, good...)),
	} {
		if err := w.WritePacket(ts, frame); err != nil {
			t.Fatal(err)
		}
	}
	seeds["skips_le_micro.pcap"] = buf.Bytes()

	ng, _, _ := buildPcapng(t)
	seeds["sections.pcapng"] = ng
	return seeds
}

// TestSeeds checks that the seed captures in testdata/ are those that
// seedCaptures makes, and that they read cleanly; -update-seeds rewrites
// them.
func TestSeeds(t *testing.T) {
	for name, want := range seedCaptures(t) {
		path := filepath.Join("testdata", name)
		if *updateSeeds {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -run TestSeeds -update-seeds)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what seedCaptures makes (run go test -run TestSeeds -update-seeds)", path)
		}
		if ds, _ := readAll(t, got); len(ds) == 0 {
			t.Errorf("%s: no datagrams", name)
		}
	}
}

// FuzzReader feeds arbitrary bytes to NewReader and Next: they must return
// errors, never panic, and never loop without consuming input.
func FuzzReader(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "*.pcap*"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	if len(paths) == 0 {
		for _, b := range seedCaptures(f) {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data))
		if err != nil {
			if r != nil {
				t.Fatal("reader and error both returned")
			}
			return
		}
		var d Datagram
		// Each datagram takes at least a 12-byte block or 16-byte record.
		for n := 0; ; n++ {
			if n > len(data)/12+1 {
				t.Fatalf("%d datagrams from %d bytes", n, len(data))
			}
			err := r.Next(&d)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) &&
					!errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBlockTooLarge) &&
					!errors.Is(err, ErrUnsupportedVersion) {
					t.Fatalf("unexpected error %v", err)
				}
				break
			}
			if len(d.Payload) > len(data) {
				t.Fatalf("payload of %d bytes from %d bytes of input", len(d.Payload), len(data))
			}
			if !d.Src.IsValid() || !d.Dst.IsValid() {
				t.Fatalf("invalid endpoints %v -> %v", d.Src, d.Dst)
			}
		}
		st := r.Stats()
		if st.Packets != st.Datagrams+st.Skipped() {
			t.Fatalf("inconsistent stats %+v", st)
		}
	})
}
