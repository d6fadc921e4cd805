package loadgen

import (
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	f := func(s string, want Rate) {
		t.Helper()
		got, err := ParseRate(s)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %+v, %v; want %+v", s, got, err, want)
		}
	}
	f("0", Rate{})
	f("1500", Rate{PerSecond: 1500})
	f("1500rps", Rate{PerSecond: 1500})
	f("2Mrps", Rate{PerSecond: 2e6})
	f("100k", Rate{PerSecond: 1e5})
	f("300kpps", Rate{PerSecond: 3e5, Packets: true})
	f("2.5Mpps", Rate{PerSecond: 2.5e6, Packets: true})
	f("7pps", Rate{PerSecond: 7, Packets: true})
	for _, bad := range []string{"", "fast", "-1", "1G", "pps", "1kk", "1Mbps"} {
		if r, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) = %+v, want an error", bad, r)
		}
	}
}

func TestParseProtocol(t *testing.T) {
	f := func(s string, want Protocol) {
		t.Helper()
		got, err := ParseProtocol(s)
		if err != nil || got != want {
			t.Errorf("ParseProtocol(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	f("ipfix", IPFIX)
	f("IPFIX", IPFIX)
	f("10", IPFIX)
	f("v9", NetFlowV9)
	f("9", NetFlowV9)
	for _, bad := range []string{"", "5", "v5", "netflow", "11"} {
		if p, err := ParseProtocol(bad); err == nil {
			t.Errorf("ParseProtocol(%q) = %v, want an error", bad, p)
		}
	}
}

func TestParseTemplates(t *testing.T) {
	got, err := ParseTemplates("5tuple,ipv6,varlen,options")
	if want := []Template{FiveTuple, IPv6, VarLen, Options}; err != nil || !slices.Equal(got, want) {
		t.Errorf("ParseTemplates = %v, %v; want %v", got, err, want)
	}
	for _, bad := range []string{"", "5tuple,", "ipv4", "5tuple,bogus"} {
		if ts, err := ParseTemplates(bad); err == nil {
			t.Errorf("ParseTemplates(%q) = %v, want an error", bad, ts)
		}
	}
}

func TestDefaults(t *testing.T) {
	got := Config{}.withDefaults()
	want := Config{Addr: netip.MustParseAddrPort("127.0.0.1:4739"), Protocol: IPFIX, Exporters: 1, Ports: 1, Records: 30,
		Templates: []Template{FiveTuple}, TemplateInterval: time.Second, Batch: 64, FirstDomain: 1}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}
	if err := got.check(); err != nil {
		t.Errorf("the zero Config is refused: %v", err)
	}
}

// TestAllowRemote: a destination outside loopback needs AllowRemote; New
// refuses it before opening any socket.
func TestAllowRemote(t *testing.T) {
	f := func(addr string, allow, ok bool) {
		t.Helper()
		cfg := Config{Addr: netip.MustParseAddrPort(addr), AllowRemote: allow}.withDefaults()
		err := cfg.check()
		if ok && err != nil {
			t.Errorf("%s allow %v: %v", addr, allow, err)
		}
		if !ok && !errors.Is(err, ErrRemote) {
			t.Errorf("%s allow %v: err %v, want ErrRemote", addr, allow, err)
		}
	}
	f("127.0.0.1:4739", false, true)
	f("127.3.2.1:4739", false, true)
	f("[::1]:4739", false, true)
	f("192.0.2.1:4739", false, false)
	f("[2001:db8::1]:4739", false, false)
	f("0.0.0.0:4739", false, false)
	f("192.0.2.1:4739", true, true)
	f("[2001:db8::1]:4739", true, true)
	if _, err := New(Config{Addr: netip.MustParseAddrPort("192.0.2.1:4739")}); !errors.Is(err, ErrRemote) {
		t.Errorf("New to 192.0.2.1: err %v, want ErrRemote", err)
	}
}

func TestCheck(t *testing.T) {
	f := func(cfg Config, want string) {
		t.Helper()
		cfg = cfg.withDefaults()
		err := cfg.check()
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "loadgen: ") {
			t.Errorf("check(%+v) = %v, want an error with %q", cfg, err, want)
		}
	}
	f(Config{Protocol: 5}, "protocol")
	f(Config{Protocol: NetFlowV9, TCP: true}, "TCP")
	f(Config{Templates: []Template{Options}}, "no data template")
	f(Config{Templates: []Template{}}, "no data template")
	f(Config{Templates: []Template{"bogus"}}, "unknown template")
	f(Config{Exporters: -1}, "exporters")
	f(Config{Exporters: 10001}, "exporters")
	f(Config{Records: -1}, "records")
	f(Config{Ports: 65}, "ports")
	f(Config{Ports: 2, Exporters: 5001}, "ports")
	f(Config{Batch: 1025}, "batch")
	f(Config{Count: -1}, "negative")
	f(Config{Duration: -time.Second}, "negative")
	f(Config{Rate: Rate{PerSecond: -1}}, "negative")
	f(Config{Keys: MaxKeys + 1}, "keys")
	f(Config{Keys: 3, Exporters: 4}, "at least exporters")
	f(Config{Keys: 1000, Exporters: 256}, "255")
	f(Config{Keys: 1000, Exporters: 2, FirstDomain: 255}, "255")
	f(Config{FirstDomain: 1<<31 + 1}, "first domain")
	f(Config{Reconnect: true}, "reconnect is for TCP")
	for _, ok := range []Config{
		{Protocol: NetFlowV9, Templates: []Template{Options, IPv6}},
		{TCP: true, Exporters: 10000, Batch: 1024},
		{Keys: MaxKeys, Exporters: 255},
		{Keys: 5, Exporters: 5},
		{Keys: 5, Exporters: 5, FirstDomain: 251},
		{TCP: true, Reconnect: true, FirstDomain: 1 << 31},
	} {
		ok = ok.withDefaults()
		if err := ok.check(); err != nil {
			t.Errorf("check(%+v): %v", ok, err)
		}
	}
}
