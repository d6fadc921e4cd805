package frontend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

// Job states.
const (
	stateQueued   = "queued"
	stateRunning  = "running"
	stateDone     = "done"
	stateFailed   = "failed"
	stateCanceled = "canceled"
)

const keyPrefix = "sluice:{api}:"

func jobKey(id string) string             { return keyPrefix + "job:" + id }
func tenantJobsKey(tenant string) string  { return keyPrefix + "jobs:" + tenant }
func idemKey(tenant, key string) string   { return keyPrefix + "idem:" + tenant + ":" + key }
func resultKey(id, format string) string  { return keyPrefix + "result:" + id + ":" + format }
func fileKey(id string) string            { return keyPrefix + "file:" + id }
func tenantFilesKey(tenant string) string { return keyPrefix + "files:" + tenant }

const (
	queueKey   = keyPrefix + "queue"
	runningKey = keyPrefix + "running"
)

var errNotFound = errors.New("frontend: not found")

// store is the Redis side of the frontend. Safe for concurrent use.
type store struct {
	c       rueidis.Client
	timeout time.Duration
}

func newStore(cfg RedisConfig) (*store, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:      cfg.Addrs,
		Username:         cfg.Username,
		Password:         cfg.Password,
		SelectDB:         cfg.DB,
		ClientName:       "sluice-api",
		Dialer:           net.Dialer{Timeout: cfg.Timeout},
		ConnWriteTimeout: cfg.Timeout,
		DisableCache:     true,
		TLSConfig:        cfg.TLS,
		// Callers decide what to retry: a job is never posted twice.
		DisableRetry: true,
	})
	if err != nil {
		return nil, fmt.Errorf("frontend: redis: %w", err)
	}
	return &store{c: c, timeout: cfg.Timeout}, nil
}

func (s *store) close() { s.c.Close() }

func (s *store) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, s.timeout)
}

func (s *store) ping(ctx context.Context) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return s.c.Do(ctx, s.c.B().Ping().Build()).Error()
}

// jobRecord is a job as stored (the hash's fields).
type jobRecord struct {
	ID       string
	Tenant   string
	Type     string
	State    string
	Progress float64
	Error    string
	Files    []string // file ids
	Params   json.RawMessage
	Created  int64 // unix ms
	Started  int64
	Finished int64
	Attempts int
	Owner    string
	Worker   string
	Results  []resultMeta
}

// resultMeta describes one stored output of a job.
type resultMeta struct {
	Format      string `json:"format"`
	ContentType string `json:"content_type"`
	Bytes       int    `json:"bytes"`
	File        bool   `json:"file,omitempty"` // in DataDir, not Redis
}

func (r *jobRecord) fields() []string {
	files, _ := json.Marshal(r.Files)
	params := string(r.Params)
	if params == "" {
		params = "null"
	}
	return []string{"id", r.ID, "tenant", r.Tenant, "type", r.Type, "state", r.State,
		"progress", "0", "files", string(files), "params", params,
		"created", strconv.FormatInt(r.Created, 10), "attempts", "0"}
}

func parseJob(m map[string]string) *jobRecord {
	r := &jobRecord{ID: m["id"], Tenant: m["tenant"], Type: m["type"], State: m["state"], Error: m["error"],
		Owner: m["owner"], Worker: m["worker"], Params: json.RawMessage(m["params"])}
	r.Progress, _ = strconv.ParseFloat(m["progress"], 64)
	r.Created, _ = strconv.ParseInt(m["created"], 10, 64)
	r.Started, _ = strconv.ParseInt(m["started"], 10, 64)
	r.Finished, _ = strconv.ParseInt(m["finished"], 10, 64)
	r.Attempts, _ = strconv.Atoi(m["attempts"])
	_ = json.Unmarshal([]byte(m["files"]), &r.Files)
	if s := m["result"]; s != "" {
		_ = json.Unmarshal([]byte(s), &r.Results)
	}
	return r
}

var createJobScript = rueidis.NewLuaScript(`
if ARGV[6] == '1' then
  local prev = redis.call('GET', KEYS[4])
  if prev then return {'dup', prev} end
end
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then return {'busy', ''} end
redis.call('HSET', KEYS[2], unpack(ARGV, 7))
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
local n = redis.call('ZCARD', KEYS[3])
local max = tonumber(ARGV[5])
if n > max then redis.call('ZREMRANGEBYRANK', KEYS[3], 0, n - max - 1) end
redis.call('PEXPIRE', KEYS[3], ARGV[3])
if ARGV[6] == '1' then redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[3]) end
return {'ok', ARGV[1]}
`)

// createJob stores r and queues it. With an idempotency key already used,
// it returns the first job's id and dup; with the queue full, busy.
func (s *store) createJob(ctx context.Context, r *jobRecord, idem string, maxQueued, maxPerTenant int, ttl time.Duration) (id string, dup, busy bool, err error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	hasIdem, ik := "0", idemKey(r.Tenant, "-")
	if idem != "" {
		hasIdem, ik = "1", idemKey(r.Tenant, idem)
	}
	args := append([]string{r.ID, strconv.Itoa(maxQueued), strconv.FormatInt(ttl.Milliseconds(), 10),
		strconv.FormatInt(r.Created, 10), strconv.Itoa(maxPerTenant), hasIdem}, r.fields()...)
	res, err := createJobScript.Exec(ctx, s.c, []string{queueKey, jobKey(r.ID), tenantJobsKey(r.Tenant), ik}, args).AsStrSlice()
	if err != nil {
		return "", false, false, err
	}
	if len(res) != 2 {
		return "", false, false, fmt.Errorf("frontend: create job: unexpected reply %q", res)
	}
	return res[1], res[0] == "dup", res[0] == "busy", nil
}

// getJob returns tenant's job id (errNotFound for another tenant's).
func (s *store) getJob(ctx context.Context, tenant, id string) (*jobRecord, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	m, err := s.c.Do(ctx, s.c.B().Hgetall().Key(jobKey(id)).Build()).AsStrMap()
	if err != nil {
		return nil, err
	}
	if len(m) == 0 || m["tenant"] != tenant {
		return nil, errNotFound
	}
	return parseJob(m), nil
}

// listJobs returns a page of tenant's jobs, newest first, and the total.
func (s *store) listJobs(ctx context.Context, tenant string, offset, limit int) ([]*jobRecord, int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	key := tenantJobsKey(tenant)
	cmds := rueidis.Commands{
		s.c.B().Zrange().Key(key).Min(strconv.Itoa(offset)).Max(strconv.Itoa(offset + limit - 1)).Rev().Build(),
		s.c.B().Zcard().Key(key).Build(),
	}
	res := s.c.DoMulti(ctx, cmds...)
	ids, err := res[0].AsStrSlice()
	if err != nil {
		return nil, 0, err
	}
	total, err := res[1].AsInt64()
	if err != nil {
		return nil, 0, err
	}
	if len(ids) == 0 {
		return nil, total, nil
	}
	gets := make(rueidis.Commands, len(ids))
	for i, id := range ids {
		gets[i] = s.c.B().Hgetall().Key(jobKey(id)).Build()
	}
	out := make([]*jobRecord, 0, len(ids))
	var gone []string
	for i, r := range s.c.DoMulti(ctx, gets...) {
		m, err := r.AsStrMap()
		if err != nil {
			return nil, 0, err
		}
		if len(m) == 0 || m["tenant"] != tenant {
			gone = append(gone, ids[i])
			continue
		}
		out = append(out, parseJob(m))
	}
	if len(gone) > 0 { // expired records leave the index lazily
		_ = s.c.Do(ctx, s.c.B().Zrem().Key(key).Member(gone...).Build()).Error()
	}
	return out, total, nil
}

var cancelJobScript = rueidis.NewLuaScript(`
local st = redis.call('HMGET', KEYS[1], 'state', 'tenant')
if not st[1] or st[2] ~= ARGV[1] then return '' end
if st[1] == 'queued' or st[1] == 'running' then
  redis.call('HSET', KEYS[1], 'state', 'canceled', 'finished', ARGV[2], 'error', 'canceled')
  redis.call('LREM', KEYS[2], 0, ARGV[3])
  redis.call('ZREM', KEYS[3], ARGV[3])
end
return st[1]
`)

// cancelJob cancels tenant's queued or running job id and returns the state
// it was in (errNotFound for none of the tenant's).
func (s *store) cancelJob(ctx context.Context, tenant, id string, now int64) (string, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	prev, err := cancelJobScript.Exec(ctx, s.c, []string{jobKey(id), queueKey, runningKey},
		[]string{tenant, strconv.FormatInt(now, 10), id}).ToString()
	if err != nil {
		return "", err
	}
	if prev == "" {
		return "", errNotFound
	}
	return prev, nil
}

var claimScript = rueidis.NewLuaScript(`
for i = 1, 100 do
  local id = redis.call('RPOP', KEYS[1])
  if not id then return {} end
  local k = ARGV[4] .. id
  if redis.call('HGET', k, 'state') == 'queued' then
    redis.call('HSET', k, 'state', 'running', 'owner', ARGV[1], 'progress', '0', 'worker', '')
    redis.call('HSETNX', k, 'started', ARGV[3])
    redis.call('HINCRBY', k, 'attempts', 1)
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    return redis.call('HGETALL', k)
  end
end
return {}
`)

// claim takes the oldest queued job for owner, under a lease until
// deadline; nil when none is queued.
func (s *store) claim(ctx context.Context, owner string, deadline, now int64) (*jobRecord, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	m, err := claimScript.Exec(ctx, s.c, []string{queueKey, runningKey},
		[]string{owner, strconv.FormatInt(deadline, 10), strconv.FormatInt(now, 10), keyPrefix + "job:"}).AsStrMap()
	if err != nil || len(m) == 0 {
		return nil, err
	}
	return parseJob(m), nil
}

var syncScript = rueidis.NewLuaScript(`
local drop = {}
for i = 4, #ARGV, 2 do
  local id = ARGV[i]
  local k = ARGV[3] .. id
  local st = redis.call('HMGET', k, 'state', 'owner')
  if st[1] == 'running' and st[2] == ARGV[1] then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    if ARGV[i + 1] ~= '' then redis.call('HSET', k, 'progress', ARGV[i + 1]) end
  else
    table.insert(drop, id)
  end
end
return drop
`)

// syncJobs renews owner's leases on its running jobs and writes their
// progress (progress[i] for ids[i]; NaN: unchanged). It returns the jobs
// owner no longer holds (canceled, or requeued by another replica).
func (s *store) syncJobs(ctx context.Context, owner string, deadline int64, ids []string, progress []float64) ([]string, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	args := []string{owner, strconv.FormatInt(deadline, 10), keyPrefix + "job:"}
	for i, id := range ids {
		p := ""
		if progress[i] == progress[i] { // not NaN
			p = strconv.FormatFloat(progress[i], 'f', 4, 64)
		}
		args = append(args, id, p)
	}
	return syncScript.Exec(ctx, s.c, []string{runningKey}, args).AsStrSlice()
}

var startedScript = rueidis.NewLuaScript(`
local st = redis.call('HMGET', KEYS[1], 'state', 'owner')
if st[1] == 'running' and st[2] == ARGV[1] then
  redis.call('HSET', KEYS[1], 'worker', ARGV[2], 'attempts', ARGV[3])
end
return 1
`)

// started records the worker a job runs on, and its attempt.
func (s *store) started(ctx context.Context, owner, id, worker string, attempt int) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return startedScript.Exec(ctx, s.c, []string{jobKey(id)}, []string{owner, worker, strconv.Itoa(attempt)}).Error()
}

var finishScript = rueidis.NewLuaScript(`
local st = redis.call('HMGET', KEYS[1], 'state', 'owner')
if st[1] ~= 'running' or st[2] ~= ARGV[1] then return 0 end
local p = redis.call('HGET', KEYS[1], 'progress')
if ARGV[2] == 'done' then p = '1' end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'error', ARGV[3], 'finished', ARGV[4], 'result', ARGV[6], 'progress', p)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('ZREM', KEYS[2], ARGV[7])
for i = 3, #KEYS do redis.call('SET', KEYS[i], ARGV[i + 5], 'PX', ARGV[5]) end
return 1
`)

// finish writes the outcome of owner's job id, with the results kept in
// Redis (inline: format -> data). It reports false when owner no longer
// held the job (canceled or requeued meanwhile).
func (s *store) finish(ctx context.Context, owner, id, state, reason string, now int64, ttl time.Duration,
	results []resultMeta, inline map[string][]byte) (bool, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	meta, _ := json.Marshal(results)
	keys := []string{jobKey(id), runningKey}
	args := []string{owner, state, reason, strconv.FormatInt(now, 10), strconv.FormatInt(ttl.Milliseconds(), 10), string(meta), id}
	for _, r := range results {
		if data, ok := inline[r.Format]; ok {
			keys = append(keys, resultKey(id, r.Format))
			args = append(args, rueidis.BinaryString(data))
		}
	}
	n, err := finishScript.Exec(ctx, s.c, keys, args).AsInt64()
	return n == 1, err
}

var reapScript = rueidis.NewLuaScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
local failed = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  local k = ARGV[3] .. id
  local st = redis.call('HMGET', k, 'state', 'attempts', 'owner')
  if st[1] == 'running' then
    if tonumber(st[2] or '0') < tonumber(ARGV[2]) then
      redis.call('HSET', k, 'state', 'queued', 'owner', '', 'worker', '', 'progress', '0')
      redis.call('RPUSH', KEYS[2], id)
    else
      redis.call('HSET', k, 'state', 'failed', 'finished', ARGV[1],
        'error', 'replica ' .. (st[3] or '') .. ' stopped renewing the job after attempt ' .. st[2])
      redis.call('PEXPIRE', k, ARGV[4])
      table.insert(failed, id)
    end
  end
end
return failed
`)

// reap requeues the running jobs whose lease lapsed (their replica is
// gone), or fails those that had their attempts; it returns the failed.
func (s *store) reap(ctx context.Context, now int64, maxAttempts int, ttl time.Duration) ([]string, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return reapScript.Exec(ctx, s.c, []string{runningKey, queueKey},
		[]string{strconv.FormatInt(now, 10), strconv.Itoa(maxAttempts), keyPrefix + "job:",
			strconv.FormatInt(ttl.Milliseconds(), 10)}).AsStrSlice()
}

// jobByID reads a job whatever its tenant (for the completion log).
func (s *store) jobByID(ctx context.Context, id string) (*jobRecord, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	m, err := s.c.Do(ctx, s.c.B().Hgetall().Key(jobKey(id)).Build()).AsStrMap()
	if err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, errNotFound
	}
	return parseJob(m), nil
}

func (s *store) result(ctx context.Context, id, format string) ([]byte, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	b, err := s.c.Do(ctx, s.c.B().Get().Key(resultKey(id, format)).Build()).AsBytes()
	if rueidis.IsRedisNil(err) {
		return nil, errNotFound
	}
	return b, err
}

// fileRecord is an uploaded file as stored.
type fileRecord struct {
	ID      string `json:"id"`
	Tenant  string `json:"-"`
	Name    string `json:"name"`
	Type    string `json:"type"`
	Bytes   int64  `json:"bytes"`
	Created int64  `json:"-"`
}

var createFileScript = rueidis.NewLuaScript(`
local n = redis.call('ZCARD', KEYS[2])
if n >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
`)

// countFiles returns how many files tenant holds.
func (s *store) countFiles(ctx context.Context, tenant string) (int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	return s.c.Do(ctx, s.c.B().Zcard().Key(tenantFilesKey(tenant)).Build()).AsInt64()
}

// createFile stores f; false when the tenant has max files already.
func (s *store) createFile(ctx context.Context, f *fileRecord, max int, ttl time.Duration) (bool, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := createFileScript.Exec(ctx, s.c, []string{fileKey(f.ID), tenantFilesKey(f.Tenant)},
		[]string{strconv.FormatInt(f.Created, 10), strconv.FormatInt(ttl.Milliseconds(), 10), strconv.Itoa(max),
			"id", f.ID, "tenant", f.Tenant, "name", f.Name, "type", f.Type,
			"bytes", strconv.FormatInt(f.Bytes, 10), "created", strconv.FormatInt(f.Created, 10)}).AsInt64()
	return n == 1, err
}

func parseFile(m map[string]string) *fileRecord {
	f := &fileRecord{ID: m["id"], Tenant: m["tenant"], Name: m["name"], Type: m["type"]}
	f.Bytes, _ = strconv.ParseInt(m["bytes"], 10, 64)
	f.Created, _ = strconv.ParseInt(m["created"], 10, 64)
	return f
}

// getFile returns tenant's file id (errNotFound for another tenant's).
func (s *store) getFile(ctx context.Context, tenant, id string) (*fileRecord, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	m, err := s.c.Do(ctx, s.c.B().Hgetall().Key(fileKey(id)).Build()).AsStrMap()
	if err != nil {
		return nil, err
	}
	if len(m) == 0 || m["tenant"] != tenant {
		return nil, errNotFound
	}
	return parseFile(m), nil
}

// listFiles returns tenant's files, newest first.
func (s *store) listFiles(ctx context.Context, tenant string) ([]*fileRecord, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	key := tenantFilesKey(tenant)
	ids, err := s.c.Do(ctx, s.c.B().Zrange().Key(key).Min("0").Max("-1").Rev().Build()).AsStrSlice()
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	gets := make(rueidis.Commands, len(ids))
	for i, id := range ids {
		gets[i] = s.c.B().Hgetall().Key(fileKey(id)).Build()
	}
	out := make([]*fileRecord, 0, len(ids))
	var gone []string
	for i, r := range s.c.DoMulti(ctx, gets...) {
		m, err := r.AsStrMap()
		if err != nil {
			return nil, err
		}
		if len(m) == 0 || m["tenant"] != tenant {
			gone = append(gone, ids[i])
			continue
		}
		out = append(out, parseFile(m))
	}
	if len(gone) > 0 {
		_ = s.c.Do(ctx, s.c.B().Zrem().Key(key).Member(gone...).Build()).Error()
	}
	return out, nil
}

var deleteFileScript = rueidis.NewLuaScript(`
if redis.call('HGET', KEYS[1], 'tenant') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
`)

// deleteFile removes tenant's file record; errNotFound for none.
func (s *store) deleteFile(ctx context.Context, tenant, id string) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := deleteFileScript.Exec(ctx, s.c, []string{fileKey(id), tenantFilesKey(tenant)}, []string{tenant, id}).AsInt64()
	if err != nil {
		return err
	}
	if n == 0 {
		return errNotFound
	}
	return nil
}

// exists reports which of keys exist (for the janitor).
func (s *store) exists(ctx context.Context, key string) (bool, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	n, err := s.c.Do(ctx, s.c.B().Exists().Key(key).Build()).AsInt64()
	return n > 0, err
}
