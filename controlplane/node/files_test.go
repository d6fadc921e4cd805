package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/pipeline"
)

// Files named by a pipeline PUT through the admin API are confined to
// api_files' directories: key files and networks tables to read_dir,
// output files to write_dir, with "..", symbolic links and absolute paths
// outside refused (400, naming the file) and the running pipeline kept.
func TestAPIPipelineFilesConfined(t *testing.T) {
	base := t.TempDir()
	readDir, writeDir, outside := filepath.Join(base, "etc"), filepath.Join(base, "var"), filepath.Join(base, "other")
	for _, d := range []string{readDir, writeDir, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	key := strings.Repeat("0123456789abcdef", 4) + "\n"
	nets := "prefix,asn\n198.51.100.0/24,64500\n"
	for _, d := range []string{readDir, outside} {
		if err := os.WriteFile(filepath.Join(d, "cryptopan.key"), []byte(key), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "nets.csv"), []byte(nets), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(outside, "cryptopan.key"), filepath.Join(readDir, "link.key")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(writeDir, "escape")); err != nil {
		t.Fatal(err)
	}

	cfg := Config{
		Listen: []string{"udp://" + freeUDPTCP(t)}, Admin: "127.0.0.1:0", AdminToken: "secret",
		Outputs: []string{"discard"}, APIFiles: pipeline.FileRule{ReadDir: readDir, WriteDir: writeDir},
	}
	cfg.Collector.Loops = 1
	n, err := New(cfg, io.Discard, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	select {
	case <-n.Booted():
	case <-time.After(10 * time.Second):
		t.Fatal("node did not start")
	}
	put := func(body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPut, "http://"+n.AdminAddr()+"/api/v1/pipeline", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	anon := func(keyFile, out string) string {
		return fmt.Sprintf("pipelines:\n  - stages:\n      - anonymise: {method: cryptopan, key_file: %q}\n    outputs: [%q]\n", keyFile, out)
	}
	enrich := func(file string) string {
		return fmt.Sprintf("pipelines:\n  - stages:\n      - enrich:\n          networks:\n            - {file: %q, address: sourceIPv4Address, columns: {asn: bgpSourceAsNumber}}\n    outputs: [discard]\n", file)
	}
	okOut := filepath.Join(writeDir, "out.jsonl")
	for _, tc := range []struct {
		name, body, refused string // refused: the path the error names ("" = accepted)
	}{
		{"inside", anon(filepath.Join(readDir, "cryptopan.key"), "jsonl:"+okOut), ""},
		{"key outside", anon(filepath.Join(outside, "cryptopan.key"), "discard"), "cryptopan.key"},
		{"key through ..", anon(readDir+"/../other/cryptopan.key", "discard"), "../other/cryptopan.key"},
		{"key through a link", anon(filepath.Join(readDir, "link.key"), "discard"), "link.key"},
		{"system file", anon("/etc/shadow", "discard"), "/etc/shadow"},
		{"networks outside", enrich(filepath.Join(outside, "nets.csv")), "nets.csv"},
		{"networks inside", enrich(filepath.Join(readDir, "nets.csv")), ""},
		{"jsonl outside", anon(filepath.Join(readDir, "cryptopan.key"), "jsonl:"+filepath.Join(outside, "x.jsonl")), "x.jsonl"},
		{"ipfix-file through a link", anon(filepath.Join(readDir, "cryptopan.key"), "ipfix-file:"+filepath.Join(writeDir, "escape", "x.ipfix")), "x.ipfix"},
		{"named output outside", "outputs:\n  f: \"ipfix-file:" + filepath.Join(outside, "y.ipfix") + "\"\npipelines:\n  - outputs: [f]\n", "y.ipfix"},
		{"output written to the read dir", anon(filepath.Join(readDir, "cryptopan.key"), "jsonl:"+filepath.Join(readDir, "z.jsonl")), "z.jsonl"},
	} {
		code, body := put(tc.body)
		switch {
		case tc.refused == "" && code != http.StatusOK:
			t.Errorf("%s: %d %s, want 200", tc.name, code, body)
		case tc.refused != "" && (code != http.StatusBadRequest || !strings.Contains(body, tc.refused)):
			t.Errorf("%s: %d %s, want 400 naming %s", tc.name, code, body, tc.refused)
		}
	}
	for _, f := range []string{"x.jsonl", "y.ipfix"} {
		if _, err := os.Stat(filepath.Join(outside, f)); err == nil {
			t.Errorf("a refused pipeline created %s", f)
		}
	}
	if _, err := os.Stat(okOut); err != nil {
		t.Errorf("the accepted output file: %v", err)
	}
}

// The pipeline file given at start is the operator's: not confined.
func TestStartPipelineNotConfined(t *testing.T) {
	dir := t.TempDir()
	pipe := filepath.Join(dir, "p.yaml")
	out := filepath.Join(dir, "out.jsonl")
	if err := os.WriteFile(pipe, []byte("pipelines:\n  - outputs: [\"jsonl:"+out+"\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Listen: []string{"udp://" + freeUDPTCP(t)}, Admin: "off", Pipeline: pipe}
	n, err := New(cfg, io.Discard, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("a start pipeline writing outside api_files.write_dir: %v", err)
	}
	if _, err := os.Stat(out); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = n.Run(ctx)
}
