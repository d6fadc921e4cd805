package frontend

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/sluice-flow/sluice/controlplane/fleet"
)

// Config configures a Server. Zero values are the documented defaults.
type Config struct {
	// Listen is the HTTP listen address. Default 127.0.0.1:8090.
	Listen string
	// Redis holds the job records and queues every replica shares.
	Redis RedisConfig
	// DataDir holds uploaded files and large results (a volume shared by
	// the replicas). Required.
	DataDir string
	// TokensFile maps Bearer tokens to tenants: one "token tenant" line
	// each, # comments. Required; Reload reads it again.
	TokensFile string
	// Broker is the ZeroMQ endpoint the job broker binds. Default
	// DefaultBroker(os.TempDir()).
	Broker string
	// Workers is the number of worker processes to start and supervise:
	// 0 means one per CPU, negative none (workers are started by hand).
	Workers int
	// WorkerCommand returns the command starting one worker process
	// connected to the broker (cmd/sluice-api re-executes itself).
	// Required when Workers >= 0.
	WorkerCommand func(broker string) *exec.Cmd
	// Heartbeat and Liveness: as dispatch.BrokerConfig (1s and 3).
	Heartbeat time.Duration
	Liveness  int

	// MaxUploadBytes bounds one file. Default 1 GiB.
	MaxUploadBytes int64
	// MaxFilesPerTenant bounds a tenant's files. Default 1000.
	MaxFilesPerTenant int
	// MaxQueued bounds the queued jobs of all tenants together; a POST
	// beyond it answers 429. Default 1000.
	MaxQueued int
	// MaxJobsPerTenant bounds the jobs a tenant's list keeps. Default 1000.
	MaxJobsPerTenant int
	// JobTTL is how long a job record and its result live after the job
	// was posted or finished. Default 24h.
	JobTTL time.Duration
	// FileTTL is how long an uploaded file lives. Default 24h.
	FileTTL time.Duration
	// InlineResultBytes: results up to this size are kept in Redis, larger
	// ones in DataDir. Default 256 KiB.
	InlineResultBytes int
	// MaxResultBytes bounds a job's result (all formats). Default 256 MiB.
	MaxResultBytes int64
	// Lease is how long a replica holds a running job without renewing
	// it before another replica requeues it. Default 15s.
	Lease time.Duration
	// RetryAfter is the Retry-After of a 429. Default 5s.
	RetryAfter time.Duration
	// CompletionLog receives one JSON line per finished job. nil: none.
	CompletionLog io.Writer
	// EchoJobs enables the "echo" job type (params.data back as the
	// result, after params.wait_ms): for dispatch benchmarks and tests.
	EchoJobs bool
	// Replica names this replica in job records. Default host-pid.
	Replica string
	Log     *slog.Logger

	// Collectors finds the collector pods (fleet.Static, fleet.DNS or the
	// Kubernetes discovery). nil: none, and the fleet routes show none.
	Collectors fleet.Discovery
	// Fleet configures how the pods are reached and managed (its Log is
	// set from Log).
	Fleet fleet.Config
	// PublicStatus lets the status page and the read-only fleet views
	// (GET /, GET /api/v1/collectors...) answer without a token. Default:
	// they need one, like every /api/v1 route.
	PublicStatus bool
}

// RedisConfig says how to reach Redis.
type RedisConfig struct {
	// Addrs: one Redis, or nodes of a Redis Cluster. Required.
	Addrs    []string
	Username string
	Password string
	DB       int
	// Timeout bounds each operation. Default 2s.
	Timeout time.Duration
	// TLS, when set, reaches Redis over TLS with this configuration
	// (redistier.ClientTLS builds one from a CA file). Default: plain TCP.
	TLS *tls.Config
}

func (c Config) withDefaults() (Config, error) {
	if c.DataDir == "" {
		return c, fmt.Errorf("frontend: no data directory")
	}
	if c.TokensFile == "" {
		return c, fmt.Errorf("frontend: no tokens file")
	}
	if len(c.Redis.Addrs) == 0 {
		return c, fmt.Errorf("frontend: no redis address")
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8090"
	}
	if c.Broker == "" {
		c.Broker = DefaultBroker(os.TempDir())
	}
	if c.Workers == 0 {
		c.Workers = runtime.NumCPU()
	}
	if c.Workers > 0 && c.WorkerCommand == nil {
		return c, fmt.Errorf("frontend: workers to start but no worker command")
	}
	if c.Redis.Timeout <= 0 {
		c.Redis.Timeout = 2 * time.Second
	}
	def := func(p *int64, v int64) {
		if *p <= 0 {
			*p = v
		}
	}
	defi := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	defd := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&c.MaxUploadBytes, 1<<30)
	def(&c.MaxResultBytes, 256<<20)
	defi(&c.MaxFilesPerTenant, 1000)
	defi(&c.MaxQueued, 1000)
	defi(&c.MaxJobsPerTenant, 1000)
	defi(&c.InlineResultBytes, 256<<10)
	defd(&c.JobTTL, 24*time.Hour)
	defd(&c.FileTTL, 24*time.Hour)
	defd(&c.Lease, 15*time.Second)
	defd(&c.RetryAfter, 5*time.Second)
	defd(&c.Heartbeat, time.Second)
	defi(&c.Liveness, 3)
	if c.Replica == "" {
		host, _ := os.Hostname()
		c.Replica = host + "-" + strconv.Itoa(os.Getpid())
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return c, nil
}

// DefaultBroker is an ipc:// endpoint in dir (a runtime directory) named
// for this process.
func DefaultBroker(dir string) string {
	return "ipc://" + filepath.Join(dir, "sluice-api-"+strconv.Itoa(os.Getpid())+".sock")
}
