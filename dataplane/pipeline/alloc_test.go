package pipeline_test

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
	"github.com/sluice-flow/sluice/dataplane/pipeline"
)

// compileDiscard compiles src with every output the discard it returns.
func compileDiscard(t *testing.T, src string) (*pipeline.Snapshot, *export.Discard) {
	t.Helper()
	c, err := pipeline.Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	d := &export.Discard{}
	s, err := pipeline.Compile(c, pipeline.NewOutputSet(func(string) (export.Output, error) { return d, nil }))
	if err != nil {
		t.Fatal(err)
	}
	return s, d
}

func TestNoAllocsStages(t *testing.T) {
	nets := writeFile(t, "nets.csv", netsCSV)
	for _, anonymise := range []string{
		"{method: cryptopan, key: " + hexKey + "}",
		"{method: truncate, ipv4_prefix: 20}",
	} {
		s, d := compileDiscard(t, "pipelines:\n  - outputs: [discard]\n    stages:\n"+
			"      - select: protocolIdentifier in [6, 17] and octetDeltaCount > 10\n"+
			"      - project: {keep: [sourceIPv4Address, destinationIPv4Address, sourceIPv6Address, interfaceName, octetDeltaCount, samplerId]}\n"+
			"      - rename: {interfaceName: applicationName}\n"+
			"      - set: {vlanId: 7, applicationDescription: web}\n"+
			"      - anonymise: "+anonymise+"\n"+
			"      - enrich: {exporter: true, sampling: true, networks: [{file: "+nets+", address: [sourceIPv6Address, sourceIPv4Address], columns: {asn: bgpSourceAsNumber, site: interfaceName}}]}\n"+
			"      - sample: {rate: 3}\n")
		fixed := mkLayout(t, 300, spec(idSrc4, 4), spec(idDst4, 4), spec(idProto, 1), spec(idOctets, 8), spec(idSamplerID, 1))
		varlen := mkLayout(t, 301, spec(idSrc6, 16), spec(idDst4, 4), spec(idIfName, ipfix.VarLen), spec(idProto, 1), spec(idOctets, 8))
		opts := mkOptionsLayout(t, 400, 1, spec(idSamplerID, 1), spec(idSamplingInt, 4))
		recs := []*ipfix.Record{
			mkRecord(t, fixed, encode(t, fixed, addr("10.1.2.3"), addr("192.168.1.1"), 6, 1500, 1)),
			mkRecord(t, fixed, encode(t, fixed, addr("10.1.2.4"), addr("192.168.1.1"), 17, 100, 2)),
			mkRecord(t, fixed, encode(t, fixed, addr("10.1.2.4"), addr("192.168.1.1"), 1, 100, 2)), // selected out
			mkRecord(t, varlen, encode(t, varlen, addr("2001:db8:1::1"), addr("192.168.1.1"), "eth0", 6, 1500)),
			mkRecord(t, opts, encode(t, opts, 1, 100)),
		}
		m4, m6 := mkMeta("192.0.2.1:4739", 1), mkMeta("[2001:db8::9]:4739", 2)
		run := func() {
			for _, r := range recs {
				s.Process(m4, r)
				s.Process(m6, r)
			}
		}
		run() // compile the templates
		if n := testing.AllocsPerRun(200, run); n != 0 {
			t.Errorf("%s: %v allocations per run of %d records", anonymise, n, 2*len(recs))
		}
		// 202 runs (ours, the warm-up of AllocsPerRun and 200): 6 data records pass the select, one in 3 the sample;
		// 2 options records pass.
		d.Flush() // the discard output publishes its count at a flush
		if got, want := d.Stats().Sent, uint64(202*6+2)/3+202*2; got != want {
			t.Errorf("%s: %d records out, want %d", anonymise, got, want)
		}
	}
}

func TestNoAllocsAggregate(t *testing.T) {
	for _, maxKeys := range []int{5000, 100} { // room for all keys; evicting
		s, d := compileDiscard(t, "pipelines:\n  - outputs: [discard]\n    stages:\n"+
			"      - aggregate: {"+aggKeys3+", values: [octetDeltaCount, packetDeltaCount, maximumTTL], idle_timeout: 30s, max_keys: "+strconv.Itoa(maxKeys)+"}\n")
		l := mkLayout(t, 300, flowLayoutSpecs...)
		gen := newFlowGen(9, 1000)
		var recs []*ipfix.Record
		for range 2000 {
			_, _, b := gen.next(t, l)
			recs = append(recs, mkRecord(t, l, b))
		}
		m := mkMeta("192.0.2.1:4739", 1)
		now := time.Unix(5_000_000, 0)
		run := func() {
			for _, r := range recs {
				s.Process(m, r)
			}
			now = now.Add(time.Second)
			s.Tick(now)
		}
		run()
		if n := testing.AllocsPerRun(20, run); n != 0 {
			t.Errorf("max_keys %d: %v allocations per run of %d records", maxKeys, n, len(recs))
		}
		if sent := d.Stats().Sent; (maxKeys == 100) != (sent > 0) {
			t.Errorf("max_keys %d: %d aggregates emitted", maxKeys, sent)
		}
	}
}

// Independent lanes run the stages on two goroutines at once (run with
// -race): each lane allocates nothing per record, the discard output gets
// every lane's records, and the metrics add the lanes up.
func TestLanes(t *testing.T) {
	nets := writeFile(t, "nets.csv", netsCSV)
	s, d := compileDiscard(t, "pipelines:\n  - name: p\n    outputs: [discard]\n    stages:\n"+
		"      - select: protocolIdentifier in [6, 17] and octetDeltaCount > 10\n"+
		"      - project: {keep: [sourceIPv4Address, destinationIPv4Address, sourceIPv6Address, interfaceName, octetDeltaCount, samplerId]}\n"+
		"      - rename: {interfaceName: applicationName}\n"+
		"      - set: {vlanId: 7, applicationDescription: web}\n"+
		"      - anonymise: {method: cryptopan, key: "+hexKey+"}\n"+
		"      - enrich: {exporter: true, sampling: true, networks: [{file: "+nets+", address: [sourceIPv6Address, sourceIPv4Address], columns: {asn: bgpSourceAsNumber, site: interfaceName}}]}\n"+
		"      - sample: {rate: 3}\n")
	lanes := s.Lanes(2)
	if lanes[0] == lanes[1] || lanes[0].Shared() {
		t.Fatal("a pipeline of stateless stages into discard did not get independent lanes")
	}
	fixed := mkLayout(t, 300, spec(idSrc4, 4), spec(idDst4, 4), spec(idProto, 1), spec(idOctets, 8), spec(idSamplerID, 1))
	varlen := mkLayout(t, 301, spec(idSrc6, 16), spec(idDst4, 4), spec(idIfName, ipfix.VarLen), spec(idProto, 1), spec(idOctets, 8))
	opts := mkOptionsLayout(t, 400, 1, spec(idSamplerID, 1), spec(idSamplingInt, 4))
	recs := []*ipfix.Record{
		mkRecord(t, fixed, encode(t, fixed, addr("10.1.2.3"), addr("192.168.1.1"), 6, 1500, 1)),
		mkRecord(t, fixed, encode(t, fixed, addr("10.1.2.4"), addr("192.168.1.1"), 17, 100, 2)),
		mkRecord(t, fixed, encode(t, fixed, addr("10.1.2.4"), addr("192.168.1.1"), 1, 100, 2)), // selected out
		mkRecord(t, varlen, encode(t, varlen, addr("2001:db8:1::1"), addr("192.168.1.1"), "eth0", 6, 1500)),
		mkRecord(t, opts, encode(t, opts, 1, 100)),
	}
	const runs = 300
	m4, m6 := mkMeta("192.0.2.1:4739", 1), mkMeta("[2001:db8::9]:4739", 2)
	run := func(l *pipeline.Lane, m4, m6 *jsonl.Meta) {
		for _, r := range recs {
			l.Process(m4, r)
			l.Process(m6, r)
		}
	}
	var wg sync.WaitGroup
	for _, l := range lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each goroutine its own Metas, as each mediator worker has.
			m4, m6 := mkMeta("192.0.2.1:4739", 1), mkMeta("[2001:db8::9]:4739", 2)
			for range runs {
				run(l, m4, m6)
			}
		}()
	}
	wg.Wait()
	if n := testing.AllocsPerRun(100, func() { run(lanes[0], m4, m6) }); n != 0 {
		t.Errorf("%v allocations per run of %d records in a lane", n, 2*len(recs))
	}
	total := 2*runs + 101
	for _, l := range lanes {
		l.Tick(time.Now())
		l.Flush()
	}
	// Per run: 8 data records, of which 6 pass the select and one in 3 of
	// those the sample (counted per lane); 2 options records pass.
	if got, want := d.Stats().Sent, uint64(total*6/3+total*2); got != want {
		t.Errorf("%d records out, want %d", got, want)
	}
	metrics := string(s.AppendMetrics(nil))
	if want := `sluice_pipeline_stage_records_total{pipeline="p",stage="1:select",direction="in"} ` + strconv.Itoa(total*8); !strings.Contains(metrics, want) {
		t.Errorf("metrics lack %s:\n%s", want, metrics)
	}
}

// A pipeline that aggregates, or an output without lanes, gives one lane
// shared by every goroutine.
func TestLanesShared(t *testing.T) {
	s, _ := compileDiscard(t, "pipelines:\n  - outputs: [discard]\n    stages:\n      - aggregate: {"+aggKeys3+"}\n")
	lanes := s.Lanes(3)
	if lanes[0] != lanes[1] || lanes[1] != lanes[2] || !lanes[0].Shared() {
		t.Fatal("an aggregating pipeline got independent lanes")
	}
	one, _ := compileDiscard(t, "pipelines: [{outputs: [discard]}]")
	if l := one.Lanes(1); l[0].Shared() {
		t.Fatal("a single lane is shared")
	}
}
