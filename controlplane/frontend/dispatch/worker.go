package dispatch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// lingerAtExit bounds how long a leaving worker waits for its last
// messages (the result, BYE) to reach the broker.
const lingerAtExit = 2 * time.Second

// Handler runs one job. progress takes values in [0, 1] and may be called
// from any goroutine, as often as convenient (the worker sends at most one
// update per ProgressEvery). The handler must return soon after ctx ends.
// The outputs' Data is sent after Handler returns and not kept.
type Handler func(ctx context.Context, j Job, progress func(float64)) ([]Output, error)

// WorkerConfig configures RunWorker. Zero values are the defaults.
type WorkerConfig struct {
	// Broker is the broker's endpoint. Required.
	Broker string
	// Heartbeat and Liveness as in BrokerConfig (defaults 1s and 3): a
	// broker silent for Liveness intervals is reconnected to, and the job
	// in hand dropped.
	Heartbeat time.Duration
	Liveness  int
	// MaxJobs makes RunWorker return after that many jobs, so a
	// supervisor starts a fresh process (memory stays bounded). 0: no
	// limit.
	MaxJobs int
	// ProgressEvery bounds progress updates. Default 100ms.
	ProgressEvery time.Duration
	Log           *slog.Logger
}

func (c WorkerConfig) withDefaults() WorkerConfig {
	if c.Heartbeat <= 0 {
		c.Heartbeat = time.Second
	}
	if c.Liveness <= 0 {
		c.Liveness = 3
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = 100 * time.Millisecond
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return c
}

// worker is RunWorker's state. The DEALER socket and the waker's PULL end
// belong to the goroutine running RunWorker; the job runs on its own
// goroutine and reaches the socket goroutine through progress, result and
// the waker.
type worker struct {
	cfg    WorkerConfig
	h      Handler
	zctx   *zmq.Context
	wake   *waker
	dealer *zmq.Socket

	// The job in hand (socket goroutine only, except as noted).
	job      *Job
	cancel   context.CancelFunc
	result   chan jobResult // the job goroutine's one answer
	progress atomic.Uint64  // float64 bits; written by the job goroutine
	lastWake atomic.Int64   // unix ns of the last progress wake-up
	sentProg uint64         // bits last sent
	jobs     int            // jobs finished
	heard    time.Time      // last message from the broker
	finished chan struct{}  // closed when the job goroutine returns
}

type jobResult struct {
	outs []Output
	err  error
}

// RunWorker connects to the broker and runs jobs with h until ctx ends or
// MaxJobs jobs are done; it says goodbye to the broker before returning.
func RunWorker(ctx context.Context, cfg WorkerConfig, h Handler) error {
	if cfg.Broker == "" {
		return fmt.Errorf("dispatch: worker without a broker endpoint")
	}
	w := &worker{cfg: cfg.withDefaults(), h: h}
	zctx, err := zmq.NewContext()
	if err != nil {
		return fmt.Errorf("dispatch: %w", err)
	}
	w.zctx = zctx
	// Term waits (up to the linger) until the last messages are sent: a
	// process that exits right after would otherwise lose them.
	defer func() { _ = zctx.Term() }()
	wk, err := newWaker(zctx)
	if err != nil {
		return fmt.Errorf("dispatch: %w", err)
	}
	w.wake = wk
	defer wk.close()
	stop := context.AfterFunc(ctx, wk.Wake)
	defer stop()
	if err := w.connect(); err != nil {
		return err
	}
	defer func() {
		_ = w.dealer.SetLinger(lingerAtExit)
		w.dealer.Close()
	}()

	nextBeat := time.Now().Add(w.cfg.Heartbeat)
	for {
		poller := zmq.NewPoller()
		poller.Add(w.dealer, zmq.POLLIN)
		poller.Add(wk.pull, zmq.POLLIN)
		polled, err := poller.Poll(max(time.Until(nextBeat), 0))
		if err != nil {
			return fmt.Errorf("dispatch: poll: %w", err)
		}
		for _, p := range polled {
			if p.Socket == wk.pull {
				wk.drain()
			}
		}
		if ctx.Err() != nil {
			w.dropJob()
			w.send(cmdBye)
			return nil
		}
		reconnect := w.readDealer()
		if done := w.collect(); done {
			return nil
		}
		w.sendProgress()
		now := time.Now()
		if now.Sub(w.heard) > time.Duration(w.cfg.Liveness)*w.cfg.Heartbeat {
			w.cfg.Log.Warn("dispatch: broker silent; reconnecting", "broker", w.cfg.Broker, "silent", now.Sub(w.heard).Round(time.Millisecond))
			reconnect = true
		}
		if reconnect {
			w.dropJob()
			w.dealer.Close()
			if err := w.connect(); err != nil {
				return err
			}
		}
		if !now.Before(nextBeat) {
			w.send(cmdHB)
			nextBeat = now.Add(w.cfg.Heartbeat)
		}
	}
}

func (w *worker) connect() error {
	d, err := w.zctx.NewSocket(zmq.DEALER)
	if err != nil {
		return fmt.Errorf("dispatch: %w", err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	_ = d.SetIdentity(fmt.Sprintf("w%d-%s", os.Getpid(), hex.EncodeToString(rnd[:])))
	_ = d.SetLinger(0)
	_ = d.SetReconnectIvl(50 * time.Millisecond)
	_ = d.SetReconnectIvlMax(time.Second)
	if err := d.Connect(w.cfg.Broker); err != nil {
		d.Close()
		return fmt.Errorf("dispatch: connect %s: %w", w.cfg.Broker, err)
	}
	w.dealer = d
	w.heard = time.Now()
	host, _ := os.Hostname()
	info, _ := json.Marshal(WorkerInfo{PID: os.Getpid(), Host: host})
	w.send(cmdReady, info)
	return nil
}

// readDealer handles the broker's messages; it reports whether the broker
// asked for a fresh start.
func (w *worker) readDealer() (reset bool) {
	for {
		msg, err := w.dealer.RecvMessageBytes(zmq.DONTWAIT)
		if err != nil {
			return reset
		}
		w.heard = time.Now()
		if len(msg) < 2 || string(msg[0]) != tag {
			continue
		}
		switch string(msg[1]) {
		case cmdJob:
			if len(msg) < 3 {
				continue
			}
			var j Job
			if err := json.Unmarshal(msg[2], &j); err != nil {
				w.cfg.Log.Warn("dispatch: malformed job", "err", err)
				continue
			}
			if w.job != nil {
				w.send(cmdFail, []byte(j.ID), []byte("dispatch: worker busy"))
				continue
			}
			w.start(j)
		case cmdCancel:
			if len(msg) >= 3 && w.job != nil && string(msg[2]) == w.job.ID {
				w.cancel()
			}
		case cmdReset:
			reset = true
		}
	}
}

func (w *worker) start(j Job) {
	ctx, cancel := context.WithCancel(context.Background())
	w.job, w.cancel = &j, cancel
	w.result = make(chan jobResult, 1)
	w.finished = make(chan struct{})
	w.progress.Store(0)
	w.sentProg = 0
	res, fin, every := w.result, w.finished, w.cfg.ProgressEvery.Nanoseconds()
	progress := func(p float64) {
		if math.IsNaN(p) {
			return
		}
		w.progress.Store(math.Float64bits(min(max(p, 0), 1)))
		now := time.Now().UnixNano()
		if last := w.lastWake.Load(); now-last >= every && w.lastWake.CompareAndSwap(last, now) {
			w.wake.Wake()
		}
	}
	go func() {
		defer close(fin)
		outs, err := w.run(ctx, j, progress)
		res <- jobResult{outs, err}
		w.wake.Wake()
	}()
}

// run calls the handler, turning a panic into the job's error so one bad
// job does not take the worker down.
func (w *worker) run(ctx context.Context, j Job, progress func(float64)) (outs []Output, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("dispatch: job panicked: %v", r)
		}
	}()
	return w.h(ctx, j, progress)
}

// collect sends the job's result when it is there; it reports whether the
// worker reached its job limit.
func (w *worker) collect() bool {
	if w.job == nil {
		return false
	}
	var r jobResult
	select {
	case r = <-w.result:
	default:
		return false
	}
	w.sendProgress() // the last update goes before the result
	id := []byte(w.job.ID)
	w.cancel()
	w.job = nil
	w.jobs++
	last := w.cfg.MaxJobs > 0 && w.jobs >= w.cfg.MaxJobs
	if last {
		w.send(cmdBye) // before the result, so the broker sends no other job
	}
	if r.err != nil {
		w.send(cmdFail, id, []byte(r.err.Error()))
	} else {
		meta, _ := json.Marshal(r.outs)
		parts := [][]byte{id, meta}
		for _, o := range r.outs {
			parts = append(parts, o.Data)
		}
		w.send(cmdDone, parts...)
	}
	return last
}

func (w *worker) sendProgress() {
	if w.job == nil {
		return
	}
	if p := w.progress.Load(); p != w.sentProg {
		w.sentProg = p
		w.send(cmdProg, []byte(w.job.ID), appendProgress(nil, math.Float64frombits(p)))
	}
}

// dropJob cancels the job in hand and waits for its goroutine.
func (w *worker) dropJob() {
	if w.job == nil {
		return
	}
	w.cancel()
	<-w.finished
	w.job = nil
}

func (w *worker) send(cmd string, args ...[]byte) {
	parts := append([][]byte{[]byte(tag), []byte(cmd)}, args...)
	if _, err := w.dealer.SendMessageDontwait(frames(parts...)...); err != nil {
		w.cfg.Log.Debug("dispatch: send to broker", "cmd", cmd, "err", err)
	}
}
