package entry_test

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/entry"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

var tuple = []ipfix.FieldSpec{{ID: 8, Length: 4}, {ID: 12, Length: 4}, {ID: 7, Length: 2}, {ID: 11, Length: 2}, {ID: 4, Length: 1}, {ID: 1, Length: 8}}

// sample is one entry as the collector builds it: a header and its body.
type sample struct {
	name string
	h    entry.Header
	body []byte
}

// samples are entries of every kind as the collector's loops push them
// (dataplane/collector/loop.go), bodies made with package ipfix's encoders.
func samples() []sample {
	tpl := ipfix.AppendTemplateRecord(nil, 256, tuple)
	opts := ipfix.AppendOptionsTemplateRecord(nil, 257, 1, []ipfix.FieldSpec{{ID: 149, Length: 4}, {ID: 34, Length: 4}})
	v9opts := ipfix.AppendV9OptionsTemplateRecord(nil, 258, 1, []ipfix.FieldSpec{{ID: 1, Length: 4}, {ID: 34, Length: 4}})
	var data []byte
	for i := range 3 {
		data = ipfix.AppendAddr(data, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
		data = ipfix.AppendAddr(data, netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}))
		data = ipfix.AppendUint(data, 40000+uint64(i), 2)
		data = ipfix.AppendUint(data, 443, 2)
		data = ipfix.AppendUint(data, 6, 1)
		data = ipfix.AppendUint(data, 1500*uint64(i+1), 8)
	}
	data = append(data, 0, 0, 0) // set padding
	v4 := netip.MustParseAddrPort("192.0.2.1:2055")
	v6 := netip.MustParseAddrPort("[2001:db8::1]:4739")
	return []sample{
		{"template", entry.Header{Kind: entry.KindTemplate, Version: ipfix.VersionIPFIX, Domain: 7,
			Exporter: netip.AddrPortFrom(v4.Addr(), 0), TemplateID: 256, Fingerprint: 0x0123456789abcdef}, tpl},
		{"options template scoped by port", entry.Header{Kind: entry.KindTemplate, Flags: entry.FlagOptions,
			Version: ipfix.VersionIPFIX, Domain: 7, Exporter: v6, TemplateID: 257, Fingerprint: 1}, opts},
		{"v9 options template", entry.Header{Kind: entry.KindTemplate, Flags: entry.FlagOptions | entry.FlagV9,
			Version: ipfix.VersionNetFlow9, Domain: 1, Exporter: v4, TemplateID: 258, Fingerprint: 2}, v9opts},
		{"data", entry.Header{Kind: entry.KindData, Version: ipfix.VersionIPFIX, Domain: 7, Exporter: v4,
			TemplateID: 256, Fingerprint: 0x0123456789abcdef, ExportTime: 1700000000, Sequence: 42,
			ExportNanos: 123456789, Records: 3, Received: 1700000000123456789}, data},
		{"data of a TCP session", entry.Header{Kind: entry.KindData, Version: ipfix.VersionIPFIX, Domain: 7, Exporter: v4,
			TemplateID: 256, Fingerprint: 3, Records: 1, Session: 12345, Received: -1}, data},
		{"data v9 IPv6", entry.Header{Kind: entry.KindData, Version: ipfix.VersionNetFlow9, Domain: 0xffffffff,
			Exporter: v6, TemplateID: 0xffff, Fingerprint: ^uint64(0), ExportTime: ^uint32(0), Sequence: ^uint32(0),
			SysUptime: ^uint32(0), ExportNanos: 999999999, Records: 3}, data},
		{"withdrawal", entry.Header{Kind: entry.KindWithdrawal, Version: ipfix.VersionIPFIX, Domain: 7, Exporter: v4, TemplateID: 256}, nil},
		{"reset", entry.Header{Kind: entry.KindReset}, nil},
	}
}

func (s sample) bytes() []byte {
	b := make([]byte, entry.HeaderLen, entry.HeaderLen+len(s.body))
	entry.Put(b, &s.h)
	return append(b, s.body...)
}

// TestRoundTrip: every entry the collector builds parses back to the same
// header and body.
func TestRoundTrip(t *testing.T) {
	for _, s := range samples() {
		b := s.bytes()
		var h entry.Header
		body, err := entry.Parse(b, &h)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if h != s.h {
			t.Errorf("%s: parsed %+v, want %+v", s.name, h, s.h)
		}
		if !bytes.Equal(body, s.body) {
			t.Errorf("%s: body % x, want % x", s.name, body, s.body)
		}
	}
}

// TestExporterForms: the zone is not carried; an IPv4-mapped IPv6 exporter
// comes back as IPv4, the form sockets give the collector.
func TestExporterForms(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		var b [entry.HeaderLen]byte
		entry.Put(b[:], &entry.Header{Kind: entry.KindData, Exporter: netip.MustParseAddrPort(in)})
		var h entry.Header
		if _, err := entry.Parse(b[:], &h); err != nil {
			t.Fatal(err)
		}
		if got := h.Exporter.String(); got != want {
			t.Errorf("%s came back as %s, want %s", in, got, want)
		}
	}
	f("[fe80::1%eth0]:2055", "[fe80::1]:2055")
	f("[::ffff:192.0.2.1]:2055", "192.0.2.1:2055")
	f("0.0.0.0:9", "0.0.0.0:9")
	f("[::1]:9", "[::1]:9")
}

func TestParseShort(t *testing.T) {
	var h entry.Header
	for n := range entry.HeaderLen {
		if body, err := entry.Parse(make([]byte, n), &h); !errors.Is(err, entry.ErrShort) || body != nil {
			t.Errorf("%d bytes: body %v, err %v", n, body, err)
		}
	}
}

func TestNoAllocs(t *testing.T) {
	s := samples()[3]
	b := s.bytes()
	var h entry.Header
	if n := testing.AllocsPerRun(100, func() {
		entry.Put(b, &s.h)
		if _, err := entry.Parse(b, &h); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Put and Parse allocate %v times, want 0", n)
	}
}

// FuzzParse feeds Parse what a ring in shared memory could hand the
// mediator: entries the collector builds, and whatever mutation makes of
// them. Parse must not panic; what parses must be a header plus a view of
// the rest, Put must write the same header bytes back, and those must parse
// to the same header.
func FuzzParse(f *testing.F) {
	for _, s := range samples() {
		f.Add(s.bytes())
	}
	f.Add([]byte{})
	f.Add(make([]byte, entry.HeaderLen-1))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h entry.Header
		body, err := entry.Parse(b, &h)
		if len(b) < entry.HeaderLen {
			if !errors.Is(err, entry.ErrShort) || body != nil {
				t.Fatalf("%d bytes: body %v, err %v", len(b), body, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("%d bytes: %v", len(b), err)
		}
		if len(body) != len(b)-entry.HeaderLen || (len(body) > 0 && &body[0] != &b[entry.HeaderLen]) {
			t.Fatalf("body is not the view b[%d:]: %d bytes of %d", entry.HeaderLen, len(body), len(b))
		}
		if h.Exporter.Addr().Zone() != "" || h.Exporter.Addr().Is4In6() {
			t.Fatalf("exporter %v: zone or IPv4-mapped form", h.Exporter)
		}
		var again [entry.HeaderLen + 1]byte
		again[entry.HeaderLen] = 0xa5
		if n := entry.Put(again[:], &h); n != entry.HeaderLen || again[entry.HeaderLen] != 0xa5 {
			t.Fatalf("Put wrote %d bytes or past the header", n)
		}
		if !bytes.Equal(again[:entry.HeaderLen], b[:entry.HeaderLen]) {
			t.Fatalf("header re-encodes differently:\n got % x\nwant % x", again[:entry.HeaderLen], b[:entry.HeaderLen])
		}
		var h2 entry.Header
		if _, err := entry.Parse(again[:entry.HeaderLen], &h2); err != nil || h2 != h {
			t.Fatalf("re-encoded header parses to %+v (%v), want %+v", h2, err, h)
		}
	})
}
