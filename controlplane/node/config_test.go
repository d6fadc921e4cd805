package node

import (
	"github.com/sluice-flow/sluice/dataplane/pipeline"
	"github.com/sluice-flow/sluice/dataplane/yamlconf"
	"go.yaml.in/yaml/v3"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestConfigFile(t *testing.T) {
	var rc Config
	err := Load("test.yaml", []byte(`
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
	if len(rc.Listen) != 3 || rc.Listen[1] != "tcp://[::]:4739" || rc.Admin != "127.0.0.1:9090" ||
		len(rc.Outputs) != 2 || rc.LogLevel != "debug" || rc.ShutdownTimeout != 5*time.Second ||
		c.Loops != 3 || c.UDPReceiveBuffer != 8<<20 || !c.ScopeByPort || c.TemplateLifetime != 10*time.Minute ||
		c.RingSize != 1<<20 || c.Held.MaxAge != 2*time.Second || c.Held.PerExporterBytes != 1<<20 || c.Held.TotalBytes != 16<<20 {
		t.Fatalf("config not applied: %+v", rc)
	}
	if err := rc.Validate(); err != nil {
		t.Fatal(err)
	}
}

// wantConfigError returns a check that a config file is rejected with an
// error containing want.
func wantConfigError(t *testing.T) func(yaml, want string) {
	return func(yaml, want string) {
		t.Helper()
		var rc Config
		err := Load("c.yaml", []byte(yaml), &rc)
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
	f("mediator:\n  workers: -1\n", "line 2")
	f("listen:\n  - http://:80\n", "line 2")
	f("outputs: [kafka:x]\n", "line 1")
	f("collector:\n  ring_size: 12 parsecs\n", "line 2")
	f("collector:\n  unknown: 1\n", "line 2")
	f("listen:\n  - udp://:0\n", "port 0")
}

func TestEmptyConfigKeepsDefaults(t *testing.T) {
	var rc Config
	if err := Load("empty.yaml", nil, &rc); err != nil {
		t.Fatal(err)
	}
	if d := rc.withDefaults(); d.Admin != "127.0.0.1:8080" || len(d.Outputs) != 1 || d.Outputs[0] != "jsonl:-" ||
		d.ShutdownTimeout != 30*time.Second || d.LogLevel != "info" || d.Redis.StartWait != 5*time.Second {
		t.Fatalf("defaults changed: %+v", d)
	}
}

func TestConfigPipelineAndToken(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("  t0ken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var rc Config
	name := filepath.Join(dir, "sluice.yaml")
	if err := Load(name, []byte("pipeline: p.yaml\nadmin_token_file: token\n"), &rc); err != nil {
		t.Fatal(err)
	}
	if rc.Pipeline != filepath.Join(dir, "p.yaml") || rc.AdminTokenFile != filepath.Join(dir, "token") {
		t.Fatalf("pipeline %q token file %q: want the file's directory", rc.Pipeline, rc.AdminTokenFile)
	}
	rc = Config{}
	if err := Load(name, []byte("admin_token_file: missing\n"), &rc); err == nil || !strings.Contains(err.Error(), "admin_token_file") {
		t.Fatalf("missing token file: %v", err)
	}
}

// The pipeline shown for --output alone compiles to the same outputs.
func TestDefaultPipelineFile(t *testing.T) {
	outs := []string{"jsonl:-", `jsonl:/tmp/a "b".jsonl`, "discard"}
	c, err := pipeline.Parse(DefaultPipelineFile(outs))
	if err != nil {
		t.Fatalf("%v\n%s", err, DefaultPipelineFile(outs))
	}
	if len(c.Pipelines) != 1 || strings.Join(c.Pipelines[0].Outputs, "|") != strings.Join(outs, "|") {
		t.Fatalf("parsed %+v", c.Pipelines)
	}
}

// yamlKeys lists the dotted keys of every field with a yaml tag in t.
func yamlKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")
		if tag[0] == "-" || !f.IsExported() {
			continue
		}
		if len(tag) > 1 && tag[1] == "inline" {
			keys = append(keys, yamlKeys(f.Type, prefix)...)
			continue
		}
		key := prefix + tag[0]
		keys = append(keys, key)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
			keys = append(keys, yamlKeys(f.Type, key+".")...)
		}
	}
	return keys
}

// The README's config block and testdata/config/full.yaml name every key
// the config takes, and both load.
func TestEveryKeyDocumented(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "Every key, with its default:\n\n```yaml\n")
	if !ok {
		t.Fatal("README: config block not found")
	}
	block, _, _ := strings.Cut(after, "```")
	full, err := os.ReadFile("testdata/config/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, doc := range map[string]string{"README": block, "full.yaml": string(full)} {
		var c Config
		if err := Load(name, []byte(doc), &c); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		var root yaml.Node
		if err := yaml.Unmarshal([]byte(doc), &root); err != nil {
			t.Fatal(err)
		}
		for _, k := range yamlKeys(reflect.TypeOf(Config{}), "") {
			if yamlconf.Lookup(root.Content[0], k) == nil {
				t.Errorf("%s does not show the key %s", name, k)
			}
		}
	}
}
