package frontend

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sluice-flow/sluice/controlplane/frontend/dispatch"
)

// WorkerConfig configures RunWorker (`sluice-api worker`).
type WorkerConfig struct {
	// Broker is the broker's endpoint. Required.
	Broker string
	// Heartbeat and Liveness as in Config.
	Heartbeat time.Duration
	Liveness  int
	// MaxJobs: the worker exits after that many jobs and its supervisor
	// starts a fresh one (bounded memory). Default 100; negative: no limit.
	MaxJobs int
	// EchoJobs runs the "echo" job type (Config.EchoJobs).
	EchoJobs bool
	Log      *slog.Logger
}

// RunWorker runs jobs from the broker with an (nil: echo only) until ctx
// ends or MaxJobs jobs are done.
func RunWorker(ctx context.Context, cfg WorkerConfig, an Analyzer) error {
	switch {
	case cfg.MaxJobs == 0:
		cfg.MaxJobs = 100
	case cfg.MaxJobs < 0:
		cfg.MaxJobs = 0
	}
	h := func(ctx context.Context, j dispatch.Job, progress func(float64)) ([]dispatch.Output, error) {
		if j.Type == echoType && cfg.EchoJobs {
			return runEcho(ctx, j.Params, progress)
		}
		if an == nil {
			return nil, errors.New("frontend: this worker runs no job of type " + j.Type)
		}
		return an.Run(ctx, j.Type, j.Files, j.Params, progress)
	}
	return dispatch.RunWorker(ctx, dispatch.WorkerConfig{Broker: cfg.Broker, Heartbeat: cfg.Heartbeat,
		Liveness: cfg.Liveness, MaxJobs: cfg.MaxJobs, Log: cfg.Log}, h)
}
