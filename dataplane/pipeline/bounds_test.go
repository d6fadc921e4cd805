package pipeline

import (
	"strings"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/export"
)

// Files a pipeline names are read with bounds, and names stay safe as
// metric labels.
func TestCompileBounds(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"anonymise: {method: cryptopan, key_file: /dev/zero}", "not a regular file"},
		{"enrich: {networks: [{file: /dev/zero, address: [sourceIPv4Address], columns: {asn: bgpSourceAsNumber}}]}", "not a regular file"},
		{"anonymise: {method: cryptopan, key_file: /proc/self/exe}", "more than 4096"},
	} {
		cfg, err := Parse([]byte("pipelines:\n  - stages:\n      - " + c.src + "\n    outputs: [discard]\n"))
		if err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		_, err = Compile(cfg, NewOutputSet(func(string) (export.Output, error) { return &export.Discard{}, nil }))
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "line 3") {
			t.Errorf("%s: %v, want %q at line 3", c.src, err, c.want)
		}
	}
	for _, name := range []string{`"a\tb"`, `"a\"b"`, strings.Repeat("x", 65), `"ä"`} {
		cfg, err := Parse([]byte("pipelines:\n  - name: " + name + "\n    outputs: [discard]\n"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := Compile(cfg, NewOutputSet(func(string) (export.Output, error) { return &export.Discard{}, nil })); err == nil || !strings.Contains(err.Error(), "pipeline name") {
			t.Errorf("name %s accepted: %v", name, err)
		}
	}
}
