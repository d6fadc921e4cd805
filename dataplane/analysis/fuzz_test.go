package analysis

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/filter"
)

var fuzzJobs = []string{JobRecords, JobTopN, JobTimeseries, JobGraph}

// FuzzParams: parsing a job's parameters never panics; what it refuses is
// a *ParamError (with the column of a filter that does not parse), and
// what it accepts writes back to JSON that parses to the same.
func FuzzParams(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/params/*.json")
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		job := strings.TrimSuffix(filepath.Base(p), ".json")
		for i, j := range fuzzJobs {
			if j == job {
				f.Add(uint8(i), b)
			}
		}
	}
	if fh, err := os.Open("../filter/testdata/filters.txt"); err == nil {
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			b, _ := json.Marshal(map[string]any{"filter": sc.Text(), "by": []string{"sourceIPv4Address"}})
			f.Add(uint8(len(sc.Text())%4), b)
		}
		fh.Close()
	}
	f.Add(uint8(1), []byte(`{"by": ["sourceIPv4Address"], "n": 1e400}`))
	f.Add(uint8(2), []byte(`{"step": -5, "start": "0000-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, job uint8, raw []byte) {
		typ := fuzzJobs[int(job)%len(fuzzJobs)]
		var p any
		var err error
		switch typ {
		case JobRecords:
			var q RecordsParams
			q, err = ParseRecordsParams(raw)
			p = &q
		case JobTopN:
			var q TopNParams
			q, err = ParseTopNParams(raw)
			p = &q
		case JobTimeseries:
			var q TimeseriesParams
			q, err = ParseTimeseriesParams(raw)
			p = &q
		case JobGraph:
			var q GraphParams
			q, err = ParseGraphParams(raw)
			p = &q
		}
		if err != nil {
			var pe *ParamError
			if !errors.As(err, &pe) {
				t.Fatalf("%s %q: %v is not a *ParamError", typ, raw, err)
			}
			var fe *filter.Error
			if errors.As(err, &fe) && (pe.Column != fe.Column || fe.Column < 1) {
				t.Fatalf("%s %q: column %d, filter says %d", typ, raw, pe.Column, fe.Column)
			}
			if ValidateParams(typ, raw) == nil {
				t.Fatalf("%s %q: Parse refuses, Validate accepts", typ, raw)
			}
			return
		}
		again, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("%s: marshal %+v: %v", typ, p, err)
		}
		if err := ValidateParams(typ, again); err != nil {
			t.Fatalf("%s %q: accepted, but its JSON %s is refused: %v", typ, raw, again, err)
		}
	})
}
