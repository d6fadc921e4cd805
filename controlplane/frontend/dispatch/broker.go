package dispatch

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// BrokerConfig configures a Broker. Zero values are the defaults.
type BrokerConfig struct {
	// Endpoint is where the ROUTER binds: "ipc:///path" or "tcp://host:port".
	// Required.
	Endpoint string
	// Heartbeat is the interval of heartbeats to workers. Default 1s.
	Heartbeat time.Duration
	// Liveness is how many heartbeat intervals of silence make a worker
	// lost. Default 3.
	Liveness int
	// MaxAttempts is how many workers a job may be given: the first and
	// the retries after losing a worker. Default 2.
	MaxAttempts int
	// MaxMessageBytes bounds one message from a worker (a result). Default
	// 256 MiB.
	MaxMessageBytes int64
	Log             *slog.Logger
}

func (c BrokerConfig) withDefaults() BrokerConfig {
	if c.Heartbeat <= 0 {
		c.Heartbeat = time.Second
	}
	if c.Liveness <= 0 {
		c.Liveness = 3
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 2
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 256 << 20
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return c
}

// EventKind says what happened to a job or worker.
type EventKind uint8

const (
	// EventStarted: the job went to Worker (Attempt says which try).
	EventStarted EventKind = iota + 1
	// EventProgress: the job's worker reported Progress.
	EventProgress
	// EventDone: the job finished with Outputs.
	EventDone
	// EventFailed: the job failed with Reason (the handler's error,
	// "canceled", or its last worker lost).
	EventFailed
	// EventRetry: the job's worker was lost (Reason); the job waits for
	// another worker as Attempt.
	EventRetry
	// EventWorkerUp and EventWorkerLost: a worker joined, or left or
	// stopped answering (Reason).
	EventWorkerUp
	EventWorkerLost
)

// Event is what the broker reports. Outputs' Data is owned by the receiver.
type Event struct {
	Kind     EventKind
	Job      string
	Attempt  int
	Worker   WorkerInfo
	Progress float64
	Outputs  []Output
	Reason   string
}

// Broker hands jobs to workers. Its ROUTER socket belongs to the goroutine
// running Run; Submit, Cancel, Free, Capacity and Workers are safe for
// concurrent use and never block on the socket.
type Broker struct {
	cfg    BrokerConfig
	events func(Event)

	mu   sync.Mutex
	cmds []brokerCmd
	free int // idle workers minus jobs waiting for one, as of the last loop turn and Submits since
	wake *waker

	capacity chan struct{}
	workers  atomic.Pointer[[]WorkerInfo]
	bound    chan struct{}
	bindErr  error

	// Owned by Run's goroutine.
	zctx    *zmq.Context
	router  *zmq.Socket
	conns   map[string]*brokerConn
	idle    []*brokerConn
	pending []*brokerJob
}

type brokerCmd struct {
	submit *Job
	cancel string
}

type brokerConn struct {
	id       string // raw identity
	info     WorkerInfo
	lastSeen time.Time
	job      *brokerJob
	leaving  bool // said BYE while it had a job: gone once the job ends
}

type brokerJob struct {
	job      Job
	canceled bool
}

// NewBroker returns a broker that reports to events. events is called on
// the broker's goroutine: it must return quickly and not call Submit or
// Cancel's callers back synchronously.
func NewBroker(cfg BrokerConfig, events func(Event)) *Broker {
	if cfg.Endpoint == "" {
		panic("BUG: dispatch: broker without an endpoint")
	}
	if events == nil {
		events = func(Event) {}
	}
	b := &Broker{cfg: cfg.withDefaults(), events: events, capacity: make(chan struct{}, 1),
		bound: make(chan struct{}), conns: map[string]*brokerConn{}}
	b.workers.Store(&[]WorkerInfo{})
	return b
}

// Bound is closed once Run has bound its socket (or failed to: BindErr).
func (b *Broker) Bound() <-chan struct{} { return b.bound }

// BindErr is the error binding the endpoint, once Bound is closed.
func (b *Broker) BindErr() error { <-b.bound; return b.bindErr }

// Submit queues j for the next idle worker. It never blocks.
func (b *Broker) Submit(j Job) {
	if j.Attempt == 0 {
		j.Attempt = 1
	}
	b.mu.Lock()
	b.cmds = append(b.cmds, brokerCmd{submit: &j})
	b.free--
	w := b.wake
	b.mu.Unlock()
	if w != nil {
		w.Wake()
	}
}

// Cancel stops job id: a waiting job fails at once with "canceled", a
// running one is told to stop (its worker then reports it).
func (b *Broker) Cancel(id string) {
	b.mu.Lock()
	b.cmds = append(b.cmds, brokerCmd{cancel: id})
	w := b.wake
	b.mu.Unlock()
	if w != nil {
		w.Wake()
	}
}

// Free returns the number of idle workers minus the jobs waiting for one:
// how many jobs can be submitted now and start at once.
func (b *Broker) Free() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.free
}

// Capacity receives a value when Free may have become positive.
func (b *Broker) Capacity() <-chan struct{} { return b.capacity }

// Workers returns the workers connected now. The slice is shared: do not
// modify it.
func (b *Broker) Workers() []WorkerInfo { return *b.workers.Load() }

// Run binds the endpoint and serves workers until ctx ends. Call it once.
func (b *Broker) Run(ctx context.Context) error {
	err := b.open()
	b.bindErr = err
	close(b.bound)
	if err != nil {
		return err
	}
	defer func() { _ = b.zctx.Term() }()
	defer b.router.Close()
	w := b.wake
	defer w.close()
	stop := context.AfterFunc(ctx, w.Wake)
	defer stop()

	poller := zmq.NewPoller()
	poller.Add(b.router, zmq.POLLIN)
	poller.Add(w.pull, zmq.POLLIN)
	nextBeat := time.Now().Add(b.cfg.Heartbeat)
	for ctx.Err() == nil {
		polled, err := poller.Poll(max(time.Until(nextBeat), 0))
		if err != nil {
			return fmt.Errorf("dispatch: poll: %w", err)
		}
		for _, p := range polled {
			if p.Socket == w.pull {
				w.drain()
			}
		}
		b.readRouter()
		b.takeCommands()
		if now := time.Now(); !now.Before(nextBeat) {
			b.heartbeat(now)
			nextBeat = now.Add(b.cfg.Heartbeat)
		}
		b.assign()
		b.publish()
	}
	// Running jobs go back to whoever runs this broker's jobs next; tell
	// the workers, so they stop at once.
	for _, c := range b.conns {
		b.send(c, cmdReset)
	}
	return nil
}

func (b *Broker) open() error {
	if path, ok := strings.CutPrefix(b.cfg.Endpoint, "ipc://"); ok {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return fmt.Errorf("dispatch: %w", err)
		}
	}
	zctx, err := zmq.NewContext()
	if err != nil {
		return fmt.Errorf("dispatch: %w", err)
	}
	r, err := zctx.NewSocket(zmq.ROUTER)
	if err != nil {
		_ = zctx.Term()
		return fmt.Errorf("dispatch: %w", err)
	}
	_ = r.SetLinger(0)
	_ = r.SetRouterMandatory(1)
	_ = r.SetMaxmsgsize(b.cfg.MaxMessageBytes)
	_ = r.SetRcvhwm(100000)
	_ = r.SetSndhwm(100000)
	if err := r.Bind(b.cfg.Endpoint); err != nil {
		r.Close()
		_ = zctx.Term()
		return fmt.Errorf("dispatch: bind %s: %w", b.cfg.Endpoint, err)
	}
	w, err := newWaker(zctx)
	if err != nil {
		r.Close()
		_ = zctx.Term()
		return fmt.Errorf("dispatch: %w", err)
	}
	b.zctx, b.router = zctx, r
	b.mu.Lock()
	b.wake = w
	b.mu.Unlock()
	return nil
}

// readRouter handles every message waiting on the ROUTER.
func (b *Broker) readRouter() {
	for {
		msg, err := b.router.RecvMessageBytes(zmq.DONTWAIT)
		if err != nil {
			return
		}
		if len(msg) < 3 || string(msg[1]) != tag {
			b.cfg.Log.Warn("dispatch: malformed message from a worker", "err", errBadTag)
			continue
		}
		b.handle(string(msg[0]), string(msg[2]), msg[3:])
	}
}

func (b *Broker) handle(id, cmd string, args [][]byte) {
	c := b.conns[id]
	if c == nil {
		if cmd == cmdReady {
			b.register(id, args)
		} else if cmd != cmdBye {
			_, _ = b.router.SendMessage(frames([]byte(id), []byte(tag), []byte(cmdReset))...)
		}
		return
	}
	c.lastSeen = time.Now()
	switch cmd {
	case cmdHB, cmdReady:
	case cmdProg:
		if len(args) == 2 && c.job != nil && string(args[0]) == c.job.job.ID {
			if p, err := parseProgress(args[1]); err == nil {
				b.events(Event{Kind: EventProgress, Job: c.job.job.ID, Attempt: c.job.job.Attempt, Worker: c.info, Progress: p})
			}
		}
	case cmdDone:
		if len(args) < 2 || c.job == nil || string(args[0]) != c.job.job.ID {
			return
		}
		j := c.job
		c.job = nil
		b.release(c)
		var outs []Output
		if err := json.Unmarshal(args[1], &outs); err != nil || len(outs) != len(args)-2 {
			b.events(Event{Kind: EventFailed, Job: j.job.ID, Attempt: j.job.Attempt, Worker: c.info,
				Reason: "dispatch: malformed result from the worker"})
			return
		}
		for i := range outs {
			outs[i].Data = args[2+i]
		}
		b.events(Event{Kind: EventDone, Job: j.job.ID, Attempt: j.job.Attempt, Worker: c.info, Outputs: outs})
	case cmdFail:
		if len(args) < 2 || c.job == nil || string(args[0]) != c.job.job.ID {
			return
		}
		j := c.job
		c.job = nil
		b.release(c)
		reason := string(args[1])
		if j.canceled {
			reason = "canceled"
		}
		b.events(Event{Kind: EventFailed, Job: j.job.ID, Attempt: j.job.Attempt, Worker: c.info, Reason: reason})
	case cmdBye:
		if c.job != nil {
			c.leaving = true // its result follows
			return
		}
		b.lose(c, "worker left")
	}
}

// release makes c idle after its job, or forgets it if it is leaving.
func (b *Broker) release(c *brokerConn) {
	if c.leaving {
		b.lose(c, "worker left")
		return
	}
	b.idle = append(b.idle, c)
}

func (b *Broker) register(id string, args [][]byte) {
	var info WorkerInfo
	if len(args) > 0 {
		_ = json.Unmarshal(args[0], &info)
	}
	info.ID = hex.EncodeToString([]byte(id))
	c := &brokerConn{id: id, info: info, lastSeen: time.Now()}
	b.conns[id] = c
	b.idle = append(b.idle, c)
	b.events(Event{Kind: EventWorkerUp, Worker: info})
}

// lose forgets c; its job goes to another worker or fails.
func (b *Broker) lose(c *brokerConn, reason string) {
	delete(b.conns, c.id)
	for i, x := range b.idle {
		if x == c {
			b.idle = append(b.idle[:i], b.idle[i+1:]...)
			break
		}
	}
	b.events(Event{Kind: EventWorkerLost, Worker: c.info, Reason: reason})
	j := c.job
	if j == nil {
		return
	}
	c.job = nil
	switch {
	case j.canceled:
		b.events(Event{Kind: EventFailed, Job: j.job.ID, Attempt: j.job.Attempt, Worker: c.info, Reason: "canceled"})
	case j.job.Attempt < b.cfg.MaxAttempts:
		j.job.Attempt++
		b.pending = append([]*brokerJob{j}, b.pending...)
		b.events(Event{Kind: EventRetry, Job: j.job.ID, Attempt: j.job.Attempt, Worker: c.info, Reason: reason})
	default:
		b.events(Event{Kind: EventFailed, Job: j.job.ID, Attempt: j.job.Attempt, Worker: c.info,
			Reason: fmt.Sprintf("worker %d lost (%s) on attempt %d of %d", c.info.PID, reason, j.job.Attempt, b.cfg.MaxAttempts)})
	}
}

func (b *Broker) takeCommands() {
	b.mu.Lock()
	cmds := b.cmds
	b.cmds = nil
	b.mu.Unlock()
	for _, cmd := range cmds {
		if cmd.submit != nil {
			b.pending = append(b.pending, &brokerJob{job: *cmd.submit})
			continue
		}
		b.cancel(cmd.cancel)
	}
}

func (b *Broker) cancel(id string) {
	for i, j := range b.pending {
		if j.job.ID == id {
			b.pending = append(b.pending[:i], b.pending[i+1:]...)
			b.events(Event{Kind: EventFailed, Job: id, Attempt: j.job.Attempt, Reason: "canceled"})
			return
		}
	}
	for _, c := range b.conns {
		if c.job != nil && c.job.job.ID == id && !c.job.canceled {
			c.job.canceled = true
			b.send(c, cmdCancel, []byte(id))
			return
		}
	}
}

// heartbeat loses silent workers and sends a heartbeat to the others.
func (b *Broker) heartbeat(now time.Time) {
	limit := time.Duration(b.cfg.Liveness) * b.cfg.Heartbeat
	for _, c := range b.conns {
		if now.Sub(c.lastSeen) > limit {
			b.lose(c, fmt.Sprintf("no heartbeat for %v", now.Sub(c.lastSeen).Round(time.Millisecond)))
			continue
		}
		b.send(c, cmdHB)
	}
}

// assign gives waiting jobs to idle workers, oldest idle worker first.
func (b *Broker) assign() {
	for len(b.pending) > 0 && len(b.idle) > 0 {
		c := b.idle[0]
		b.idle = b.idle[1:]
		j := b.pending[0]
		body, err := json.Marshal(j.job)
		if err != nil {
			panic("BUG: dispatch: job does not marshal: " + err.Error())
		}
		if !b.send(c, cmdJob, body) {
			continue // c is lost; j stays first
		}
		b.pending = b.pending[1:]
		c.job = j
		b.events(Event{Kind: EventStarted, Job: j.job.ID, Attempt: j.job.Attempt, Worker: c.info})
	}
}

// send sends a command to c; a worker that cannot be reached is lost.
func (b *Broker) send(c *brokerConn, cmd string, args ...[]byte) bool {
	parts := append([][]byte{[]byte(c.id), []byte(tag), []byte(cmd)}, args...)
	if _, err := b.router.SendMessageDontwait(frames(parts...)...); err != nil {
		if b.conns[c.id] == c {
			b.lose(c, "unreachable: "+errText(err))
		}
		return false
	}
	return true
}

// publish shares the counts other goroutines read.
func (b *Broker) publish() {
	infos := make([]WorkerInfo, 0, len(b.conns))
	for _, c := range b.conns {
		infos = append(infos, c.info)
	}
	if old := *b.workers.Load(); !sameWorkers(old, infos) {
		b.workers.Store(&infos)
	}
	b.mu.Lock()
	submitted := 0
	for _, c := range b.cmds {
		if c.submit != nil {
			submitted++
		}
	}
	b.free = len(b.idle) - len(b.pending) - submitted
	free := b.free
	b.mu.Unlock()
	if free > 0 {
		select {
		case b.capacity <- struct{}{}:
		default:
		}
	}
}

func sameWorkers(a, b []WorkerInfo) bool {
	if len(a) != len(b) {
		return false
	}
	ids := make(map[string]bool, len(a))
	for _, w := range a {
		ids[w.ID] = true
	}
	for _, w := range b {
		if !ids[w.ID] {
			return false
		}
	}
	return true
}

func errText(err error) string {
	var e zmq.Errno
	if errors.As(err, &e) {
		return e.Error()
	}
	return err.Error()
}
