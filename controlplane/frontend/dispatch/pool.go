package dispatch

import (
	"context"
	"log/slog"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// PoolConfig configures a Pool.
type PoolConfig struct {
	// Size is the number of worker processes. Required (> 0).
	Size int
	// Command returns a fresh, unstarted command for one worker process.
	Command func() *exec.Cmd
	// StopWait bounds how long Run waits for workers after SIGTERM before
	// killing them. Default 5s.
	StopWait time.Duration
	Log      *slog.Logger
}

// Pool keeps Size worker processes running: a process that exits (its job
// limit, a crash, or Kill) is started again, at once if it ran for a
// second or more, after a growing delay (up to 5s) if it keeps failing
// fast. Its methods are safe for concurrent use.
type Pool struct {
	cfg      PoolConfig
	mu       sync.Mutex
	procs    map[int]*exec.Cmd // by pid
	starts   atomic.Uint64
	restarts atomic.Uint64
}

// NewPool returns a pool; Run starts it.
func NewPool(cfg PoolConfig) *Pool {
	if cfg.Size <= 0 || cfg.Command == nil {
		panic("BUG: dispatch: pool without a size or a command")
	}
	if cfg.StopWait <= 0 {
		cfg.StopWait = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Pool{cfg: cfg, procs: map[int]*exec.Cmd{}}
}

// Run starts the processes and keeps them running until ctx ends, then
// stops them (SIGTERM, then SIGKILL after StopWait) and returns.
func (p *Pool) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range p.cfg.Size {
		wg.Add(1)
		go func() { defer wg.Done(); p.slot(ctx, i) }()
	}
	wg.Wait()
}

func (p *Pool) slot(ctx context.Context, i int) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		cmd := p.cfg.Command()
		started := time.Now()
		if err := cmd.Start(); err != nil {
			p.cfg.Log.Error("dispatch: cannot start a worker", "slot", i, "err", err)
		} else {
			p.starts.Add(1)
			pid := cmd.Process.Pid
			p.mu.Lock()
			p.procs[pid] = cmd
			p.mu.Unlock()
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			var err error
			select {
			case err = <-done:
			case <-ctx.Done():
				_ = cmd.Process.Signal(syscall.SIGTERM)
				select {
				case err = <-done:
				case <-time.After(p.cfg.StopWait):
					_ = cmd.Process.Kill()
					err = <-done
				}
			}
			p.mu.Lock()
			delete(p.procs, pid)
			p.mu.Unlock()
			if ctx.Err() != nil {
				return
			}
			p.restarts.Add(1)
			if err != nil {
				p.cfg.Log.Warn("dispatch: worker exited; restarting", "slot", i, "pid", pid, "err", err)
			}
			if time.Since(started) >= time.Second {
				backoff = 100 * time.Millisecond
				continue
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// Kill kills the pool's process pid (one that stopped answering, say); the
// pool starts another. It reports whether pid was one of the pool's.
func (p *Pool) Kill(pid int) bool {
	p.mu.Lock()
	cmd := p.procs[pid]
	p.mu.Unlock()
	if cmd == nil {
		return false
	}
	_ = cmd.Process.Kill()
	return true
}

// Pids returns the running processes' ids.
func (p *Pool) Pids() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]int, 0, len(p.procs))
	for pid := range p.procs {
		out = append(out, pid)
	}
	return out
}

// Restarts counts processes started again after one exited.
func (p *Pool) Restarts() uint64 { return p.restarts.Load() }
