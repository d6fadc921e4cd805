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
	"github.com/sluice-flow/sluice/dataplane/collector"
)

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// runFlags are `sluice run`'s flags; each overrides the config file's key.
type runFlags struct {
	config, admin, pipeline, tokenFile, logLevel, redis, pprof, steer string
	redisPipeline, allowExporters, tlsCert, tlsKey, tlsClientCA       string
	adminTLSCert, adminTLSKey                                         string
	listens, outputs                                                  stringList
	loops                                                             int
	scopePort, stockUDP, sharePort                                    bool
	lifetime                                                          time.Duration
}

func (f *runFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "YAML config file; flags override it")
	fs.Var(&f.listens, "listen", "listener URL, repeatable: udp://:4739, tcp://[::]:4739 (default udp://:4739 and tcp://:4739)")
	fs.StringVar(&f.admin, "admin", "", "admin API address (default 127.0.0.1:8080; \"off\" disables it)")
	fs.Var(&f.outputs, "output", "output, repeatable: jsonl:- (stdout, default), jsonl:PATH, jsonl+tcp://HOST:PORT, ipfix+tcp://HOST:PORT, ipfix+udp://HOST:PORT, ipfix-file:PATH, discard")
	fs.StringVar(&f.pipeline, "pipeline", "", "pipeline file (YAML): stages and outputs; SIGHUP reloads it")
	fs.StringVar(&f.tokenFile, "admin-token-file", "", "file holding the admin API token that /api/v1/pipeline needs (or set SLUICE_ADMIN_TOKEN)")
	fs.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (default info)")
	fs.IntVar(&f.loops, "loops", -1, "event loops (default: one per CPU)")
	fs.BoolVar(&f.scopePort, "scope-port", false, "scope templates by exporter address and port")
	fs.BoolVar(&f.sharePort, "share-port", false, "share the listening ports with other processes that also ask for it (SO_REUSEPORT); without it a port another process holds stops the start")
	fs.DurationVar(&f.lifetime, "template-lifetime", 0, "lifetime of UDP templates not retransmitted (default 30m)")
	fs.StringVar(&f.redis, "redis", "", "share templates through Redis: host:port[,host:port...] (one node, or cluster nodes)")
	fs.StringVar(&f.redisPipeline, "redis-pipeline", "", "at start, put in force the pipeline the frontend keeps in Redis under this name (sluice:pipeline:<name>)")
	fs.StringVar(&f.pprof, "pprof", "", "serve net/http/pprof on this address, e.g. 127.0.0.1:6060 (off by default)")
	fs.StringVar(&f.steer, "steer", "", steerUsage)
	fs.BoolVar(&f.stockUDP, "stock-udp-read", false, "read one UDP datagram per wake-up as stock gnet does (no recvmmsg batches; for measurements)")
	fs.StringVar(&f.adminTLSCert, "admin-tls-cert", "", "serve the admin API over TLS with this certificate (PEM; reloaded when it changes)")
	fs.StringVar(&f.adminTLSKey, "admin-tls-key", "", "private key (PEM) of --admin-tls-cert")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "certificate (PEM) of tls:// listeners; reloaded when the file changes and on SIGHUP")
	fs.StringVar(&f.tlsKey, "tls-key", "", "private key (PEM) of tls:// listeners")
	fs.StringVar(&f.tlsClientCA, "tls-client-ca", "", "CA bundle (PEM) for mutual TLS on tls:// listeners: exporters must present a certificate it verifies")
	fs.StringVar(&f.allowExporters, "allow-exporters", "", "accept flow export only from these sources: CIDR[,CIDR...]; others are dropped before decoding and counted")
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
	if len(f.listens) > 0 {
		c.Listen = f.listens
	}
	if f.admin != "" {
		c.Admin = f.admin
	}
	if f.pipeline != "" && len(f.outputs) > 0 {
		return c, errors.New("--output and --pipeline both given; name the outputs in the pipeline file")
	}
	if len(f.outputs) > 0 {
		c.Outputs, c.Pipeline = f.outputs, ""
	}
	if f.pipeline != "" {
		if _, err := os.Stat(f.pipeline); err != nil {
			return c, fmt.Errorf("--pipeline: %w", err)
		}
		c.Pipeline = f.pipeline
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
	if f.loops >= 0 {
		c.Collector.Loops = f.loops
	}
	c.Collector.ScopeByPort = c.Collector.ScopeByPort || f.scopePort
	c.Collector.StockUDPRead = c.Collector.StockUDPRead || f.stockUDP
	c.Collector.SharePort = c.Collector.SharePort || f.sharePort
	if f.steer != "" {
		c.Collector.Steer = f.steer
	}
	if f.lifetime != 0 {
		c.Collector.TemplateLifetime = f.lifetime
	}
	if f.adminTLSCert != "" {
		c.AdminTLS.CertFile = f.adminTLSCert
	}
	if f.adminTLSKey != "" {
		c.AdminTLS.KeyFile = f.adminTLSKey
	}
	if f.tlsCert != "" {
		c.Collector.TLS.CertFile = f.tlsCert
	}
	if f.tlsKey != "" {
		c.Collector.TLS.KeyFile = f.tlsKey
	}
	if f.tlsClientCA != "" {
		c.Collector.TLS.ClientCAFile = f.tlsClientCA
	}
	if f.allowExporters != "" {
		ps, err := collector.ParsePrefixes(f.allowExporters)
		if err != nil {
			return c, fmt.Errorf("--allow-exporters: %w", err)
		}
		c.Collector.AllowExporters = ps
	}
	if f.redis != "" {
		addrs, err := node.ParseRedisAddrs(f.redis)
		if err != nil {
			return c, fmt.Errorf("--redis: %w", err)
		}
		c.Redis.Addrs = addrs
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
