package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-flow/sluice/internal/testenv"
)

// unnamedRe matches the keys of elements no registry names (the repeat
// suffix _N aside): _ipfix_<id>, _v9_<type>, e<pen>id<id>.
var unnamedRe = regexp.MustCompile(`^(_ipfix_\d+|_v9_\d+|e\d+id\d+)(_\d+)?$`)

// knownUnnamed lists the elements of the captures that neither IANA's
// registry (2024-07-02) nor the vendor lists (libfds, Logstash's NetFlow
// codec) define, with the capture that carries them.
var knownUnnamed = map[string]string{
	"_ipfix_515": "pmacct 106 Huawei: not in IANA's registry of 2024-07-02",
	"e2011id232": "pmacct 106 Huawei (PEN 2011): no list has Huawei's elements",
	"e2011id701": "pmacct 106 Huawei",
	"e2011id702": "pmacct 106 Huawei",
	"e2011id703": "pmacct 106 Huawei",
	"e2011id704": "pmacct 106 Huawei",
	"e2636id137": "akvorado juniper-cpid (PEN 2636): no list has Juniper's elements",
	"_v9_65":     "logstash nf9_fortigate: v9 type 65, which IANA keeps for v9 compatibility and Logstash skips",
}

// collectUnnamed adds the unnamed keys of a decoded JSON value (records,
// and the records of sub-template lists) to seen.
func collectUnnamed(v any, seen map[string]int) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if m := unnamedRe.FindStringSubmatch(k); m != nil {
				seen[m[1]]++
			}
			collectUnnamed(x, seen)
		}
	case []any:
		for _, x := range v {
			collectUnnamed(x, seen)
		}
	}
}

// TestVendorElementsNamed decodes every capture (the shared vendor ones,
// template and data pairs together, and the repository's own) and wants
// every element named but those knownUnnamed lists: a capture element that
// a registry should name, or a listed one that is now named, fails it.
func TestVendorElementsNamed(t *testing.T) {
	if _, err := os.Stat(sharedCaptures); err != nil {
		testenv.SkipOrFail(t, "no shared captures at %s: %v", sharedCaptures, err)
	}
	files, _ := filepath.Glob(filepath.Join(sharedCaptures, "*.pcap"))
	ipfixFiles, _ := filepath.Glob(filepath.Join(sharedCaptures, "*.ipfix"))
	files = append(files, ipfixFiles...)
	if len(files) == 0 {
		testenv.SkipOrFail(t, "shared captures folder is empty")
	}
	groups := pairCaptures(files)
	for file := range ownCaptures(t) {
		groups = append(groups, []string{filepath.Join(capturesDir, file)})
	}
	seen := map[string]int{}
	records := 0
	for _, group := range groups {
		out, _ := decodeFiles(t, append([]string{"--scope-port"}, group...)...)
		for line := range strings.Lines(out) {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("%s: bad JSON line %q: %v", group[len(group)-1], line, err)
			}
			collectUnnamed(rec, seen)
			records++
		}
	}
	t.Logf("%d captures, %d records; %d distinct unnamed elements: %v", len(groups), records, len(seen), slices.Sorted(func(y func(string) bool) {
		for k := range seen {
			if !y(k) {
				return
			}
		}
	}))
	for k, n := range seen {
		if _, ok := knownUnnamed[k]; !ok {
			t.Errorf("%s (%d times) is unnamed: add it to a registry, or to knownUnnamed with the reason", k, n)
		}
	}
	for k, why := range knownUnnamed {
		if seen[k] == 0 {
			t.Errorf("%s (%s) no longer appears unnamed: drop it from knownUnnamed", k, why)
		}
	}
}

// vendorPair maps our keys (a regexp over field keys, and for MPLS entries
// the member of the value object) to one tshark cflow field.
type vendorPair struct {
	keys   *regexp.Regexp
	member string
	field  string
}

func pair(keys, member, field string) vendorPair {
	return vendorPair{regexp.MustCompile(`^(` + keys + `)(_\d+)?$`), member, field}
}

var mplsEntries = `mplsTopLabelStackSection|mplsLabelStackSection\d+`

// vendorSamples are the vendor values compared with tshark's cflow
// dissector, per shared capture.
var vendorSamples = []struct {
	file  string
	pairs []vendorPair
	// frames, when set, keeps only these frames (editcap -r).
	frames string
}{
	{file: "logstash-plugins_logstash-codec-netflow__spec-codecs-ipfix_netscaler-WRAPPED.pcap", pairs: []vendorPair{
		pair("roundTripTime", "", "cflow.pie.netscaler.round-trip-time"),
		pair("transactionId", "", "cflow.pie.netscaler.transaction-id"),
		pair("netscalerConnectionId", "", "cflow.pie.netscaler.connection-id"),
		pair("appNameAppId", "", "cflow.pie.netscaler.appname-app-id"),
		pair("httpReqMethod", "", "cflow.pie.netscaler.http-req-method"),
		pair("httpReqUrl", "", "cflow.pie.netscaler.http-req-url"),
	}},
	{file: "logstash-plugins_logstash-codec-netflow__spec-codecs-ipfix_ixia-WRAPPED.pcap", pairs: []vendorPair{
		pair("ixiaL7AppId", "", "cflow.pie.ixia.l7-application-id"),
		pair("ixiaL7AppName", "", "cflow.pie.ixia.l7-application-name"),
		pair("ixiaSrcAsName", "", "cflow.pie.ixia.src-as-name"),
		pair("ixiaBrowserName", "", "cflow.pie.ixia.browser-name"),
		pair("ixiaThreatIPv4", "", "cflow.pie.ixia.threat-ipv4"),
	}},
	// The ASA redefines its templates in frame 3 and tshark keeps decoding
	// frame 5 with the first definitions, finding values in bytes that are
	// not those records (see TestSharedCaptures): frames 1-4 only.
	{file: "logstash-plugins_logstash-codec-netflow__spec-codecs-nf9_cisco_asa-WRAPPED.pcap", frames: "1-4", pairs: []vendorPair{
		pair("xlateSrcAddrIpv4|postNATSourceIPv4Address", "", "cflow.post_natsource_ipv4_address"),
		pair("xlateDstAddrIpv4|postNATDestinationIPv4Address", "", "cflow.post_natdestination_ipv4_address"),
		pair("xlateSrcPort|postNAPTSourceTransportPort", "", "cflow.post_naptsource_transport_port"),
		pair("xlateDstPort|postNAPTDestinationTransportPort", "", "cflow.post_naptdestination_transport_port"),
		pair("firewallEventExtended", "", "cflow.fw_ext_event"),
	}},
	{file: "akvorado_akvorado__outlet-flow-decoder-netflow-testdata-mpls.pcap", pairs: []vendorPair{
		pair(mplsEntries, "label", "cflow.mpls_label"),
		pair(mplsEntries, "exp", "cflow.mpls_exp"),
		pair(mplsEntries, "bottom_of_stack", "cflow.mpls_bos"),
	}},
}

// TestVendorValuesMatchTshark compares a sample of vendor values (and MPLS
// label stack entries) with what tshark decodes from the same captures, as
// sorted multisets per field.
func TestVendorValuesMatchTshark(t *testing.T) {
	tshark := needTshark(t)
	if _, err := os.Stat(sharedCaptures); err != nil {
		testenv.SkipOrFail(t, "no shared captures at %s: %v", sharedCaptures, err)
	}
	for _, s := range vendorSamples {
		t.Run(s.file, func(t *testing.T) {
			path := filepath.Join(sharedCaptures, s.file)
			if s.frames != "" {
				editcap, err := exec.LookPath("editcap")
				if err != nil {
					t.Skip("editcap not installed (it comes with tshark)")
				}
				cut := filepath.Join(t.TempDir(), "frames.pcap")
				if out, err := exec.Command(editcap, "-F", "pcap", "-r", path, cut, s.frames).CombinedOutput(); err != nil {
					t.Fatalf("editcap: %v\n%s", err, out)
				}
				path = cut
			}
			out, _ := decodeFiles(t, "--scope-port", path)
			var fields []string
			for _, p := range s.pairs {
				fields = append(fields, p.field)
			}
			want := tsharkFieldValues(t, tshark, path, fields)
			got := map[string][]string{}
			for line := range strings.Lines(out) {
				var rec map[string]any
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("bad JSON line %q: %v", line, err)
				}
				for _, p := range s.pairs {
					for k, v := range rec {
						if !p.keys.MatchString(k) {
							continue
						}
						if p.member != "" {
							obj, ok := v.(map[string]any)
							if !ok {
								t.Fatalf("%s = %v, want an MPLS entry object", k, v)
							}
							v = obj[p.member]
						}
						if s := jsonText(t, k, v); s != "" {
							got[p.field] = append(got[p.field], s)
						}
					}
				}
			}
			for _, p := range s.pairs {
				g, w := got[p.field], want[p.field]
				sort.Strings(g)
				if len(g) == 0 {
					t.Errorf("%s: sluice decodes no value", p.field)
					continue
				}
				if !slices.Equal(g, w) {
					t.Errorf("%s: sluice %v, tshark %v", p.field, g, w)
				}
			}
		})
	}
}

// jsonText writes a decoded JSON value as tshark's fields show it: numbers
// in decimal, booleans as 1 or 0, strings as they are ("" is left out, as
// tshark leaves empty fields).
func jsonText(t *testing.T, key string, v any) string {
	switch v := v.(type) {
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		if v {
			return "1"
		}
		return "0"
	case string:
		return v
	}
	t.Fatalf("%s has unexpected JSON type %T", key, v)
	return ""
}

// tsharkFieldValues returns every value tshark decodes for each field,
// sorted; hexadecimal numbers (BASE_HEX fields) are written in decimal.
func tsharkFieldValues(t *testing.T, tshark, file string, fields []string) map[string][]string {
	t.Helper()
	args := append(tsharkArgs(t, file), "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=\x1f", "-E", "separator=\x1e")
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command(tshark, args...).Output()
	if err != nil {
		t.Fatalf("tshark fields %s: %v", file, err)
	}
	vals := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		for i, c := range strings.Split(strings.TrimRight(line, "\n"), "\x1e") {
			if c == "" || i >= len(fields) {
				continue
			}
			for _, v := range strings.Split(c, "\x1f") {
				if h, ok := strings.CutPrefix(v, "0x"); ok {
					if n, err := strconv.ParseUint(h, 16, 64); err == nil {
						v = strconv.FormatUint(n, 10)
					}
				}
				if v != "" {
					vals[fields[i]] = append(vals[fields[i]], v)
				}
			}
		}
	}
	for _, v := range vals {
		sort.Strings(v)
	}
	return vals
}
