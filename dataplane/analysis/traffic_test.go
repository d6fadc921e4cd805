package analysis

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/meter"
)

// buildSluice builds cmd/sluice into dir.
func buildSluice(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "sluice")
	if out, err := exec.Command("go", "build", "-o", p, "github.com/sluice-flow/sluice/cmd/sluice").CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/sluice: %v\n%s", err, out)
	}
	return p
}

// generatedTraffic writes the traffic generator's capture (Ethernet: TCP
// conversations, DNS, other UDP, ICMP and ICMPv6 echo) for seed.
func generatedTraffic(t *testing.T, dir string, seed int) string {
	t.Helper()
	p := filepath.Join(dir, "traffic-"+strconv.Itoa(seed)+".pcap")
	cmd := exec.Command("go", "run", "./testdata/exporters/trafficpcap", "-out", p, "-seed", strconv.Itoa(seed))
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("trafficpcap: %v\n%s", err, out)
	}
	return p
}

// sluiceMeter runs `sluice meter -o OUT CAPTURES...` and returns OUT.
func sluiceMeter(t *testing.T, sluice, out string, captures ...string) string {
	t.Helper()
	b, err := exec.Command(sluice, append([]string{"meter", "--quiet", "-o", out}, captures...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("sluice meter: %v\n%s", err, b)
	}
	return out
}

// withoutSummary returns a result with its Summary (which says what was
// read: file sizes, datagrams, the meter's counts) zeroed, to compare the
// rest.
func withoutSummary(t *testing.T, r Result) Result {
	t.Helper()
	switch v := r.(type) {
	case *TopNResult:
		c := *v
		c.Summary = Summary{}
		return &c
	case *TimeseriesResult:
		c := *v
		c.Summary = Summary{}
		return &c
	case *GraphResult:
		c := *v
		c.Summary = Summary{}
		return &c
	case *RecordsResult:
		c := *v
		c.Summary = Summary{}
		return &c
	}
	t.Fatalf("result %T", r)
	return nil
}

// TestTrafficEqualsMeterFile: a job over captures of ordinary traffic
// gives what the same job gives over the IPFIX file `sluice meter` writes
// for them (the captures continuing one another in both).
func TestTrafficEqualsMeterFile(t *testing.T) {
	dir := t.TempDir()
	a, b := generatedTraffic(t, dir, 1), generatedTraffic(t, dir, 2)
	raw := filepath.Join(dir, "raw.pcap")
	writeTrafficPcap(t, raw)
	sluice := buildSluice(t, dir)
	ctx := context.Background()
	for _, caps := range [][]string{{a}, {raw}, {a, b}} {
		name := ""
		for _, c := range caps {
			name += filepath.Base(c)
		}
		ipfixFile := sluiceMeter(t, sluice, filepath.Join(dir, name+".ipfix"), caps...)
		for _, c := range []struct{ job, params string }{
			{JobTopN, `{"by":["sourceIPv4Address"],"metric":"octets","n":20}`},
			{JobTopN, `{"by":["sourceIPv6Address"],"metric":"packets","n":20}`},
			{JobTopN, `{"by":["sourceIPv4Address","destinationIPv4Address","sourceTransportPort","destinationTransportPort","protocolIdentifier"],"metric":"flows","n":10000}`},
			{JobTopN, `{"by":["protocolIdentifier"],"filter":"destinationTransportPort == 53"}`},
			{JobTimeseries, `{"step":"1s","split_by":["protocolIdentifier"]}`},
			{JobGraph, `{}`},
			{JobRecords, `{"limit":10000}`},
		} {
			t.Run(name+"/"+c.job+c.params, func(t *testing.T) {
				got, err := Run(ctx, c.job, Input{Files: caps}, []byte(c.params))
				if err != nil {
					t.Fatal(err)
				}
				want, err := Run(ctx, c.job, Input{Files: []string{ipfixFile}}, []byte(c.params))
				if err != nil {
					t.Fatal(err)
				}
				if g, w := withoutSummary(t, got), withoutSummary(t, want); !reflect.DeepEqual(g, w) {
					t.Fatalf("over the captures:\n%+v\nover sluice meter's file:\n%+v", g, w)
				}
				if tr, ok := got.(*TopNResult); ok && strings.Contains(c.params, `["sourceIPv4Address"]`) && len(tr.Rows) == 0 {
					t.Fatal("no rows")
				}
			})
		}
		// The summary: the meter's counts, and the same messages and
		// records as the file's.
		got, err := TopN(ctx, Input{Files: caps}, TopNParams{By: []string{"protocolIdentifier"}})
		if err != nil {
			t.Fatal(err)
		}
		want, err := TopN(ctx, Input{Files: []string{ipfixFile}}, TopNParams{By: []string{"protocolIdentifier"}})
		if err != nil {
			t.Fatal(err)
		}
		gs, ws := got.Summary, want.Summary
		st := gs.Traffic
		if st == nil || ws.Traffic != nil || st.Files != len(caps) || st.Packets == 0 || st.Metered != st.Packets || len(st.Skipped) != 0 ||
			st.Flows != ws.DataRecords || gs.DataRecords != ws.DataRecords || gs.Messages != ws.Messages ||
			got.Total.Packets != st.Metered || got.Total.Octets != st.Octets || got.Total.Flows != st.Flows {
			t.Fatalf("%s: summary %+v traffic %+v total %+v; file's summary %+v", name, gs, st, got.Total, ws)
		}
	}
}

// TestTrafficInput: params.input, progress and the errors of captures
// the meter cannot read.
func TestTrafficInput(t *testing.T) {
	dir := t.TempDir()
	a := generatedTraffic(t, dir, 1)
	ctx := context.Background()

	var seen []float64
	r, err := TopN(ctx, Input{Files: []string{a}, Progress: func(f float64) { seen = append(seen, f) }},
		TopNParams{By: []string{"destinationTransportPort"}, Common: Common{Input: "traffic"}})
	if err != nil || r.Summary.Traffic == nil || len(seen) == 0 || seen[len(seen)-1] != 1 {
		t.Fatalf("input traffic: %v, progress %v", err, seen)
	}
	// Forced export: the capture's DNS and other UDP datagrams are not
	// flow export.
	r, err = TopN(ctx, Input{Files: []string{a}}, TopNParams{By: []string{"destinationTransportPort"}, Common: Common{Input: "export"}})
	if err != nil || r.Summary.Traffic != nil || r.Summary.Datagrams == 0 || r.Summary.DataRecords != 0 {
		t.Fatalf("input export: %v %+v", err, r.Summary)
	}

	// A capture that breaks off: the job fails, naming the file, why it
	// was taken for traffic, and the way out.
	whole, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "cut.pcap")
	if err := os.WriteFile(cut, whole[:len(whole)*2/3], 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = TopN(ctx, Input{Files: []string{cut}}, TopNParams{By: []string{"sourceIPv4Address"}})
	var te *TrafficError
	if !errors.Is(err, ErrTrafficCapture) || !errors.Is(err, meter.ErrDamaged) || !errors.As(err, &te) || te.File != cut ||
		te.Forced || te.Packets == 0 || !strings.Contains(err.Error(), `params.input to "export"`) {
		t.Fatalf("cut capture: %v", err)
	}
	_, err = TopN(ctx, Input{Files: []string{cut}}, TopNParams{By: []string{"sourceIPv4Address"}, Common: Common{Input: "traffic"}})
	if !errors.As(err, &te) || !te.Forced || !errors.Is(err, meter.ErrDamaged) {
		t.Fatalf("cut capture, input traffic: %v", err)
	}
	// params.input traffic over a file that is not a capture.
	ipfixFile := capture("softflowd-ipfix-tcp.ipfix")
	_, err = Graph(ctx, Input{Files: []string{a, ipfixFile}}, GraphParams{Common: Common{Input: "traffic"}})
	if !errors.As(err, &te) || !te.Forced || te.File != ipfixFile || !strings.Contains(err.Error(), "not a pcap or pcapng capture") {
		t.Fatalf("input traffic over an IPFIX file: %v", err)
	}
	// Cancelled: the context's error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := TopN(cctx, Input{Files: []string{a}}, TopNParams{By: []string{"sourceIPv4Address"}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}
