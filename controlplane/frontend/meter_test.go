package frontend

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/analysis"
	"github.com/sluice-flow/sluice/dataplane/meter"
	"github.com/sluice-flow/sluice/dataplane/offline/decode"
)

// trafficCapture writes the traffic generator's capture of ordinary
// traffic (TCP, DNS, other UDP, ICMP over IPv4 and IPv6) for seed to dir.
func trafficCapture(t testing.TB, dir string, seed int) string {
	t.Helper()
	p := filepath.Join(dir, "traffic-"+strconv.Itoa(seed)+".pcap")
	cmd := exec.Command("go", "run", "./testdata/exporters/trafficpcap", "-out", p, "-seed", strconv.Itoa(seed))
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("trafficpcap: %v\n%s", err, out)
	}
	return p
}

// meterInProcess meters files with the job's params in this process, as
// `sluice meter -o FILE` does.
func meterInProcess(t testing.TB, params string, files ...string) ([]byte, meter.Stats) {
	t.Helper()
	p, err := ParseMeterParams(json.RawMessage(params))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	m, err := meter.New(p.Config(), meter.NewFileSink(&b))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := m.ReadFile(context.Background(), f); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), m.Stats()
}

// ipfixTotals decodes an RFC 5655 file with dataplane/offline/decode and
// sums its records' packets and octets, reverse counters included.
type ipfixTotals struct {
	records, packets, octets, reversePackets uint64
	elements                                 map[[2]uint32]bool // (PEN, ID) of the fields seen
}

func decodeIPFIXFile(t testing.TB, b []byte) ipfixTotals {
	t.Helper()
	tot := ipfixTotals{elements: map[[2]uint32]bool{}}
	dec := decode.New()
	handle := func(r *decode.Record) {
		l := r.Rec.Layout
		if l.Options {
			return
		}
		tot.records++
		for _, f := range l.Fields {
			tot.elements[[2]uint32{f.PEN, uint32(f.ID)}] = true
		}
		get := func(pen uint32, id uint16) uint64 {
			if i := l.Index(pen, id); i >= 0 {
				return r.Rec.Uint(i)
			}
			return 0
		}
		tot.octets += get(0, 1) + get(29305, 1)
		tot.packets += get(0, 2) + get(29305, 2)
		tot.reversePackets += get(29305, 2)
	}
	for len(b) > 0 {
		if len(b) < 4 || binary.BigEndian.Uint16(b) != 10 {
			t.Fatalf("not an IPFIX message at %d bytes from the end", len(b))
		}
		n := int(binary.BigEndian.Uint16(b[2:]))
		if n < 16 || n > len(b) {
			t.Fatalf("IPFIX message length %d with %d bytes left", n, len(b))
		}
		if _, err := dec.Decode(netip.AddrPort{}, b[:n], handle); err != nil {
			t.Fatalf("decoding the IPFIX result: %v", err)
		}
		b = b[n:]
	}
	if len(dec.Stats.Errors) > 0 {
		t.Fatalf("decode errors: %v", dec.Stats.Errors)
	}
	return tot
}

// TestMeterJob runs meter jobs through the API and real workers over a
// capture of ordinary traffic: the IPFIX result decodes, its totals equal
// the meter's in this process over the same capture (and its bytes too:
// capture time makes them the same), and the JSON summary says so.
func TestMeterJob(t *testing.T) {
	r := startRedis(t)
	ts := newTestServer(t, r, 2, nil)
	capPath := trafficCapture(t, t.TempDir(), 1)
	file := ts.upload(t, tokenA, capPath)
	for _, params := range []string{
		`{}`,
		`{"biflow":true,"dpi":true,"idle_timeout":"10s","active_timeout":60,"max_flows":1000}`,
		`{"max_flows":16}`, // the table bound exports flows early
	} {
		t.Run(params, func(t *testing.T) {
			id := ts.postJob(t, tokenA, JobMeter, []string{file}, params)
			v := ts.waitJob(t, tokenA, id, nil)
			if v.State != stateDone || v.Progress != 1 {
				t.Fatalf("%+v", v)
			}
			if strings.Join(v.Formats, ",") != "ipfix,json" {
				t.Fatalf("formats %v", v.Formats)
			}
			code, hdr, got := call(t, "GET", ts.url+"/api/v1/jobs/"+id+"/result?format=ipfix", tokenA, nil)
			if code != 200 || hdr.Get("Content-Type") != "application/octet-stream" {
				t.Fatalf("ipfix: %d %s: %.200s", code, hdr.Get("Content-Type"), got)
			}
			if _, _, def := call(t, "GET", ts.url+"/api/v1/jobs/"+id+"/result", tokenA, nil); !bytes.Equal(def, got) {
				t.Fatal("the default format is not the IPFIX file")
			}

			wantFile, st := meterInProcess(t, params, capPath)
			if st.Packets < 1000 || st.Metered != st.Packets || st.Flows < 100 {
				t.Fatalf("the capture is not what the test wants: %+v", st)
			}
			tot := decodeIPFIXFile(t, got)
			if tot.records != st.Flows || tot.packets != st.Metered || tot.octets != st.Octets {
				t.Fatalf("result: %d records, %d packets, %d octets; in-process meter: %d flows, %d packets, %d octets",
					tot.records, tot.packets, tot.octets, st.Flows, st.Metered, st.Octets)
			}
			if !bytes.Equal(got, wantFile) {
				t.Fatalf("the job's IPFIX file (%d bytes) differs from the in-process meter's (%d bytes)", len(got), len(wantFile))
			}
			p, _ := ParseMeterParams(json.RawMessage(params))
			if p.Biflow != (tot.reversePackets > 0) {
				t.Fatalf("biflow %v, reverse packets %d", p.Biflow, tot.reversePackets)
			}
			// CERT's sslServerName (6871/294) and IANA httpRequestHost (460).
			if p.DPI != tot.elements[[2]uint32{6871, 294}] || p.DPI != tot.elements[[2]uint32{0, 460}] {
				t.Fatalf("dpi %v, elements %v", p.DPI, tot.elements)
			}
			if p.MaxFlows == 16 && st.EarlyExports == 0 {
				t.Fatalf("max_flows 16: no early export: %+v", st)
			}

			code, hdr, js := call(t, "GET", ts.url+"/api/v1/jobs/"+id+"/result?format=json", tokenA, nil)
			if code != 200 || hdr.Get("Content-Type") != "application/json" {
				t.Fatalf("json: %d %s", code, hdr.Get("Content-Type"))
			}
			var sum MeterSummary
			if err := json.Unmarshal(js, &sum); err != nil {
				t.Fatal(err)
			}
			if want := NewMeterSummary(1, st); !reflect.DeepEqual(sum, want) {
				t.Fatalf("summary %+v, want %+v", sum, want)
			}
			var skipped uint64
			for _, n := range sum.Skipped {
				skipped += n
			}
			if len(sum.Skipped) != meter.NumReasons-1 || sum.Packets != sum.Metered+skipped || skipped != sum.SkippedTotal {
				t.Fatalf("summary %s", js)
			}
		})
	}

	// The analysis jobs meter a traffic capture into flows first: through
	// the API and the workers as in the library.
	t.Run("topn over traffic", func(t *testing.T) {
		params := `{"by":["sourceIPv4Address","protocolIdentifier"],"metric":"packets","n":50}`
		id := ts.postJob(t, tokenA, analysis.JobTopN, []string{file}, params)
		if v := ts.waitJob(t, tokenA, id, nil); v.State != stateDone {
			t.Fatalf("%+v", v)
		}
		res, err := analysis.Run(context.Background(), analysis.JobTopN, analysis.Input{Files: []string{capPath}}, []byte(params))
		if err != nil {
			t.Fatal(err)
		}
		if tr := res.(*analysis.TopNResult); len(tr.Rows) == 0 || tr.Summary.Traffic == nil {
			t.Fatalf("library: %+v", tr)
		}
		var b bytes.Buffer
		if err := res.Write(&b, "csv"); err != nil {
			t.Fatal(err)
		}
		code, _, body := call(t, "GET", ts.url+"/api/v1/jobs/"+id+"/result?format=csv", tokenA, nil)
		if code != 200 || !bytes.Equal(body, b.Bytes()) {
			t.Fatalf("%d: the API's CSV differs from the library's:\n%s\n%s", code, body, b.Bytes())
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for _, c := range []struct{ params, param string }{
			{`{"biflow":true,"filter":"protocolIdentifier == 6"}`, "params.filter"},
			{`{"active":60}`, "params.active"},
			{`{"idle_timeout":"-1s"}`, "params.idle_timeout"},
			{`{"idle_timeout":"soon"}`, "params.idle_timeout"},
			{`{"active_timeout":"1us"}`, "params.active_timeout"},
			{`{"active_timeout":"200h"}`, "params.active_timeout"},
			{`{"max_flows":-1}`, "params.max_flows"},
			{`{"max_flows":` + strconv.Itoa(MaxMeterFlows+1) + `}`, "params.max_flows"},
			{`{"max_flows":1.5}`, "params.max_flows"},
			{`{"biflow":"yes"}`, "params.biflow"},
			{`{"dpi":1}`, "params.dpi"},
			{`[1]`, "params"},
		} {
			code, _, body := ts.postJobRaw(t, tokenA, JobMeter, []string{file}, c.params)
			var e apiError
			want(t, 400, code, body, &e)
			if e.Error != "bad_params" || e.Param != c.param || e.Message == "" {
				t.Errorf("%s: %s", c.params, body)
			}
		}
		// A meter job reads captures, not IPFIX files.
		ipfixFile := ts.upload(t, tokenA, captures("softflowd-ipfix-tcp.ipfix"))
		code, _, body := ts.postJobRaw(t, tokenA, JobMeter, []string{file, ipfixFile}, `{}`)
		var e apiError
		want(t, 400, code, body, &e)
		if e.Error != "bad_file" || e.Param != "files[1]" || !slices.Equal(e.Allowed, []string{"pcap", "pcapng"}) {
			t.Fatalf("ipfix file: %s", body)
		}
		// Another tenant's capture is not found.
		code, _, body = ts.postJobRaw(t, tokenB, JobMeter, []string{file}, `{}`)
		want(t, 404, code, body, nil)
	})
}

// TestMeterJobProgress runs a meter job over two captures in this process
// (what a worker does): progress comes from the meter's reports, never
// goes back, passes through the end of the first capture and ends at 1;
// the captures continue one another as in `sluice meter A B`.
func TestMeterJobProgress(t *testing.T) {
	dir := t.TempDir()
	a, b := trafficCapture(t, dir, 1), trafficCapture(t, dir, 2)
	var seen []float64
	outs, err := Analysis{}.Run(context.Background(), JobMeter, []string{a, b}, nil, func(p float64) { seen = append(seen, p) })
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) < 3 || !slices.IsSorted(seen) || seen[len(seen)-1] != 1 || !slices.ContainsFunc(seen, func(p float64) bool { return p > 0.2 && p < 0.8 }) {
		t.Fatalf("progress %v", seen)
	}
	wantFile, st := meterInProcess(t, "", a, b)
	if len(outs) != 2 || outs[0].Format != "ipfix" || !bytes.Equal(outs[0].Data, wantFile) {
		t.Fatalf("ipfix output differs from the in-process meter's")
	}
	var sum MeterSummary
	if err := json.Unmarshal(outs[1].Data, &sum); err != nil || !reflect.DeepEqual(sum, NewMeterSummary(2, st)) {
		t.Fatalf("summary %s: %v", outs[1].Data, err)
	}

	// A file that is not a capture fails the job with the meter's error.
	_, err = Analysis{}.Run(context.Background(), JobMeter, []string{captures("softflowd-ipfix-tcp.ipfix")}, nil, func(float64) {})
	if err == nil || !strings.Contains(err.Error(), "softflowd-ipfix-tcp.ipfix") {
		t.Fatalf("IPFIX file: %v", err)
	}
	// A cancelled job stops.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (Analysis{}).Run(ctx, JobMeter, []string{a}, nil, func(float64) {}); err != context.Canceled {
		t.Fatalf("cancelled: %v", err)
	}
}

// TestMeterOpenAPI checks the OpenAPI document names every job type, the
// meter's parameters and summary fields and its result's content types.
func TestMeterOpenAPI(t *testing.T) {
	var doc struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Schemas map[string]struct {
				Properties map[string]struct {
					Description string `json:"description"`
				} `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openapiDoc, &doc); err != nil {
		t.Fatal(err)
	}
	desc := doc.Components.Schemas["JobRequest"].Properties["type"].Description
	for _, typ := range (Analysis{}).Types() {
		if !strings.Contains(desc, typ) {
			t.Errorf("JobRequest.type does not name %s: %q", typ, desc)
		}
	}
	names := func(schema string) []string {
		var out []string
		for k := range doc.Components.Schemas[schema].Properties {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	if got := names("MeterParams"); !slices.Equal(got, meterParamNames) {
		t.Errorf("MeterParams %v, want %v", got, meterParamNames)
	}
	var fields []string
	st := reflect.TypeFor[MeterSummary]()
	for i := range st.NumField() {
		name, _, _ := strings.Cut(st.Field(i).Tag.Get("json"), ",")
		fields = append(fields, name)
	}
	slices.Sort(fields)
	if got := names("MeterSummary"); !slices.Equal(got, fields) {
		t.Errorf("MeterSummary %v, want %v", got, fields)
	}
	var result struct {
		Get struct {
			Responses map[string]struct {
				Content map[string]json.RawMessage `json:"content"`
			} `json:"responses"`
		} `json:"get"`
	}
	raw, _ := json.Marshal(doc.Paths["/api/v1/jobs/{id}/result"])
	if err := json.Unmarshal(raw, &result); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ipfix", "json"} {
		ct, _, _ := strings.Cut(analysis.ContentType(f), ";")
		if _, ok := result.Get.Responses["200"].Content[ct]; !ok {
			t.Errorf("result content type %s (%s) not documented", ct, f)
		}
	}
}
