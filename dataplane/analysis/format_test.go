package analysis

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"image/png"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestChartPNG(t *testing.T) {
	in := Input{Files: []string{capture("pmacct-nfprobe-ipfix.pcap")}}
	for _, c := range []struct {
		p    TimeseriesParams
		w, h int
	}{
		{TimeseriesParams{}, DefaultChartW, DefaultChartH},
		{TimeseriesParams{Width: 640, Height: 480, SplitBy: []string{"protocolIdentifier"}, Metric: "packets"}, 640, 480},
		{TimeseriesParams{Width: MinChartSide, Height: MaxChartSide, Step: Duration(time.Minute)}, MinChartSide, MaxChartSide},
		// No record passes: an empty chart still has its size.
		{TimeseriesParams{Common: Common{Filter: "false"}, Width: 300, Height: 250}, 300, 250},
	} {
		res, err := Timeseries(context.Background(), in, c.p)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := res.Write(&buf, "png"); err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(&buf)
		if err != nil {
			t.Fatalf("%+v: %v", c.p, err)
		}
		if b := img.Bounds(); b.Dx() != c.w || b.Dy() != c.h {
			t.Fatalf("%+v: image %v, want %dx%d", c.p, b, c.w, c.h)
		}
	}
}

func TestTimeseriesJSONAndCSV(t *testing.T) {
	res, err := Timeseries(context.Background(), Input{Files: []string{capture("softflowd-v9.pcap")}},
		TimeseriesParams{Step: Duration(5 * time.Second), SplitBy: []string{"protocolIdentifier", "ipVersion"}, Top: 2})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		StepSeconds float64  `json:"step_seconds"`
		Points      int      `json:"points"`
		Times       []string `json:"times"`
		Series      []struct {
			Name        string                     `json:"name"`
			Key         map[string]json.RawMessage `json:"key"`
			Octets      float64                    `json:"octets"`
			OctetsPerS  []float64                  `json:"octets_per_s"`
			PacketsPerS []float64                  `json:"packets_per_s"`
		} `json:"series"`
	}
	if err := json.Unmarshal(res.AppendJSON(nil), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.StepSeconds != 5 || doc.Points != res.Points || len(doc.Times) != res.Points || len(doc.Series) != 3 {
		t.Fatalf("%+v", doc)
	}
	for i, s := range doc.Series {
		sum := 0.0
		for _, v := range s.OctetsPerS {
			sum += v * 5
		}
		if len(s.OctetsPerS) != res.Points || !near(sum, s.Octets) {
			t.Fatalf("series %d: %d points summing to %v, octets %v", i, len(s.OctetsPerS), sum, s.Octets)
		}
		if (i < 2) != (s.Key != nil) || i < 2 && string(s.Key["protocolIdentifier"]) == "" {
			t.Fatalf("series %d key %v", i, s.Key)
		}
	}
	var buf bytes.Buffer
	if err := res.WriteCSV(&buf); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"time", "series", "protocolIdentifier", "ipVersion", "octets_per_s", "packets_per_s", "flows_per_s"}
	if strings.Join(rows[0], ",") != strings.Join(want, ",") || len(rows) != 1+3*res.Points {
		t.Fatalf("csv head %v, %d rows", rows[0], len(rows))
	}
	if v, _ := strconv.ParseFloat(rows[1][4], 64); !near(v, res.Series[0].OctetsPerS[0]) {
		t.Fatalf("csv %v", rows[1])
	}
}

func TestTopNCSV(t *testing.T) {
	res, err := TopN(context.Background(), Input{Files: []string{capture("nfdump-nfreplay-v9.pcap")}},
		TopNParams{By: []string{"sourceIPv4Address", "sourceIPv6Address", "destinationTransportPort"}, N: 20})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := res.WriteCSV(&buf); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 21 || strings.Join(rows[0], ",") != "sourceIPv4Address,sourceIPv6Address,destinationTransportPort,octets,packets,flows" {
		t.Fatalf("%d rows, head %v", len(rows), rows[0])
	}
	for i, row := range res.Rows {
		got := rows[i+1]
		if got[3] != strconv.FormatUint(row.Octets, 10) || got[0] != row.Key[0].String() || got[1] != row.Key[1].String() {
			t.Fatalf("row %d: %v", i, got)
		}
		if (got[0] == "") == (got[1] == "") {
			t.Fatalf("row %d: one address family per record: %v", i, got)
		}
	}
	var doc struct {
		Rows []map[string]any `json:"rows"`
	}
	if err := json.Unmarshal(res.AppendJSON(nil), &doc); err != nil || len(doc.Rows) != 20 {
		t.Fatalf("%v %d", err, len(doc.Rows))
	}
	if _, ok := doc.Rows[0]["octets"].(float64); !ok {
		t.Fatalf("row %v", doc.Rows[0])
	}
}

func TestGraphFormats(t *testing.T) {
	res, err := Graph(context.Background(), Input{Files: []string{capture("softflowd-ipfix-biflow.pcap")}}, GraphParams{MaxEdges: 50})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Edges) != 50 || res.EdgesOmitted == 0 {
		t.Fatalf("%d edges, %d omitted", len(res.Edges), res.EdgesOmitted)
	}
	// GraphML is valid XML with every node and edge, and edges name
	// declared nodes.
	var buf bytes.Buffer
	if err := res.WriteGraphML(&buf); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		XMLName xml.Name `xml:"graphml"`
		Keys    []struct {
			ID string `xml:"id,attr"`
		} `xml:"key"`
		Graph struct {
			EdgeDefault string `xml:"edgedefault,attr"`
			Nodes       []struct {
				ID   string `xml:"id,attr"`
				Data []struct {
					Key   string `xml:"key,attr"`
					Value string `xml:",chardata"`
				} `xml:"data"`
			} `xml:"node"`
			Edges []struct {
				Source string `xml:"source,attr"`
				Target string `xml:"target,attr"`
				Data   []struct {
					Key   string `xml:"key,attr"`
					Value string `xml:",chardata"`
				} `xml:"data"`
			} `xml:"edge"`
		} `xml:"graph"`
	}
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Graph.EdgeDefault != "directed" || len(doc.Graph.Nodes) != len(res.Nodes) || len(doc.Graph.Edges) != len(res.Edges) || len(doc.Keys) != len(graphMLKeys) {
		t.Fatalf("graphml: %d nodes, %d edges, %d keys", len(doc.Graph.Nodes), len(doc.Graph.Edges), len(doc.Keys))
	}
	ids := map[string]bool{}
	for _, n := range doc.Graph.Nodes {
		ids[n.ID] = true
	}
	for i, e := range doc.Graph.Edges {
		if !ids[e.Source] || !ids[e.Target] {
			t.Fatalf("edge %d: %s -> %s names an unknown node", i, e.Source, e.Target)
		}
		if e.Data[0].Key != "e_octets" || e.Data[0].Value != strconv.FormatUint(res.Edges[i].Octets, 10) {
			t.Fatalf("edge %d data %+v", i, e.Data[0])
		}
	}
	// DOT: one statement per node and edge.
	buf.Reset()
	if err := res.WriteDOT(&buf); err != nil {
		t.Fatal(err)
	}
	dot := buf.String()
	if !strings.HasPrefix(dot, "digraph flows {") || !strings.HasSuffix(dot, "}\n") ||
		strings.Count(dot, " -> ") != len(res.Edges) || strings.Count(dot, "octets_out=") != len(res.Nodes) {
		t.Fatalf("dot:\n%s", dot)
	}
	// JSON.
	var j struct {
		Nodes []struct {
			ID string `json:"id"`
		} `json:"nodes"`
		Edges []struct {
			Source    string   `json:"source"`
			Protocols []int    `json:"protocols"`
			Ports     []uint16 `json:"ports"`
		} `json:"edges"`
	}
	if err := json.Unmarshal(res.AppendJSON(nil), &j); err != nil || len(j.Nodes) != len(res.Nodes) || len(j.Edges) != 50 || j.Edges[0].Protocols == nil {
		t.Fatalf("json: %v %+v", err, j.Edges[:1])
	}
}
