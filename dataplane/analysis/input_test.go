package analysis

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/filter"
	"github.com/sluice-flow/sluice/dataplane/offline/pcap"
)

func TestBadParams(t *testing.T) {
	f := func(job, params, wantParam, wantReason string, wantColumn int) {
		t.Helper()
		err := ValidateParams(job, []byte(params))
		var pe *ParamError
		if !errors.As(err, &pe) {
			t.Fatalf("%s %s: %v, want a *ParamError", job, params, err)
		}
		if pe.Param != wantParam || pe.Column != wantColumn || !strings.Contains(pe.Error(), wantReason) {
			t.Fatalf("%s %s: param %q column %d %q; want %q %d %q", job, params, pe.Param, pe.Column, pe.Error(), wantParam, wantColumn, wantReason)
		}
		// Run refuses the same before reading anything.
		_, err = Run(context.Background(), job, Input{Files: []string{"/nonexistent"}}, []byte(params))
		if !errors.As(err, &pe) {
			t.Fatalf("Run %s %s: %v", job, params, err)
		}
	}
	f(JobTopN, `{"by": ["sourceIPv4Address"], "nn": 3}`, "nn", "unknown parameter", 0)
	f(JobTopN, `{"by": ["sourceIPv4Address"], "N": 3}`, "N", "unknown parameter", 0)
	f(JobTopN, `{}`, "by", "at least one element", 0)
	f(JobTopN, `{"by": ["sourceIPv4Adress"]}`, "by[0]", `unknown element "sourceIPv4Adress"`, 0)
	f(JobTopN, `{"by": ["interfaceName"]}`, "by[0]", "fixed-width", 0)
	f(JobTopN, `{"by": ["protocolIdentifier", "protocolIdentifier"]}`, "by[1]", "given twice", 0)
	f(JobTopN, `{"by": "sourceIPv4Address"}`, "by", "want an array", 0)
	f(JobTopN, `{"by": ["sourceIPv4Address"], "n": 10001}`, "n", "out of range", 0)
	f(JobTopN, `{"by": ["sourceIPv4Address"], "n": -1}`, "n", "out of range", 0)
	f(JobTopN, `{"by": ["sourceIPv4Address"], "n": 1.5}`, "n", "want a number", 0)
	f(JobTopN, `{"by": ["sourceIPv4Address"], "metric": "bytes"}`, "metric", "not octets, packets or flows", 0)
	f(JobTopN, `{"by": ["sourceIPv6Address","destinationIPv6Address","sourceIPv6Address"]}`, "by[2]", "given twice", 0)
	f(JobTopN, `{"by": ["sourceIPv6Address","destinationIPv6Address","postNATSourceIPv6Address","postNATDestinationIPv6Address"]}`, "by", "at most 63", 0)
	f(JobTopN, `[1, 2]`, "", "not a JSON object", 0)
	f(JobTopN, `{"by": [`, "", "not valid JSON", 0)
	f(JobRecords, `{"filter": "protocolIdentifier == "}`, "filter", "column 23", 23)
	f(JobRecords, `{"filter": "protocolIdentifer == 6"}`, "filter", "column 1", 1)
	f(JobRecords, `{"filter": "sourceIPv4Address == \"x\""}`, "filter", "sourceIPv4Address", 0)
	f(JobRecords, `{"limit": 10001}`, "limit", "out of range", 0)
	f(JobRecords, `{"offset": -1}`, "offset", "out of range", 0)
	f(JobRecords, `{"input": "pcap"}`, "input", "not auto, export or traffic", 0)
	f(JobTimeseries, `{"step": "1x"}`, "step", "not a duration", 0)
	f(JobTimeseries, `{"step": "1us"}`, "step", "out of range", 0)
	f(JobTimeseries, `{"step": 0.0001}`, "step", "out of range", 0)
	f(JobTimeseries, `{"step": "1ms", "start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"}`, "step", "more than 100000", 0)
	f(JobTimeseries, `{"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}`, "end", "not after start", 0)
	f(JobTimeseries, `{"start": "yesterday"}`, "start", "cannot parse", 0)
	f(JobTimeseries, `{"top": 51}`, "top", "out of range", 0)
	f(JobTimeseries, `{"width": 100}`, "width", "out of range", 0)
}

func TestGoodParams(t *testing.T) {
	for _, c := range []struct{ job, params string }{
		{JobRecords, ``},
		{JobRecords, `null`},
		{JobRecords, `{"offset": 5, "limit": 10000, "skip_options": true, "filter": "protocolIdentifier in [6, 17]", "input": "export"}`},
		{JobTopN, `{"by": ["sourceIPv4Address", "destinationIPv4Address", "protocolIdentifier", "sourceTransportPort", "destinationTransportPort"], "metric": "flows", "n": 10000}`},
		{JobTimeseries, `{"step": 60, "split_by": ["sourceIPv4Address"], "top": 50, "metric": "packets", "start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z", "width": 4000, "height": 200}`},
		{JobTimeseries, `{"step": "500ms", "input": "auto"}`},
		{JobGraph, `{"max_edges": 1000000, "metric": "packets"}`},
	} {
		if err := ValidateParams(c.job, []byte(c.params)); err != nil {
			t.Errorf("%s %s: %v", c.job, c.params, err)
		}
	}
	if err := ValidateParams("pivot", nil); !errors.Is(err, ErrUnknownJob) {
		t.Fatalf("unknown job: %v", err)
	}
	if _, err := Run(context.Background(), "pivot", Input{}, nil); !errors.Is(err, ErrUnknownJob) {
		t.Fatalf("Run unknown job: %v", err)
	}
}

func TestFilterErrorColumn(t *testing.T) {
	_, err := ParseRecordsParams([]byte(`{"filter": "protocolIdentifier == 6 and and"}`))
	var fe *filter.Error
	var pe *ParamError
	if !errors.As(err, &pe) || !errors.As(err, &fe) || pe.Column != fe.Column || fe.Column != 29 {
		t.Fatalf("%v", err)
	}
}

// writeTrafficPcap writes a capture of ordinary traffic: TCP segments and
// DNS queries, no flow export.
func writeTrafficPcap(t testing.TB, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := pcap.NewWriter(f, pcap.LinkTypeRaw)
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 200 {
		ts = ts.Add(time.Millisecond)
		if i%4 == 0 {
			q := make([]byte, 30)
			for j := range q {
				q[j] = byte(rnd.Uint32())
			}
			src := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(30000+i))
			dst := netip.AddrPortFrom(netip.MustParseAddr("198.51.100.53"), 53)
			if err := w.WriteUDP(ts, src, dst, q); err != nil {
				t.Fatal(err)
			}
			continue
		}
		// IPv4 + TCP header, no options, some payload.
		pkt := []byte{0x45, 0, 0, 60, 0, 1, 0x40, 0, 64, 6, 0, 0, 192, 0, 2, 1, 203, 0, 113, 5,
			0x30, 0x39, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0}
		pkt = append(pkt, make([]byte, 20)...)
		if err := w.WritePacket(ts, pkt); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTrafficCapture(t *testing.T) {
	dir := t.TempDir()
	traffic := filepath.Join(dir, "traffic.pcap")
	writeTrafficPcap(t, traffic)
	ctx := context.Background()
	// Sniffed as ordinary traffic: metered into flows (traffic_test.go
	// checks the flows against sluice meter's).
	tr, err := TopN(ctx, Input{Files: []string{traffic}}, TopNParams{By: []string{"sourceIPv4Address"}})
	if err != nil {
		t.Fatalf("traffic capture: %v", err)
	}
	if st := tr.Summary.Traffic; st == nil || st.Files != 1 || st.Packets != 200 || st.Metered != 200 || st.Flows == 0 ||
		tr.Summary.DataRecords != st.Flows || tr.Total.Packets != 200 {
		t.Fatalf("traffic capture: %+v %+v", tr.Summary.Traffic, tr.Total)
	}
	// params.input export decodes it anyway: nothing is flow export.
	res, err := Records(ctx, Input{Files: []string{traffic}}, RecordsParams{Common: Common{Input: "export"}})
	if err != nil || res.Total != 0 || res.Summary.Datagrams != 50 || res.Summary.Traffic != nil {
		t.Fatalf("input export: %v %+v", err, res)
	}
	// A flow capture is export; params.input traffic forces metering (of
	// the export datagrams themselves).
	flows := capture("softflowd-v9.pcap")
	fr, err := Records(ctx, Input{Files: []string{flows}}, RecordsParams{})
	if err != nil || fr.Summary.Traffic != nil {
		t.Fatal(err)
	}
	g, err := Graph(ctx, Input{Files: []string{flows}}, GraphParams{Common: Common{Input: "traffic"}})
	if err != nil || g.Summary.Traffic == nil || g.Summary.Traffic.Packets != g.Summary.Traffic.Metered || g.Summary.Datagrams != 0 {
		t.Fatalf("input traffic: %v %+v", err, g)
	}
	// A traffic capture among flow files: both read, each its way.
	m, err := Records(ctx, Input{Files: []string{flows, traffic}}, RecordsParams{SkipOptions: true})
	if err != nil || m.Summary.Traffic == nil || m.Total != fr.Summary.DataRecords+tr.Summary.DataRecords {
		t.Fatalf("mixed files: %v %+v", err, m)
	}
	// Export over TCP is not read from captures: that capture is metered
	// as traffic.
	g, err = Graph(ctx, Input{Files: []string{capture("softflowd-ipfix-tcp.pcap")}}, GraphParams{})
	if err != nil || g.Summary.Traffic == nil || g.Summary.Traffic.Flows == 0 {
		t.Fatalf("IPFIX over TCP capture: %v", err)
	}
}

func TestLooksLikeExport(t *testing.T) {
	recs := 0
	for _, name := range []string{"softflowd-ipfix.pcap", "softflowd-v9.pcap", "softflowd-v5.pcap", "pmacct-nfprobe-ipfix.pcap", "nfdump-nfreplay-v9.pcap"} {
		f, err := os.Open(capture(name))
		if err != nil {
			t.Fatal(err)
		}
		pr, err := pcap.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		var dg pcap.Datagram
		for pr.Next(&dg) == nil {
			if !looksLikeExport(dg.Payload) {
				t.Fatalf("%s: a datagram is not export: % x", name, dg.Payload[:min(len(dg.Payload), 32)])
			}
			recs++
		}
		f.Close()
	}
	if recs < 100 {
		t.Fatalf("only %d datagrams", recs)
	}
	for _, b := range [][]byte{nil, {0, 10}, {0, 10, 0, 16}, make([]byte, 100), {0, 9, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}} {
		if looksLikeExport(b) {
			t.Fatalf("% x looks like export", b)
		}
	}
}

// Truncated and corrupt files give a clear error or a partial decode,
// never a panic.
func TestTruncatedAndCorrupt(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	run := func(path string) error {
		_, err := TopN(ctx, Input{Files: []string{path}}, TopNParams{Common: Common{Input: "export"}, By: []string{"sourceIPv4Address"}})
		return err
	}
	for _, name := range []string{"softflowd-ipfix.pcap", "softflowd-ipfix-tcp.ipfix"} {
		b, err := os.ReadFile(capture(name))
		if err != nil {
			t.Fatal(err)
		}
		errs := 0
		for _, n := range []int{1, 3, 5, 17, 24, 40, 100, 1000, len(b) / 2, len(b) - 1} {
			p := filepath.Join(dir, "cut")
			os.WriteFile(p, b[:n], 0o644)
			err := run(p)
			var fe *FileError
			if err != nil && !errors.As(err, &fe) {
				t.Fatalf("%s cut at %d: %v is not a *FileError", name, n, err)
			}
			if err != nil {
				errs++
				if !strings.Contains(err.Error(), p) {
					t.Fatalf("error does not name the file: %v", err)
				}
			}
		}
		if errs < 8 {
			t.Fatalf("%s: only %d of 10 cuts were errors", name, errs)
		}
		rnd := rand.New(rand.NewPCG(3, 4))
		for range 300 {
			c := append([]byte(nil), b...)
			for range 1 + rnd.IntN(8) {
				c[rnd.IntN(len(c))] = byte(rnd.Uint32())
			}
			p := filepath.Join(dir, "corrupt")
			os.WriteFile(p, c, 0o644)
			run(p) // must not panic
		}
	}
	// Specific errors.
	p := filepath.Join(dir, "ipfix-cut")
	b, _ := os.ReadFile(capture("softflowd-ipfix-tcp.ipfix"))
	os.WriteFile(p, b[:len(b)-10], 0o644)
	var fe *FileError
	if err := run(p); !errors.Is(err, ErrTruncated) || !errors.As(err, &fe) || fe.Offset <= 0 {
		t.Fatalf("cut IPFIX file: %v", err)
	}
	os.WriteFile(p, []byte("hello, this is text\n"), 0o644)
	if err := run(p); !errors.Is(err, ErrUnknownFileType) {
		t.Fatalf("text file: %v", err)
	}
	os.WriteFile(p, nil, 0o644)
	if err := run(p); !errors.Is(err, ErrUnknownFileType) {
		t.Fatalf("empty file: %v", err)
	}
	if err := run(filepath.Join(dir, "missing")); !errors.As(err, &fe) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if err := run(dir); !errors.As(err, &fe) {
		t.Fatalf("directory: %v", err)
	}
	if _, err := Records(ctx, Input{}, RecordsParams{}); err == nil {
		t.Fatal("no files: no error")
	}
}

// A time series whose records span more steps than MaxSteps fails with a
// clear error instead of growing without bound.
func TestTooManySteps(t *testing.T) {
	// Two captures made years apart.
	_, err := Timeseries(context.Background(), Input{Files: []string{capture("softflowd-v9.pcap"), capture("nfdump-nfreplay-v9.pcap")}}, TimeseriesParams{})
	var pe *ParamError
	if !errors.As(err, &pe) || pe.Param != "step" || !strings.Contains(err.Error(), "more than 100000") {
		t.Fatalf("%v", err)
	}
	// Start and end make it fit.
	recs, _ := decodeRef(t, capture("softflowd-v9.pcap"))
	ref, _ := refSeries(t, recs, int64(time.Second), func(refRecord) string { return "total" })
	var first int64 = 1 << 62
	for k := range ref["total"] {
		first = min(first, k)
	}
	start := time.Unix(first+2, 0).UTC()
	res, err := Timeseries(context.Background(), Input{Files: []string{capture("softflowd-v9.pcap")}},
		TimeseriesParams{Step: Duration(time.Millisecond), Start: start, End: start.Add(10 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Points == 0 || res.Points > 10000 || res.Clipped == 0 || res.Start.Before(start) {
		t.Fatalf("points %d clipped %d start %s", res.Points, res.Clipped, res.Start)
	}
	// Clipping keeps what falls inside: the steps of a clipped series are
	// those of the whole one.
	res, err = Timeseries(context.Background(), Input{Files: []string{capture("softflowd-v9.pcap")}},
		TimeseriesParams{Start: start, End: start.Add(10 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	inside := map[int64][3]float64{}
	for k, v := range ref["total"] {
		if k >= start.Unix() && k < start.Unix()+10 {
			inside[k] = v
		}
	}
	checkSeries(t, res, &res.Series[0], inside)
}
