package fleet

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// Config configures a Fleet. Zero values are the documented defaults.
type Config struct {
	// Token is the Bearer token of the pods' APIs (their mutations and
	// pipeline views need it).
	Token string
	// Timeout bounds each request to one pod. Default 2 s.
	Timeout time.Duration
	// Pipeline names the pipeline the pods run (the controller's
	// --pipeline-name). Default "default".
	Pipeline string
	// History is how many versions of a pipeline Redis keeps. Default 10.
	History int
	// Reconcile is how often every pod's pipeline is checked and, if it
	// is not the current version, pushed again. Default 5 s.
	Reconcile time.Duration
	// Sample is how often each pod's metrics are read for records/s.
	// Default 2 s.
	Sample time.Duration
	// Samples is how many records/s samples per pod are kept for the
	// sparkline. Default 150 (5 minutes at 2 s).
	Samples int
	// MaxReplicas bounds PUT /api/v1/collectors/scale. Default 32.
	MaxReplicas int
	// Scaler changes the number of pods; nil outside Kubernetes.
	Scaler Scaler
	Log    *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Timeout <= 0 {
		c.Timeout = 2 * time.Second
	}
	if c.Pipeline == "" {
		c.Pipeline = "default"
	}
	if c.History <= 0 {
		c.History = 10
	}
	if c.Reconcile <= 0 {
		c.Reconcile = 5 * time.Second
	}
	if c.Sample <= 0 {
		c.Sample = 2 * time.Second
	}
	if c.Samples <= 0 {
		c.Samples = 150
	}
	if c.MaxReplicas <= 0 {
		c.MaxReplicas = 32
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return c
}

// Fleet is the set of collector pods. Safe for concurrent use; Run drives
// discovery, sampling and reconciliation.
type Fleet struct {
	cfg    Config
	log    *slog.Logger
	disc   Discovery
	redis  rueidis.Client
	client *http.Client
	kick   chan struct{} // reconcile now (bounded: one pending)

	mu       sync.Mutex
	members  []Member
	samples  map[string]*series    // by pod name
	refusals map[string]refusal    // by pod name: the version it refused
	seen     map[string]time.Time  // by pod name: its start time, to forget refusals on restart
	lastPush map[string]PushResult // by pod name
	pods     map[string]*podPush   // by pod name
}

// podPush orders the pushes to one pod: a reconciliation that read an
// older history never overwrites a newer version a rollout just put in
// force.
type podPush struct {
	mu      sync.Mutex
	applied uint64 // the newest version this replica put in force there
}

// refusal is a version a pod refused; it is not pushed again until the
// pod restarts or the version changes.
type refusal struct {
	version uint64
	err     string
}

// New returns a fleet found by disc (nil: no pods) with pipelines kept in
// redis; nothing runs until Run.
func New(cfg Config, disc Discovery, redis rueidis.Client) *Fleet {
	cfg = cfg.withDefaults()
	return &Fleet{
		cfg: cfg, log: cfg.Log, disc: disc, redis: redis,
		client: &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute,
			ResponseHeaderTimeout: cfg.Timeout, DisableCompression: true,
		}},
		kick:     make(chan struct{}, 1),
		samples:  map[string]*series{},
		refusals: map[string]refusal{},
		seen:     map[string]time.Time{},
		lastPush: map[string]PushResult{},
		pods:     map[string]*podPush{},
	}
}

// Config returns the configuration in force (with defaults).
func (f *Fleet) Config() Config { return f.cfg }

// Run finds the pods and keeps their pipeline current until ctx ends.
func (f *Fleet) Run(ctx context.Context) {
	var wg sync.WaitGroup
	if f.disc != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.disc.Run(ctx, f.setMembers); err != nil {
				f.log.Error("fleet: discovery stopped", "err", err)
			}
		}()
	}
	wg.Add(3)
	go func() { defer wg.Done(); f.sampleLoop(ctx) }()
	go func() { defer wg.Done(); f.reconcileLoop(ctx) }()
	go func() { defer wg.Done(); f.listen(ctx) }()
	wg.Wait()
	f.client.CloseIdleConnections()
}

func (f *Fleet) setMembers(ms []Member) {
	f.mu.Lock()
	f.members = slices.Clone(ms)
	slices.SortFunc(f.members, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	live := map[string]bool{}
	for _, m := range ms {
		live[m.Name] = true
	}
	for name := range f.samples {
		if !live[name] {
			delete(f.samples, name)
			delete(f.refusals, name)
			delete(f.seen, name)
			delete(f.lastPush, name)
			delete(f.pods, name)
		}
	}
	f.mu.Unlock()
	f.log.Info("fleet: collectors", "count", len(ms))
	f.Kick()
}

// Members returns the pods found, sorted by name.
func (f *Fleet) Members() []Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.members)
}

func (f *Fleet) member(name string) (Member, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := slices.IndexFunc(f.members, func(m Member) bool { return m.Name == name })
	if i < 0 {
		return Member{}, false
	}
	return f.members[i], true
}

// Kick asks for a reconciliation now.
func (f *Fleet) Kick() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// each runs fn for every member concurrently and waits for all; fn's own
// requests are bounded by the per-pod timeout, so one pod never holds the
// others up.
func each[T any](ms []Member, fn func(Member) T) []T {
	out := make([]T, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		go func() { defer wg.Done(); out[i] = fn(m) }()
	}
	wg.Wait()
	return out
}

// series is a pod's records/s samples, oldest first, bounded.
type series struct {
	lastTotal float64
	lastAt    time.Time
	rates     []float64
	metrics   podMetrics
	ok        bool
}

func (f *Fleet) sampleLoop(ctx context.Context) {
	t := time.NewTicker(f.cfg.Sample)
	defer t.Stop()
	for {
		f.sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (f *Fleet) sample(ctx context.Context) {
	ms := f.Members()
	type got struct {
		pm  podMetrics
		at  time.Time
		err error
	}
	res := each(ms, func(m Member) got {
		b, err := f.do(ctx, m, "GET", "/metrics", nil)
		if err != nil {
			return got{err: err}
		}
		pm, err := parseMetrics(b)
		return got{pm: pm, at: time.Now(), err: err}
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, m := range ms {
		s := f.samples[m.Name]
		if s == nil {
			s = &series{}
			f.samples[m.Name] = s
		}
		g := res[i]
		if g.err != nil {
			s.ok = false
			continue
		}
		if s.ok && g.at.After(s.lastAt) && g.pm.records >= s.lastTotal {
			rate := (g.pm.records - s.lastTotal) / g.at.Sub(s.lastAt).Seconds()
			if len(s.rates) >= f.cfg.Samples {
				s.rates = append(s.rates[:0], s.rates[1:]...)
			}
			s.rates = append(s.rates, rate)
		}
		s.lastTotal, s.lastAt, s.metrics, s.ok = g.pm.records, g.at, g.pm, true
	}
}

// Rates returns a pod's records/s samples, oldest first.
func (f *Fleet) Rates(name string) []float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.samples[name]; s != nil {
		return slices.Clone(s.rates)
	}
	return nil
}

// listen reconciles when another replica announces a pipeline change.
func (f *Fleet) listen(ctx context.Context) {
	if f.redis == nil {
		return
	}
	for ctx.Err() == nil {
		err := f.redis.Receive(ctx, f.redis.B().Subscribe().Channel(PipelineChannel).Build(), func(msg rueidis.PubSubMessage) {
			if msg.Message == f.cfg.Pipeline {
				f.Kick()
			}
		})
		if ctx.Err() != nil {
			return
		}
		f.log.Debug("fleet: pipeline channel", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
