package loadgen

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

var buildTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// TestBuildMessages decodes the prepared messages of each protocol and
// template mix with dataplane/ipfix and checks headers, templates, record
// counts and lengths.
func TestBuildMessages(t *testing.T) {
	f := func(p Protocol, templates []Template, records int, dataLen int) {
		t.Helper()
		cfg := Config{Protocol: p, Templates: templates, Records: records, Exporters: 3}.withDefaults()
		if err := cfg.check(); err != nil {
			t.Fatalf("check: %v", err)
		}
		var kinds []Template
		for _, k := range templates {
			if k != Options {
				kinds = append(kinds, k)
			}
		}
		options := slices.Contains(templates, Options)
		for domain := uint32(1); domain <= 3; domain++ {
			m, err := buildMessages(&cfg, domain, buildTime)
			if err != nil {
				t.Fatalf("%v %v: %v", p, templates, err)
			}
			d := newDecoder(t)
			tpl := d.decode(m.tpl)
			checkHeader(t, tpl.hdr, p, domain)
			if p == NetFlowV9 && int(tpl.hdr.Count) != len(tpl.templates) {
				t.Errorf("v9 template message count %d, want %d templates", tpl.hdr.Count, len(tpl.templates))
			}
			if len(tpl.dataSets) != 0 {
				t.Errorf("template message has data sets %v", tpl.dataSets)
			}
			want := len(kinds)
			if options {
				want++
			}
			if len(tpl.templates) != want {
				t.Fatalf("%v %v: %d templates, want %d", p, templates, len(tpl.templates), want)
			}
			for i, k := range kinds {
				tr := tpl.templates[i]
				if tr.ID != uint16(templateBase+i) || tr.Options || !slices.Equal(tr.Fields, templateFields[k]) {
					t.Errorf("template %d: got %+v, want ID %d fields %v", i, tr, templateBase+i, templateFields[k])
				}
			}
			if options {
				tr := tpl.templates[len(kinds)]
				if tr.ID != optionsID || !tr.Options || tr.ScopeCount != 1 || !slices.Equal(tr.Fields, optionsFields) {
					t.Errorf("options template: %+v", tr)
				}
				opt := d.decode(m.opt)
				checkHeader(t, opt.hdr, p, domain)
				if opt.options != 1 || opt.records != 0 {
					t.Errorf("options message: %d options records, %d data records; want 1, 0", opt.options, opt.records)
				}
			} else if m.opt != nil {
				t.Errorf("options message without Options")
			}
			if len(m.data) != cycleMessages*len(kinds) {
				t.Errorf("%d data messages, want %d", len(m.data), cycleMessages*len(kinds))
			}
			for i, msg := range m.data {
				dm := d.decode(msg)
				checkHeader(t, dm.hdr, p, domain)
				if dm.records != records || dm.options != 0 {
					t.Fatalf("data message %d: %d records, %d options records; want %d, 0", i, dm.records, dm.options, records)
				}
				if p == NetFlowV9 && int(dm.hdr.Count) != records {
					t.Errorf("v9 data message count %d, want %d", dm.hdr.Count, records)
				}
				if want := uint16(templateBase + i%len(kinds)); !slices.Equal(dm.dataSets, []uint16{want}) {
					t.Errorf("data message %d: sets %v, want [%d]", i, dm.dataSets, want)
				}
				if dataLen > 0 && len(msg) != dataLen {
					t.Errorf("%v %v: data message of %d octets, want %d", p, kinds, len(msg), dataLen)
				}
			}
		}
	}
	// 5tuple records are 46 octets: IPFIX header 16, set header 4.
	f(IPFIX, []Template{FiveTuple}, 30, 16+4+30*46)
	f(IPFIX, []Template{FiveTuple}, 1, 16+4+46)
	// v9: header 20, set padded to 4 octets.
	f(NetFlowV9, []Template{FiveTuple}, 30, 20+4+30*46)
	f(NetFlowV9, []Template{FiveTuple}, 1, 20+52)
	f(IPFIX, []Template{IPv6}, 10, 16+4+10*73)
	f(NetFlowV9, []Template{IPv6}, 10, 20+4+732)
	f(IPFIX, []Template{VarLen}, 7, 0)
	f(NetFlowV9, []Template{VarLen}, 7, 0)
	f(IPFIX, []Template{FiveTuple, IPv6, VarLen, Options}, 5, 0)
	f(NetFlowV9, []Template{Options, VarLen, FiveTuple}, 5, 0)
}

func checkHeader(t *testing.T, h ipfix.Message, p Protocol, domain uint32) {
	t.Helper()
	if h.Version != uint16(p) || h.DomainID != domain || h.ExportTime != uint32(buildTime.Unix()) {
		t.Errorf("header version %d domain %d export time %d, want %d %d %d",
			h.Version, h.DomainID, h.ExportTime, p, domain, buildTime.Unix())
	}
}

func TestBuildMessagesTooLarge(t *testing.T) {
	cfg := Config{Records: 2000}.withDefaults()
	if _, err := buildMessages(&cfg, 1, buildTime); !errors.Is(err, ipfix.ErrMessageTooLarge) {
		t.Fatalf("2000 5-tuple records in one message: err %v, want ErrMessageTooLarge", err)
	}
}

// TestKeys checks that the data records cycle through exactly Keys distinct
// 5-tuples, split among the exporters, and that without Keys an exporter
// cycles through 16 messages' worth.
func TestKeys(t *testing.T) {
	f := func(keys, exporters, records int, kinds ...Template) {
		t.Helper()
		cfg := Config{Keys: keys, Exporters: exporters, Records: records, Templates: kinds}.withDefaults()
		if err := cfg.check(); err != nil {
			t.Fatal(err)
		}
		all := map[flowKey]bool{}
		total := 0
		for i := range exporters {
			m, err := buildMessages(&cfg, uint32(i+1), buildTime)
			if err != nil {
				t.Fatal(err)
			}
			want := cfg.exporterKeys(i)
			if keys == 0 {
				want = cycleMessages * records
			}
			if got, wantMsgs := len(m.data), (want+records-1)/records*len(kinds); got != wantMsgs {
				t.Errorf("keys %d exporter %d: %d messages in the cycle, want %d", keys, i, got, wantMsgs)
			}
			d := newDecoder(t)
			d.decode(m.tpl)
			mine := map[flowKey]bool{}
			for _, msg := range m.data {
				for _, k := range d.decode(msg).keys {
					mine[k] = true
					all[k] = true
				}
			}
			if len(mine) != want {
				t.Errorf("keys %d exporters %d: exporter %d sends %d 5-tuples, want %d", keys, exporters, i, len(mine), want)
			}
			total += want
		}
		if keys > 0 && (total != keys || len(all) != keys) {
			t.Errorf("keys %d exporters %d: %d 5-tuples in all (shares add up to %d)", keys, exporters, len(all), total)
		}
	}
	f(0, 2, 30, FiveTuple)
	f(1, 1, 30, FiveTuple)
	f(7, 3, 2, FiveTuple)
	f(1000, 4, 30, FiveTuple)
	f(1001, 4, 30, FiveTuple, VarLen)
	f(70000, 1, 30, FiveTuple)
	f(100000, 255, 7, VarLen)
}

func TestSourceAddr(t *testing.T) {
	f := func(i int, want string) {
		t.Helper()
		if got := sourceAddr(i); got != netip.MustParseAddr(want) {
			t.Errorf("sourceAddr(%d) = %v, want %s", i, got, want)
		}
	}
	f(0, "127.0.1.1")
	f(1, "127.0.1.2")
	f(254, "127.0.1.255")
	f(255, "127.0.2.0")
	f(9999, "127.0.40.16")
}
