package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-flow/sluice/controlplane/node"
)

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// runFlags are `sluice run`'s flags; each overrides the config file's key.
type runFlags struct {
	ingestFlags
	adminTLS                                            adminTLSFlags
	config, admin, pipeline, tokenFile, logLevel, pprof string
	mediatorWorkers                                     int
	redisPipeline                                       string
	outputs                                             stringList
}

func (f *runFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "YAML config file; flags override it")
	f.ingestFlags.register(fs, "event loops (default: one per CPU)")
	fs.StringVar(&f.admin, "admin", "", "admin API address (default 127.0.0.1:8080; \"off\" disables it)")
	fs.Var(&f.outputs, "output", "output, repeatable: jsonl:- (stdout, default), jsonl:PATH, jsonl+tcp://HOST:PORT, ipfix+tcp://HOST:PORT, ipfix+tls://HOST:PORT, ipfix+udp://HOST:PORT, ipfix-file:PATH, discard")
	fs.StringVar(&f.pipeline, "pipeline", "", "pipeline file (YAML): stages and outputs; SIGHUP reloads it")
	fs.StringVar(&f.tokenFile, "admin-token-file", "", "file holding the admin API token that /api/v1/pipeline needs (or set SLUICE_ADMIN_TOKEN)")
	fs.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (default info)")
	fs.StringVar(&f.redisPipeline, "redis-pipeline", "", "at start, put in force the pipeline the frontend keeps in Redis under this name (sluice:pipeline:<name>)")
	fs.StringVar(&f.pprof, "pprof", "", "serve net/http/pprof on this address, e.g. 127.0.0.1:6060 (off by default)")
	fs.IntVar(&f.mediatorWorkers, "mediator-workers", -1, "goroutines reading the rings (default: one per event loop, at most one per CPU)")
	f.adminTLS.register(fs)
}

// config builds the node's configuration: the file, then the flags, then
// the environment for secrets not given otherwise.
func (f *runFlags) nodeConfig() (node.Config, error) {
	var c node.Config
	if f.config != "" {
		if err := node.LoadFile(f.config, &c); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return c, fmt.Errorf("--config: %w", err)
			}
			return c, err
		}
	}
	if err := f.ingestFlags.apply(&c); err != nil {
		return c, err
	}
	f.adminTLS.apply(&c)
	if f.admin != "" {
		c.Admin = f.admin
	}
	if err := applyOutputFlags(&c, f.outputs, f.pipeline); err != nil {
		return c, err
	}
	if f.tokenFile != "" {
		if _, err := os.Stat(f.tokenFile); err != nil {
			return c, fmt.Errorf("--admin-token-file: %w", err)
		}
		c.AdminTokenFile = f.tokenFile
	}
	c.AdminToken = os.Getenv("SLUICE_ADMIN_TOKEN")
	if f.logLevel != "" {
		c.LogLevel = f.logLevel
	}
	if c.Redis.Password == "" {
		c.Redis.Password = os.Getenv("SLUICE_REDIS_PASSWORD")
	}
	if f.redisPipeline != "" {
		c.Redis.Pipeline = f.redisPipeline
	}
	if f.pprof != "" {
		c.Pprof = f.pprof
	}
	if f.mediatorWorkers >= 0 {
		c.Mediator.Workers = f.mediatorWorkers
	}
	return c, c.Validate()
}

// runAll is `sluice run`: collector, mediator and admin API in one process.
func runAll(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", "[flags]", "Runs the all-in-one collector: listeners, mediator and admin API.", stderr)
	var f runFlags
	f.register(fs)
	if err := parseFlags(fs, args, 0, stdout); err != nil {
		return err
	}
	cfg, err := f.nodeConfig()
	if err != nil {
		return err
	}
	log, err := node.NewLogger(cfg.LogLevel, stderr)
	if err != nil {
		return err
	}
	n, err := node.New(cfg, stdout, log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)
	go func() {
		for {
			select {
			case <-hups:
				if err := n.ReloadTLS(); err != nil {
					log.Error("tls files reload failed; the loaded ones stay", "err", err)
				}
				if cfg.Pipeline == "" {
					continue
				}
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				v, err := n.Reload(rctx)
				cancel()
				if err != nil {
					log.Error("pipeline reload failed; the running pipeline stays", "file", cfg.Pipeline, "err", err)
					continue
				}
				log.Info("pipeline reloaded", "file", cfg.Pipeline, "version", v)
			case <-ctx.Done():
				return
			}
		}
	}()
	return n.Run(ctx)
}

// applyOutputFlags puts --output or --pipeline (not both) over the config
// file's outputs: `sluice run` and `sluice mediator` take them alike.
func applyOutputFlags(c *node.Config, outputs stringList, pipeline string) error {
	if pipeline != "" && len(outputs) > 0 {
		return errors.New("--output and --pipeline both given; name the outputs in the pipeline file")
	}
	if len(outputs) > 0 {
		c.Outputs, c.Pipeline = outputs, ""
	}
	if pipeline != "" {
		if _, err := os.Stat(pipeline); err != nil {
			return fmt.Errorf("--pipeline: %w", err)
		}
		c.Pipeline = pipeline
	}
	return nil
}
