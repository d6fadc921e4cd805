package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sluice-flow/sluice/controlplane/node"
	"github.com/sluice-flow/sluice/dataplane/yamlconf"
)

// splitFlags are the flags of `sluice collector` and `sluice mediator`:
// those of `sluice run` that concern the process, plus --ring-dir and
// --bus; node holds the processes' lifecycles. Only run reads the
// signals, and the environment comes in through getenv.
type splitFlags struct {
	ingestFlags                                  // collector
	adminTLS                                     adminTLSFlags
	role                                         string
	config, admin, pipeline, tokenFile, logLevel string
	pprof, ringDir, bus                          string
	outputs                                      stringList
	ringSize                                     yamlconf.Size
}

// splitAbout is the one-line description of a split command.
func splitAbout(role string) string {
	if role == "collector" {
		return "Runs the split pod's ingest: listeners and event loops writing into file rings in --ring-dir for `sluice mediator`."
	}
	return "Runs the split pod's mediator: pipelines and outputs over the file rings `sluice collector` writes in --ring-dir."
}

// newSplitFlags registers the flags of role ("collector" or "mediator") on
// fs.
func newSplitFlags(role string, fs *flag.FlagSet) *splitFlags {
	f := &splitFlags{role: role}
	fs.StringVar(&f.config, "config", "", "YAML config file as for sluice run; flags override it")
	fs.StringVar(&f.ringDir, "ring-dir", node.DefaultRingDir, "directory of the shared-memory ring files (a tmpfs shared with the other process)")
	fs.StringVar(&f.bus, "bus", node.DefaultBus, "D-Bus address of the pod's bus")
	fs.StringVar(&f.admin, "admin", "off", "serve this process's admin API (metrics, health) on this address")
	fs.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (default info)")
	fs.StringVar(&f.pprof, "pprof", "", "serve net/http/pprof on this address (off by default)")
	f.adminTLS.register(fs)
	if role == "collector" {
		f.ingestFlags.register(fs, "event loops, one ring file each (default: one per CPU)")
		fs.Func("ring-size", "size of each ring file, e.g. 64MiB (default 16MiB)", func(v string) (err error) {
			f.ringSize, err = yamlconf.ParseSize(v)
			return err
		})
		return f
	}
	fs.Var(&f.outputs, "output", "output, repeatable, as for sluice run (default jsonl:-)")
	fs.StringVar(&f.pipeline, "pipeline", "", "pipeline file (YAML); SIGHUP reloads it")
	fs.StringVar(&f.tokenFile, "admin-token-file", "", "file holding the admin API token (or set SLUICE_ADMIN_TOKEN)")
	return f
}

// Config builds the process's configuration: the file, then the flags,
// then getenv for secrets not given otherwise.
func (f *splitFlags) Config(getenv func(string) string) (node.SplitConfig, error) {
	var c node.SplitConfig
	if f.config != "" {
		if err := node.LoadFile(f.config, &c.Config); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return c, fmt.Errorf("--config: %w", err)
			}
			return c, err
		}
	}
	c.RingDir, c.Bus, c.Admin, c.Pprof = f.ringDir, f.bus, f.admin, f.pprof
	if f.logLevel != "" {
		c.LogLevel = f.logLevel
	}
	if f.role == "collector" {
		if err := f.ingestFlags.apply(&c.Config); err != nil {
			return c, err
		}
		if f.ringSize != 0 {
			c.Collector.RingSize = f.ringSize
		}
	}
	f.adminTLS.apply(&c.Config)
	if c.Redis.Password == "" {
		c.Redis.Password = getenv("SLUICE_REDIS_PASSWORD")
	}
	if err := applyOutputFlags(&c.Config, f.outputs, f.pipeline); err != nil {
		return c, err
	}
	if f.tokenFile != "" {
		c.AdminTokenFile = f.tokenFile
	}
	c.AdminToken = getenv("SLUICE_ADMIN_TOKEN")
	if c.RingDir == "" {
		return c, errors.New("--ring-dir: empty")
	}
	return c, c.Validate()
}

// Run builds the configuration and the process of f's role and runs it
// until SIGTERM or SIGINT. On SIGHUP the collector reloads its TLS files
// and the mediator its pipeline file. Logs go to stderr, jsonl:- records
// to stdout.
func (f *splitFlags) Run(getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := f.Config(getenv)
	if err != nil {
		return err
	}
	log, err := node.NewLogger(cfg.LogLevel, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var run func(context.Context) error
	var reload func()
	if f.role == "collector" {
		p, err := node.NewCollectorProcess(cfg, log)
		if err != nil {
			return err
		}
		run = p.Run
		reload = func() {
			if err := p.Collector().ReloadTLS(); err != nil {
				log.Error("tls files reload failed; the loaded ones stay", "err", err)
			}
		}
	} else {
		p, err := node.NewMediatorProcess(cfg, stdout, log)
		if err != nil {
			return err
		}
		run = p.Run
		reload = func() {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			v, err := p.Reload(rctx)
			cancel()
			if err != nil {
				log.Error("pipeline reload failed; the running pipeline stays", "err", err)
				return
			}
			log.Info("pipeline reloaded", "version", v)
		}
	}
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)
	go func() {
		for {
			select {
			case <-hups:
				reload()
			case <-ctx.Done():
				return
			}
		}
	}()
	return run(ctx)
}
