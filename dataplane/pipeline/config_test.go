package pipeline_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/pipeline"
)

func intp(v int) *int { return &v }

func TestParseFull(t *testing.T) {
	src, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pipeline.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	want := &pipeline.Config{
		Outputs: map[string]string{
			"upstream": "ipfix+tcp://collector.example:4739",
			"archive":  "jsonl:/var/log/sluice/flows.jsonl",
		},
		Pipelines: []pipeline.Pipeline{
			{
				Name:        "web",
				DropOptions: true,
				Line:        6,
				Outputs:     []string{"upstream", "archive"},
				Stages: []pipeline.Stage{
					{Line: 9, Select: "protocolIdentifier == 6 and destinationTransportPort in [80, 443]"},
					{Line: 10, Project: &pipeline.Project{Keep: []string{"sourceIPv4Address", "destinationIPv4Address", "octetDeltaCount"}}},
					{Line: 11, Project: &pipeline.Project{Drop: []string{"packetDeltaCount", "octetDeltaCount_2"}}},
					{Line: 13, Rename: []pipeline.Rename{{From: "sourceIPv4Address", To: "destinationIPv4Address"}, {From: "e9id1", To: "_ipfix_1000"}}},
					{Line: 14, Set: []pipeline.SetField{{Name: "vlanId", Value: "7"}, {Name: "interfaceName", Value: "eth0"}, {Name: "flowStartMilliseconds", Value: "2024-05-06T07:08:09.123Z"}}},
					{Line: 18, Anonymise: &pipeline.Anonymise{Method: "cryptopan", Key: "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", Fields: []string{"sourceIPv4Address"}}},
					{Line: 19, Anonymise: &pipeline.Anonymise{Method: "truncate", IPv4Prefix: intp(16), IPv6Prefix: intp(0)}},
					{Line: 23, Anonymise: &pipeline.Anonymise{Method: "cryptopan", KeyFile: "/etc/sluice/cryptopan.key"}},
					{Line: 24, Sample: &pipeline.Sample{Rate: 10, Random: true}},
					{Line: 25, Sample: &pipeline.Sample{Rate: 3}},
					{Line: 26, Sample: &pipeline.Sample{Rate: 1 << 32}},
					{Line: 27, Enrich: &pipeline.Enrich{Exporter: true, Networks: []pipeline.Networks{
						{File: "/etc/sluice/nets.csv", Address: []string{"sourceIPv4Address"}, Columns: []pipeline.Rename{{From: "asn", To: "bgpSourceAsNumber"}, {From: "site", To: "interfaceName"}}},
						{File: "/etc/sluice/nets6.csv", Address: []string{"sourceIPv6Address", "sourceIPv4Address"}, Columns: []pipeline.Rename{{From: "asn", To: "bgpDestinationAsNumber"}}},
					}}},
					{Line: 38, Enrich: &pipeline.Enrich{Sampling: true}},
					{Line: 39, Aggregate: &pipeline.Aggregate{
						Keys:              []string{"sourceIPv4Address", "protocolIdentifier"},
						Values:            []string{"octetDeltaCount", "maximumTTL"},
						Interval:          time.Minute,
						ActiveTimeout:     30 * time.Second,
						IdleTimeout:       1500 * time.Millisecond,
						MaxKeys:           1000,
						TemplateID:        5000,
						ObservationDomain: 1<<32 - 1,
					}},
				},
			},
			{Line: 49, Outputs: []string{"discard"}},
			{Line: 52, Name: "last", Outputs: []string{"jsonl:-"}},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", dump(got), dump(want))
	}
}

// dump shows a config with the pointers followed, a stage a line.
func dump(c *pipeline.Config) string {
	var b strings.Builder
	b.WriteString("outputs " + reflectFmt(reflect.ValueOf(c.Outputs)) + "\n")
	for _, p := range c.Pipelines {
		stages := p.Stages
		p.Stages = nil
		b.WriteString(reflectFmt(reflect.ValueOf(p)) + "\n")
		for _, s := range stages {
			b.WriteString("  " + reflectFmt(reflect.ValueOf(s)) + "\n")
		}
	}
	return b.String()
}

func reflectFmt(v reflect.Value) string {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return "nil"
		}
		return "&" + reflectFmt(v.Elem())
	case reflect.Struct:
		var parts []string
		for i := range v.NumField() {
			parts = append(parts, v.Type().Field(i).Name+":"+reflectFmt(v.Field(i)))
		}
		return "{" + strings.Join(parts, " ") + "}"
	case reflect.Slice:
		if v.IsNil() {
			return "nil"
		}
		var parts []string
		for i := range v.Len() {
			parts = append(parts, reflectFmt(v.Index(i)))
		}
		return "[" + strings.Join(parts, " ") + "]"
	case reflect.Map:
		var parts []string
		for _, k := range v.MapKeys() {
			parts = append(parts, reflectFmt(k)+"="+reflectFmt(v.MapIndex(k)))
		}
		sort.Strings(parts)
		return "{" + strings.Join(parts, " ") + "}"
	case reflect.String:
		return strconv.Quote(v.String())
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10)
	}
	return v.Kind().String()
}

func TestParseMinimal(t *testing.T) {
	c, err := pipeline.Parse([]byte("pipelines:\n  - outputs: [discard]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := &pipeline.Config{Pipelines: []pipeline.Pipeline{{Line: 2, Outputs: []string{"discard"}}}}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %s, want %s", dump(c), dump(want))
	}
}

// errLine checks that err is a *pipeline.Error at line that mentions substr.
func errLine(t *testing.T, src string, err error, line int, substr string) {
	t.Helper()
	if err == nil {
		t.Errorf("no error for\n%s", src)
		return
	}
	var pe *pipeline.Error
	if !errors.As(err, &pe) {
		t.Errorf("%v: not a *pipeline.Error (%T)", err, err)
		return
	}
	if pe.Line != line {
		t.Errorf("%v: line %d, want %d\n%s", err, pe.Line, line, src)
	}
	if !strings.Contains(err.Error(), substr) {
		t.Errorf("%v: want %q in the error", err, substr)
	}
	if !strings.HasPrefix(err.Error(), "pipeline: ") {
		t.Errorf("%v: want the package prefix", err)
	}
}

func TestParseErrors(t *testing.T) {
	f := func(src string, line int, substr string) {
		t.Helper()
		c, err := pipeline.Parse([]byte(src))
		if err == nil {
			t.Errorf("parsed %+v from\n%s", c, src)
			return
		}
		errLine(t, src, err, line, substr)
	}
	const head = "pipelines:\n  - outputs: [discard]\n    stages:\n"
	// head is 3 lines: the first stage is on line 4.
	f("", 0, "empty file")
	f("# only a comment\n", 0, "empty file")
	f("---\n", 2, "want a map") // the null document
	f("just text\n", 1, "want a map")
	f("- a\n- b\n", 1, "want a map")
	f("outputs: {}\n", 1, "no pipelines")
	f("pipelines: []\n", 1, "no pipelines")
	f("pipelines: {}\n", 1, "want a list")
	f("\n\npipeline: []\n", 3, `unknown key "pipeline"`)
	f("pipelines:\n  - outputs: [discard]\npipelines:\n  - outputs: [discard]\n", 3, `"pipelines" given twice`)
	f("outputs:\n  a: discard\n  a: discard\npipelines:\n  - outputs: [a]\n", 3, `"a" given twice`)
	f("outputs:\n  a: [discard]\npipelines:\n  - outputs: [a]\n", 2, "want a string")
	f("outputs:\n  a: \npipelines:\n  - outputs: [a]\n", 2, "want a string")
	f("outputs:\n  [a]: x\npipelines:\n  - outputs: [a]\n", 2, "plain strings")
	f("pipelines:\n  - outputs: discard\n", 2, "want a list of strings")
	f("pipelines:\n  - outputs: [discard, [x]]\n", 2, "want a string")
	f("pipelines:\n  - name: [a]\n    outputs: [discard]\n", 2, "want a string")
	f("pipelines:\n  - outputs: [discard]\n    colour: red\n", 3, `unknown pipeline key "colour"`)
	f("pipelines:\n  - outputs: [discard]\n    options: keep\n", 3, `options: "keep"`)
	f("pipelines:\n  - outputs: [discard]\n    name: a\n    name: b\n", 4, `"name" given twice`)
	f("pipelines:\n  - outputs: [discard]\n    stages: {select: x}\n", 3, "stages: want a list")
	f("pipelines:\n  - discard\n", 2, "want a map")
	f("pipelines:\n  - outputs: [discard]\n\tstages: []\n", 3, "found character that cannot start any token")
	f("pipelines:\n  - outputs: [discard\n", 1, "did not find expected")
	f("pipelines:\n  - outputs: [discard]\n---\npipelines:\n  - outputs: [discard]\n", 3, "more than one YAML document")
	f("pipelines:\n  - outputs: [discard]\n---\n", 3, "more than one YAML document")
	f("pipelines:\n  - outputs: [discard]\n---\n: : [\n", 3, "")

	f(head+"      - filter: x == 1\n", 4, `unknown stage "filter"`)
	f(head+"      - select: a == 1\n        project: {keep: [a]}\n", 4, "a map with one key")
	f(head+"      - select\n", 4, "a map with one key")
	f(head+"      - {}\n", 4, "a map with one key")
	f(head+"      - select: [a]\n", 4, "want a string")
	f(head+"      - project: {keep: [a], drop: [b]}\n", 4, "exactly one of keep and drop")
	f(head+"      - project: {}\n", 4, "exactly one of keep and drop")
	f(head+"      - project: {keep: []}\n", 4, "exactly one of keep and drop")
	f(head+"      - project:\n          keep: [a]\n          only: [b]\n", 6, `unknown project key "only"`)
	f(head+"      - project: [a]\n", 4, "want a map")
	f(head+"      - project: {keep: a}\n", 4, "want a list of strings")
	f(head+"      - rename: {}\n", 4, "empty map")
	f(head+"      - rename:\n          a: b\n          a: c\n", 6, `"a" given twice`)
	f(head+"      - rename:\n          a: [b]\n", 5, "want a string")
	f(head+"      - set: [a]\n", 4, "want a map")
	f(head+"      - anonymise: {key: abc}\n", 4, "method is required")
	f(head+"      - anonymise:\n          fields: [a]\n", 5, "method is required")
	f(head+"      - anonymise:\n          method: hash\n", 5, `anonymise method "hash"`)
	f(head+"      - anonymise:\n          method: truncate\n          ipv4_prefix: 33\n", 6, `"33": want an integer from 0 to 32`)
	f(head+"      - anonymise:\n          method: truncate\n          ipv6_prefix: -1\n", 6, "from 0 to 128")
	f(head+"      - anonymise:\n          method: truncate\n          ipv4_prefix: x\n", 6, "want an integer")
	f(head+"      - anonymise:\n          method: truncate\n          salt: x\n", 6, `unknown anonymise key "salt"`)
	f(head+"      - sample: {rate: 0}\n", 4, `"0": want an integer from 1`)
	f(head+"      - sample:\n          mode: random\n", 4, "rate is required")
	f(head+"      - sample:\n          rate: 10\n          mode: sometimes\n", 6, `sample mode "sometimes"`)
	f(head+"      - sample:\n          rate: 4294967297\n", 5, "want an integer")
	f(head+"      - sample:\n          rate: 1.5\n", 5, "want an integer")
	f(head+"      - sample:\n          every: 3\n", 5, `unknown sample key "every"`)
	f(head+"      - enrich: {}\n", 4, "nothing to add")
	f(head+"      - enrich:\n          exporter: yes\n", 5, `"yes": want true or false`)
	f(head+"      - enrich:\n          geo: true\n", 5, `unknown enrich key "geo"`)
	f(head+"      - enrich:\n          networks: {file: x}\n", 5, "networks: want a list")
	f(head+"      - enrich:\n          networks:\n            - file: x.csv\n              address: sourceIPv4Address\n", 6, "file, address and columns are required")
	f(head+"      - enrich:\n          networks:\n            - file: x.csv\n              mask: 8\n", 7, `unknown networks key "mask"`)
	f(head+"      - aggregate: {values: [octetDeltaCount]}\n", 4, "keys are required")
	f(head+"      - aggregate:\n          keys: [sourceIPv4Address]\n          interval: 5 minutes\n", 6, `"5 minutes": want a duration`)
	f(head+"      - aggregate:\n          keys: [sourceIPv4Address]\n          idle_timeout: -5s\n", 6, "want a duration")
	f(head+"      - aggregate:\n          keys: [sourceIPv4Address]\n          active_timeout: 5\n", 6, "want a duration")
	f(head+"      - aggregate:\n          keys: [sourceIPv4Address]\n          max_keys: 0\n", 6, "want an integer from 1")
	f(head+"      - aggregate:\n          keys: [sourceIPv4Address]\n          template_id: 255\n", 6, "from 256 to")
	f(head+"      - aggregate:\n          keys: [sourceIPv4Address]\n          observation_domain: 4294967296\n", 6, "want an integer")
	f(head+"      - aggregate:\n          keys: [sourceIPv4Address]\n          bucket: 1\n", 6, `unknown aggregate key "bucket"`)
	f(head+"      - aggregate:\n          keys: [sourceIPv4Address]\n          keys: [protocolIdentifier]\n", 6, `"keys" given twice`)
}

func TestParseTooLarge(t *testing.T) {
	src := make([]byte, pipeline.MaxFileSize+1)
	for i := range src {
		src[i] = '\n'
	}
	if _, err := pipeline.Parse(src); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("got %v", err)
	}
}

func TestDefault(t *testing.T) {
	o := newOutputs()
	s, err := pipeline.Compile(pipeline.Default([]string{"discard", outSpec}), pipeline.NewOutputSet(o.open))
	if err != nil {
		t.Fatal(err)
	}
	l := mkLayout(t, 300, spec(idOctets, 8))
	r := mkRecord(t, l, encode(t, l, 5))
	s.Process(mkMeta("192.0.2.1:4739", 1), r)
	for _, sp := range []string{"discard", outSpec} {
		c := o.get(t, sp)
		if len(c.recs) != 1 || c.recs[0].RawPtr != &r.Raw()[0] {
			t.Errorf("%s: %+v", sp, c.recs)
		}
	}
}

// writeFile writes a file under t.TempDir and returns its path.
func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCompileErrors(t *testing.T) {
	nets := writeFile(t, "nets.csv", "prefix,asn,name\n10.0.0.0/8,64500,ten\n")
	badKey := writeFile(t, "bad.key", "0011\n")
	f := func(src string, line int, substr string) {
		t.Helper()
		c, err := pipeline.Parse([]byte(src))
		if err != nil {
			t.Errorf("parse: %v\n%s", err, src)
			return
		}
		o := newOutputs()
		set := pipeline.NewOutputSet(o.open)
		s, err := pipeline.Compile(c, set)
		if err == nil {
			s.Discard()
		}
		errLine(t, src, err, line, substr)
		if err := set.Wait(); err != nil {
			t.Error(err)
		}
		if n := o.openCount(); n != 0 {
			t.Errorf("%d outputs left open after %v", n, err)
		}
	}
	const head = "outputs: {out: discard}\npipelines:\n  - outputs: [out]\n    stages:\n"
	// The first stage is on line 5.
	f(head+"      - select: protocolIdentifier ==\n", 5, "select:")
	f(head+"      - select: \"\"\n", 5, "exactly one kind")
	f(head+"      - project: {keep: [octetDeltaCount, noSuchElement]}\n", 5, `unknown element "noSuchElement"`)
	f(head+"      - project: {drop: [noSuchElement_2]}\n", 5, `unknown element "noSuchElement"`)
	f(head+"      - rename: {octetDeltaCount: nope}\n", 5, `unknown element "nope"`)
	f(head+"      - rename: {nope: octetDeltaCount}\n", 5, `unknown element "nope"`)
	f(head+"      - select: octetDeltaCount > 1\n      - rename: {sourceIPv4Address: octetDeltaCount}\n", 6, "rename: sourceIPv4Address is ipv4Address, octetDeltaCount is unsigned64")
	f(head+"      - set: {protocolIdentifier: 256}\n", 5, "is not an unsigned8")
	f(head+"      - set: {sourceIPv4Address: \"2001:db8::1\"}\n", 5, "set: sourceIPv4Address")
	f(head+"      - set: {sourceIPv6Address: 10.0.0.1}\n", 5, "set: sourceIPv6Address")
	f(head+"      - set: {flowStartMilliseconds: yesterday}\n", 5, "RFC 3339")
	f(head+"      - set: {sourceMacAddress: 1.2.3.4}\n", 5, "not a MAC")
	f(head+"      - set: {nope: 1}\n", 5, `unknown element "nope"`)
	f(head+"      - anonymise: {method: cryptopan, key: 0011}\n", 5, "anonymise:")
	f(head+"      - anonymise: {method: cryptopan}\n", 5, "anonymise:")
	f(head+"      - anonymise: {method: cryptopan, key_file: "+badKey+"}\n", 5, "anonymise:")
	f(head+"      - anonymise: {method: cryptopan, key_file: /nonexistent/key}\n", 5, "key_file")
	f(head+"      - anonymise: {method: truncate, key: 00}\n", 5, "truncate takes no key")
	f(head+"      - anonymise: {method: truncate, fields: [octetDeltaCount]}\n", 5, "not an address")
	f(head+"      - anonymise: {method: truncate, fields: [nope]}\n", 5, `unknown element "nope"`)
	f(head+"      - aggregate: {keys: [interfaceName]}\n", 5, "variable-length keys are not supported")
	f(head+"      - aggregate: {keys: [nope]}\n", 5, `unknown element "nope"`)
	f(head+"      - aggregate: {keys: [protocolIdentifier, protocolIdentifier]}\n", 5, "given twice")
	f(head+"      - aggregate: {keys: [protocolIdentifier], values: [protocolIdentifier]}\n", 5, "both a key and a value")
	f(head+"      - aggregate: {keys: [protocolIdentifier], values: [interfaceName]}\n", 5, "values must be unsigned counters or times")
	f(head+"      - aggregate: {keys: [protocolIdentifier], values: [flowStartSeconds, flowEndSeconds, observationTimeSeconds]}\n", 5, "only minimum/maximum")
	f(head+"      - enrich: {networks: [{file: /nonexistent/nets.csv, address: sourceIPv4Address, columns: {asn: bgpSourceAsNumber}}]}\n", 5, "nets.csv")
	f(head+"      - enrich: {networks: [{file: "+nets+", address: sourceIPv4Address, columns: {as: bgpSourceAsNumber}}]}\n", 5, `no column "as"`)
	f(head+"      - enrich: {networks: [{file: "+nets+", address: octetDeltaCount, columns: {asn: bgpSourceAsNumber}}]}\n", 5, "not an address")
	f(head+"      - enrich: {networks: [{file: "+nets+", address: sourceIPv4Address, columns: {name: bgpSourceAsNumber}}]}\n", 5, "row 1")
	f(head+"      - enrich: {networks: [{file: "+nets+", address: sourceIPv4Address, columns: {asn: nope}}]}\n", 5, `unknown element "nope"`)
	f(head+"      - select: octetDeltaCount > 1\n      - set: {protocolIdentifier: x}\n", 6, "unsigned8")

	// Outputs and names, at the pipeline's line.
	f("outputs: {out: discard}\npipelines:\n  - outputs: [out]\n  - name: b\n    outputs: [nowhere]\n", 4, `output "nowhere"`)
	f("pipelines:\n  - name: a\n    outputs: [discard]\n  - name: a\n    outputs: [discard]\n", 4, `pipeline name "a" used twice`)
	f("pipelines:\n  - outputs: [discard]\n  - name: pipeline1\n    outputs: [discard]\n", 3, `"pipeline1" used twice`)
	f("pipelines:\n  - name: a\n", 2, "no outputs")
	f("pipelines:\n  - outputs: [discard]\n  - outputs: [\"jsonl:/fail/x\"]\n", 3, "cannot open jsonl:/fail/x")
	f("outputs: {x: \"jsonl:/fail/y\"}\npipelines:\n  - outputs: [discard, x]\n", 3, "cannot open")
}

// A failing compile releases what it acquired, also outputs shared with
// a live snapshot: the live one keeps them open.
func TestCompileFailureReleases(t *testing.T) {
	o := newOutputs()
	set := pipeline.NewOutputSet(o.open)
	c1, err := pipeline.Parse([]byte("pipelines:\n  - outputs: [discard]\n"))
	if err != nil {
		t.Fatal(err)
	}
	live, err := pipeline.Compile(c1, set)
	if err != nil {
		t.Fatal(err)
	}
	src := "outputs: {a: \"jsonl:/a\", b: \"jsonl:/b\"}\n" +
		"pipelines:\n" +
		"  - outputs: [a, discard]\n" +
		"  - outputs: [b]\n" +
		"    stages:\n" +
		"      - select: octetDeltaCount >\n"
	c2, err := pipeline.Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pipeline.Compile(c2, set); err == nil {
		t.Fatal("compiled")
	}
	if err := set.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, sp := range []string{"jsonl:/a", "jsonl:/b"} {
		if o.get(t, sp).closed.Load() != 1 {
			t.Errorf("%s not closed once", sp)
		}
	}
	if o.get(t, "discard").closed.Load() != 0 {
		t.Error("the live snapshot's output was closed")
	}
	live.Retire()
	set.Wait()
	if n := o.openCount(); n != 0 {
		t.Errorf("%d open", n)
	}
}

// Every seed file compiles once the files it names exist (key, tables).
func TestSeedFilesParse(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) < 3 {
		t.Fatalf("%v %v", files, err)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c, err := pipeline.Parse(src)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if strings.Contains(string(src), "/etc/sluice") {
			continue // names files that do not exist here
		}
		s, err := pipeline.Compile(c, pipeline.NewOutputSet(func(string) (export.Output, error) { return &export.Discard{}, nil }))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		s.Retire()
	}
}
