package loadgen

import "testing"

// BenchmarkBuildMessages prepares one exporter's cycle of messages: what
// New does per exporter before the run.
func BenchmarkBuildMessages(b *testing.B) {
	for _, kind := range []Template{FiveTuple, IPv6, VarLen} {
		b.Run(string(kind), func(b *testing.B) {
			cfg := Config{Templates: []Template{kind, Options}}.withDefaults()
			b.ReportAllocs()
			records, octets := 0, 0
			for b.Loop() {
				m, err := buildMessages(&cfg, 1, buildTime)
				if err != nil {
					b.Fatal(err)
				}
				records += len(m.data) * cfg.Records
				for _, d := range m.data {
					octets += len(d)
				}
			}
			b.SetBytes(int64(octets / max(1, b.N)))
			b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkSendData is the per-message work of a run: copying a prepared
// message into the batch and patching its header, without the system call.
func BenchmarkSendData(b *testing.B) {
	g, err := newGenerator(Config{}, newFakeClock())
	if err != nil {
		b.Fatal(err)
	}
	g.flush = func(_ *exporter, n int) (int, error) { return n, nil }
	e := g.exps[0]
	b.ReportAllocs()
	b.SetBytes(int64(len(e.data[0])) * int64(g.cfg.Batch))
	for b.Loop() {
		g.sendData(e, g.cfg.Batch, 1)
	}
	b.ReportMetric(float64(e.records)/b.Elapsed().Seconds(), "records/s")
}

// TestSendNoAllocs: a round of a run allocates nothing once the batch
// buffer has grown.
func TestSendNoAllocs(t *testing.T) {
	g, err := newGenerator(Config{Exporters: 2, Templates: []Template{FiveTuple, VarLen, Options}}, newFakeClock())
	if err != nil {
		t.Fatal(err)
	}
	g.write = func(*exporter, []byte) error { return nil }
	g.flush = func(_ *exporter, n int) (int, error) { return n, nil }
	g.sendData(g.exps[0], g.cfg.Batch, 1)
	allocs := testing.AllocsPerRun(100, func() {
		for _, e := range g.exps {
			g.sendTemplate(e, 1)
			g.sendData(e, g.cfg.Batch, 1)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per round", allocs)
	}
}
