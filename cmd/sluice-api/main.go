// Command sluice-api is the deployment's Web API: `serve` runs the HTTP API
// and the job broker (controlplane/frontend), `worker` runs jobs for a
// broker. It links libzmq (cgo); the data-plane binary, sluice, does not.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-flow/sluice/controlplane/buildinfo"
	"github.com/sluice-flow/sluice/controlplane/frontend"
	"github.com/sluice-flow/sluice/dataplane/template/redistier"
)

const usage = `usage: sluice-api <command> [flags]

commands:
  serve     the Web API and job broker; starts and supervises its workers
  worker    run jobs for a broker (serve starts these itself)
  version   print the version, commit and Go version

Run 'sluice-api <command> --help' for a command's flags.
`

func main() {
	os.Exit(mainExit(os.Args[1:], os.Stdout, os.Stderr))
}

func mainExit(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(args[1:], stdout, stderr)
	case "worker":
		err = worker(args[1:], stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "sluice-api "+buildinfo.Read().String())
		return 0
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "sluice-api: unknown command %q\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintln(stderr, "sluice-api:", err)
		return 1
	}
}

var errUsage = errors.New("usage")

func serve(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg frontend.Config
	var redis, completion string
	var workerMaxJobs int
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:8090", "HTTP listen address")
	fs.StringVar(&redis, "redis", "", "Redis address(es), host:port[,host:port...] (required)")
	fs.StringVar(&cfg.Redis.Username, "redis-user", "", "Redis ACL user")
	fs.IntVar(&cfg.Redis.DB, "redis-db", 0, "Redis database number")
	var redisTLS bool
	var redisCA, redisServerName string
	fs.BoolVar(&redisTLS, "redis-tls", false, "reach Redis over TLS (TLS 1.2 or later)")
	fs.StringVar(&redisCA, "redis-tls-ca", "", "CA bundle (PEM) that signs Redis's certificate (default: the system's; implies --redis-tls)")
	fs.StringVar(&redisServerName, "redis-tls-server-name", "", "name to verify Redis's certificate against (default: the host dialled; implies --redis-tls)")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "directory for uploads and large results, shared by replicas (required)")
	fs.StringVar(&cfg.TokensFile, "tokens-file", "", `file of "token tenant" lines, reloaded on SIGHUP (required)`)
	fs.StringVar(&cfg.Broker, "broker", "", "ZeroMQ endpoint of the job broker, ipc:// or tcp:// (default ipc:// in $XDG_RUNTIME_DIR or the temporary directory)")
	fs.IntVar(&cfg.Workers, "workers", runtime.NumCPU(), "worker processes to start and supervise (0: none, only workers started by hand)")
	fs.IntVar(&workerMaxJobs, "worker-max-jobs", 100, "jobs a worker runs before it is replaced by a fresh process")
	fs.DurationVar(&cfg.Heartbeat, "heartbeat", time.Second, "heartbeat interval between broker and workers")
	fs.IntVar(&cfg.Liveness, "liveness", 3, "heartbeat intervals of silence that make a worker lost")
	fs.Int64Var(&cfg.MaxUploadBytes, "max-upload", 1<<30, "largest file accepted, in bytes")
	fs.IntVar(&cfg.MaxFilesPerTenant, "max-files", 1000, "files a tenant may hold")
	fs.IntVar(&cfg.MaxQueued, "max-queued", 1000, "queued jobs (all tenants, all replicas) before posts get 429")
	fs.IntVar(&cfg.MaxJobsPerTenant, "max-jobs-per-tenant", 1000, "jobs kept in a tenant's list")
	fs.DurationVar(&cfg.JobTTL, "job-ttl", 24*time.Hour, "how long jobs and results are kept")
	fs.DurationVar(&cfg.FileTTL, "file-ttl", 24*time.Hour, "how long uploaded files are kept")
	fs.IntVar(&cfg.InlineResultBytes, "inline-result", 256<<10, "results up to this size stay in Redis; larger ones go to --data-dir")
	fs.Int64Var(&cfg.MaxResultBytes, "max-result", 256<<20, "largest job result, in bytes")
	fs.DurationVar(&cfg.Lease, "lease", 15*time.Second, "how long a running job survives its replica before another requeues it")
	fs.DurationVar(&cfg.RetryAfter, "retry-after", 5*time.Second, "Retry-After of a 429")
	fs.StringVar(&completion, "completion-log", "-", `completion log file, one JSON line per finished job ("-": stdout, "": none)`)
	fs.BoolVar(&cfg.EchoJobs, "echo-jobs", false, `accept the "echo" job type (dispatch benchmarks and tests)`)
	var fl fleetFlags
	fl.register(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	if redis == "" || cfg.DataDir == "" || cfg.TokensFile == "" {
		fmt.Fprintln(stderr, "serve: --redis, --data-dir and --tokens-file are required")
		return errUsage
	}
	cfg.Redis.Addrs = strings.Split(redis, ",")
	cfg.Redis.Password = os.Getenv("SLUICE_REDIS_PASSWORD")
	if redisTLS || redisCA != "" || redisServerName != "" {
		tc, err := redistier.ClientTLS(redisCA, redisServerName)
		if err != nil {
			return err
		}
		cfg.Redis.TLS = tc
	}
	if cfg.Workers == 0 {
		cfg.Workers = -1 // the library's zero means one per CPU
	}
	if cfg.Broker == "" {
		dir := os.Getenv("XDG_RUNTIME_DIR")
		if dir == "" {
			dir = os.TempDir()
		}
		cfg.Broker = frontend.DefaultBroker(dir)
	}
	switch completion {
	case "":
	case "-":
		cfg.CompletionLog = stdout
	default:
		f, err := os.OpenFile(completion, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("serve: --completion-log: %w", err)
		}
		defer f.Close()
		cfg.CompletionLog = f
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	cfg.WorkerCommand = func(broker string) *exec.Cmd {
		args := []string{"worker", "--broker", broker, "--heartbeat", cfg.Heartbeat.String(),
			"--liveness", strconv.Itoa(cfg.Liveness), "--max-jobs", strconv.Itoa(workerMaxJobs)}
		if cfg.EchoJobs {
			args = append(args, "--echo-jobs")
		}
		cmd := exec.Command(self, args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		dieWithParent(cmd)
		return cmd
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	cfg.Log = log
	if err := fl.apply(&cfg, log); err != nil {
		return err
	}
	srv, err := frontend.New(cfg, analyzer())
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if err := srv.Reload(); err != nil {
				log.Error("tokens not reloaded", "err", err)
			}
		}
	}()
	log.Info("sluice-api serving", "listen", srv.Addr(), "broker", srv.Broker(), "workers", cfg.Workers)
	return srv.Run(ctx)
}

func worker(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg frontend.WorkerConfig
	fs.StringVar(&cfg.Broker, "broker", "", "the broker's ZeroMQ endpoint (required)")
	fs.DurationVar(&cfg.Heartbeat, "heartbeat", time.Second, "heartbeat interval (as the broker's)")
	fs.IntVar(&cfg.Liveness, "liveness", 3, "heartbeat intervals of silence that make the broker lost")
	fs.IntVar(&cfg.MaxJobs, "max-jobs", 100, "exit after this many jobs (negative: never)")
	fs.BoolVar(&cfg.EchoJobs, "echo-jobs", false, `run the "echo" job type`)
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	if cfg.Broker == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "worker: --broker is required and takes no arguments")
		return errUsage
	}
	cfg.Log = slog.New(slog.NewTextHandler(stderr, nil)).With("worker", os.Getpid())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return frontend.RunWorker(ctx, cfg, analyzer())
}

func usageErr(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	return fmt.Errorf("%v: %w", err, errUsage)
}
