package promtexttest

import (
	"strings"
	"testing"
)

func TestParseRejects(t *testing.T) {
	const ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 1\na_total{x=\"2\"} 2\n"
	if _, errs := parse([]byte(ok)); len(errs) != 0 {
		t.Fatalf("valid text rejected: %v", errs)
	}
	f := func(text, want string) {
		t.Helper()
		_, errs := parse([]byte(text))
		if !strings.Contains(strings.Join(errs, "\n"), want) {
			t.Errorf("%q: errors %q, want one containing %q", text, errs, want)
		}
	}
	f(ok+"a_total{x=\"3\"} 1 2 3\n", "does not parse")
	f(ok+"a_total{x=\"3} 1\n", "does not parse")
	f(ok+"a_total{x=\"a\\qb\"} 1\n", "does not parse")
	f(ok+"a_total{x=\"a\nb\"} 1\n", "does not parse")
	f(ok+"a_total{x=1} 1\n", "does not parse")
	f(ok+"a_total{x=\"1\"} one\n", "does not parse")
	f(ok+"a-b 1\n", "does not parse")
	f(ok+"# HELP a_total Again.\n", "does not parse")
	f(ok+"# TYPE a_total gauge\n", "does not parse")
	f(ok+"# TYPE b gauge\nb 1\na_total{x=\"3\"} 1\n", "resumes after other families")
	f(ok+"# TYPE b gauge\nb 1\n# HELP a_total Again.\n", "does not parse")
	f(ok+"a_total{x=\"2\"} 5\n", "written twice")
	f(ok+"b 1\n", "no TYPE line")
	f(strings.TrimSuffix(ok, "\n"), "does not parse")
	f("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\nh_count 1\n", "written twice")
}
