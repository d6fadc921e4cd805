//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseMetrics(t *testing.T) {
	m := parseMetrics(`# HELP x
# TYPE sluice_records_total counter
sluice_records_total 1.5e+06
sluice_dropped_records_total{reason="ring_full"} 10
sluice_dropped_records_total{reason="shutdown"} 2
goflow2_flow_process_nf_flowset_records_total{router="127.0.0.1",type="DataFlowSet",version="10"} 300
goflow2_flow_process_nf_flowset_records_total{router="127.0.0.1",type="TemplateFlowSet",version="10"} 4
odd{a="x\"y, z",b="2"} 7
`)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"sluice_records_total", nil, 1.5e6},
		{"sluice_dropped_records_total", nil, 12},
		{"sluice_dropped_records_total", []string{"reason", "ring_full"}, 10},
		{"goflow2_flow_process_nf_flowset_records_total", []string{"type", "DataFlowSet"}, 300},
		{"odd", []string{"a", `x"y, z`, "b", "2"}, 7},
		{"missing", nil, 0},
	} {
		if got := m.sum(c.name, c.labels...); got != c.want {
			t.Errorf("sum(%s, %v) = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func TestGenBatch(t *testing.T) {
	r := &runner{cfg: config{records: 30, exporters: 4, genBurst: time.Millisecond}}
	for _, c := range []struct {
		rate float64
		want int
	}{{0, 64}, {12000, 1}, {360000, 3}, {10e6, 64}, {2.4e6, 20}} {
		if got := r.genBatch(c.rate); got != c.want {
			t.Errorf("genBatch(%v) = %d, want %d", c.rate, got, c.want)
		}
	}
}

func TestWriteSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "RESULTS.md")
	r := &runner{cfg: config{resultsMD: path}}
	if err := r.writeSection("run", "first\n"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	text := strings.Replace(string(b), "# Sluice performance results", "# Results\n\nhand-written intro", 1) + "\n## Analysis\n\nkept\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.writeSection("run", "second\n"); err != nil {
		t.Fatal(err)
	}
	if err := r.writeSection("compare", "third\n"); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	got := string(b)
	for _, want := range []string{"hand-written intro", "second\n<!-- perf:run:end -->", "## Analysis\n\nkept", "third\n<!-- perf:compare:end -->"} {
		if !strings.Contains(got, want) {
			t.Errorf("RESULTS.md lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "first") {
		t.Errorf("old section kept:\n%s", got)
	}
}
