package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/pipeline"
)

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("pipelines:\n  - stages:\n      - select: protocolIdentifier == 6\n    outputs: [discard]\n"), 0o644)
	os.WriteFile(bad, []byte("pipelines:\n  - stages:\n      - select: protocolIdentifier == 6\n      - project: {keep: [noSuchElement]}\n    outputs: [discard]\n"), 0o644)
	var out bytes.Buffer
	if err := runCheck([]string{good}, &out, io.Discard); err != nil || !strings.Contains(out.String(), "good.yaml: ok") {
		t.Fatalf("good file: %v %q", err, out.String())
	}
	out.Reset()
	err := runCheck([]string{good, bad}, &out, io.Discard)
	if err == nil || !strings.Contains(out.String(), "bad.yaml: pipeline: line 4: project: unknown element \"noSuchElement\"") {
		t.Fatalf("bad file: %v %q", err, out.String())
	}
}

// TestREADMEPipeline keeps the README's pipeline example valid: it parses,
// and compiles once the files it names exist.
func TestREADMEPipeline(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	sec := string(b)[strings.Index(string(b), "## Pipelines"):]
	m := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindStringSubmatch(sec)
	if m == nil {
		t.Fatal("no yaml block in the Pipelines section")
	}
	dir := t.TempDir()
	yml := m[1]
	for _, f := range []struct{ path, content string }{
		{"/etc/sluice/cryptopan.key", "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"},
		{"/etc/sluice/networks.csv", "prefix,asn,site\n10.0.0.0/8,64500,fra1\n"},
		{"/var/lib/sluice/flows.ipfix", ""},
	} {
		p := filepath.Join(dir, filepath.Base(f.path))
		os.WriteFile(p, []byte(f.content), 0o644)
		yml = strings.ReplaceAll(yml, f.path, p)
	}
	if _, err := pipeline.Parse([]byte(m[1])); err != nil {
		t.Fatalf("README example: %v", err)
	}
	path := filepath.Join(dir, "p.yaml")
	os.WriteFile(path, []byte(yml), 0o644)
	var out bytes.Buffer
	if err := runCheck([]string{path}, &out, io.Discard); err != nil {
		t.Fatalf("README example does not compile: %s", out.String())
	}
}
