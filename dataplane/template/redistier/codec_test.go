package redistier_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/template"
	"github.com/sluice-flow/sluice/dataplane/template/redistier"
)

func TestKeys(t *testing.T) {
	f := func(exporter string, version uint16, domain uint32, id uint16, want string) {
		t.Helper()
		k := template.Key{Exporter: netip.MustParseAddrPort(exporter), Version: version, Domain: domain, ID: id}
		got, ok := redistier.AppendKey(nil, k)
		if !ok || string(got) != want {
			t.Fatalf("AppendKey(%v) = %q, %v; want %q", k, got, ok, want)
		}
		back, ok := redistier.ParseKey(want)
		if !ok || back != k {
			t.Fatalf("ParseKey(%q) = %v, %v; want %v", want, back, ok, k)
		}
	}
	f("192.0.2.1:0", 10, 0, 256, "sluice:tpl:{192.0.2.1}:0:256")
	f("192.0.2.1:2055", 10, 7, 300, "sluice:tpl:{192.0.2.1:2055}:7:300")
	f("[2001:db8::1]:0", 10, 4294967295, 65535, "sluice:tpl:{2001:db8::1}:4294967295:65535")
	f("[2001:db8::1]:4739", 9, 1, 256, "sluice:tpl:{[2001:db8::1]:4739}:v9:1:256")
	f("[fe80::1%eth0]:0", 9, 1, 256, "sluice:tpl:{fe80::1%eth0}:v9:1:256")

	if _, ok := redistier.AppendKey(nil, template.Key{Exporter: netip.MustParseAddrPort("192.0.2.1:0"), Version: 5}); ok {
		t.Error("NetFlow v5 key accepted")
	}
	if _, ok := redistier.AppendKey(nil, template.Key{Exporter: netip.MustParseAddrPort("192.0.2.1:0"), Session: 3, Version: 10, ID: 256}); ok {
		t.Error("TCP session key accepted")
	}
	for _, bad := range []string{
		"", "sluice:tpl:", "sluice:tpl:{192.0.2.1}", "sluice:tpl:{192.0.2.1}:1", "sluice:tpl:{192.0.2.1:1:2",
		"sluice:tpl:{nope}:1:2", "sluice:tpl:{192.0.2.1:0}:1:2", "sluice:tpl:{192.0.2.1}:4294967296:1",
		"sluice:tpl:{192.0.2.1}:1:65536", "sluice:tpl:{192.0.2.1}:v10:1:2", "sluice:tpl:{192.0.2.1}:-1:2",
		"sluice:tpl:{192.0.2.1}x1:2", "sluice:job:{192.0.2.1}:1:2",
	} {
		if k, ok := redistier.ParseKey(bad); ok {
			t.Errorf("ParseKey(%q) = %v, want failure", bad, k)
		}
	}
}

// compile builds a template as the collector would from a record's bytes.
func compile(t testing.TB, raw []byte, options, v9 bool, k template.Key) *template.Template {
	t.Helper()
	var tr ipfix.TemplateRecord
	if err := ipfix.ParseTemplateRecord(raw, options, v9, &tr); err != nil {
		t.Fatal(err)
	}
	lay, err := ipfix.Compile(&tr)
	if err != nil {
		t.Fatal(err)
	}
	return template.New(k, lay, 1_700_000_000_123_456_789, 0)
}

func TestValues(t *testing.T) {
	exp := netip.MustParseAddrPort("192.0.2.1:0")
	f := func(name string, raw []byte, options, v9 bool) {
		t.Helper()
		version := uint16(ipfix.VersionIPFIX)
		if v9 {
			version = ipfix.VersionNetFlow9
		}
		k := template.Key{Exporter: exp, Domain: 3, Version: version, ID: 260}
		tpl := compile(t, raw, options, v9, k)
		b := redistier.AppendValue(nil, tpl)
		v, err := redistier.DecodeValue(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if v.Options != options || v.V9 != v9 || v.Learned != tpl.Learned || string(v.Raw) != string(raw) {
			t.Fatalf("%s: decoded %+v", name, v)
		}
		back, err := v.Template(k, 42)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !back.Layout.Equal(tpl.Layout) || back.Layout.Fingerprint != tpl.Layout.Fingerprint ||
			back.Learned != tpl.Learned || back.Expires() != 42 || back.Key != k {
			t.Fatalf("%s: template changed on the way: %v", name, back.Layout)
		}
		// The same bytes under another ID or version are refused.
		other := k
		other.ID++
		if _, err := v.Template(other, 42); !errors.Is(err, redistier.ErrValueMismatch) {
			t.Fatalf("%s: wrong ID: %v", name, err)
		}
		other = k
		other.Version = ipfix.VersionNetFlow9 + ipfix.VersionIPFIX - k.Version
		if _, err := v.Template(other, 42); !errors.Is(err, redistier.ErrValueMismatch) {
			t.Fatalf("%s: wrong version: %v", name, err)
		}
	}
	f("fixed", ipfix.AppendTemplateRecord(nil, 260, flowFields), false, false)
	f("variable length", ipfix.AppendTemplateRecord(nil, 260, nameFields), false, false)
	f("enterprise", ipfix.AppendTemplateRecord(nil, 260, []ipfix.FieldSpec{{ID: 1, Length: 4, PEN: 29305}, {ID: 1, Length: 8}}), false, false)
	f("options", ipfix.AppendOptionsTemplateRecord(nil, 260, 1, optFields), true, false)
	f("v9", ipfix.AppendTemplateRecord(nil, 260, flowFields), false, true)
	f("v9 options", ipfix.AppendV9OptionsTemplateRecord(nil, 260, 1, []ipfix.FieldSpec{{ID: 1, Length: 4}, {ID: 34, Length: 4}}), true, true)

	for _, c := range []struct {
		b   []byte
		err error
	}{
		{nil, redistier.ErrValueShort},
		{make([]byte, 9), redistier.ErrValueShort},
		{append([]byte{2}, make([]byte, 20)...), redistier.ErrValueFormat},
	} {
		if _, err := redistier.DecodeValue(c.b); !errors.Is(err, c.err) {
			t.Errorf("DecodeValue(%x) = %v, want %v", c.b, err, c.err)
		}
	}
	// A value whose record is cut short or has bytes after it.
	tpl := compile(t, ipfix.AppendTemplateRecord(nil, 260, flowFields), false, false,
		template.Key{Exporter: exp, Version: ipfix.VersionIPFIX, ID: 260})
	b := redistier.AppendValue(nil, tpl)
	k := template.Key{Exporter: exp, Version: ipfix.VersionIPFIX, ID: 260}
	for _, bad := range [][]byte{b[:len(b)-1], append(b[:len(b):len(b)], 0, 0, 0, 0)} {
		v, err := redistier.DecodeValue(bad)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Template(k, 0); err == nil {
			t.Errorf("value %x accepted", bad)
		}
	}
}

func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"sluice:tpl:{192.0.2.1}:0:256", "sluice:tpl:{[2001:db8::1]:4739}:v9:1:256", "sluice:tpl:{::}:1:2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, ok := redistier.ParseKey(s)
		if !ok {
			return
		}
		b, ok := redistier.AppendKey(nil, k)
		if !ok {
			t.Fatalf("parsed %q to %v, which has no key", s, k)
		}
		if back, ok := redistier.ParseKey(string(b)); !ok || back != k {
			t.Fatalf("%q -> %v -> %q -> %v", s, k, b, back)
		}
	})
}

func FuzzDecodeValue(f *testing.F) {
	exp := netip.MustParseAddrPort("192.0.2.1:0")
	k := template.Key{Exporter: exp, Version: ipfix.VersionIPFIX, ID: 260}
	f.Add(redistier.AppendValue(nil, compile(f, ipfix.AppendTemplateRecord(nil, 260, flowFields), false, false, k)), false)
	f.Add(redistier.AppendValue(nil, compile(f, ipfix.AppendOptionsTemplateRecord(nil, 260, 1, optFields), true, false, k)), false)
	k9 := k
	k9.Version = ipfix.VersionNetFlow9
	f.Add(redistier.AppendValue(nil, compile(f, ipfix.AppendV9OptionsTemplateRecord(nil, 260, 1, flowFields), true, true, k9)), true)
	f.Fuzz(func(t *testing.T, b []byte, v9 bool) {
		v, err := redistier.DecodeValue(b)
		if err != nil {
			return
		}
		key := k
		if v9 {
			key = k9
		}
		tpl, err := v.Template(key, 0)
		if err != nil {
			return
		}
		again, err := redistier.DecodeValue(redistier.AppendValue(nil, tpl))
		if err != nil || string(again.Raw) != string(v.Raw) || again.Options != v.Options || again.V9 != v.V9 {
			t.Fatalf("round trip changed the value: %x", b)
		}
	})
}
