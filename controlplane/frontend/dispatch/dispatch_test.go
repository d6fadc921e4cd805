package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// events collects a broker's events for a test.
type events struct {
	mu  sync.Mutex
	all []Event
	ch  chan struct{}
}

func newEvents() *events { return &events{ch: make(chan struct{}, 1)} }

func (e *events) add(ev Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
	select {
	case e.ch <- struct{}{}:
	default:
	}
}

// wait returns the first event matching ok, waiting up to 10s.
func (e *events) wait(t *testing.T, what string, ok func(Event) bool) Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		e.mu.Lock()
		for _, ev := range e.all {
			if ok(ev) {
				e.mu.Unlock()
				return ev
			}
		}
		e.mu.Unlock()
		select {
		case <-e.ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; events: %+v", what, e.all)
		}
	}
}

func ipc(t testing.TB) string { return "ipc://" + filepath.Join(t.TempDir(), "broker.sock") }

func startBroker(t testing.TB, cfg BrokerConfig, ev func(Event)) *Broker {
	t.Helper()
	b := NewBroker(cfg, ev)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = b.Run(ctx) }()
	if err := b.BindErr(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-done })
	return b
}

func startWorker(t testing.TB, cfg WorkerConfig, h Handler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = RunWorker(ctx, cfg, h) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

func echo(ctx context.Context, j Job, progress func(float64)) ([]Output, error) {
	progress(0.5)
	if string(j.Params) == `"block"` {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if string(j.Params) == `"fail"` {
		return nil, errors.New("asked to fail")
	}
	return []Output{{Format: "json", ContentType: "application/json", Data: j.Params},
		{Format: "txt", ContentType: "text/plain", Data: []byte(j.ID)}}, nil
}

func TestDispatch(t *testing.T) {
	ev := newEvents()
	ep := ipc(t)
	hb := 50 * time.Millisecond
	b := startBroker(t, BrokerConfig{Endpoint: ep, Heartbeat: hb}, ev.add)
	startWorker(t, WorkerConfig{Broker: ep, Heartbeat: hb}, echo)
	ev.wait(t, "worker up", func(e Event) bool { return e.Kind == EventWorkerUp })

	b.Submit(Job{ID: "a", Type: "echo", Params: json.RawMessage(`{"x":1}`)})
	done := ev.wait(t, "a done", func(e Event) bool { return e.Job == "a" && e.Kind == EventDone })
	if len(done.Outputs) != 2 || string(done.Outputs[0].Data) != `{"x":1}` || string(done.Outputs[1].Data) != "a" ||
		done.Outputs[1].Format != "txt" {
		t.Fatalf("outputs %+v", done.Outputs)
	}
	ev.wait(t, "a progress", func(e Event) bool { return e.Job == "a" && e.Kind == EventProgress && e.Progress == 0.5 })

	b.Submit(Job{ID: "f", Params: json.RawMessage(`"fail"`)})
	if f := ev.wait(t, "f failed", func(e Event) bool { return e.Job == "f" && e.Kind == EventFailed }); f.Reason != "asked to fail" {
		t.Fatalf("reason %q", f.Reason)
	}

	// Cancel a running job, then one still waiting (the only worker is busy).
	b.Submit(Job{ID: "c", Params: json.RawMessage(`"block"`)})
	ev.wait(t, "c started", func(e Event) bool { return e.Job == "c" && e.Kind == EventStarted })
	b.Submit(Job{ID: "w", Params: json.RawMessage(`"block"`)})
	b.Cancel("w")
	if f := ev.wait(t, "w canceled", func(e Event) bool { return e.Job == "w" && e.Kind == EventFailed }); f.Reason != "canceled" {
		t.Fatalf("reason %q", f.Reason)
	}
	b.Cancel("c")
	if f := ev.wait(t, "c canceled", func(e Event) bool { return e.Job == "c" && e.Kind == EventFailed }); f.Reason != "canceled" {
		t.Fatalf("reason %q", f.Reason)
	}
	if n := len(b.Workers()); n != 1 {
		t.Fatalf("%d workers", n)
	}
}

// fakeWorker speaks the protocol by hand: it says READY, answers
// heartbeats and takes jobs without ever finishing them (each job's id goes
// to jobs); after hang it stops answering, as a hung process would. Its
// socket belongs to its own goroutine, which ends at the test's cleanup.
type fakeWorker struct {
	jobs  chan string
	hangc chan struct{}
}

func newFakeWorker(t *testing.T, ep string) *fakeWorker {
	f := &fakeWorker{jobs: make(chan string, 10), hangc: make(chan struct{})}
	stop, done := make(chan struct{}), make(chan struct{})
	ready := make(chan error, 1)
	go func() {
		defer close(done)
		d, err := zmq.NewSocket(zmq.DEALER)
		if err == nil {
			_ = d.SetLinger(0)
			err = d.Connect(ep)
		}
		if err == nil {
			_, err = d.SendMessage(tag, cmdReady, `{"pid":-1}`)
		}
		ready <- err
		if err != nil {
			return
		}
		defer d.Close()
		poller := zmq.NewPoller()
		poller.Add(d, zmq.POLLIN)
		hung := false
		for {
			select {
			case <-stop:
				return
			case <-f.hangc:
				hung = true
			default:
			}
			if _, err := poller.Poll(10 * time.Millisecond); err != nil {
				return
			}
			for {
				msg, err := d.RecvMessage(zmq.DONTWAIT)
				if err != nil {
					break
				}
				switch {
				case hung:
				case msg[1] == cmdHB:
					_, _ = d.SendMessage(tag, cmdHB)
				case msg[1] == cmdJob:
					var j Job
					_ = json.Unmarshal([]byte(msg[2]), &j)
					f.jobs <- j.ID
				}
			}
		}
	}()
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(stop); <-done })
	return f
}

func (f *fakeWorker) hang() { close(f.hangc) }

// gotJob waits until one of fs receives a job and returns that worker.
func gotJob(t *testing.T, fs ...*fakeWorker) *fakeWorker {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		for _, f := range fs {
			select {
			case <-f.jobs:
				return f
			default:
			}
		}
		select {
		case <-deadline:
			t.Fatal("no fake worker got a job")
		case <-time.After(time.Millisecond):
		}
	}
}

func TestLostWorkerRetriesThenFails(t *testing.T) {
	ev := newEvents()
	ep := ipc(t)
	hb := 40 * time.Millisecond
	b := startBroker(t, BrokerConfig{Endpoint: ep, Heartbeat: hb, Liveness: 3}, ev.add)
	up := func(n int) {
		deadline := time.Now().Add(10 * time.Second)
		for len(b.Workers()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d workers, want %d", len(b.Workers()), n)
			}
			time.Sleep(time.Millisecond)
		}
	}

	// Two workers that hang once they have the job: it goes to one, is
	// retried on the other, then fails with the reason.
	w1, w2 := newFakeWorker(t, ep), newFakeWorker(t, ep)
	up(2)
	b.Submit(Job{ID: "j"})
	first := gotJob(t, w1, w2)
	first.hang()
	second := gotJob(t, w1, w2)
	if second == first {
		t.Fatal("the job went back to its lost worker")
	}
	r := ev.wait(t, "retry", func(e Event) bool { return e.Job == "j" && e.Kind == EventRetry })
	if r.Attempt != 2 {
		t.Fatalf("retry attempt %d", r.Attempt)
	}
	second.hang()
	f := ev.wait(t, "failed", func(e Event) bool { return e.Job == "j" && e.Kind == EventFailed })
	if f.Attempt != 2 || f.Reason == "" {
		t.Fatalf("failed %+v", f)
	}
	t.Logf("reason: %s", f.Reason)

	// A job whose first worker is lost completes on a live one.
	w3 := newFakeWorker(t, ep)
	up(1)
	b.Submit(Job{ID: "k"})
	gotJob(t, w3)
	startWorker(t, WorkerConfig{Broker: ep, Heartbeat: hb}, echo)
	up(2)
	w3.hang()
	d := ev.wait(t, "k done", func(e Event) bool { return e.Job == "k" && (e.Kind == EventDone || e.Kind == EventFailed) })
	if d.Kind != EventDone || d.Attempt != 2 {
		t.Fatalf("k: %+v", d)
	}
}

func TestMaxJobs(t *testing.T) {
	ev := newEvents()
	ep := ipc(t)
	b := startBroker(t, BrokerConfig{Endpoint: ep}, ev.add)
	ctx := context.Background()
	ret := make(chan error, 1)
	go func() { ret <- RunWorker(ctx, WorkerConfig{Broker: ep, MaxJobs: 2}, echo) }()
	for i := range 2 {
		b.Submit(Job{ID: fmt.Sprint(i)})
	}
	select {
	case err := <-ret:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("worker did not stop after two jobs")
	}
	ev.wait(t, "worker left", func(e Event) bool { return e.Kind == EventWorkerLost && e.Reason == "worker left" })
	for i := range 2 {
		ev.wait(t, "done", func(e Event) bool { return e.Job == fmt.Sprint(i) && e.Kind == EventDone })
	}
}
