package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Help is not an error: every way of asking exits 0 with the usage on
// standard output.
func TestHelpExitsZero(t *testing.T) {
	f := func(want string, args ...string) {
		t.Helper()
		var out, errb bytes.Buffer
		if code := mainExit(args, &out, &errb); code != 0 {
			t.Errorf("sluice %s: exit %d, stderr %q", strings.Join(args, " "), code, errb.String())
		}
		if !strings.Contains(out.String(), want) {
			t.Errorf("sluice %s: stdout %q, want it to contain %q", strings.Join(args, " "), out.String(), want)
		}
		if strings.Contains(errb.String(), "help requested") {
			t.Errorf("sluice %s: stderr %q", strings.Join(args, " "), errb.String())
		}
	}
	for _, c := range []string{"run", "gen", "decode", "check"} {
		f("usage: sluice "+c, c, "--help")
		f("usage: sluice "+c, c, "-h")
		f("usage: sluice "+c, "help", c)
	}
	f("commands:", "help")
	f("commands:", "--help")
	f("usage: sluice run", "run", "--listen", "udp://:4739", "--help")
	f(runtime.Version(), "version")
	f(runtime.Version(), "--version")
	f(runtime.Version(), "run", "--version")
}

func TestUsageErrors(t *testing.T) {
	f := func(code int, want string, args ...string) {
		t.Helper()
		var out, errb bytes.Buffer
		if got := mainExit(args, &out, &errb); got != code {
			t.Errorf("sluice %s: exit %d, want %d (stderr %q)", strings.Join(args, " "), got, code, errb.String())
		}
		if !strings.Contains(errb.String(), want) {
			t.Errorf("sluice %s: stderr %q, want it to contain %q", strings.Join(args, " "), errb.String(), want)
		}
	}
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.yaml")
	f(2, "unknown command", "nope")
	f(2, "unknown command", "help", "nope")
	f(2, "flag provided but not defined", "run", "--nope")
	f(2, "unexpected argument", "run", "extra")
	f(2, "missing arguments", "check")
	f(2, "missing arguments", "decode")
	f(1, "--config", "run", "--config", missing)
	f(1, "--pipeline", "run", "--pipeline", missing)
	f(1, "--admin-token-file", "run", "--admin-token-file", missing)
	f(1, "--redis", "run", "--redis", "nope")
	f(1, "--output and --pipeline", "run", "--output", "discard", "--pipeline", missing)
	typo := filepath.Join(dir, "typo.yaml")
	if err := os.WriteFile(typo, []byte("collector:\n  lops: 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if mainExit([]string{"run", "--config", typo}, &out, &errb) != 1 {
		t.Fatal("a config typo did not fail")
	}
	msg := errb.String()
	if !strings.Contains(msg, "line 2") || !strings.Contains(msg, `unknown key "lops"`) ||
		strings.Contains(msg, "main.") || strings.Contains(msg, "collector.Config") || strings.Contains(msg, "type ") {
		t.Fatalf("config typo: %q, want the line and the key without Go type names", msg)
	}
}

// Standard output carries records and nothing else: `sluice run | jq`
// reads every line. gnet's banner went there once.
func TestRunStdoutOnlyRecords(t *testing.T) {
	env := chainEnv(t)
	l, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.LocalAddr().(*net.UDPAddr).Port
	l.Close()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(env.sluice, "run", "--listen", "udp://"+addr, "--admin", "off", "--log-level", "debug")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	booted := make(chan struct{})
	var errMu sync.Mutex
	var errLog strings.Builder
	errDone := make(chan struct{})
	go func() {
		defer close(errDone)
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			errMu.Lock()
			errLog.WriteString(sc.Text() + "\n")
			errMu.Unlock()
			if strings.Contains(sc.Text(), "msg=listening") {
				once.Do(func() { close(booted) })
			}
		}
	}()
	select {
	case <-booted:
	case <-time.After(20 * time.Second):
		t.Fatal("sluice run did not start")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sent := time.Now().UnixNano()
	genOut, err := exec.CommandContext(ctx, env.sluice, "gen", "--addr", addr, "--count", "2").Output()
	if err != nil {
		t.Fatalf("sluice gen: %v\n%s", err, genOut)
	}
	var sum struct {
		Records int `json:"records"`
	}
	if err := json.Unmarshal(genOut, &sum); err != nil || sum.Records == 0 {
		t.Fatalf("sluice gen printed %q: %v", genOut, err)
	}
	records := sum.Records
	lines := make(chan string, records*2)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	got := 0
	deadline := time.After(20 * time.Second)
	for got < records {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("stdout closed after %d lines", got)
			}
			var rec struct {
				Exporter string `json:"exporter"`
				Received int64  `json:"time_received_ns"`
			}
			if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Exporter == "" {
				t.Fatalf("stdout line %d is not a record: %q", got+1, line)
			}
			if now := time.Now().UnixNano(); rec.Received < sent || rec.Received > now {
				t.Fatalf("time_received_ns %d not between the send (%d) and now (%d)", rec.Received, sent, now)
			}
			got++
		case <-deadline:
			t.Fatalf("%d of %d records on stdout", got, records)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	extra := 0
	for line := range lines {
		if extra++; extra == 1 {
			t.Errorf("after the %d records, stdout had %q", records, line)
		}
	}
	if extra > 0 {
		t.Errorf("%d lines after the records", extra)
	}
	<-errDone
	if err := cmd.Wait(); err != nil {
		t.Fatalf("sluice run: %v", err)
	}
	errMu.Lock()
	defer errMu.Unlock()
	if !strings.Contains(errLog.String(), "component=gnet") {
		t.Errorf("gnet's log lines did not reach stderr:\n%s", errLog.String())
	}
}
