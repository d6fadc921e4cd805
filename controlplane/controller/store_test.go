package controller

import (
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// The Redis store keeps the pipeline under sluice:pipeline:<name> and
// announces it on sluice:pipeline; a real redis-server, on a free port.
func TestRedisStore(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed (make test-deps)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := "127.0.0.1:" + strconv.Itoa(port)
	var s RedisStore
	waitFor(t, "redis-server", func() bool {
		s, err = NewRedisStore([]string{addr}, "", "", "", nil)
		return err == nil
	})
	defer s.Client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if f, err := s.Load(ctx); err != nil || f != nil {
		t.Fatalf("empty store: %q %v", f, err)
	}
	sub := s.Client.B().Subscribe().Channel(PipelineChannel).Build()
	got := make(chan string, 1)
	go s.Client.Receive(ctx, sub, func(m rueidis.PubSubMessage) { got <- m.Message })
	waitFor(t, "the subscription", func() bool {
		n, _ := s.Client.Do(ctx, s.Client.B().PubsubNumsub().Channel(PipelineChannel).Build()).AsIntMap()
		return n[PipelineChannel] == 1
	})
	if err := s.Save(ctx, []byte(goodPipeline), 4); err != nil {
		t.Fatal(err)
	}
	if f, err := s.Load(ctx); err != nil || string(f) != goodPipeline {
		t.Fatalf("load: %q %v", f, err)
	}
	raw, err := s.Client.Do(ctx, s.Client.B().Get().Key("sluice:pipeline:default").Build()).AsBytes()
	var sp storedPipeline
	if err != nil || json.Unmarshal(raw, &sp) != nil || sp.Version != 4 || sp.Pipeline != goodPipeline {
		t.Fatalf("key: %s %v", raw, err)
	}
	select {
	case name := <-got:
		if name != "default" {
			t.Errorf("announced %q", name)
		}
	case <-ctx.Done():
		t.Error("no announcement on " + PipelineChannel)
	}
}
