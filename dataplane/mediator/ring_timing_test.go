//go:build unix

package mediator

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/entry"
	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/pipeline"
	"github.com/sluice-flow/sluice/dataplane/ring"
)

// BenchmarkMediatorRing moves b.N data entries (30 records of the perf
// runner's 46-octet 5-tuple template, 1,452 octets each) from a producer
// goroutine through a 16 MiB ring to a running Mediator with a discard
// output: "memory" is sluice run's ring in process memory (New), "file" the
// split pod's file ring on /dev/shm read by NewDir, with its durable
// release (checkpoint, flush, publish) and its polling. Besides ns/entry it
// reports the process's CPU time per entry (producer included, the same in
// both), which is what a busy machine does not distort.
func BenchmarkMediatorRing(b *testing.B) {
	b.Run("memory", func(b *testing.B) {
		r := ring.New(16 << 20)
		out := &export.Discard{}
		m := New([]*ring.Ring{r}, []export.Output{out}, quiet)
		benchMediator(b, m, r.Producer(), out)
	})
	b.Run("file", func(b *testing.B) {
		f, dir := benchFileRing(b)
		out := &export.Discard{}
		m := NewDir(dir, pipeline.Passthrough([]export.Output{out}), quiet)
		benchMediator(b, m, f.Producer(), out)
	})
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// benchTemplate is the perf runner's 5-tuple record: 46 octets.
var benchTemplate = []ipfix.FieldSpec{
	{ID: 8, Length: 4}, {ID: 12, Length: 4}, {ID: 7, Length: 2}, {ID: 11, Length: 2}, {ID: 4, Length: 1},
	{ID: 6, Length: 1}, {ID: 1, Length: 8}, {ID: 2, Length: 8}, {ID: 152, Length: 8}, {ID: 153, Length: 8},
}

func benchMediator(b *testing.B, m *Mediator, p *ring.Producer, out *export.Discard) {
	put, records := benchEntries(b, p)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done; m.Close() }()
	put(entry.KindTemplate)
	// Warm up: the file ring attaches at the mediator's first scan.
	put(entry.KindData)
	waitSent(b, out, uint64(records))

	b.ReportAllocs()
	b.SetBytes(int64(entry.HeaderLen + records*46))
	cpu0 := cpuTime()
	b.ResetTimer()
	for range b.N {
		put(entry.KindData)
	}
	waitSent(b, out, uint64((b.N+1)*records))
	b.StopTimer()
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(b.N*records)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/entry")
}

func waitSent(b *testing.B, out *export.Discard, n uint64) {
	for deadline := time.Now().Add(time.Minute); out.Stats().Sent < n; time.Sleep(50 * time.Microsecond) {
		if time.Now().After(deadline) {
			b.Fatalf("mediator sent %d of %d records", out.Stats().Sent, n)
		}
	}
}

// cpuTime is the process's user and system time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkMediatorPoll is the mediator's own cost per entry without a
// second goroutine: it fills the ring with 1,024 data entries, then has
// the mediator poll them all, over and over, so the figure holds no
// scheduling or polling delay. "file" minus "memory" is what the durable
// release of the split pod costs per entry (the producer's share is the
// same in both).
func BenchmarkMediatorPoll(b *testing.B) {
	b.Run("memory", func(b *testing.B) {
		r := ring.New(16 << 20)
		out := &export.Discard{}
		m := New([]*ring.Ring{r}, []export.Output{out}, quiet)
		benchPoll(b, m, r.Producer(), out)
	})
	b.Run("file", func(b *testing.B) {
		f, dir := benchFileRing(b)
		out := &export.Discard{}
		m := NewDir(dir, pipeline.Passthrough([]export.Output{out}), quiet)
		m.scan()
		benchPoll(b, m, f.Producer(), out)
	})
}

func benchPoll(b *testing.B, m *Mediator, p *ring.Producer, out *export.Discard) {
	put, records := benchEntries(b, p)
	put(entry.KindTemplate)
	const batch = 1024
	b.ReportAllocs()
	b.SetBytes(int64(entry.HeaderLen + records*46))
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		n := min(batch, b.N-i)
		for range n {
			put(entry.KindData)
		}
		for n, _ := m.poll(256); n > 0; n, _ = m.poll(256) {
		}
	}
	b.StopTimer()
	out.Flush()
	if got := out.Stats().Sent; got != uint64(b.N*records) {
		b.Fatalf("sent %d records, want %d", got, b.N*records)
	}
	b.ReportMetric(float64(b.N*records)/b.Elapsed().Seconds(), "records/s")
}

// benchFileRing makes a 16 MiB file ring on /dev/shm (a tmpfs, as in the
// split pod) or else in a temporary directory.
func benchFileRing(b *testing.B) (*ring.File, string) {
	dir := b.TempDir()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "sluice-bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(d) })
		dir = d
	}
	f, err := ring.Create(filepath.Join(dir, ring.FileName(0)), 16<<20, ring.Meta{Generation: 1, Count: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return f, dir
}

// benchEntries returns a function writing a template entry or a data
// entry of 30 records (yielding while the ring is full) into p, and the
// records per data entry.
func benchEntries(b *testing.B, p *ring.Producer) (func(entry.Kind), int) {
	raw := ipfix.AppendTemplateRecord(nil, 256, benchTemplate)
	var tr ipfix.TemplateRecord
	if err := ipfix.ParseTemplateRecord(raw, false, false, &tr); err != nil {
		b.Fatal(err)
	}
	l, err := ipfix.Compile(&tr)
	if err != nil {
		b.Fatal(err)
	}
	const records = 30
	data := make([]byte, records*l.MinLen)
	for i := range data {
		data[i] = byte(i)
	}
	h := entry.Header{Version: 10, Exporter: netip.MustParseAddrPort("192.0.2.1:4739"), TemplateID: 256,
		Fingerprint: l.Fingerprint, Domain: 1}
	return func(k entry.Kind) {
		body := raw
		h.Kind, h.Records = k, 0
		if k == entry.KindData {
			body, h.Records = data, records
			h.Sequence += records
		}
		e := p.Reserve(entry.HeaderLen + len(body))
		for e == nil {
			runtime.Gosched()
			e = p.Reserve(entry.HeaderLen + len(body))
		}
		entry.Put(e, &h)
		copy(e[entry.HeaderLen:], body)
		p.Commit(len(e))
	}, records
}
