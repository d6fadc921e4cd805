package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sluice-flow/sluice/controlplane/controller"
	"github.com/sluice-flow/sluice/controlplane/dbus"
	"github.com/sluice-flow/sluice/controlplane/node"
)

// The D-Bus side of `sluice collector` and `sluice mediator`.
func init() { node.RegisterBus(dbus.NodeBus{}) }

// runController is `sluice controller`: the pod's bus daemon and HTTP API.
func runController(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("controller", "[flags]", "Runs the split pod's controller: its private dbus-daemon and its HTTP API.", stderr)
	var cfg controller.Config
	var redis, tokenFile, logLevel, pipelineName, service string
	fs.StringVar(&cfg.BusDir, "bus-dir", "/run/sluice", "directory of the bus socket (DIR/bus) and its configuration")
	fs.StringVar(&cfg.API, "api", ":8080", "HTTP API address")
	fs.StringVar(&redis, "redis", "", "keep the pipeline in Redis (sluice:pipeline:<--pipeline-name>): host:port[,host:port...]")
	fs.StringVar(&service, "service", "", "NAMESPACE/NAME of the pods' Service: a listener added through the API adds its port there (through the Kubernetes API as the pod's service account; off when empty)")
	fs.StringVar(&pipelineName, "pipeline-name", "default", "the pipeline's name in Redis: the frontend's sluice-api serve --pipeline-name")
	fs.StringVar(&cfg.StateDir, "state-dir", "/var/lib/sluice", "volume for the pipeline without --redis")
	fs.StringVar(&tokenFile, "token-file", "", "file holding the API token (or set SLUICE_ADMIN_TOKEN)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	var adminTLS adminTLSFlags
	adminTLS.register(fs)
	var redisTLS redisTLSFlags
	redisTLS.register(fs)
	if err := parseFlags(fs, args, 0, stdout); err != nil {
		return err
	}
	if (adminTLS.cert == "") != (adminTLS.key == "") {
		return usageError{fmt.Errorf("--admin-tls-cert and --admin-tls-key go together")}
	}
	cfg.TLSCertFile, cfg.TLSKeyFile = adminTLS.cert, adminTLS.key
	cfg.Token = os.Getenv("SLUICE_ADMIN_TOKEN")
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil || strings.TrimSpace(string(b)) == "" {
			return fmt.Errorf("--token-file: %v", err)
		}
		cfg.Token = strings.TrimSpace(string(b))
	}
	log, err := node.NewLogger(logLevel, stderr)
	if err != nil {
		return usageError{err}
	}
	if redis != "" {
		addrs, err := node.ParseRedisAddrs(redis)
		if err != nil {
			return usageError{fmt.Errorf("--redis: %w", err)}
		}
		tc, err := redisTLS.config()
		if err != nil {
			return usageError{err}
		}
		if cfg.Store, err = controller.NewRedisStore(addrs, "", os.Getenv("SLUICE_REDIS_PASSWORD"), pipelineName, tc); err != nil {
			return err
		}
	}
	if service != "" {
		if cfg.Service, err = servicePorts(service); err != nil {
			return usageError{fmt.Errorf("--service: %w", err)}
		}
	}
	c, err := controller.New(cfg, log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return c.Run(ctx)
}
