package dbus

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DaemonConfig configures the pod's bus daemon. The zero value, with Dir
// set, is the default.
type DaemonConfig struct {
	// Dir holds the socket (Dir/bus) and the generated configuration
	// (Dir/bus.conf). Required.
	Dir string
	// Binary is the dbus-daemon to run. Default: dbus-daemon on $PATH.
	Binary string
	// UID is the one user allowed to connect. Default: the caller's.
	UID int
	// MaxMessageSize bounds one message. Default: 4 MiB (a pipeline file
	// is at most MaxPipelineSize).
	MaxMessageSize int
	// RestartBackoff is the first wait before restarting a daemon that
	// died, doubled up to 5 s while it keeps dying within a second of its
	// start. Default: 100 ms.
	RestartBackoff time.Duration
}

// Daemon is a dbus-daemon the controller runs and restarts when it dies.
// Start and Run belong to one goroutine; Address, PID and Restarts are safe
// for concurrent use.
type Daemon struct {
	cfg      DaemonConfig
	log      *slog.Logger
	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{} // closed when cmd exits
	restarts atomic.Uint64
}

// NewDaemon checks cfg and writes the daemon's configuration.
func NewDaemon(cfg DaemonConfig, log *slog.Logger) (*Daemon, error) {
	if cfg.Dir == "" {
		return nil, errors.New("dbus: daemon: no directory")
	}
	if cfg.Binary == "" {
		cfg.Binary = "dbus-daemon"
	}
	if cfg.UID == 0 && os.Getuid() != 0 {
		cfg.UID = os.Getuid()
	}
	if cfg.MaxMessageSize == 0 {
		cfg.MaxMessageSize = 4 << 20
	}
	if cfg.RestartBackoff == 0 {
		cfg.RestartBackoff = 100 * time.Millisecond
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("dbus: daemon: %w", err)
	}
	d := &Daemon{cfg: cfg, log: log}
	if err := os.WriteFile(d.configPath(), []byte(DaemonPolicy(d.socketPath(), cfg.UID, cfg.MaxMessageSize)), 0o640); err != nil {
		return nil, fmt.Errorf("dbus: daemon: %w", err)
	}
	return d, nil
}

func (d *Daemon) socketPath() string { return filepath.Join(d.cfg.Dir, "bus") }
func (d *Daemon) configPath() string { return filepath.Join(d.cfg.Dir, "bus.conf") }

// Address is the bus's D-Bus address, unix:path=Dir/bus.
func (d *Daemon) Address() string { return "unix:path=" + d.socketPath() }

// Restarts counts the restarts after the daemon died.
func (d *Daemon) Restarts() uint64 { return d.restarts.Load() }

// PID returns the running daemon's process ID (0 when none runs).
func (d *Daemon) PID() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil || d.cmd.Process == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// DaemonPolicy is the daemon's configuration: listen on socket with
// EXTERNAL authentication; only uid may connect; its connections may own
// io.sluice.* names and no others, and may call, signal and monitor
// freely among themselves.
func DaemonPolicy(socket string, uid, maxMessage int) string {
	u := strconv.Itoa(uid)
	return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>sluice</type>
  <listen>unix:path=` + html.EscapeString(socket) + `</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <deny user="*"/>
    <allow user="` + u + `"/>
    <deny own="*"/>
    <allow own_prefix="io.sluice"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
  <limit name="max_message_size">` + strconv.Itoa(maxMessage) + `</limit>
  <limit name="max_completed_connections">256</limit>
  <limit name="max_connections_per_user">256</limit>
  <limit name="max_match_rules_per_connection">1024</limit>
</busconfig>
`
}

// Start starts the daemon and returns once it listens.
func (d *Daemon) Start(ctx context.Context) error {
	// A daemon killed leaves its socket behind; it would refuse to bind.
	if err := os.Remove(d.socketPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("dbus: daemon: %w", err)
	}
	cmd := exec.Command(d.cfg.Binary, "--nofork", "--nopidfile", "--nosyslog", "--config-file="+d.configPath(), "--print-address=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr strings.Builder
	cmd.Stderr = &limitedWriter{w: &stderr, n: 4096}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("dbus: daemon: %w", err)
	}
	exited := make(chan struct{})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			addr <- sc.Text()
		}
		close(addr)
		for sc.Scan() {
		}
	}()
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	select {
	case a, ok := <-addr:
		if !ok || a == "" {
			<-exited
			return fmt.Errorf("dbus: daemon exited before listening: %s", strings.TrimSpace(stderr.String()))
		}
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-exited
		return ctx.Err()
	}
	d.mu.Lock()
	d.cmd, d.exited = cmd, exited
	d.mu.Unlock()
	d.log.Info("bus daemon listening", "address", d.Address(), "pid", cmd.Process.Pid)
	return nil
}

// Run supervises the started daemon until ctx ends, restarting it when it
// dies, then stops it.
func (d *Daemon) Run(ctx context.Context) {
	backoff := d.cfg.RestartBackoff
	for {
		d.mu.Lock()
		exited, cmd := d.exited, d.cmd
		d.mu.Unlock()
		started := time.Now()
		select {
		case <-ctx.Done():
			if cmd != nil {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-exited:
				case <-time.After(2 * time.Second):
					_ = cmd.Process.Kill()
					<-exited
				}
			}
			return
		case <-exited:
		}
		if time.Since(started) > time.Second {
			backoff = d.cfg.RestartBackoff
		}
		d.log.Warn("bus daemon died; restarting", "state", cmd.ProcessState.String(), "after", backoff)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
			if err := d.Start(ctx); err != nil {
				d.log.Warn("bus daemon restart failed", "err", err)
				continue
			}
			d.restarts.Add(1)
			break
		}
	}
}

// limitedWriter keeps the first n bytes written to it.
type limitedWriter struct {
	mu sync.Mutex
	w  *strings.Builder
	n  int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.n - l.w.Len(); room > 0 {
		l.w.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
