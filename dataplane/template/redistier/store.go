package redistier

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/sluice-flow/sluice/dataplane/ratelog"
	"github.com/sluice-flow/sluice/dataplane/template"
)

// Config configures a Store. The zero value of every field but Addrs means
// its documented default.
type Config struct {
	// Addrs are host:port addresses: one single Redis, or one or more
	// nodes of a Redis Cluster. Cluster mode is detected from the server.
	Addrs []string `yaml:"addresses"`
	// Username and Password authenticate (AUTH; Username for ACLs).
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// TLS turns TLS on. CAFile is a PEM file of the CAs to verify the
	// server with (default: the system's); ServerName overrides the name
	// checked in its certificate (default: the host in the address).
	TLS        bool   `yaml:"tls"`
	CAFile     string `yaml:"tls_ca_file"`
	ServerName string `yaml:"tls_server_name"`
	// DB is the database number (a single Redis; a cluster has only 0).
	DB int `yaml:"database"`
	// Lifetime is a stored template's TTL, renewed when the exporter
	// retransmits: the collector's template lifetime. Default 30m.
	Lifetime time.Duration `yaml:"-"`
	// RefreshEvery bounds TTL renewals: at most one per template per
	// interval. Default Lifetime/4.
	RefreshEvery time.Duration `yaml:"-"`
	// FetchWait is how long a template missing from Redis is still looked
	// for after the miss (it may be on its way from another pod): the
	// held-records age limit. Default 5s.
	FetchWait time.Duration `yaml:"-"`
	// Timeout bounds each Redis operation and each connection attempt.
	// Default 2s.
	Timeout time.Duration `yaml:"-"`
	// Workers is the number of goroutines talking to Redis. A template
	// key always goes to the same one, so its operations stay in order.
	// Default 4.
	Workers int `yaml:"-"`
	// QueueLen bounds each worker's queue; work beyond it is dropped and
	// counted. Default 4096.
	QueueLen int `yaml:"-"`
	// MaxPending bounds the writes kept while Redis is unavailable.
	// Default 65536.
	MaxPending int `yaml:"-"`
	// ScopeByPort must match the collector's: it tells WarmUp whether an
	// exporter without a port means every port.
	ScopeByPort bool `yaml:"-"`
	// CacheBytes is the client-side cache of each Redis connection.
	// Default 16 MiB.
	CacheBytes int `yaml:"-"`
}

func (c Config) withDefaults() Config {
	if c.Lifetime <= 0 {
		c.Lifetime = 30 * time.Minute
	}
	if c.RefreshEvery <= 0 {
		c.RefreshEvery = c.Lifetime / 4
	}
	if c.FetchWait <= 0 {
		c.FetchWait = 5 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 2 * time.Second
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.QueueLen <= 0 {
		c.QueueLen = 4096
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 65536
	}
	if c.CacheBytes <= 0 {
		c.CacheBytes = 16 << 20
	}
	return c
}

// Store is the Redis tier. Its Learned, Refreshed, Withdrawn and Missing
// methods (the collector's Remote interface) only queue work and are safe
// for concurrent use; worker goroutines own everything else.
//
// What it does with templates learned over TCP (Key.Session != 0):
// nothing. RFC 7011 section 8 scopes them to their transport session and
// forbids using them for data of another session, which is all another pod
// could ever see. Such keys have no Redis key (AppendKey refuses them), and
// every method ignores them, withdrawals included: a TCP session withdrawing
// its own template says nothing about the exporter's UDP template with the
// same ID.
type Store struct {
	cfg     Config
	opt     rueidis.ClientOption
	log     *slog.Logger
	shared  *template.Shared
	arrived func(template.Key)
	client  atomic.Pointer[clientRef]
	ready   chan struct{} // closed once a client exists
	workers []*worker
	put     *rueidis.Lua
	m       metrics
	logs    ratelog.Limiter
	outage  atomic.Bool // a worker failed; the first to recover logs it
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	// observe, when set (tests), sees every learn-to-use sample.
	observe atomic.Pointer[func(k template.Key, nanos int64)]
}

type clientRef struct{ c rueidis.Client }

// putScript writes a template only when its definition changed. Same
// definition: the value, with its first learned time, is kept and the TTL
// is extended, but only when that gains more than ARGV[3] ms: every TTL
// change makes Redis invalidate the key at each pod that read it, so
// renewals stay a few per lifetime however many pods see the exporter.
// Different definition: written unless the stored one was learned later (a
// late write from a pod that was cut off must not undo a newer change).
// Returns 1 written, 0 unchanged, 2 refused as stale. KEYS[1] key;
// ARGV[1] value; ARGV[2] TTL in ms; ARGV[3] slack in ms.
const putScript = `
local cur = redis.call('GET', KEYS[1])
local new = ARGV[1]
if cur then
  if string.sub(cur, 1, 2) == string.sub(new, 1, 2) and string.sub(cur, 11) == string.sub(new, 11) then
    local ttl = redis.call('PTTL', KEYS[1])
    if ttl >= 0 and ttl + tonumber(ARGV[3]) < tonumber(ARGV[2]) then
      redis.call('PEXPIRE', KEYS[1], ARGV[2])
    end
    return 0
  end
  for i = 3, 10 do
    local a, b = string.byte(cur, i), string.byte(new, i)
    if a ~= b then
      if a > b then return 2 end
      break
    end
  end
end
redis.call('SET', KEYS[1], new, 'PX', ARGV[2])
return 1
`

// New returns a store that keeps shared's templates in Redis and puts the
// ones it fetches into shared, calling arrived (Collector.TemplateArrived)
// for each. It connects in the background: Redis may be down at start, the
// collector works on its local tiers meanwhile. Close releases it.
func New(cfg Config, shared *template.Shared, arrived func(template.Key), log *slog.Logger) (*Store, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("redistier: no redis address")
	}
	if shared == nil {
		panic("BUG: redistier: nil shared store")
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.Default()
	}
	if arrived == nil {
		arrived = func(template.Key) {}
	}
	s := &Store{cfg: cfg, log: log, shared: shared, arrived: arrived, ready: make(chan struct{}),
		put: rueidis.NewLuaScript(putScript)}
	s.logs.Every = 10 * time.Second
	s.opt = rueidis.ClientOption{
		InitAddress:       cfg.Addrs,
		Username:          cfg.Username,
		Password:          cfg.Password,
		SelectDB:          cfg.DB,
		ClientName:        "sluice",
		CacheSizeEachConn: cfg.CacheBytes,
		OnInvalidations:   s.invalidated,
		Dialer:            net.Dialer{Timeout: cfg.Timeout},
		ConnWriteTimeout:  cfg.Timeout,
		// Fail fast: the workers back off and retry themselves, and keep
		// what must be written meanwhile.
		DisableRetry: true,
	}
	if cfg.TLS {
		tc, err := ClientTLS(cfg.CAFile, cfg.ServerName)
		if err != nil {
			return nil, err
		}
		s.opt.TLSConfig = tc
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	perWorkerPending := max(cfg.MaxPending/cfg.Workers, 1)
	for i := range cfg.Workers {
		w := &worker{s: s, idx: i, ch: make(chan job, cfg.QueueLen), maxPending: perWorkerPending,
			slack:   strconv.FormatInt(cfg.RefreshEvery.Milliseconds(), 10),
			pending: map[template.Key]job{}, lastPut: map[template.Key]int64{},
			waiting: map[template.Key]int64{}, fetched: map[template.Key]*template.Template{}}
		s.workers = append(s.workers, w)
	}
	s.wg.Add(1 + len(s.workers))
	go s.connect()
	for _, w := range s.workers {
		go w.run()
	}
	return s, nil
}

// connect creates the client, retrying with backoff until it succeeds or
// the store closes. Once created, the client reconnects by itself.
func (s *Store) connect() {
	defer s.wg.Done()
	backoff := 100 * time.Millisecond
	for {
		c, err := rueidis.NewClient(s.opt)
		if err == nil {
			if s.ctx.Err() != nil {
				c.Close()
				return
			}
			s.client.Store(&clientRef{c})
			s.m.connected.Store(true)
			close(s.ready)
			s.log.Info("redis template store connected", "mode", string(c.Mode()), "nodes", len(c.Nodes()))
			return
		}
		s.m.errors.Add(1)
		s.logs.Warn(s.log, "redis template store unreachable; templates stay local", "addrs", s.cfg.Addrs, "err", err)
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(jitter(backoff)):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// Ready is closed once the store has a Redis client (it may still lose the
// connection later).
func (s *Store) Ready() <-chan struct{} { return s.ready }

// Close stops the workers, after they have written what is queued (for at
// most a second), and closes the connections.
func (s *Store) Close() {
	s.cancel()
	s.wg.Wait()
	if r := s.client.Load(); r != nil {
		r.c.Close()
	}
}

// Learned queues a write-through of a template learned or changed.
func (s *Store) Learned(t *template.Template) {
	if t.Key.Session == 0 {
		s.enqueue(job{kind: jobWrite, k: t.Key, t: t})
	}
}

// Refreshed queues a TTL renewal for a retransmitted template (rate limited
// per template by the worker).
func (s *Store) Refreshed(t *template.Template) {
	if t.Key.Session == 0 {
		s.enqueue(job{kind: jobRefresh, k: t.Key, t: t})
	}
}

// Withdrawn queues the deletion of k's shared copy (UDP-scoped keys only;
// the collector itself never withdraws those, as RFC 7011 section 8.4 has
// UDP withdrawals ignored).
func (s *Store) Withdrawn(k template.Key) {
	if k.Session == 0 {
		s.enqueue(job{kind: jobDelete, k: k})
	}
}

// Missing queues a fetch of k. When Redis has it (now, or within
// Config.FetchWait), it goes into the shared store and arrived(k) is called.
// A TCP session's key is never looked for.
func (s *Store) Missing(k template.Key) {
	if k.Session == 0 {
		s.enqueue(job{kind: jobFetch, k: k})
	}
}

func (s *Store) enqueue(j job) {
	w := s.workers[s.partition(j.k)]
	select {
	case w.ch <- j:
	default:
		s.m.queueDrops.Add(1)
	}
}

func (s *Store) partition(k template.Key) int {
	if len(s.workers) == 1 {
		return 0
	}
	a := k.Exporter.Addr().As16()
	h := uint32(k.ID)*2654435761 ^ k.Domain*40503 ^ uint32(k.Exporter.Port()) ^ uint32(k.Version)<<20
	for _, b := range a[8:] {
		h = h*31 + uint32(b)
	}
	h ^= h >> 15
	return int(h % uint32(len(s.workers)))
}

// invalidated is rueidis's invalidation callback. It runs on the
// connection's reader, so it only queues work. nil means "everything"
// (connection lost, database flushed): the workers resynchronise.
func (s *Store) invalidated(msgs []rueidis.RedisMessage) {
	if msgs == nil {
		for _, w := range s.workers {
			w.resync.Store(true)
		}
		return
	}
	for i := range msgs {
		name, err := msgs[i].ToString()
		if err != nil {
			continue
		}
		k, ok := ParseKey(name)
		if !ok {
			continue
		}
		s.m.invalidated.Add(1)
		s.enqueue(job{kind: jobRevalidate, k: k})
	}
}

type jobKind uint8

const (
	jobWrite      jobKind = iota // learned or changed: write through
	jobRefresh                   // retransmitted: renew the TTL (rate limited)
	jobDelete                    // withdrawn
	jobFetch                     // missing locally
	jobRevalidate                // Redis says the key changed
	jobAdopt                     // WarmUp put t into the shared store
)

type job struct {
	kind jobKind
	k    template.Key
	t    *template.Template
}

// worker serves one partition of the keys. Its maps are owned by its
// goroutine; resync is set from rueidis's reader.
type worker struct {
	s          *Store
	idx        int
	ch         chan job
	pending    map[template.Key]job // writes and deletes waiting for Redis
	maxPending int
	slack      string                 // putScript's ARGV[3]: RefreshEvery in ms
	lastPut    map[template.Key]int64 // last successful write per key
	waiting    map[template.Key]int64 // keys looked for after a miss: until when
	fetched    map[template.Key]*template.Template
	down       bool // the last operation failed: wait for retryAt
	recovering bool // up again, catch-up not yet done
	retryAt    int64
	backoff    time.Duration
	resync     atomic.Bool
	connected  bool // a client has been seen
	nextPoll   int64
	nextPrune  int64
	val        []byte
}

const (
	tickEvery   = 50 * time.Millisecond
	pollEvery   = 250 * time.Millisecond
	pruneEvery  = 10 * time.Second
	maxWaiting  = 1 << 16
	writeBatch  = 128
	drainBudget = time.Second
)

func (w *worker) run() {
	defer w.s.wg.Done()
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	for {
		select {
		case <-w.s.ctx.Done():
			w.drain()
			return
		case j := <-w.ch:
			w.do(j, time.Now().UnixNano())
		case now := <-t.C:
			w.tick(now.UnixNano())
		}
	}
}

// drain writes what is still queued at shutdown, within drainBudget.
func (w *worker) drain() {
	deadline := time.Now().Add(drainBudget)
	for time.Now().Before(deadline) && !w.down {
		select {
		case j := <-w.ch:
			if j.kind == jobWrite || j.kind == jobDelete {
				w.do(j, time.Now().UnixNano())
			}
		default:
			return
		}
	}
}

func (w *worker) do(j job, now int64) {
	switch j.kind {
	case jobWrite:
		w.write(j, now)
	case jobRefresh:
		if last, ok := w.lastPut[j.k]; ok && now-last < int64(w.s.cfg.RefreshEvery) {
			return
		}
		w.write(j, now)
	case jobDelete:
		w.remove(j, now)
	case jobFetch:
		w.fetch(j.k, now)
	case jobRevalidate:
		w.revalidate(j.k, now)
	case jobAdopt:
		if w.s.shared.Get(j.k) == j.t {
			w.fetched[j.k] = j.t
		}
	}
}

// client returns the client, or nil while Redis is taken for down.
func (w *worker) client() rueidis.Client {
	if w.down {
		return nil
	}
	if r := w.s.client.Load(); r != nil {
		return r.c
	}
	return nil
}

func (w *worker) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), w.s.cfg.Timeout)
}

// putArgs returns the script arguments for t, or false if t has expired.
func (w *worker) putArgs(t *template.Template, now int64) (rueidis.LuaExec, bool) {
	ttl := w.s.cfg.Lifetime.Milliseconds()
	if e := t.Expires(); e != 0 {
		ttl = (e - now) / 1e6
	}
	if ttl <= 0 {
		return rueidis.LuaExec{}, false
	}
	key, ok := AppendKey(nil, t.Key)
	if !ok {
		return rueidis.LuaExec{}, false
	}
	w.val = AppendValue(w.val[:0], t)
	return rueidis.LuaExec{Keys: []string{string(key)},
		Args: []string{string(w.val), strconv.FormatInt(ttl, 10), w.slack}}, true
}

func (w *worker) write(j job, now int64) {
	args, ok := w.putArgs(j.t, now)
	if !ok {
		return
	}
	c := w.client()
	if c == nil {
		w.postpone(j)
		return
	}
	ctx, cancel := w.opCtx()
	n, err := w.s.put.Exec(ctx, c, args.Keys, args.Args).AsInt64()
	cancel()
	if err != nil {
		w.fail(err, now)
		w.postpone(j)
		return
	}
	w.ok()
	w.wrote(j.k, n, now)
}

func (w *worker) wrote(k template.Key, n int64, now int64) {
	w.lastPut[k] = now
	switch n {
	case 1:
		w.s.m.written.Add(1)
	case 0:
		w.s.m.unchanged.Add(1)
	default:
		// Redis has a definition learned later than ours: adopt it.
		w.s.m.stale.Add(1)
		w.revalidate(k, now)
	}
}

func (w *worker) remove(j job, now int64) {
	delete(w.lastPut, j.k)
	key, ok := AppendKey(nil, j.k)
	if !ok {
		return
	}
	c := w.client()
	if c == nil {
		w.postpone(j)
		return
	}
	ctx, cancel := w.opCtx()
	n, err := c.Do(ctx, c.B().Del().Key(string(key)).Build()).AsInt64()
	cancel()
	if err != nil {
		w.fail(err, now)
		w.postpone(j)
		return
	}
	w.ok()
	if n > 0 {
		w.s.m.deletes.Add(1)
	}
}

// postpone keeps a write or delete for when Redis is back; the latest
// operation per key wins.
func (w *worker) postpone(j job) {
	if j.kind == jobRefresh {
		j.kind = jobWrite
	}
	if _, ok := w.pending[j.k]; !ok {
		if len(w.pending) >= w.maxPending {
			w.s.m.pendingDrops.Add(1)
			return
		}
		w.s.m.pending.Add(1)
	}
	w.pending[j.k] = j
}

func (w *worker) fail(err error, now int64) {
	w.s.m.errors.Add(1)
	w.s.m.connected.Store(false)
	w.s.outage.Store(true)
	w.s.logs.Warn(w.s.log, "redis template store failing; templates stay local", "err", err)
	if w.down || w.recovering {
		// Still failing, or failing again right after coming back (a
		// cluster with one node down answers PING): keep backing off.
		w.backoff = min(2*w.backoff, 5*time.Second)
	} else {
		w.backoff = 100 * time.Millisecond
	}
	w.down = true
	w.retryAt = now + int64(jitter(w.backoff))
}

func (w *worker) ok() {
	w.s.m.connected.Store(true)
}

func (w *worker) tick(now int64) {
	if w.down {
		if now < w.retryAt {
			return
		}
		r := w.s.client.Load()
		if r == nil {
			return
		}
		ctx, cancel := w.opCtx()
		err := r.c.Do(ctx, r.c.B().Ping().Build()).Error()
		cancel()
		if err != nil {
			w.fail(err, now)
			return
		}
		w.down, w.recovering = false, true
		w.ok()
		if w.s.outage.CompareAndSwap(true, false) {
			w.s.log.Info("redis template store reachable again; writing back")
		}
		// Pending operations go out below. A full write-back follows only
		// if a connection was lost (Redis may have restarted empty):
		// rueidis reports that as a nil invalidation, which sets resync.
	}
	if w.client() == nil {
		return
	}
	if !w.connected {
		// The first tick with a client: look for what was missed before.
		w.connected, w.nextPoll = true, 0
	}
	if w.resync.Swap(false) {
		w.catchUp(now)
		if w.down {
			w.resync.Store(true)
			return
		}
	} else if len(w.pending) > 0 {
		w.flush(now)
	}
	if !w.down {
		w.recovering = false
	}
	if now >= w.nextPoll {
		w.nextPoll = now + int64(pollEvery)
		w.poll(now)
	}
	if now >= w.nextPrune {
		w.nextPrune = now + int64(pruneEvery)
		w.prune(now)
	}
}

// flush replays the pending operations.
func (w *worker) flush(now int64) {
	var writes []job
	for k, j := range w.pending {
		if w.down {
			break // what was taken is put back by writeMany
		}
		delete(w.pending, k)
		w.s.m.pending.Add(-1)
		if j.kind == jobDelete {
			w.remove(j, now)
			continue
		}
		if cur := w.s.shared.Get(k); cur != nil && cur != j.t {
			continue // replaced since; the current one is written on its own
		}
		writes = append(writes, j)
	}
	w.writeMany(writes, now, true)
}

// writeMany writes templates in pipelined batches. What fails is kept
// pending if keep is set.
func (w *worker) writeMany(jobs []job, now int64, keep bool) {
	for len(jobs) > 0 && !w.down {
		n := min(len(jobs), writeBatch)
		batch := jobs[:n]
		jobs = jobs[n:]
		execs := make([]rueidis.LuaExec, 0, n)
		sent := batch[:0:0]
		for _, j := range batch {
			if e, ok := w.putArgs(j.t, now); ok {
				execs = append(execs, e)
				sent = append(sent, j)
			}
		}
		if len(execs) == 0 {
			continue
		}
		c := w.client()
		if c == nil {
			jobs = append(jobs, sent...)
			break
		}
		ctx, cancel := w.opCtx()
		res := w.s.put.ExecMulti(ctx, c, execs...)
		cancel()
		for i, r := range res {
			n, err := r.AsInt64()
			if err != nil {
				if !w.down {
					w.fail(err, now)
				}
				if keep {
					w.postpone(sent[i])
				}
				continue
			}
			w.wrote(sent[i].k, n, now)
		}
		if !w.down {
			w.ok()
		}
	}
	if keep {
		for _, j := range jobs {
			w.postpone(j)
		}
	}
}

// catchUp runs after Redis came back or a connection was lost: pending
// operations first, then every UDP template of this worker's keys is
// written back (Redis may have restarted empty). The script keeps newer
// definitions and never shortens a TTL, so this only fills gaps; a
// definition changed elsewhere meanwhile comes back as stale and is
// adopted. A key withdrawn on another pod during the gap is written back
// too, for at most its remaining lifetime.
func (w *worker) catchUp(now int64) {
	w.s.m.resyncs.Add(1)
	w.flush(now)
	if w.down {
		return
	}
	var local []job
	w.s.shared.Range(func(t *template.Template) bool {
		if t.Key.Session == 0 && w.s.partition(t.Key) == w.idx && !t.Expired(now) {
			local = append(local, job{kind: jobWrite, k: t.Key, t: t})
		}
		return true
	})
	w.writeMany(local, now, false)
}

func (w *worker) lookup(c rueidis.Client, k template.Key) (v Value, expires int64, found bool, err error) {
	key, ok := AppendKey(nil, k)
	if !ok {
		return v, 0, false, nil
	}
	ctx, cancel := w.opCtx()
	defer cancel()
	res := c.DoCache(ctx, c.B().Get().Key(string(key)).Cache(), w.s.cacheTTL())
	return w.s.decode(res)
}

// cacheTTL is how long the client-side cache may keep an answer: Redis
// invalidates a key when it changes (its TTL included), and the client
// caps a found key's entry at its server TTL, whose end becomes the local
// copy's expiry (CachePXAT). Misses stay cached until the key appears.
func (s *Store) cacheTTL() time.Duration { return s.cfg.Lifetime }

// decode turns a GET result into a value and its expiry (Unix nanoseconds).
func (s *Store) decode(res rueidis.RedisResult) (v Value, expires int64, found bool, err error) {
	b, err := res.AsBytes()
	if rueidis.IsRedisNil(err) {
		return v, 0, false, nil
	}
	if err != nil {
		return v, 0, false, err
	}
	v, err = DecodeValue(b)
	if err != nil {
		s.m.badValues.Add(1)
		return v, 0, false, nil
	}
	if pxat := res.CachePXAT(); pxat > 0 {
		expires = pxat * 1e6
	} else {
		expires = time.Now().UnixNano() + int64(s.cfg.Lifetime)
	}
	return v, expires, true, nil
}

// fetch serves a local miss.
func (w *worker) fetch(k template.Key, now int64) {
	if w.s.shared.Get(k) != nil {
		delete(w.waiting, k)
		w.s.arrived(k) // learned here meanwhile
		return
	}
	c := w.client()
	if c == nil {
		w.wait(k, now)
		return
	}
	v, expires, found, err := w.lookup(c, k)
	if err != nil {
		w.fail(err, now)
		w.wait(k, now)
		return
	}
	w.ok()
	if !found {
		w.s.m.misses.Add(1)
		w.wait(k, now)
		return
	}
	w.apply(k, &v, true, expires, now)
}

func (w *worker) wait(k template.Key, now int64) {
	if _, ok := w.waiting[k]; ok || len(w.waiting) < maxWaiting {
		w.waiting[k] = now + int64(w.s.cfg.FetchWait)
	}
}

// revalidate follows a change of k in Redis.
func (w *worker) revalidate(k template.Key, now int64) {
	cur := w.s.shared.Get(k)
	_, wanted := w.waiting[k]
	if cur == nil && !wanted {
		return // nobody here needs it
	}
	c := w.client()
	if c == nil {
		return // rechecked by catchUp
	}
	v, expires, found, err := w.lookup(c, k)
	if err != nil {
		w.fail(err, now)
		return
	}
	w.ok()
	w.apply(k, &v, found, expires, now)
}

// apply brings the shared store in line with what Redis holds for k.
func (w *worker) apply(k template.Key, v *Value, found bool, expires int64, now int64) {
	s := w.s
	cur := s.shared.Get(k)
	if !found {
		if cur != nil && w.fetched[k] == cur {
			// Withdrawn elsewhere, or expired: drop our copy.
			s.shared.Delete(k, cur)
			s.m.removed.Add(1)
		}
		delete(w.fetched, k)
		return
	}
	if cur != nil {
		if sameDefinition(cur, v) {
			if e := cur.Expires(); e != 0 && expires > e {
				cur.Refresh(expires) // retransmitted to another pod
			}
			delete(w.waiting, k)
			return
		}
		if v.Learned <= cur.Learned {
			return // ours is newer; its write-through will replace Redis's
		}
	}
	t, err := v.Template(k, expires)
	if err != nil {
		s.m.badValues.Add(1)
		return
	}
	s.shared.Put(t)
	w.fetched[k] = t
	delete(w.waiting, k)
	s.m.hits.Add(1)
	lat := time.Now().UnixNano() - v.Learned
	s.m.learnToUse.observe(lat)
	if f := s.observe.Load(); f != nil {
		(*f)(k, lat)
	}
	s.arrived(k)
}

// poll looks again for missing keys: answered from the client-side cache
// until Redis invalidates them, so it costs nothing while nothing changes.
// It covers invalidations lost with a connection.
func (w *worker) poll(now int64) {
	for k, until := range w.waiting {
		if now > until || w.s.shared.Get(k) != nil {
			delete(w.waiting, k)
			continue
		}
		c := w.client()
		if c == nil {
			return
		}
		v, expires, found, err := w.lookup(c, k)
		if err != nil {
			w.fail(err, now)
			return
		}
		if found {
			w.apply(k, &v, true, expires, now)
		}
	}
}

func (w *worker) prune(now int64) {
	for k, t := range w.fetched {
		if w.s.shared.Get(k) != t {
			delete(w.fetched, k)
		}
	}
	for k, at := range w.lastPut {
		if now-at > int64(w.s.cfg.Lifetime) {
			delete(w.lastPut, k)
		}
	}
}

// jitter spreads retries of many pods: d ± 20%.
func jitter(d time.Duration) time.Duration {
	return d*4/5 + time.Duration(rand.Int64N(int64(d*2/5)+1))
}

// ClientTLS is the TLS configuration of a Redis client (TLS 1.2 at
// least): the server is verified against the CAs in caFile (PEM; empty:
// the system's), under serverName when set (default: the host dialled).
// Every Sluice process that reaches Redis takes it.
func ClientTLS(caFile, serverName string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile == "" {
		return tc, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("redis tls: %w", err)
	}
	tc.RootCAs = x509.NewCertPool()
	if !tc.RootCAs.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("redis tls: %s: no PEM certificate", caFile)
	}
	return tc, nil
}
