package collector_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/collector"
	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/internal/testnet"
	"github.com/sluice-flow/sluice/dataplane/mediator"
	"github.com/sluice-flow/sluice/dataplane/pipeline"
	"github.com/sluice-flow/sluice/dataplane/ring"
)

// TestRingDir runs the collector over file rings and a mediator attached
// to the files by path, as the split pod's processes are: what is sent
// comes out, the files carry the collector's generation, a second
// collector on the directory is refused, and a clean stop marks the rings
// closed.
func TestRingDir(t *testing.T) {
	dir := t.TempDir()
	host := "127.0.0.1"
	port := testnet.FreePort(t, host)
	hp := net.JoinHostPort(host, strconv.Itoa(port))
	cfg := collector.Config{Listen: []string{"udp://" + hp, "tcp://" + hp}, Loops: 2, RingSize: 1 << 20, RingDir: dir}
	c, err := collector.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	gen := c.Generation()
	if gen == 0 {
		t.Fatal("no generation")
	}
	if _, err := collector.New(cfg, nil); err == nil || !strings.Contains(err.Error(), "in use by another collector") {
		t.Fatalf("second collector on the ring dir: %v", err)
	}
	var rings []*ring.Ring
	for i := range 2 {
		f, err := ring.Open(filepath.Join(dir, ring.FileName(i)))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if m := f.Meta(); m.Generation != gen || m.Index != i || m.Count != 2 {
			t.Fatalf("ring %d meta %+v, want generation %d", i, m, gen)
		}
		rings = append(rings, f.Ring)
	}
	out := &countOut{}
	med := mediator.New(rings, []export.Output{out}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	medDone := make(chan struct{})
	go func() { med.Run(ctx); close(medDone) }()
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(context.Background()) }()
	<-c.Booted()

	tpl, data, octets := exporterMsgs(7, 50, 10)
	conn, err := net.Dial("tcp", hp)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write(tpl)
	for _, m := range data {
		conn.Write(m)
	}
	conn.Close()
	waitFor(t, "500 records through the file rings", func() bool { return out.n.Load() == 500 })
	if out.sum.Load() != octets {
		t.Fatalf("octets %d, want %d", out.sum.Load(), octets)
	}
	if st := c.Status(); !st.Ready || st.Generation != gen || st.RingDir != dir || st.Records != 500 {
		t.Fatalf("status %+v", st)
	}
	if err := c.Drain(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	<-runErr
	if st := c.Status(); st.Ready || !st.Draining || !st.Stopped {
		t.Fatalf("status after drain %+v", st)
	}
	for i, r := range rings {
		if !r.Closed() {
			t.Errorf("ring %d not marked closed after the collector stopped", i)
		}
	}
	cancel()
	<-medDone
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c2, err := collector.New(cfg, nil)
	if err != nil {
		t.Fatalf("collector after the first closed: %v", err)
	}
	defer c2.Close()
	if c2.Generation() <= gen {
		t.Fatalf("generation %d after %d", c2.Generation(), gen)
	}
}

// TestRuntimeListeners adds a UDP and a TCP listener to a running
// collector, sends through both, checks the hooks saw the templates and
// exporters, then removes them: the ports are free again, and a listener
// given at start cannot be removed.
func TestRuntimeListeners(t *testing.T) {
	h := start(t, collector.Config{}, true)
	var mu sync.Mutex
	var tpls []collector.TemplateEvent
	var exps []collector.ExporterEvent
	h.c.SetHooks(collector.Hooks{
		TemplateLearned: func(e collector.TemplateEvent) { mu.Lock(); tpls = append(tpls, e); mu.Unlock() },
		ExporterSeen:    func(e collector.ExporterEvent) { mu.Lock(); exps = append(exps, e); mu.Unlock() },
	})
	port := testnet.FreePort(t, "127.0.0.1")
	hp := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for _, u := range []string{"udp://" + hp, "tcp://" + hp} {
		if err := h.c.AddListener(u); err != nil {
			t.Fatalf("AddListener(%s): %v", u, err)
		}
	}
	if err := h.c.AddListener("udp://" + hp); !errors.Is(err, collector.ErrListenerExists) {
		t.Fatalf("AddListener twice: %v", err)
	}
	if got := h.c.Listeners(); len(got) != 4 || got[2] != "udp://127.0.0.1:"+strconv.Itoa(port) {
		t.Fatalf("Listeners = %v", got)
	}

	tpl, data, octets := exporterMsgs(3, 40, 10)
	udp, err := net.Dial("udp", hp)
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	udp.Write(tpl)
	for _, m := range data[:20] {
		udp.Write(m)
		waitFor(t, "the datagram to be read", func() bool { return h.metricValue("sluice_packets_total") > 0 })
	}
	tcp, err := net.Dial("tcp", hp)
	if err != nil {
		t.Fatal(err)
	}
	tcp.Write(tpl)
	for _, m := range data[20:] {
		tcp.Write(m)
	}
	tcp.Close()
	waitFor(t, "400 records", func() bool { return h.out.n.Load() == 400 })
	if h.out.sum.Load() != octets {
		t.Fatalf("octets %d, want %d", h.out.sum.Load(), octets)
	}
	waitFor(t, "hook events", func() bool { mu.Lock(); defer mu.Unlock(); return len(tpls) >= 2 && len(exps) >= 2 })
	mu.Lock()
	if tpls[0].ID != 256 || tpls[0].Domain != 3 || exps[0].Domain != 3 {
		t.Errorf("events %+v %+v", tpls, exps)
	}
	mu.Unlock()

	for _, u := range []string{"udp://" + hp, "tcp://" + hp} {
		if err := h.c.RemoveListener(u); err != nil {
			t.Fatalf("RemoveListener(%s): %v", u, err)
		}
	}
	if err := h.c.RemoveListener("tcp://" + hp); !errors.Is(err, collector.ErrNoListener) {
		t.Fatalf("RemoveListener twice: %v", err)
	}
	if err := h.c.RemoveListener(h.c.Listeners()[0]); !errors.Is(err, collector.ErrStartListener) {
		t.Fatalf("RemoveListener of a start listener: %v", err)
	}
	for _, n := range []string{"udp", "tcp"} {
		var err error
		if n == "udp" {
			var pc net.PacketConn
			if pc, err = net.ListenPacket(n, hp); err == nil {
				pc.Close()
			}
		} else {
			var ln net.Listener
			if ln, err = net.Listen(n, hp); err == nil {
				ln.Close()
			}
		}
		if err != nil {
			t.Errorf("%s port not free after RemoveListener: %v", n, err)
		}
	}
}

// TestHooksNeverBlock stalls the hook goroutine and checks that the loops
// go on and the events past the queue are counted.
func TestHooksNeverBlock(t *testing.T) {
	h := start(t, collector.Config{}, true)
	block := make(chan struct{})
	defer close(block)
	h.c.SetHooks(collector.Hooks{TemplateLearned: func(collector.TemplateEvent) { <-block }})
	conn, err := net.Dial("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(h.port)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Each domain's template is a new template: 5000 events.
	const domains = 5000
	for d := range domains {
		tpl, _, _ := exporterMsgs(uint32(d), 0, 0)
		conn.Write(tpl)
		if d%500 == 499 {
			waitFor(t, "templates learned", func() bool { return h.metricValue("sluice_templates_learned_total") > float64(d-100) })
		}
	}
	waitFor(t, "every template learned", func() bool {
		return h.metricValue("sluice_templates_learned_total")+h.metricValue("sluice_udp_socket_drops_total") >= domains
	})
	if st := h.c.Status(); st.HookEventsDropped == 0 {
		t.Fatalf("no hook event counted as dropped with the hook stalled: %+v", st)
	}
}

// TestRingDirKeepsUnread restarts a collector while no mediator reads its
// rings: the new collector keeps the old ring under ring.RetainedName
// instead of replacing it, and a mediator that starts later delivers the
// records of both generations and counts, by sequence numbers, the UDP
// records lost between them.
func TestRingDirKeepsUnread(t *testing.T) {
	dir := t.TempDir()
	host := "127.0.0.1"
	port := testnet.FreePort(t, host)
	hp := net.JoinHostPort(host, strconv.Itoa(port))
	cfg := collector.Config{Listen: []string{"udp://" + hp}, Loops: 1, RingSize: 1 << 20, RingDir: dir}
	tpl, data, _ := exporterMsgs(7, 30, 10)
	conn, err := net.Dial("udp", hp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	run := func(msgs [][]byte, records uint64) uint64 {
		c, err := collector.New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		runErr := make(chan error, 1)
		go func() { runErr <- c.Run(context.Background()) }()
		<-c.Booted()
		conn.Write(tpl)
		for _, m := range msgs {
			conn.Write(m)
		}
		waitFor(t, "records in the ring", func() bool { return c.Status().Records == records })
		if err := c.Drain(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		<-runErr
		return c.Generation()
	}
	gen1 := run(data[:10], 100)
	// data[10:15] is lost while no collector listens.
	gen2 := run(data[15:], 150)
	kept := filepath.Join(dir, ring.RetainedName(0, gen1))
	if f, err := ring.Open(kept); err != nil {
		t.Fatalf("the unread ring of generation %d was not kept: %v", gen1, err)
	} else {
		f.Close()
	}

	out := &countOut{}
	med := mediator.NewDir(dir, pipeline.Passthrough([]export.Output{out}), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	medDone := make(chan struct{})
	go func() { med.Run(ctx); close(medDone) }()
	waitFor(t, "250 records from both generations", func() bool { return out.n.Load() == 250 })
	waitFor(t, "the kept ring removed once drained", func() bool {
		_, err := os.Stat(kept)
		return errors.Is(err, os.ErrNotExist)
	})
	waitFor(t, "the restart's gap counted", func() bool { return med.Status().RestartLost != 0 })
	if st := med.Status(); st.Generation != gen2 || st.RestartLost != 50 {
		t.Fatalf("mediator status %+v, want generation %d and 50 records lost in the restart", st, gen2)
	}
	cancel()
	<-medDone
	if n := out.n.Load(); n != 250 {
		t.Fatalf("%d records, want 250", n)
	}
}
