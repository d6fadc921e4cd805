package pipeline_test

import "testing"

// Options records skip the stages except anonymise: an exporter address in
// an options record is rewritten like the data records' addresses, while
// select, project and set leave options records alone.
func TestOptionsRecordsAnonymised(t *testing.T) {
	s, out := stages(t,
		"select: protocolIdentifier == 6",
		"project: {keep: [sourceIPv4Address]}",
		"anonymise: {method: truncate, ipv4_prefix: 16}",
		"set: {observationPointId: 1}")
	// Options template: scope exporterIPv4Address (130), then samplingInterval.
	ol := mkOptionsLayout(t, 300, 1, spec(130, 4), spec(34, 4))
	s.Process(mkMeta("192.0.2.9:4739", 1), mkRecord(t, ol, encode(t, ol, addr("10.20.30.40"), 100)))
	dl := mkLayout(t, 256, spec(8, 4), spec(4, 1))
	s.Process(mkMeta("192.0.2.9:4739", 1), mkRecord(t, dl, encode(t, dl, addr("10.20.30.41"), 6)))
	if len(out.recs) != 2 {
		t.Fatalf("%d records out, want the options record and the data record", len(out.recs))
	}
	opt := out.recs[0]
	if opt.Layout != ol || opt.Fields["exporterIPv4Address"] != addr("10.20.0.0") || opt.Fields["samplingInterval"] != uint64(100) {
		t.Errorf("options record %v (template %v): want the address truncated, the template and other fields unchanged", opt.Fields, opt.Layout)
	}
	if d := out.recs[1].Fields; d["sourceIPv4Address"] != addr("10.20.0.0") || d["observationPointId"] != uint64(1) {
		t.Errorf("data record %v", d)
	}

	// Without anonymise, options records pass as they came (same bytes).
	s2, out2 := stages(t, "select: protocolIdentifier == 6")
	r := mkRecord(t, ol, encode(t, ol, addr("10.20.30.40"), 100))
	s2.Process(mkMeta("192.0.2.9:4739", 1), r)
	if len(out2.recs) != 1 || out2.recs[0].RawPtr != &r.Raw()[0] {
		t.Errorf("options record not passed unchanged: %+v", out2.recs)
	}
}
