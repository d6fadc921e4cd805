package chaos

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

var (
	full   = flag.Bool("chaos.full", false, "the long run of make chaos: more load, three kills per scenario, longer down times")
	report = flag.String("chaos.report", "", "write the results table (Markdown) to this file")
	only   = flag.String("chaos.only", "", "run only these scenarios (comma-separated)")
)

// need fails under CI and skips elsewhere when a program is missing.
func need(t *testing.T, progs ...string) {
	t.Helper()
	for _, p := range progs {
		if _, err := exec.LookPath(p); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s not found (CI is set, so this is a failure; make test-deps installs it)", p)
			}
			t.Skipf("%s not found; make test-deps installs it", p)
		}
	}
}

// setup builds sluice and the traffic softflowd reads.
func setup(t *testing.T) *Env {
	t.Helper()
	need(t, "redis-server", "redis-cli", "softflowd")
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	env := &Env{Sluice: filepath.Join(dir, "sluice"), Traffic: filepath.Join(dir, "traffic.pcap"), Dir: dir, Logf: t.Logf}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		goCmd = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	for _, args := range [][]string{
		{"build", "-o", env.Sluice, "./cmd/sluice"},
		{"run", "./testdata/exporters/trafficpcap", "-out", env.Traffic, "-seed", "1"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		cmd := exec.CommandContext(ctx, goCmd, args...)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return env
}

// TestChaos kills each part of Sluice with SIGKILL under load from
// `sluice gen` (UDP and TCP) and softflowd (TCP), starts it again, and
// accounts for every record: TCP records are lost only in flight to a
// process that died with them, UDP records exactly as the sequence numbers
// and the counters say, nothing is repeated beyond what a restarted
// mediator counts as replayed, and each part is back within the deadline.
// By default one short round (a few seconds a scenario); -chaos.full is
// make chaos.
func TestChaos(t *testing.T) {
	env := setup(t)
	started := time.Now().UTC()
	loadBefore, _ := os.ReadFile("/proc/loadavg")
	load := Load{Rate: 2000, Cycles: 1, Down: 700 * time.Millisecond, Steady: time.Second, Softflowd: true}
	if *full {
		load = Load{Rate: 10000, Cycles: 3, Down: 2 * time.Second, Steady: 5 * time.Second, Softflowd: true}
	}
	var results []*Result
	for _, name := range Scenarios {
		if *only != "" && !strings.Contains(","+*only+",", ","+name+",") {
			continue
		}
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			r, err := env.Run(name, load)
			if err != nil {
				t.Fatal(err)
			}
			results = append(results, r)
			t.Logf("%s in %v: %+v", name, time.Since(start).Round(time.Millisecond), *r)
			for _, p := range r.Problems() {
				t.Errorf("%s: %s", name, p)
			}
		})
	}
	table := Table(results)
	t.Logf("\n%s", table)
	if *report != "" {
		loadAfter, _ := os.ReadFile("/proc/loadavg")
		head := fmt.Sprintf("Run %s to %s, load %d records/s per gen (UDP and TCP, 2 exporters each), %d cycles, down %v, steady %v; load average before: %s, after: %s\n\n",
			started.Format(time.RFC3339), time.Now().UTC().Format(time.RFC3339), load.Rate, load.Cycles, load.Down, load.Steady,
			strings.TrimSpace(string(loadBefore)), strings.TrimSpace(string(loadAfter)))
		if err := os.WriteFile(*report, []byte(head+table), 0o644); err != nil {
			t.Error(err)
		}
	}
}
