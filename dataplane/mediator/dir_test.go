//go:build unix

package mediator

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
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

// seqOut records the first field (a sequence number) of every record.
type seqOut struct {
	n    atomic.Uint64
	seen chan uint64
}

func (o *seqOut) Record(_ *jsonl.Meta, r *ipfix.Record) {
	o.n.Add(1)
	o.seen <- r.Uint(0)
}
func (o *seqOut) Flush() error        { return nil }
func (o *seqOut) Close() error        { return nil }
func (o *seqOut) Name() string        { return "seq" }
func (o *seqOut) Stats() export.Stats { return export.Stats{Sent: o.n.Load()} }

// fakeCollector writes entries like a collector loop: one template, then
// data entries of one record each carrying a sequence number.
type fakeCollector struct {
	f    *ring.File
	p    *ring.Producer
	fp   uint64
	raw  []byte
	next uint64
}

func newFakeCollector(t *testing.T, path string, gen uint64) *fakeCollector {
	t.Helper()
	idx, _ := ring.ParseFileName(filepath.Base(path))
	f, err := ring.Create(path, 64<<10, ring.Meta{Generation: gen, Index: idx, Count: idx + 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	raw := ipfix.AppendTemplateRecord(nil, 256, []ipfix.FieldSpec{{ID: 1, Length: 8}})
	var tr ipfix.TemplateRecord
	if err := ipfix.ParseTemplateRecord(raw, false, false, &tr); err != nil {
		t.Fatal(err)
	}
	l, _ := ipfix.Compile(&tr)
	c := &fakeCollector{f: f, p: f.Producer(), fp: l.Fingerprint, raw: raw}
	push(t, c.p, c.header(entry.KindTemplate, 0), raw)
	return c
}

func (c *fakeCollector) header(k entry.Kind, records uint32) entry.Header {
	return entry.Header{Kind: k, Version: 10, Exporter: netip.MustParseAddrPort("192.0.2.1:0"), TemplateID: 256,
		Fingerprint: c.fp, Records: records}
}

func (c *fakeCollector) send(t *testing.T, n int) {
	for range n {
		h := c.header(entry.KindData, 1)
		h.Sequence = uint32(c.next) // IPFIX: records sent before this message
		push(t, c.p, h, ipfix.AppendUint(nil, c.next, 8))
		c.next++
	}
}

func runDir(t *testing.T, dir string, out export.Output) (*Mediator, func()) {
	m := NewDir(dir, pipeline.Passthrough([]export.Output{out}), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	return m, func() { cancel(); <-done }
}

func expectSeq(t *testing.T, o *seqOut, from, to uint64) {
	t.Helper()
	for want := from; want < to; want++ {
		select {
		case got := <-o.seen:
			if got != want {
				t.Fatalf("record %d, want %d", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("timed out waiting for record %d", want)
		}
	}
}

// TestDirFollowsRestarts waits for the ring files, reads them, resumes
// where a stopped mediator released, drains the old generation before the
// new one, and refuses a file of the wrong version with the reason.
func TestDirFollowsRestarts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rings")
	out := &seqOut{seen: make(chan uint64, 1<<16)}
	m, stop := runDir(t, dir, out)
	if m.Status().Ready {
		t.Fatal("ready before any ring")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, ring.FileName(0))
	c1 := newFakeCollector(t, path, 1)
	c1.send(t, 100)
	expectSeq(t, out, 0, 100)
	if st := m.Status(); !st.Ready || st.Generation != 1 || st.Rings != 1 {
		t.Fatalf("status %+v", st)
	}
	stop()

	// Meanwhile the collector goes on; a new mediator resumes.
	c1.send(t, 50)
	m, stop = runDir(t, dir, out)
	expectSeq(t, out, 100, 150)
	if st := m.Status(); st.Replayed != 0 {
		t.Fatalf("replayed %d after a clean stop", st.Replayed)
	}

	// Collector restart: the old generation keeps entries the mediator
	// has not read when the new one appears; they come first.
	c1.send(t, 20)
	c2 := newFakeCollector(t, path, 2)
	c2.next = 170
	c2.send(t, 30)
	expectSeq(t, out, 150, 200)
	waitStatus(t, m, func(s Status) bool { return s.Generation == 2 && s.Rings == 1 })

	// A file of another layout version is refused, with the reason.
	bad := filepath.Join(dir, ring.FileName(1))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[4] = 1 // version 1
	if err := os.WriteFile(bad, b, 0o600); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, m, func(s Status) bool { return s.AttachErrors > 0 })
	if st := m.Status(); !strings.Contains(st.LastAttachError, "unsupported layout version: 1, want 2") ||
		!strings.Contains(st.LastAttachError, bad) {
		t.Fatalf("attach error %q", st.LastAttachError)
	}
	c2.send(t, 10)
	expectSeq(t, out, 200, 210)
	stop()
}

// TestDirReplay stands for a mediator killed after handing entries to the
// outputs and before releasing them: its successor reads them again and
// counts them.
func TestDirReplay(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ring.FileName(0))
	c := newFakeCollector(t, path, 1)
	c.send(t, 10)
	f, err := ring.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	cons := f.Consumer()
	for range 4 { // the template and three records, handed on
		if cons.Next() == nil {
			t.Fatal("empty")
		}
		cons.Skip()
		cons.Checkpoint()
	}
	f.Close()
	out := &seqOut{seen: make(chan uint64, 1<<10)}
	m, stop := runDir(t, dir, out)
	defer stop()
	expectSeq(t, out, 0, 10)
	if got := m.Replayed(); got != 3 {
		t.Fatalf("replayed %d, want 3", got)
	}
	if !strings.Contains(string(m.AppendMetrics(nil)), "sluice_mediator_replayed_records_total 3") {
		t.Fatalf("metrics:\n%s", m.AppendMetrics(nil))
	}
}

// TestDirRetainedRings stands for collectors that restarted twice while no
// mediator ran: each kept its predecessor's unread ring under
// ring.RetainedName. The mediator drains the generations oldest first,
// removes the kept files once drained, and counts the sequence numbers the
// exporter skipped between generations (UDP loss during the restarts).
func TestDirRetainedRings(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ring.FileName(0))
	keep := func(gen uint64) {
		if err := os.Rename(path, filepath.Join(dir, ring.RetainedName(0, gen))); err != nil {
			t.Fatal(err)
		}
	}
	c1 := newFakeCollector(t, path, 1)
	c1.send(t, 50)
	keep(1)
	c2 := newFakeCollector(t, path, 2)
	c2.next = 60 // ten lost while the collector restarted
	c2.send(t, 40)
	keep(2)
	c3 := newFakeCollector(t, path, 3)
	c3.next = 103 // three more
	c3.send(t, 20)

	out := &seqOut{seen: make(chan uint64, 1<<10)}
	m, stop := runDir(t, dir, out)
	defer stop()
	expectSeq(t, out, 0, 50)
	expectSeq(t, out, 60, 100)
	expectSeq(t, out, 103, 123)
	waitStatus(t, m, func(s Status) bool { return s.Generation == 3 && s.Rings == 1 && s.RestartLost == 13 })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		left, _ := filepath.Glob(filepath.Join(dir, "ring-000.*"))
		var stale []string
		for _, f := range left {
			if !strings.HasSuffix(f, ".3.templates") {
				stale = append(stale, f)
			}
		}
		if len(stale) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kept rings or their state not removed after draining: %v", stale)
		}
	}
	if !strings.Contains(string(m.AppendMetrics(nil)), `sluice_mediator_restart_sequence_lost_total{unit="records"} 13`) {
		t.Fatalf("metrics:\n%s", m.AppendMetrics(nil))
	}
	c3.send(t, 5)
	expectSeq(t, out, 123, 128)
}

func waitStatus(t *testing.T, m *Mediator, ok func(Status) bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(m.Status()); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("status %+v", m.Status())
		}
	}
}

// TestFlushAndApplied checks Flush reaches Run and the applied hook fires.
func TestFlushAndApplied(t *testing.T) {
	out := &seqOut{seen: make(chan uint64, 16)}
	m, stop := runDir(t, t.TempDir(), out)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := make(chan uint64, 1)
	m.OnApplied(func(v uint64) { got <- v })
	v, err := m.Apply(ctx, pipeline.Passthrough([]export.Output{out}))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case hv := <-got:
		if hv != v {
			t.Fatalf("hook got version %d, Apply %d", hv, v)
		}
	case <-ctx.Done():
		t.Fatal("no applied hook")
	}
}

// TestDirRenamedUnderIt renames the ring a running mediator is reading, as
// a collector that restarts while the mediator lags does (unread entries
// kept under ring.RetainedName), and makes the next generation: the
// mediator finishes the old ring before it reads the new one, and counts
// only the sequence numbers the restart really skipped.
func TestDirRenamedUnderIt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ring.FileName(0))
	c1 := newFakeCollector(t, path, 1)
	c1.send(t, 200)
	out := &seqOut{seen: make(chan uint64, 8)} // the mediator lags: it blocks on its output
	m, stop := runDir(t, dir, out)
	defer stop()
	expectSeq(t, out, 0, 5)
	if err := os.Rename(path, filepath.Join(dir, ring.RetainedName(0, 1))); err != nil {
		t.Fatal(err)
	}
	c2 := newFakeCollector(t, path, 2)
	c2.next = 250 // 50 lost
	c2.send(t, 100)
	expectSeq(t, out, 5, 200)
	expectSeq(t, out, 250, 350)
	waitStatus(t, m, func(s Status) bool { return s.Generation == 2 && s.RestartLost == 50 })
}

// TestDirGapReadOutOfOrder stands for an exporter whose datagrams land on
// two loops while the new collector starts: the mediator reads a later
// message (ring 0) before earlier ones (ring 1), and counts as lost only
// the numbers it never reads.
func TestDirGapReadOutOfOrder(t *testing.T) {
	dir := t.TempDir()
	c1 := newFakeCollector(t, filepath.Join(dir, ring.FileName(0)), 1)
	c1.send(t, 50)
	out := &seqOut{seen: make(chan uint64, 1<<10)}
	m, stop := runDir(t, dir, out)
	defer stop()
	expectSeq(t, out, 0, 50)
	b0 := newFakeCollector(t, filepath.Join(dir, ring.FileName(0)), 2)
	b1 := newFakeCollector(t, filepath.Join(dir, ring.FileName(1)), 2)
	b0.next = 70
	b0.send(t, 30) // 70..99, read first
	b1.next = 60
	b1.send(t, 10) // 60..69: 50..59 are lost
	for range 40 {
		select {
		case <-out.seen:
		case <-time.After(10 * time.Second):
			t.Fatal("timed out waiting for the new generation's records")
		}
	}
	waitStatus(t, m, func(s Status) bool { return s.RestartLost != 0 })
	if st := m.Status(); st.RestartLost != 10 {
		t.Fatalf("restart lost %d, want 10", st.RestartLost)
	}
}
