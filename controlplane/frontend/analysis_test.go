package frontend

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/analysis"
)

// TestAnalysisJobs runs each analysis job type through the API and the
// workers and wants every format of its result equal to the library's
// over the same file (the library itself is checked against sluice
// decode in dataplane/analysis).
func TestAnalysisJobs(t *testing.T) {
	r := startRedis(t)
	ts := newTestServer(t, r, 2, nil)
	cases := []struct{ file, typ, params string }{
		{"softflowd-ipfix.pcap", "topn", `{"by":["sourceIPv4Address"],"metric":"octets","n":5}`},
		{"pmacct-nfprobe-ipfix.pcap", "topn", `{"by":["sourceIPv4Address","destinationIPv4Address","protocolIdentifier"],"metric":"packets"}`},
		{"nfdump-nfreplay-v9.pcap", "timeseries", `{"step":"10s"}`},
		{"softflowd-ipfix-tcp.ipfix", "graph", `{}`},
		{"softflowd-v5.pcap", "records", `{"limit":20,"filter":"protocolIdentifier == 6"}`},
	}
	for _, c := range cases {
		t.Run(c.typ+"/"+c.file, func(t *testing.T) {
			file := ts.upload(t, tokenA, captures(c.file))
			id := ts.postJob(t, tokenA, c.typ, []string{file}, c.params)
			v := ts.waitJob(t, tokenA, id, nil)
			if v.State != stateDone {
				t.Fatalf("%+v", v)
			}
			want, err := analysis.Run(context.Background(), c.typ, analysis.Input{Files: []string{captures(c.file)}}, []byte(c.params))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(v.Formats, ",") != strings.Join(want.Formats(), ",") {
				t.Fatalf("formats %v, want %v", v.Formats, want.Formats())
			}
			for _, f := range want.Formats() {
				var b bytes.Buffer
				if err := want.Write(&b, f); err != nil {
					t.Fatal(err)
				}
				code, hdr, body := call(t, "GET", ts.url+"/api/v1/jobs/"+id+"/result?format="+f, tokenA, nil)
				if code != 200 || hdr.Get("Content-Type") != analysis.ContentType(f) {
					t.Fatalf("%s: %d %s", f, code, hdr.Get("Content-Type"))
				}
				if !bytes.Equal(body, b.Bytes()) {
					t.Fatalf("%s: the API's result (%d bytes) differs from the library's (%d bytes)", f, len(body), b.Len())
				}
				if f == "json" && !json.Valid(body) {
					t.Fatalf("json result is not JSON")
				}
			}
		})
	}

	// A filter that does not parse: 400 with the column.
	file := ts.upload(t, tokenA, captures("softflowd-ipfix.pcap"))
	code, _, body := ts.postJobRaw(t, tokenA, "topn", []string{file}, `{"by":["sourceIPv4Address"],"filter":"protocolIdentifier == == 6"}`)
	var e apiError
	want(t, 400, code, body, &e)
	if e.Error != "bad_params" || e.Param != "params.filter" || e.Column == 0 {
		t.Fatalf("bad filter: %s", body)
	}
	code, _, body = ts.postJobRaw(t, tokenA, "topn", []string{file}, `{"by":["sourceIPv4Address"],"metric":"bytes"}`)
	want(t, 400, code, body, &e)
}
