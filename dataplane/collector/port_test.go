package collector_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/collector"
	"github.com/sluice-flow/sluice/dataplane/internal/testnet"
)

// runCollector starts a collector on listen and returns its Run error
// channel once it has booted or failed.
func runCollector(t *testing.T, cfg collector.Config, log *slog.Logger) (*collector.Collector, chan error) {
	t.Helper()
	c, err := collector.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Stop(ctx)
	})
	return c, errc
}

func waitBoot(t *testing.T, c *collector.Collector, errc chan error) {
	t.Helper()
	select {
	case <-c.Booted():
	case err := <-errc:
		t.Fatalf("collector did not start: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("collector did not start")
	}
}

// A second collector on a port the first holds must refuse to start,
// naming the address, unless both asked to share it.
func TestPortHeldByAnotherCollector(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			hp := net.JoinHostPort("127.0.0.1", strconv.Itoa(testnet.FreePort(t, "127.0.0.1")))
			cfg := collector.Config{Listen: []string{network + "://" + hp}, Loops: 1}
			first, errc := runCollector(t, cfg, nil)
			waitBoot(t, first, errc)

			second, errc2 := runCollector(t, cfg, nil)
			select {
			case err := <-errc2:
				if err == nil || !strings.Contains(err.Error(), hp) || !strings.Contains(err.Error(), "in use") {
					t.Fatalf("second collector: %v, want an error naming %s in use", err, hp)
				}
			case <-second.Booted():
				t.Fatal("second collector started on a port the first holds")
			case <-time.After(5 * time.Second):
				t.Fatal("second collector neither failed nor started")
			}
		})
	}
}

func TestPortSharedOnRequest(t *testing.T) {
	hp := net.JoinHostPort("127.0.0.1", strconv.Itoa(testnet.FreePort(t, "127.0.0.1")))
	cfg := collector.Config{Listen: []string{"udp://" + hp, "tcp://" + hp}, Loops: 1, SharePort: true}
	a, errA := runCollector(t, cfg, nil)
	waitBoot(t, a, errA)
	b, errB := runCollector(t, cfg, nil)
	waitBoot(t, b, errB)
}

// gnet's own logging goes through the collector's logger (stderr in
// sluice), never to standard output where records go.
func TestGnetLogsThroughLogger(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&lockedWriter{mu: &mu, w: &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	hp := net.JoinHostPort("127.0.0.1", strconv.Itoa(testnet.FreePort(t, "127.0.0.1")))
	c, errc := runCollector(t, collector.Config{Listen: []string{"udp://" + hp}, Loops: 1}, log)
	waitBoot(t, c, errc)
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		out := buf.String()
		mu.Unlock()
		if strings.Contains(out, "component=gnet") && strings.Contains(out, "Launching gnet") {
			if !strings.Contains(out, "level=DEBUG") {
				t.Fatalf("gnet's banner is not at debug level:\n%s", out)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gnet's banner did not reach the logger:\n%s", out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
