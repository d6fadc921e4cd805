package pipeline_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/pipeline"
)

// FuzzParse parses pipeline files, compiles what parses and runs a data
// record and an options record through the result: nothing may panic,
// and every error is a *pipeline.Error.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds: %v", err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	data := mkLayout(f, 300, spec(idSrc4, 4), spec(idDst4, 4), spec(idSrc6, 16), spec(idProto, 1), spec(idSrcPort, 2),
		spec(idDstPort, 2), spec(idOctets, 8), spec(idPackets, 4), spec(idStartMs, 8), spec(idEndMs, 8), spec(idIfName, ipfix.VarLen),
		spec(idSamplerID, 1))
	dataRec := encode(f, data, addr("10.1.2.3"), addr("192.168.1.1"), addr("2001:db8::1"), 6, 1234, 443, 1500, 3,
		5_000_000, 5_000_100, "eth0", 1)
	opts := mkOptionsLayout(f, 400, 1, spec(idSamplerID, 1), spec(idSamplingInt, 4))
	optsRec := encode(f, opts, 1, 100)
	m := mkMeta("192.0.2.1:4739", 1)
	f.Fuzz(func(t *testing.T, src []byte) {
		c, err := pipeline.Parse(src)
		if err != nil {
			var pe *pipeline.Error
			if !errors.As(err, &pe) {
				t.Fatalf("%T %v", err, err)
			}
			return
		}
		tame(c)
		s, err := pipeline.Compile(c, pipeline.NewOutputSet(openFuzzOutput))
		if err != nil {
			var pe *pipeline.Error
			if !errors.As(err, &pe) {
				t.Fatalf("%T %v", err, err)
			}
			return
		}
		s.Process(m, mkRecord(t, data, dataRec))
		s.Process(m, mkRecord(t, opts, optsRec))
		s.Process(m, mkRecord(t, data, dataRec))
		s.Retire()
	})
}

// openFuzzOutput returns a discard for "discard", else JSON lines to
// nowhere: encoding reads every field of what the stages made.
func openFuzzOutput(spec string) (export.Output, error) {
	if spec == "discard" {
		return &export.Discard{}, nil
	}
	return export.NewJSONL(spec, nopCloser{io.Discard}), nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// tame keeps a fuzzed configuration from reading arbitrary files (a
// device would never end) and from allocating aggregate tables of
// gigabytes: files are the test fixtures, tables small. Every pipeline
// also gets a JSON lines output.
func tame(c *pipeline.Config) {
	for i := range c.Pipelines {
		// Also encode every record as JSON lines.
		c.Pipelines[i].Outputs = append(c.Pipelines[i].Outputs, "jsonl:-")
		for j := range c.Pipelines[i].Stages {
			st := &c.Pipelines[i].Stages[j]
			if a := st.Anonymise; a != nil && a.KeyFile != "" {
				a.KeyFile = "testdata/cryptopan.key"
			}
			if e := st.Enrich; e != nil {
				for k := range e.Networks {
					e.Networks[k].File = "testdata/nets.csv"
				}
			}
			if a := st.Aggregate; a != nil && (a.MaxKeys == 0 || a.MaxKeys > 1000) {
				a.MaxKeys = 1000
			}
		}
	}
}
