package mediator

import (
	"context"
	"errors"
	"net/netip"
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

// Apply: a snapshot waits until Run takes it; a later Apply supersedes one
// not yet taken; records after the swap go through the new snapshot, and
// the old snapshot's output is closed.
func TestApply(t *testing.T) {
	r := ring.New(1 << 20)
	p := r.Producer()
	first := &closeOut{}
	m := New([]*ring.Ring{r}, []export.Output{first}, nil)
	outs := map[string]*closeOut{}
	set := pipeline.NewOutputSet(func(spec string) (export.Output, error) {
		o := &closeOut{}
		outs[spec] = o
		return o, nil
	})
	compile := func(src string) *pipeline.Snapshot {
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

	// Run is not running: the first Apply times out, then a second one
	// supersedes it.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	if _, err := m.Apply(ctx, compile("pipelines: [{outputs: [discard]}]")); !errors.Is(err, ErrNotApplied) {
		t.Fatalf("Apply with no Run: %v, want ErrNotApplied", err)
	}
	cancel()
	// Compiled here: compile writes outs, which the goroutines must not.
	sa, sb := compile("pipelines: [{outputs: [\"jsonl:/a\"]}]"), compile("pipelines: [{outputs: [\"jsonl:/b\"]}]")
	superseded := make(chan error, 1)
	go func() {
		_, err := m.Apply(context.Background(), sa)
		superseded <- err
	}()
	// b must supersede a: wait until a is the pending snapshot.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if p := m.next.Load(); p != nil && p.s == sa {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first Apply never became pending")
		}
	}
	applied := make(chan error, 1)
	go func() {
		v, err := m.Apply(context.Background(), sb)
		if err == nil && v != 4 {
			t.Errorf("version %d, want 4", v)
		}
		applied <- err
	}()
	select {
	case err := <-superseded:
		if !errors.Is(err, ErrSuperseded) {
			t.Fatalf("superseded Apply: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("superseded Apply did not return")
	}

	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(runCtx); close(done) }()
	select {
	case err := <-applied:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Apply not taken by Run")
	}
	// Outputs are closed in the background once released.
	for deadline := time.Now().Add(5 * time.Second); !first.closed.Load() && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if !first.closed.Load() {
		t.Error("the first snapshot's output was not closed when it was replaced")
	}
	l := ipfix.V5Layout()
	push(t, p, entry.Header{Kind: entry.KindData, Version: 5, Exporter: netip.MustParseAddrPort("192.0.2.1:2055"), Fingerprint: l.Fingerprint, Records: 1}, make([]byte, 48))
	stop()
	<-done
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if b := outs["jsonl:/b"]; b == nil || b.n != 1 || !b.closed.Load() || first.n != 0 || outs["jsonl:/a"].n != 0 {
		t.Fatalf("records: first %d, a %d, b %+v: want the one record in b", first.n, outs["jsonl:/a"].n, b)
	}
	if !outs["jsonl:/a"].closed.Load() {
		t.Error("the superseded snapshot's output was not released")
	}
}

type closeOut struct {
	n      int
	closed atomic.Bool
}

func (o *closeOut) Record(_ *jsonl.Meta, _ *ipfix.Record) { o.n++ }
func (o *closeOut) Flush() error                          { return nil }
func (o *closeOut) Close() error                          { o.closed.Store(true); return nil }
func (o *closeOut) Name() string                          { return "close" }
func (o *closeOut) Stats() export.Stats                   { return export.Stats{Sent: uint64(o.n)} }
