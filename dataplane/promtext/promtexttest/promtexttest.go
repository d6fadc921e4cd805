// Package promtexttest checks a Prometheus text exposition the way a scraper
// would read it, for tests of the packages that write one.
package promtexttest

import (
	"bytes"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Parse parses text with the Prometheus text parser (legacy names) and fails
// t on any error. It also fails t on what that parser lets through: a sample
// without a TYPE line before it, a family whose lines are not all together,
// or a series written twice.
func Parse(t testing.TB, text []byte) map[string]*dto.MetricFamily {
	t.Helper()
	fams, errs := parse(text)
	for _, msg := range errs {
		t.Errorf("exposition: %s", msg)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	return fams
}

func parse(text []byte) (map[string]*dto.MetricFamily, []string) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return nil, []string{"does not parse: " + err.Error() + "\n" + string(text)}
	}
	return fams, check(text)
}

// check returns the faults the text parser does not report.
func check(text []byte) []string {
	var errs []string
	types := map[string]string{} // family -> type, from TYPE lines
	done := map[string]bool{}    // families already left
	series := map[string]bool{}
	cur := ""
	enter := func(fam string, n int) {
		if fam == cur {
			return
		}
		if done[fam] {
			errs = append(errs, "line "+itoa(n)+": family "+fam+" resumes after other families")
		}
		if cur != "" {
			done[cur] = true
		}
		cur = fam
	}
	for i, line := range strings.Split(strings.TrimSuffix(string(text), "\n"), "\n") {
		n := i + 1
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "#" && (f[1] == "HELP" || f[1] == "TYPE") {
			enter(f[2], n)
			if f[1] == "TYPE" && len(f) == 4 {
				types[f[2]] = f[3]
			}
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		key := line[:strings.LastIndexByte(line, ' ')]
		name := key
		if j := strings.IndexByte(key, '{'); j >= 0 {
			name = key[:j]
		}
		fam := name
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, s); ok && types[b] == "histogram" {
				fam = b
			}
		}
		enter(fam, n)
		if types[fam] == "" {
			errs = append(errs, "line "+itoa(n)+": "+name+" has no TYPE line before it")
		}
		if series[key] {
			errs = append(errs, "line "+itoa(n)+": series "+key+" written twice")
		}
		series[key] = true
	}
	return errs
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		if n /= 10; n == 0 {
			return string(b[i:])
		}
	}
}
