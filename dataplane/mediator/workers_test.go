package mediator

import (
	"bufio"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/entry"
	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
	"github.com/sluice-flow/sluice/dataplane/pipeline"
	"github.com/sluice-flow/sluice/dataplane/ring"
)

// feedRings writes, on one goroutine per ring as the collector's loops
// would, a template and then sets of records for exporters exporters per
// ring: each exporter's octetDeltaCount counts 0, 1, 2, ... so the outputs
// can check the order. A full ring is waited on (TCP's backpressure), so
// nothing is lost. It returns once all are written.
func feedRings(t *testing.T, rings []*ring.Ring, exporters, sets, perSet int) {
	feedSets(t, rings, exporters, 0, sets, perSet)
}

// feedSets is feedRings for sets [from, to); the templates go first when
// from is 0.
func feedSets(t *testing.T, rings []*ring.Ring, exporters, from, to, perSet int) {
	t.Helper()
	specs := []ipfix.FieldSpec{{ID: 8, Length: 4}, {ID: 1, Length: 8}, {ID: 4, Length: 1}}
	raw := ipfix.AppendTemplateRecord(nil, 256, specs)
	var tr ipfix.TemplateRecord
	if err := ipfix.ParseTemplateRecord(raw, false, false, &tr); err != nil {
		t.Fatal(err)
	}
	l, err := ipfix.Compile(&tr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for ri, r := range rings {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := r.Producer()
			put := func(h entry.Header, body []byte) bool {
				for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Microsecond) { // the consumer frees room
					if b := p.Reserve(entry.HeaderLen + len(body)); b != nil {
						entry.Put(b, &h)
						copy(b[entry.HeaderLen:], body)
						p.Commit(len(b))
						return true
					}
					if time.Now().After(deadline) {
						t.Errorf("ring %d: no room for 20 s: the mediator stopped reading", ri)
						return false
					}
				}
			}
			exp := func(e int) netip.AddrPort {
				return netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, byte(ri), byte(e)}), 4739)
			}
			if from == 0 {
				for e := range exporters {
					if !put(entry.Header{Kind: entry.KindTemplate, Version: 10, Domain: 1, Exporter: exp(e), TemplateID: 256, Fingerprint: l.Fingerprint}, raw) {
						return
					}
				}
			}
			var body []byte
			for s := from; s < to; s++ {
				for e := range exporters {
					body = body[:0]
					for k := range perSet {
						body = ipfix.AppendAddr(body, netip.AddrFrom4([4]byte{10, byte(ri), byte(e), byte(k)}))
						body = ipfix.AppendUint(body, uint64(s*perSet+k), 8)
						body = ipfix.AppendUint(body, 6, 1)
					}
					if !put(entry.Header{Kind: entry.KindData, Version: 10, Domain: 1, Exporter: exp(e), TemplateID: 256,
						Fingerprint: l.Fingerprint, Records: uint32(perSet), ExportTime: uint32(1764936000 + s)}, body) {
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}

// checkOrder reads JSON lines and checks that each exporter's records came
// in their order, every one once.
func checkOrder(t *testing.T, lines []string, exporters, want int) {
	t.Helper()
	next := map[string]uint64{}
	for i, line := range lines {
		var rec struct {
			Exporter string `json:"exporter"`
			Seq      uint64 `json:"octetDeltaCount"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("line %d: %v: %q", i, err, line)
		}
		if rec.Seq != next[rec.Exporter] {
			t.Fatalf("line %d: exporter %s record %d, want %d: out of order", i, rec.Exporter, rec.Seq, next[rec.Exporter])
		}
		next[rec.Exporter]++
	}
	if len(next) != exporters {
		t.Fatalf("%d exporters in the output, want %d", len(next), exporters)
	}
	for e, n := range next {
		if n != uint64(want) {
			t.Fatalf("exporter %s: %d records, want %d", e, n, want)
		}
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

func compileFile(t *testing.T, set *pipeline.OutputSet, src string) *pipeline.Snapshot {
	t.Helper()
	c, err := pipeline.Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	s, err := pipeline.Compile(c, set)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Several workers over four rings, with pipelines of stateless stages
// into one JSON lines file (each worker its own lane), and with
// pipelines that must run on one worker at a time (an output that is not
// Laned, aggregation): every record arrives, each exporter's in order.
// Run it with -race.
func TestWorkersKeepOrder(t *testing.T) {
	const exporters, sets, perSet = 4, 60, 5
	f := func(name, src string, lanes bool) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "out.jsonl")
			set := pipeline.NewOutputSet(func(spec string) (export.Output, error) { return export.Parse(spec, nil) })
			first := compileFile(t, set, strings.ReplaceAll(src, "PATH", path))
			rings := make([]*ring.Ring, 4)
			for i := range rings {
				rings[i] = ring.New(64 << 10) // small: the feeders wait on the workers
			}
			m := NewPipelineConfig(rings, first, Config{Workers: 3}, nil)
			if len(m.workers) != 3 {
				t.Fatalf("%d workers, want 3", len(m.workers))
			}
			if got := !m.gen.Load().lanes[0].Shared(); got != lanes {
				t.Fatalf("independent lanes: %v, want %v", got, lanes)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { m.Run(ctx); close(done) }()
			feedRings(t, rings, exporters, sets, perSet)
			cancel()
			<-done
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			if got, want := m.Records(), uint64(4*exporters*sets*perSet); got != want {
				t.Fatalf("decoded %d records, want %d", got, want)
			}
			checkOrder(t, readLines(t, path), 4*exporters, sets*perSet)
		})
	}
	f("passthrough", `pipelines: [{outputs: ["jsonl:PATH"]}]`, true)
	f("stages", `
pipelines:
  - stages:
      - select: protocolIdentifier == 6
      - anonymise: {method: truncate, fields: [sourceIPv4Address]}
      - project: {keep: [sourceIPv4Address, octetDeltaCount]}
      - sample: {rate: 1}
    outputs: ["jsonl:PATH"]
`, true)
	f("rotating file", `pipelines: [{outputs: ["jsonl:PATH?rotate_size=1GiB"]}]`, false)
	f("two outputs, one not laned", `pipelines: [{outputs: ["jsonl:PATH", "jsonl+tcp://127.0.0.1:1"]}]`, false)
}

// An aggregating pipeline runs on one worker at a time: its sums are
// those of every record.
func TestWorkersAggregate(t *testing.T) {
	const exporters, sets, perSet = 4, 200, 5
	path := filepath.Join(t.TempDir(), "agg.jsonl")
	set := pipeline.NewOutputSet(func(spec string) (export.Output, error) { return export.Parse(spec, nil) })
	first := compileFile(t, set, `
pipelines:
  - stages:
      - aggregate: {keys: [protocolIdentifier], values: [octetDeltaCount], interval: 1h}
    outputs: ["jsonl:`+path+`"]
`)
	rings := []*ring.Ring{ring.New(64 << 10), ring.New(64 << 10)}
	m := NewPipelineConfig(rings, first, Config{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	feedRings(t, rings, exporters, sets, perSet)
	cancel()
	<-done
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	var total uint64
	for _, line := range readLines(t, path) {
		var rec struct {
			Octets uint64 `json:"octetDeltaCount"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		total += rec.Octets
	}
	n := uint64(sets * perSet)
	if want := uint64(len(rings)*exporters) * n * (n - 1) / 2; total != want {
		t.Fatalf("aggregated octets %d, want %d", total, want)
	}
}

// Pipelines applied again and again while the workers run: every Apply
// returns once in force, records keep their order per exporter across the
// changes (the file is shared by every snapshot), none is lost, and every
// snapshot but the last is retired.
func TestWorkersHotReload(t *testing.T) {
	const exporters, sets, perSet = 4, 300, 5
	path := filepath.Join(t.TempDir(), "out.jsonl")
	set := pipeline.NewOutputSet(func(spec string) (export.Output, error) { return export.Parse(spec, nil) })
	srcs := []string{
		`pipelines: [{outputs: ["jsonl:` + path + `"]}]`,
		`pipelines: [{stages: [{select: "protocolIdentifier == 6"}, {project: {keep: [octetDeltaCount]}}], outputs: ["jsonl:` + path + `"]}]`,
		`pipelines: [{stages: [{aggregate: {keys: [sourceIPv4Address], values: [octetDeltaCount], interval: 1h}}], outputs: ["discard"]}, {outputs: ["jsonl:` + path + `"]}]`,
	}
	rings := []*ring.Ring{ring.New(64 << 10), ring.New(64 << 10), ring.New(64 << 10)}
	m := NewPipelineConfig(rings, compileFile(t, set, srcs[0]), Config{Workers: 2}, nil)
	var applied atomic.Int64
	m.OnApplied(func(uint64) { applied.Add(1) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	stop := make(chan struct{})
	reloads := make(chan int)
	var reloaded atomic.Int64
	go func() {
		n := 0
		defer func() { reloads <- n }()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c, err := pipeline.Parse([]byte(srcs[i%len(srcs)]))
			if err != nil {
				t.Error(err)
				return
			}
			snap, err := pipeline.Compile(c, set)
			if err != nil {
				t.Error(err)
				return
			}
			actx, acancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err = m.Apply(actx, snap)
			acancel()
			if err != nil {
				t.Errorf("Apply %d: %v", i, err)
				return
			}
			n++
			reloaded.Add(1)
		}
	}()
	// Records flow before, during and after at least three reloads.
	feedSets(t, rings, exporters, 0, sets/2, perSet)
	for deadline := time.Now().Add(time.Minute); reloaded.Load() < 3; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d reloads in a minute", reloaded.Load())
		}
	}
	feedSets(t, rings, exporters, sets/2, sets, perSet)
	close(stop)
	n := <-reloads
	cancel()
	<-done
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if n < 3 {
		t.Fatalf("only %d reloads while the records flowed", n)
	}
	checkOrder(t, readLines(t, path), len(rings)*exporters, sets*perSet)
	for deadline := time.Now().Add(5 * time.Second); applied.Load() != int64(n); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d applied hooks for %d reloads", applied.Load(), n)
		}
	}
	t.Logf("%d reloads", n)
}

// orderOut records what it gets; it is not Laned, so it is driven by one
// worker at a time, which the race detector checks.
type orderOut struct {
	mu   sync.Mutex // only for the test's reads
	seqs map[netip.AddrPort][]uint64
}

func (o *orderOut) Record(m *jsonl.Meta, r *ipfix.Record) {
	if o.seqs == nil {
		o.seqs = map[netip.AddrPort][]uint64{}
	}
	o.seqs[m.Exporter] = append(o.seqs[m.Exporter], r.Uint(1))
}
func (o *orderOut) Flush() error        { return nil }
func (o *orderOut) Close() error        { return nil }
func (o *orderOut) Name() string        { return "order" }
func (o *orderOut) Stats() export.Stats { return export.Stats{} }

func TestWorkersSerialOutput(t *testing.T) {
	const exporters, sets, perSet = 3, 200, 4
	out := &orderOut{}
	rings := []*ring.Ring{ring.New(64 << 10), ring.New(64 << 10)}
	m := NewPipelineConfig(rings, pipeline.Passthrough([]export.Output{out}), Config{Workers: 2}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	feedRings(t, rings, exporters, sets, perSet)
	cancel()
	<-done
	m.Close()
	if len(out.seqs) != len(rings)*exporters {
		t.Fatalf("%d exporters, want %d", len(out.seqs), len(rings)*exporters)
	}
	for e, s := range out.seqs {
		for i, v := range s {
			if v != uint64(i) {
				t.Fatalf("%v: record %d is %d", e, i, v)
			}
		}
		if len(s) != sets*perSet {
			t.Fatalf("%v: %d records", e, len(s))
		}
	}
}

func TestWorkersConfig(t *testing.T) {
	f := func(c Config, rings, want int) {
		t.Helper()
		if got := c.workers(rings); got != want {
			t.Errorf("%+v with %d rings: %d workers, want %d", c, rings, got, want)
		}
	}
	f(Config{Workers: 1}, 4, 1)
	f(Config{Workers: 3}, 2, 2)
	f(Config{Workers: 2}, 0, 1)
	f(Config{}, 1, 1)
}
