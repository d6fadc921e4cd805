package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/redis/rueidis"

	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/pipeline"
)

// PipelineChannel is the channel pipeline changes are announced on (the
// controller's RedisStore uses the same).
const PipelineChannel = "sluice:pipeline"

func pipelineKey(name string) string { return "sluice:pipeline:" + name }
func historyKey(name string) string  { return "sluice:pipeline:" + name + ":history" }
func seqKey(name string) string      { return "sluice:pipeline:" + name + ":seq" }

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidName reports whether name can name a pipeline (a DNS label: it
// holds no ':' so the keys above never meet).
func ValidName(name string) bool { return nameRE.MatchString(name) }

// Errors the API maps to status codes.
var (
	ErrNotFound      = errors.New("fleet: no such pipeline or version")
	ErrNotKubernetes = errors.New("fleet: scaling needs the Kubernetes API (--collectors-k8s)")
)

// InvalidError is a pipeline file the compiler refused; Line is where (0
// when the compiler names none).
type InvalidError struct {
	Line int
	Err  error
}

func (e *InvalidError) Error() string { return e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

// Validate compiles file as `sluice check` does: tables and key files
// read, outputs checked but not opened.
func Validate(file []byte) error {
	cfg, err := pipeline.Parse(file)
	if err == nil {
		set := pipeline.NewOutputSet(func(spec string) (export.Output, error) {
			if err := export.CheckSpec(spec); err != nil {
				return nil, err
			}
			return &export.Discard{}, nil
		})
		var snap *pipeline.Snapshot
		if snap, err = pipeline.Compile(cfg, set); err == nil {
			snap.Discard()
			return nil
		}
	}
	ie := &InvalidError{Err: err}
	var pe *pipeline.Error
	if errors.As(err, &pe) {
		ie.Line = pe.Line
	}
	return ie
}

// Version is one stored version of a pipeline.
type Version struct {
	Version uint64    `json:"version"`
	Saved   time.Time `json:"saved"`
	SHA256  string    `json:"sha256"`
	// RollbackOf is the version this one restored, if it is a rollback.
	RollbackOf uint64 `json:"rollback_of,omitempty"`
	Pipeline   string `json:"pipeline"`
}

// current is the value under sluice:pipeline:<name>, the layout the
// controller's RedisStore reads.
type current struct {
	Version  uint64    `json:"version"`
	Saved    time.Time `json:"saved"`
	Pipeline string    `json:"pipeline"`
}

func sum(file []byte) string {
	h := sha256.Sum256(file)
	return hex.EncodeToString(h[:])
}

// History returns the stored versions of name, newest first; an unknown
// name is ErrNotFound.
func (f *Fleet) History(ctx context.Context, name string) ([]Version, error) {
	raw, err := f.redis.Do(ctx, f.redis.B().Lrange().Key(historyKey(name)).Start(0).Stop(-1).Build()).AsStrSlice()
	if err != nil {
		return nil, fmt.Errorf("fleet: redis: %w", err)
	}
	if len(raw) == 0 {
		return nil, ErrNotFound
	}
	out := make([]Version, 0, len(raw))
	for _, r := range raw {
		var v Version
		if err := json.Unmarshal([]byte(r), &v); err != nil {
			return nil, fmt.Errorf("fleet: redis %s: %w", historyKey(name), err)
		}
		out = append(out, v)
	}
	return out, nil
}

// store saves file as the next version of name: history first, then the
// key pods read, then the announcement. Two replicas storing at once get
// distinct versions; the key ends with whichever wrote last.
func (f *Fleet) store(ctx context.Context, name string, file []byte, rollbackOf uint64) (Version, error) {
	n, err := f.redis.Do(ctx, f.redis.B().Incr().Key(seqKey(name)).Build()).AsInt64()
	if err != nil {
		return Version{}, fmt.Errorf("fleet: redis: %w", err)
	}
	v := Version{Version: uint64(n), Saved: time.Now().UTC(), SHA256: sum(file), RollbackOf: rollbackOf, Pipeline: string(file)}
	hv, _ := json.Marshal(v)
	cv, _ := json.Marshal(current{Version: v.Version, Saved: v.Saved, Pipeline: v.Pipeline})
	for _, cmd := range []rueidis.Completed{
		f.redis.B().Lpush().Key(historyKey(name)).Element(string(hv)).Build(),
		f.redis.B().Ltrim().Key(historyKey(name)).Start(0).Stop(int64(f.cfg.History - 1)).Build(),
		f.redis.B().Set().Key(pipelineKey(name)).Value(string(cv)).Build(),
	} {
		if err := f.redis.Do(ctx, cmd).Error(); err != nil {
			return Version{}, fmt.Errorf("fleet: redis: %w", err)
		}
	}
	// Best effort: the key is what counts; reconciliation finds the rest.
	_ = f.redis.Do(ctx, f.redis.B().Publish().Channel(PipelineChannel).Message(name).Build()).Error()
	return v, nil
}

// Pod states of a rollout and of GET /api/v1/pipelines/{name}.
const (
	PodApplied     = "applied"     // the pod runs the current version
	PodRefused     = "refused"     // the pod answered 4xx to it: its message says why
	PodUnreachable = "unreachable" // no answer within the timeout, or not the API
	PodOutdated    = "outdated"    // answers, runs another version (a push is due)
	PodUnmanaged   = "unmanaged"   // answers; no version is stored yet, so none is pushed
)

// PushResult is one pod's part of a rollout.
type PushResult struct {
	Pod   string `json:"pod"`
	State string `json:"state"`
	// Version is the fleet's version the pod has in force (0: none of the
	// stored ones).
	Version uint64 `json:"version"`
	// LocalVersion is the pod's own counter for its pipeline.
	LocalVersion uint64 `json:"local_version,omitempty"`
	Error        string `json:"error,omitempty"`
}

// Rollout is the answer to a pipeline change: the version stored and what
// each pod made of it. Complete is true when every pod applied it.
type Rollout struct {
	Name     string       `json:"name"`
	Version  uint64       `json:"version"`
	Complete bool         `json:"complete"`
	Pods     []PushResult `json:"pods"`
}

// Put validates file, stores it as the next version of name and, if name
// is the pipeline the pods run, pushes it to every pod. An invalid file is
// an *InvalidError and nothing is stored or pushed.
func (f *Fleet) Put(ctx context.Context, name string, file []byte) (Rollout, error) {
	if err := Validate(file); err != nil {
		return Rollout{}, err
	}
	v, err := f.store(ctx, name, file, 0)
	if err != nil {
		return Rollout{}, err
	}
	return f.rollout(ctx, name, v), nil
}

// Rollback stores version `to` of name again, as a new version, and pushes
// it; to == 0 means the version before the newest.
func (f *Fleet) Rollback(ctx context.Context, name string, to uint64) (Rollout, error) {
	hist, err := f.History(ctx, name)
	if err != nil {
		return Rollout{}, err
	}
	var old *Version
	for i := range hist {
		if (to == 0 && i == 1) || (to != 0 && hist[i].Version == to) {
			old = &hist[i]
			break
		}
	}
	if old == nil {
		return Rollout{}, ErrNotFound
	}
	v, err := f.store(ctx, name, []byte(old.Pipeline), old.Version)
	if err != nil {
		return Rollout{}, err
	}
	return f.rollout(ctx, name, v), nil
}

func (f *Fleet) rollout(ctx context.Context, name string, v Version) Rollout {
	r := Rollout{Name: name, Version: v.Version, Complete: true, Pods: []PushResult{}}
	if name != f.cfg.Pipeline {
		return r
	}
	f.mu.Lock()
	clear(f.refusals) // a new version is tried everywhere
	f.mu.Unlock()
	r.Pods = each(f.Members(), func(m Member) PushResult { return f.push(ctx, m, v) })
	for _, p := range r.Pods {
		r.Complete = r.Complete && p.State == PodApplied
	}
	return r
}

// push puts v in force on one pod and records the outcome.
func (f *Fleet) push(ctx context.Context, m Member, v Version) PushResult {
	res := PushResult{Pod: m.Name}
	f.mu.Lock()
	pp := f.pods[m.Name]
	if pp == nil {
		pp = &podPush{}
		f.pods[m.Name] = pp
	}
	f.mu.Unlock()
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.applied > v.Version {
		return PushResult{Pod: m.Name, State: PodOutdated, Error: "a newer version was pushed meanwhile"}
	}
	b, err := f.do(ctx, m, "PUT", "/api/v1/pipeline", []byte(v.Pipeline))
	switch {
	case err == nil:
		var ok struct {
			Version uint64 `json:"version"`
		}
		if json.Unmarshal(b, &ok) != nil {
			res.State, res.Error = PodUnreachable, "not the API's JSON"
			break
		}
		res.State, res.Version, res.LocalVersion = PodApplied, v.Version, ok.Version
		pp.applied = v.Version
	case refused(err):
		res.State, res.Error = PodRefused, err.Error()
		f.mu.Lock()
		f.refusals[m.Name] = refusal{version: v.Version, err: res.Error}
		f.mu.Unlock()
	default:
		res.State, res.Error = PodUnreachable, err.Error()
	}
	f.mu.Lock()
	f.lastPush[m.Name] = res
	f.mu.Unlock()
	if res.State != PodApplied {
		f.log.Warn("fleet: pipeline not applied", "pod", m.Name, "version", v.Version, "state", res.State, "err", res.Error)
	}
	return res
}

// inForce reads the pipeline a pod runs and names its version among hist
// (0 when it is none of them).
func (f *Fleet) inForce(ctx context.Context, m Member, hist []Version) (PushResult, podStatus) {
	res := PushResult{Pod: m.Name}
	var st podStatus
	if err := f.getJSON(ctx, m, "/api/v1/status", &st); err != nil {
		res.State, res.Error = PodUnreachable, err.Error()
		return res, st
	}
	var pp podPipeline
	if err := f.getJSON(ctx, m, "/api/v1/pipeline", &pp); err != nil {
		res.State, res.Error = PodUnreachable, err.Error()
		if refused(err) {
			res.State = PodRefused // e.g. the token is wrong
		}
		return res, st
	}
	res.LocalVersion = pp.Version
	h := sum([]byte(pp.Pipeline))
	for _, v := range hist {
		if v.SHA256 == h {
			res.Version = v.Version
			break
		}
	}
	res.State = PodOutdated
	if len(hist) == 0 {
		res.State = PodUnmanaged
	} else if res.Version != 0 && hist[0].SHA256 == h {
		res.State, res.Version = PodApplied, hist[0].Version
	}
	f.mu.Lock()
	if prev, ok := f.seen[m.Name]; ok && !prev.Equal(st.Started) {
		delete(f.refusals, m.Name) // restarted: worth another try
	}
	f.seen[m.Name] = st.Started
	if r, ok := f.refusals[m.Name]; ok && res.State == PodOutdated && len(hist) > 0 && r.version == hist[0].Version {
		res.State, res.Error = PodRefused, r.err
	}
	f.mu.Unlock()
	return res, st
}

// PipelineView is GET /api/v1/pipelines/{name}: the current file, the
// history and, for the pipeline the pods run, each pod's version.
type PipelineView struct {
	Name      string       `json:"name"`
	Version   uint64       `json:"version"`
	Saved     time.Time    `json:"saved"`
	Pipeline  string       `json:"pipeline"`
	History   []Version    `json:"history"`
	Pods      []PushResult `json:"pods"`
	Converged bool         `json:"converged"`
}

// Pipeline returns name's view; unknown names are ErrNotFound.
func (f *Fleet) Pipeline(ctx context.Context, name string) (PipelineView, error) {
	hist, err := f.History(ctx, name)
	if err != nil {
		return PipelineView{}, err
	}
	pv := PipelineView{Name: name, Version: hist[0].Version, Saved: hist[0].Saved, Pipeline: hist[0].Pipeline,
		Pods: []PushResult{}, Converged: true}
	for _, v := range hist {
		v.Pipeline = "" // the file of each version is one rollback away; keep the view small
		pv.History = append(pv.History, v)
	}
	if name == f.cfg.Pipeline {
		pv.Pods = each(f.Members(), func(m Member) PushResult { r, _ := f.inForce(ctx, m, hist); return r })
		for _, p := range pv.Pods {
			pv.Converged = pv.Converged && p.State == PodApplied
		}
	}
	return pv, nil
}

func (f *Fleet) reconcileLoop(ctx context.Context) {
	t := time.NewTicker(f.cfg.Reconcile)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-f.kick:
		}
		f.reconcile(ctx)
	}
}

// reconcile pushes the current version to every pod that answers and runs
// another one, except to a pod that refused this very version (until it
// restarts): a pod that was away, or restarted without pulling it, gets
// it here.
func (f *Fleet) reconcile(ctx context.Context) {
	if f.redis == nil {
		return
	}
	hist, err := f.History(ctx, f.cfg.Pipeline)
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			f.log.Warn("fleet: reconcile", "err", err)
		}
		return
	}
	each(f.Members(), func(m Member) struct{} {
		r, _ := f.inForce(ctx, m, hist)
		if r.State == PodOutdated {
			f.log.Info("fleet: pod runs another pipeline version; pushing", "pod", m.Name, "has", r.Version, "current", hist[0].Version)
			f.push(ctx, m, hist[0])
		}
		return struct{}{}
	})
}
