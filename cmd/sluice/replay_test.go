package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/collector"
	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/mediator"
	"github.com/sluice-flow/sluice/dataplane/offline/pcap"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) Close() error { return nil }
func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// withoutExporter drops the "exporter" key (the replaying socket's port
// differs from the capture's) and sorts the lines.
func withoutExporter(t *testing.T, out string) []string {
	t.Helper()
	var lines []string
	for line := range strings.Lines(out) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("bad JSON %q: %v", line, err)
		}
		delete(m, "exporter")
		// The collector's receive time: decode has none to give.
		delete(m, "time_received_ns")
		b, _ := json.Marshal(m)
		lines = append(lines, string(b))
	}
	slices.Sort(lines)
	return lines
}

// TestRunOutputMatchesDecode replays each exporter capture's datagrams into
// a running collector and checks that its JSON lines equal what `sluice
// decode` prints for the capture: the same records, the same values.
func TestRunOutputMatchesDecode(t *testing.T) {
	for file, facts := range ownCaptures(t) {
		if !strings.HasSuffix(file, ".pcap") || facts.Transport == "tcp" {
			continue
		}
		t.Run(file, func(t *testing.T) {
			path := filepath.Join(capturesDir, file)
			want, _ := decodeFiles(t, path)
			port := freeUDPPort(t)
			c, err := collector.New(collector.Config{Loops: 1,
				Listen: []string{"udp://127.0.0.1:" + strconv.Itoa(port)}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			buf := &lockedBuffer{}
			med := mediator.New(c.Rings(), []export.Output{export.NewJSONL("jsonl:test", buf)}, nil)
			ctx, cancel := context.WithCancel(context.Background())
			medDone := make(chan struct{})
			go func() { med.Run(ctx); close(medDone) }()
			runDone := make(chan error, 1)
			go func() { runDone <- c.Run(context.Background()) }()
			<-c.Booted()

			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r, err := pcap.NewReader(bufio.NewReader(f))
			if err != nil {
				t.Fatal(err)
			}
			conn, err := net.Dial("udp", "127.0.0.1:"+strconv.Itoa(port))
			if err != nil {
				t.Fatal(err)
			}
			var d pcap.Datagram
			for sent := 1; ; sent++ {
				if err := r.Next(&d); err == io.EOF {
					break
				} else if err != nil {
					t.Fatal(err)
				}
				if _, err := conn.Write(d.Payload); err != nil {
					t.Fatal(err)
				}
				// Keep capture order (templates redefined): the collector
				// has read this datagram before the next goes.
				for deadline := time.Now().Add(10 * time.Second); collectorPackets(c) < float64(sent); time.Sleep(50 * time.Microsecond) {
					if time.Now().After(deadline) {
						t.Fatalf("the collector did not read datagram %d", sent)
					}
				}
			}
			conn.Close()
			wantN := strings.Count(want, "\n")
			deadline := time.Now().Add(10 * time.Second)
			for med.Records() < uint64(wantN) && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			stopCtx, stopCancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer stopCancel()
			c.Stop(stopCtx)
			<-runDone
			cancel()
			<-medDone
			got := withoutExporter(t, buf.String())
			exp := withoutExporter(t, want)
			if len(got) != len(exp) {
				t.Fatalf("sluice run wrote %d records, decode %d", len(got), len(exp))
			}
			for i := range got {
				if got[i] != exp[i] {
					t.Fatalf("record differs:\n run    %s\n decode %s", got[i], exp[i])
				}
			}
		})
	}
}

// collectorPackets returns the datagrams and TCP messages c has read.
func collectorPackets(c *collector.Collector) float64 {
	n := 0.0
	for line := range strings.Lines(string(c.AppendMetrics(nil))) {
		if rest, ok := strings.CutPrefix(line, "sluice_packets_total{"); ok {
			v, _ := strconv.ParseFloat(strings.TrimSpace(rest[strings.LastIndexByte(rest, ' ')+1:]), 64)
			n += v
		}
	}
	return n
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}
