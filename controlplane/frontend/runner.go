package frontend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-flow/sluice/controlplane/frontend/dispatch"
)

// maxAttempts is how many workers a job may be given in all (the broker's
// retry and a lapsed lease count alike).
const maxAttempts = 2

// owned is a job this replica claimed and has not finished.
type owned struct {
	tenant   string
	progress float64
	dirty    bool
	dropped  bool // Redis says it is no longer ours: canceled on the broker
}

// runner moves jobs between Redis and the broker: it claims queued jobs
// when a worker is idle, writes progress and outcomes, renews leases and
// requeues the jobs of replicas that went away.
type runner struct {
	s *Server

	mu     sync.Mutex
	mine   map[string]*owned
	events []dispatch.Event
	evSig  chan struct{}
	posted chan struct{}
}

func newRunner(s *Server) *runner {
	return &runner{s: s, mine: map[string]*owned{}, evSig: make(chan struct{}, 1), posted: make(chan struct{}, 1)}
}

// event is the broker's callback: it only queues.
func (r *runner) event(ev dispatch.Event) {
	r.mu.Lock()
	if ev.Kind == dispatch.EventProgress { // the latest progress is enough
		if o := r.mine[ev.Job]; o != nil {
			o.progress, o.dirty = ev.Progress, true
		}
		r.mu.Unlock()
		return
	}
	r.events = append(r.events, ev)
	r.mu.Unlock()
	select {
	case r.evSig <- struct{}{}:
	default:
	}
}

// poke asks the feeder to look at the queue now (a job was posted here).
func (r *runner) poke() {
	select {
	case r.posted <- struct{}{}:
	default:
	}
}

func (r *runner) owned() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.mine)
}

// feed claims queued jobs while the broker has idle workers.
func (r *runner) feed(ctx context.Context) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	b := r.s.broker
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.Capacity():
		case <-r.posted:
		case <-tick.C:
		}
		for r.s.redisUp.Load() && b.Free() > 0 && ctx.Err() == nil {
			now := time.Now().UnixMilli()
			rec, err := r.s.st.claim(ctx, r.s.cfg.Replica, now+r.s.cfg.Lease.Milliseconds(), now)
			if err != nil {
				r.s.logs.Warn(r.s.log, "frontend: claiming a job", "err", err)
				break
			}
			if rec == nil {
				break
			}
			files := make([]string, len(rec.Files))
			for i, id := range rec.Files {
				files[i] = r.s.filePath(rec.Tenant, id)
			}
			r.mu.Lock()
			r.mine[rec.ID] = &owned{tenant: rec.Tenant, progress: math.NaN()}
			r.mu.Unlock()
			b.Submit(dispatch.Job{ID: rec.ID, Type: rec.Type, Files: files, Params: rec.Params, Attempt: rec.Attempts})
		}
	}
}

// commit handles the broker's events in order.
func (r *runner) commit(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.evSig:
		}
		r.mu.Lock()
		evs := r.events
		r.events = nil
		r.mu.Unlock()
		for _, ev := range evs {
			r.handle(ctx, ev)
		}
	}
}

func (r *runner) handle(ctx context.Context, ev dispatch.Event) {
	s := r.s
	switch ev.Kind {
	case dispatch.EventStarted, dispatch.EventRetry:
		if ev.Kind == dispatch.EventRetry {
			s.m.retried.add(1)
			s.log.Warn("frontend: job lost its worker; retrying", "job", ev.Job, "attempt", ev.Attempt, "reason", ev.Reason)
		}
		worker := ""
		if ev.Kind == dispatch.EventStarted {
			worker = ev.Worker.Host + "/" + strconv.Itoa(ev.Worker.PID)
		}
		if err := s.st.started(ctx, s.cfg.Replica, ev.Job, worker, ev.Attempt); err != nil {
			s.logs.Warn(s.log, "frontend: recording a job's worker", "job", ev.Job, "err", err)
		}
	case dispatch.EventDone, dispatch.EventFailed:
		r.finish(ctx, ev)
	case dispatch.EventWorkerLost:
		s.m.lost.add(1)
		if strings.HasPrefix(ev.Reason, "no heartbeat") && s.pool != nil && s.pool.Kill(ev.Worker.PID) {
			s.log.Warn("frontend: killed a silent worker", "pid", ev.Worker.PID, "reason", ev.Reason)
		}
	}
}

// finish writes a job's outcome, waiting for Redis as long as it takes
// (or until the server stops).
func (r *runner) finish(ctx context.Context, ev dispatch.Event) {
	s := r.s
	r.mu.Lock()
	o := r.mine[ev.Job]
	r.mu.Unlock()
	if o == nil {
		return
	}
	defer func() {
		r.mu.Lock()
		delete(r.mine, ev.Job)
		r.mu.Unlock()
	}()
	state, reason := stateDone, ""
	var metas []resultMeta
	inline := map[string][]byte{}
	var files []string
	if ev.Kind == dispatch.EventFailed {
		state, reason = stateFailed, ev.Reason
	} else {
		var err error
		metas, files, err = s.storeResults(o.tenant, ev.Job, ev.Outputs, inline)
		if err != nil {
			state, reason, metas, inline = stateFailed, err.Error(), nil, map[string][]byte{}
		}
	}
	backoff := 100 * time.Millisecond
	for {
		ok, err := s.st.finish(ctx, s.cfg.Replica, ev.Job, state, reason, time.Now().UnixMilli(), s.cfg.JobTTL, metas, inline)
		if err == nil {
			if !ok {
				for _, f := range files {
					os.Remove(f)
				}
				return
			}
			s.completed(ctx, ev.Job)
			return
		}
		s.logs.Warn(s.log, "frontend: cannot write a job's outcome; retrying", "job", ev.Job, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// storeResults puts small outputs in inline and writes large ones under
// DataDir/results/<tenant>/; it returns their descriptions and the files
// written.
func (s *Server) storeResults(tenant, id string, outs []dispatch.Output, inline map[string][]byte) ([]resultMeta, []string, error) {
	var total int64
	for _, o := range outs {
		total += int64(len(o.Data))
		if !validFormat(o.Format) {
			return nil, nil, fmt.Errorf("frontend: result format %q is not a plain name", o.Format)
		}
	}
	if total > s.cfg.MaxResultBytes {
		return nil, nil, fmt.Errorf("frontend: result of %d bytes is over the bound of %d", total, s.cfg.MaxResultBytes)
	}
	metas := make([]resultMeta, 0, len(outs))
	var files []string
	for _, o := range outs {
		m := resultMeta{Format: o.Format, ContentType: o.ContentType, Bytes: len(o.Data)}
		if len(o.Data) <= s.cfg.InlineResultBytes {
			inline[o.Format] = o.Data
		} else {
			path := s.resultPath(tenant, id, o.Format)
			if err := writeFileAtomic(path, o.Data); err != nil {
				for _, f := range files {
					os.Remove(f)
				}
				return nil, nil, fmt.Errorf("frontend: storing a result: %w", err)
			}
			files = append(files, path)
			m.File = true
		}
		metas = append(metas, m)
	}
	return metas, files, nil
}

func validFormat(f string) bool {
	if f == "" || len(f) > 16 {
		return false
	}
	for i := 0; i < len(f); i++ {
		if c := f[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	tmp := path + ".part"
	if err := os.WriteFile(tmp, data, 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// sync renews leases and writes progress every quarter second, checks
// Redis, and requeues lapsed jobs of any replica every second.
func (r *runner) sync(ctx context.Context) {
	s := r.s
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var n int
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n++
		err := s.st.ping(ctx)
		if up := err == nil; up != s.redisUp.Load() {
			s.redisUp.Store(up)
			if up {
				s.log.Info("frontend: redis is back")
			} else {
				s.log.Warn("frontend: redis is unreachable: refusing new files and jobs", "err", err)
			}
		}
		if err != nil {
			continue
		}
		r.renew(ctx)
		if n%4 == 0 {
			r.reap(ctx)
		}
	}
}

func (r *runner) renew(ctx context.Context) {
	s := r.s
	r.mu.Lock()
	ids := make([]string, 0, len(r.mine))
	progress := make([]float64, 0, len(r.mine))
	for id, o := range r.mine {
		ids = append(ids, id)
		p := math.NaN()
		if o.dirty {
			p, o.dirty = o.progress, false
		}
		progress = append(progress, p)
	}
	r.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	now := time.Now().UnixMilli()
	drop, err := s.st.syncJobs(ctx, s.cfg.Replica, now+s.cfg.Lease.Milliseconds(), ids, progress)
	if err != nil {
		s.logs.Warn(s.log, "frontend: renewing job leases", "err", err)
		r.mu.Lock()
		for i, id := range ids {
			if o := r.mine[id]; o != nil && progress[i] == progress[i] && !o.dirty {
				o.dirty = true // write it next time
			}
		}
		r.mu.Unlock()
		return
	}
	for _, id := range drop {
		r.mu.Lock()
		o := r.mine[id]
		first := o != nil && !o.dropped
		if first {
			o.dropped = true
		}
		r.mu.Unlock()
		if first {
			s.broker.Cancel(id)
		}
	}
}

func (r *runner) reap(ctx context.Context) {
	s := r.s
	failed, err := s.st.reap(ctx, time.Now().UnixMilli(), maxAttempts, s.cfg.JobTTL)
	if err != nil {
		s.logs.Warn(s.log, "frontend: requeueing lapsed jobs", "err", err)
		return
	}
	for _, id := range failed {
		s.completed(ctx, id)
	}
}

// completionLine is one line of the completion log.
type completionLine struct {
	Time      time.Time `json:"time"`
	ID        string    `json:"id"`
	Tenant    string    `json:"tenant"`
	Type      string    `json:"type"`
	State     string    `json:"state"`
	Error     string    `json:"error,omitempty"`
	Attempts  int       `json:"attempts"`
	Worker    string    `json:"worker,omitempty"`
	Replica   string    `json:"replica"`
	Created   time.Time `json:"created"`
	QueuedMS  int64     `json:"queued_ms"`
	RunMS     int64     `json:"run_ms"`
	ResultLen int       `json:"result_bytes"`
}

// completed counts a finished job and writes its completion log line.
func (s *Server) completed(ctx context.Context, id string) {
	rec, err := s.st.jobByID(ctx, id)
	if err != nil {
		s.logs.Warn(s.log, "frontend: reading a finished job", "job", id, "err", err)
		return
	}
	s.m.finished.add(1, s.tenantLabel(rec.Tenant), rec.State)
	if s.cfg.CompletionLog == nil {
		return
	}
	l := completionLine{Time: time.Now().UTC(), ID: rec.ID, Tenant: rec.Tenant, Type: rec.Type, State: rec.State,
		Error: rec.Error, Attempts: rec.Attempts, Worker: rec.Worker, Replica: s.cfg.Replica,
		Created: time.UnixMilli(rec.Created).UTC()}
	if rec.Started > 0 {
		l.QueuedMS = rec.Started - rec.Created
		if rec.Finished > 0 {
			l.RunMS = rec.Finished - rec.Started
		}
	} else if rec.Finished > 0 {
		l.QueuedMS = rec.Finished - rec.Created
	}
	for _, m := range rec.Results {
		l.ResultLen += m.Bytes
	}
	b, _ := json.Marshal(l)
	b = append(b, '\n')
	s.logMu.Lock()
	_, err = s.cfg.CompletionLog.Write(b)
	s.logMu.Unlock()
	if err != nil && !errors.Is(err, io.ErrClosedPipe) {
		s.logs.Warn(s.log, "frontend: writing the completion log", "err", err)
	}
}
