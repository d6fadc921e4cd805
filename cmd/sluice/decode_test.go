package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/offline/pcap"
)

var update = flag.Bool("update", false, "rewrite golden files from the current output")

const capturesDir = "../../testdata/captures"

// sharedCaptures is the workspace's folder of vendor captures; tests that
// use it skip when it is absent (it is not part of the repository).
const sharedCaptures = "../../../shared/captures"

// captureFacts is what testdata/exporters/make-captures.sh recorded about a
// capture, counted by tshark when the capture was made.
type captureFacts struct {
	File               string `json:"file"`
	Protocol           string `json:"protocol"`
	Transport          string `json:"transport"`
	DestinationPort    int    `json:"destination_port"`
	DataRecords        int    `json:"data_records"`
	OptionsDataRecords int    `json:"options_data_records"`
}

func decodeFiles(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	if err := runDecode(args, &out, &errb); err != nil {
		t.Fatalf("sluice decode %v: %v\n%s", args, err, errb.String())
	}
	return out.String(), errb.String()
}

var summaryRe = regexp.MustCompile(`data records (\d+), options records (\d+)`)

func summaryCounts(t *testing.T, stderr string) (data, options int) {
	t.Helper()
	m := summaryRe.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no summary in %q", stderr)
	}
	data, _ = strconv.Atoi(m[1])
	options, _ = strconv.Atoi(m[2])
	return data, options
}

// ownCaptures lists the repository's exporter captures with their facts.
func ownCaptures(t *testing.T) map[string]captureFacts {
	t.Helper()
	metas, _ := filepath.Glob(filepath.Join(capturesDir, "*.json"))
	caps := map[string]captureFacts{}
	for _, m := range metas {
		b, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		var f captureFacts
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		if f.File == "" || f.Protocol == "" {
			continue // not a capture description (the traffic summary)
		}
		// Captures of a TCP stream hold IPFIX in TCP segments; the raw
		// stream is kept beside them as an .ipfix file.
		if f.Transport == "tcp" && strings.HasSuffix(f.File, ".pcap") {
			continue
		}
		caps[f.File] = f
	}
	if len(caps) < 5 {
		t.Fatalf("found %d exporter captures in %s, want at least 5", len(caps), capturesDir)
	}
	return caps
}

// TestDecodeGolden decodes every exporter capture and compares the output
// with the committed golden file, and the record counts with what tshark
// counted when the capture was made.
func TestDecodeGolden(t *testing.T) {
	for file, facts := range ownCaptures(t) {
		t.Run(file, func(t *testing.T) {
			out, stderr := decodeFiles(t, filepath.Join(capturesDir, file))
			if !strings.Contains(stderr, "errors: none") {
				t.Errorf("decode reported errors: %s", stderr)
			}
			data, options := summaryCounts(t, stderr)
			if data != facts.DataRecords || options != facts.OptionsDataRecords {
				t.Errorf("decoded %d data and %d options records, tshark counted %d and %d",
					data, options, facts.DataRecords, facts.OptionsDataRecords)
			}
			if n := strings.Count(out, "\n"); n != data+options {
				t.Errorf("printed %d lines for %d records", n, data+options)
			}
			golden := filepath.Join("testdata", "golden", strings.TrimSuffix(file, filepath.Ext(file))+".jsonl")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./cmd/sluice -run Golden -update)", err)
			}
			if out != string(want) {
				gotLines, wantLines := strings.Split(out, "\n"), strings.Split(string(want), "\n")
				for i := range min(len(gotLines), len(wantLines)) {
					if gotLines[i] != wantLines[i] {
						t.Fatalf("line %d differs from %s:\n got %s\nwant %s", i+1, golden, gotLines[i], wantLines[i])
					}
				}
				t.Fatalf("output has %d lines, %s has %d", len(gotLines), golden, len(wantLines))
			}
		})
	}
}

func needTshark(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("tshark")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("tshark is not installed; make test installs it")
		}
		t.Skip("tshark not installed (make test installs it)")
	}
	return p
}

// udpPorts returns the destination ports of the UDP datagrams in a capture,
// so tshark can be told to decode each as NetFlow/IPFIX.
func udpPorts(t *testing.T, file string) []int {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcap.NewReader(bufio.NewReader(f))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	var d pcap.Datagram
	for r.Next(&d) == nil {
		seen[int(d.Dst.Port())] = true
	}
	ports := make([]int, 0, len(seen))
	for p := range seen {
		ports = append(ports, p)
	}
	sort.Ints(ports)
	return ports
}

func tsharkArgs(t *testing.T, file string) []string {
	args := []string{"-n", "-r", file}
	for _, p := range udpPorts(t, file) {
		args = append(args, "-d", fmt.Sprintf("udp.port==%d,cflow", p))
	}
	return args
}

// tshark shows each IPFIX/v9 record as "Flow N" and each v5 record as
// "pdu N/M".
var flowLineRe = regexp.MustCompile(`(?m)^\s+(Flow \d+( \(.*\))?|pdu \d+/\d+)$`)

// tsharkRecordCount counts the data and options records tshark decodes.
func tsharkRecordCount(t *testing.T, tshark, file string) int {
	t.Helper()
	out, err := exec.Command(tshark, append(tsharkArgs(t, file), "-V")...).Output()
	if err != nil {
		t.Fatalf("tshark -V %s: %v", file, err)
	}
	if bytes.Contains(out, []byte("[Malformed Packet")) {
		t.Logf("%s: tshark reports malformed packets", file)
	}
	return len(flowLineRe.FindAll(out, -1))
}

// tsharkFieldMap maps our element names to tshark's cflow fields.
var tsharkFieldMap = map[string]string{
	"sourceIPv4Address":        "cflow.srcaddr",
	"destinationIPv4Address":   "cflow.dstaddr",
	"sourceIPv6Address":        "cflow.srcaddrv6",
	"destinationIPv6Address":   "cflow.dstaddrv6",
	"sourceTransportPort":      "cflow.srcport",
	"destinationTransportPort": "cflow.dstport",
	"protocolIdentifier":       "cflow.protocol",
	"octetDeltaCount":          "cflow.octets",
	"packetDeltaCount":         "cflow.packets",
	// tshark files RFC 5103 reverse counters under the same fields.
	"reverseOctetDeltaCount":  "cflow.octets",
	"reversePacketDeltaCount": "cflow.packets",
}

// tsharkValues returns, for each cflow field, every value tshark decoded in
// the capture, sorted.
func tsharkValues(t *testing.T, tshark, file string) map[string][]string {
	t.Helper()
	args := append(tsharkArgs(t, file), "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=;", "-E", "separator=|")
	names := slices.Sorted(func(yield func(string) bool) {
		for _, f := range tsharkFieldMap {
			if !yield(f) {
				return
			}
		}
	})
	for _, f := range names {
		args = append(args, "-e", f)
	}
	out, err := exec.Command(tshark, args...).Output()
	if err != nil {
		t.Fatalf("tshark fields %s: %v", file, err)
	}
	vals := map[string][]string{}
	for line := range strings.Lines(string(out)) {
		cols := strings.Split(strings.TrimRight(line, "\n"), "|")
		for i, c := range cols {
			if c == "" || i >= len(names) {
				continue
			}
			vals[names[i]] = append(vals[names[i]], strings.Split(c, ";")...)
		}
	}
	for _, v := range vals {
		sort.Strings(v)
	}
	return vals
}

// ourValues collects the same fields from sluice decode's JSON output.
func ourValues(t *testing.T, out string) map[string][]string {
	t.Helper()
	vals := map[string][]string{}
	for line := range strings.Lines(out) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("bad JSON line %q: %v", line, err)
		}
		for name, field := range tsharkFieldMap {
			v, ok := rec[name]
			if !ok {
				continue
			}
			var s string
			switch v := v.(type) {
			case float64:
				s = strconv.FormatFloat(v, 'f', -1, 64)
			case string:
				s = v
			default:
				t.Fatalf("%s has unexpected JSON type %T", name, v)
			}
			vals[field] = append(vals[field], s)
		}
	}
	for _, v := range vals {
		sort.Strings(v)
	}
	return vals
}

// TestDecodeMatchesTshark checks sluice decode against an independent
// decoder: the same number of records, and the same values (as sorted
// multisets over the whole capture) for addresses, ports, protocol and
// counters.
func TestDecodeMatchesTshark(t *testing.T) {
	tshark := needTshark(t)
	for file := range ownCaptures(t) {
		if !strings.HasSuffix(file, ".pcap") {
			continue
		}
		t.Run(file, func(t *testing.T) {
			path := filepath.Join(capturesDir, file)
			out, stderr := decodeFiles(t, path)
			data, options := summaryCounts(t, stderr)
			if n := tsharkRecordCount(t, tshark, path); n != data+options {
				t.Errorf("tshark decodes %d records, sluice %d", n, data+options)
			}
			want, got := tsharkValues(t, tshark, path), ourValues(t, out)
			if len(want) < 5 {
				t.Fatalf("tshark found only fields %v", slices.Collect(func(y func(string) bool) {
					for k := range want {
						y(k)
					}
				}))
			}
			for field, w := range want {
				if !slices.Equal(got[field], w) {
					t.Errorf("%s: sluice has %d values, tshark %d; first difference at %d",
						field, len(got[field]), len(w), firstDiff(got[field], w))
				}
			}
			for field := range got {
				if _, ok := want[field]; !ok {
					t.Errorf("%s: sluice decodes %d values, tshark none", field, len(got[field]))
				}
			}
		})
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
