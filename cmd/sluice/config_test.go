package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigFile(t *testing.T) {
	rc := defaultRunConfig()
	err := applyConfig("test.yaml", []byte(`
listen:
  - udp://:4739
  - tcp://[::]:4739
  - udp://127.0.0.1:2055
admin: 127.0.0.1:9090
outputs: [discard, "jsonl:/tmp/x.jsonl"]
log_level: debug
shutdown_timeout: 5s
collector:
  loops: 3
  udp_receive_buffer: 8MiB
  scope_by_port: true
  template_lifetime: 10m
  ring_size: 1048576
  held:
    max_age: 2s
    per_exporter_bytes: 1MiB
    total_bytes: 16MiB
`), &rc)
	if err != nil {
		t.Fatal(err)
	}
	c := rc.Collector
	if len(c.Listen) != 3 || c.Listen[1] != "tcp://[::]:4739" || rc.Admin != "127.0.0.1:9090" ||
		len(rc.Outputs) != 2 || rc.LogLevel != "debug" || rc.Shutdown != 5*time.Second ||
		c.Loops != 3 || c.UDPReceiveBuffer != 8<<20 || !c.ScopeByPort || c.TemplateLifetime != 10*time.Minute ||
		c.RingSize != 1<<20 || c.Held.MaxAge != 2*time.Second || c.Held.PerExporterBytes != 1<<20 || c.Held.TotalBytes != 16<<20 {
		t.Fatalf("config not applied: %+v", rc)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

// wantConfigError returns a check that a config file is rejected with an
// error containing want.
func wantConfigError(t *testing.T) func(yaml, want string) {
	return func(yaml, want string) {
		t.Helper()
		rc := defaultRunConfig()
		err := applyConfig("c.yaml", []byte(yaml), &rc)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config %q: error %v, want it to contain %q", yaml, err, want)
		}
	}
}

func TestConfigErrorsNameTheLine(t *testing.T) {
	f := wantConfigError(t)
	f("listen: [udp://:4739]\nlisten_typo: 1\n", "line 2")
	f("collector:\n  held:\n    max_age: soon\n", "line 3")
	f("collector:\n  loops: -1\n", "line 2")
	f("listen:\n  - http://:80\n", "line 2")
	f("outputs: [kafka:x]\n", "line 1")
	f("collector:\n  ring_size: 12 parsecs\n", "line 2")
	f("collector:\n  unknown: 1\n", "line 2")
	f("listen:\n  - udp://:0\n", "port 0")
}

func TestEmptyConfigKeepsDefaults(t *testing.T) {
	rc := defaultRunConfig()
	if err := applyConfig("empty.yaml", nil, &rc); err != nil {
		t.Fatal(err)
	}
	if rc.Admin != "127.0.0.1:8080" || len(rc.Outputs) != 1 || rc.Outputs[0] != "jsonl:-" {
		t.Fatalf("defaults changed: %+v", rc)
	}
}

func TestConfigPipelineAndToken(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("  t0ken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rc := defaultRunConfig()
	name := filepath.Join(dir, "sluice.yaml")
	if err := applyConfig(name, []byte("pipeline: p.yaml\nadmin_token_file: token\n"), &rc); err != nil {
		t.Fatal(err)
	}
	if rc.Pipeline != filepath.Join(dir, "p.yaml") || rc.AdminToken != "t0ken" {
		t.Fatalf("pipeline %q token %q: want the file's directory and the trimmed token", rc.Pipeline, rc.AdminToken)
	}
	rc = defaultRunConfig()
	if err := applyConfig(name, []byte("admin_token_file: missing\n"), &rc); err == nil || !strings.Contains(err.Error(), "admin_token_file") {
		t.Fatalf("missing token file: %v", err)
	}
}
