package fleet

import (
	"errors"
	"strings"
	"testing"
)

func TestParseStatic(t *testing.T) {
	f := func(in string, want ...string) {
		t.Helper()
		st, err := ParseStatic(in)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		var got []string
		for _, m := range st {
			got = append(got, m.Name+"="+m.URL)
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("%q: %v, want %v", in, got, want)
		}
	}
	f("http://127.0.0.1:8080", "127.0.0.1:8080=http://127.0.0.1:8080")
	f("10.0.0.1:8080, https://[::1]:9000", "10.0.0.1:8080=http://10.0.0.1:8080", "[::1]:9000=https://[::1]:9000")
	for _, bad := range []string{"", ",", "http://host", "ftp://h:1", "http://a:1,http://a:1", "http://:80x"} {
		if _, err := ParseStatic(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := Validate([]byte("pipelines:\n  - name: a\n    outputs: [discard]\n")); err != nil {
		t.Fatal(err)
	}
	f := func(file string, line int) {
		t.Helper()
		err := Validate([]byte(file))
		var ie *InvalidError
		if !errors.As(err, &ie) || ie.Line != line {
			t.Fatalf("%q: %v (line %d), want line %d", file, err, ie.Line, line)
		}
	}
	f("pipelines:\n  - name: a\n    outputs: [nonsense://x]\n", 2)
	f("pipelines:\n  - name: a\n    stages:\n      - bogus: 1\n    outputs: [discard]\n", 4)
	f("pipelines: [\n", 1)
	// An output is checked, not opened: a path nobody can write passes
	// here (the pod that cannot open it refuses it, per pod).
	if err := Validate([]byte("pipelines:\n  - name: a\n    outputs: [\"jsonl:/nonexistent/dir/x\"]\n")); err != nil {
		t.Fatal(err)
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"default", "a", "edge-1", strings.Repeat("a", 63)} {
		if !ValidName(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "A", "a:b", "-a", "a-", strings.Repeat("a", 64), "a/b", "a.b"} {
		if ValidName(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# TYPE sluice_records_total counter
sluice_records_total 1500
# TYPE sluice_dropped_records_total counter
sluice_dropped_records_total{reason="ring_full"} 7
sluice_dropped_records_total{reason="other"} 0
# TYPE sluice_sequence_lost_total counter
sluice_sequence_lost_total{exporter="a"} 3
sluice_sequence_lost_total{exporter="b"} 4
`
	pm, err := parseMetrics([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if pm.records != 1500 || pm.sequenceLost != 7 || len(pm.drops) != 1 || pm.drops["records/ring_full"] != 7 {
		t.Fatalf("%+v", pm)
	}
	if _, err := parseMetrics([]byte("\x00garbage{{\n")); err == nil {
		t.Fatal("garbage parsed")
	}
}
