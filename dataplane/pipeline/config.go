package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is a pipeline file: outputs by name and the pipelines that feed
// them. The zero Config has no pipelines, so records go nowhere; Default
// builds the pass-through configuration.
type Config struct {
	// Outputs names output specs (the forms export.Parse accepts) so
	// pipelines can share one connection or file by name.
	Outputs map[string]string
	// Pipelines all read every record; each sends what its stages leave to
	// its own outputs.
	Pipelines []Pipeline
}

// Pipeline is one ordered chain of stages.
type Pipeline struct {
	// Name identifies the pipeline in metrics; unique. Default
	// "pipeline<N>" (1-based position).
	Name   string
	Stages []Stage
	// Outputs are names from Config.Outputs or output specs; at least one.
	Outputs []string
	// DropOptions drops options records (sampling, interface tables)
	// instead of passing them to the outputs. Options records skip the
	// stages except anonymise (their addresses are rewritten too); enrich
	// stages read their sampling rates.
	DropOptions bool
	// Line is where the pipeline starts in its file (0 if not from one).
	Line int
}

// Stage is one step; exactly one of its kinds is set.
type Stage struct {
	Select    string // a filter expression (package filter)
	Project   *Project
	Rename    []Rename
	Set       []SetField
	Anonymise *Anonymise
	Sample    *Sample
	Enrich    *Enrich
	Aggregate *Aggregate
	// Line is where the stage starts in its file.
	Line int
}

// Project keeps or drops fields; exactly one list is set. Kept fields come
// in the order given; dropping keeps the template's order.
type Project struct {
	Keep []string
	Drop []string
}

// Rename gives a field another element; the encoded value is unchanged, so
// both elements must have the same data type (or either be octetArray).
type Rename struct {
	From, To string
}

// SetField adds a constant field, or replaces the value of a field the
// template already has. Value is written as in the filter language
// (number, address, MAC, true/false, RFC 3339 time, or text for strings).
type SetField struct {
	Name, Value string
}

// Anonymise rewrites address fields.
type Anonymise struct {
	// Method is "cryptopan" (prefix-preserving, needs Key) or "truncate"
	// (keep IPv4Prefix and IPv6Prefix bits, zero the rest).
	Method string
	// Key is the Crypto-PAn key, 64 hex digits. KeyFile, if set, holds it
	// instead (preferred: the pipeline file is shown by the API).
	Key     string
	KeyFile string
	// Fields are the elements to rewrite; default every IPv4 and IPv6
	// address element of the template.
	Fields []string
	// IPv4Prefix and IPv6Prefix are truncate's prefix lengths; defaults
	// 24 and 48.
	IPv4Prefix, IPv6Prefix *int
}

// Sample keeps one record in Rate.
type Sample struct {
	Rate uint64
	// Random picks each record with probability 1/Rate; the default is
	// deterministic: the first record, then every Rate-th.
	Random bool
}

// Enrich adds fields.
type Enrich struct {
	// Exporter adds originalExporterIPv4Address or
	// originalExporterIPv6Address and originalObservationDomainId (IEs 403
	// to 405): where the record entered Sluice.
	Exporter bool
	// Sampling adds samplingInterval (IE 34): the sampling rate the
	// exporter announced in its options records (samplingInterval,
	// samplerRandomInterval, samplingPacketInterval and
	// samplingPacketSpace), matched by samplerId or selectorId when the
	// record has one; 0 while unknown. Records that carry the element
	// already keep theirs.
	Sampling bool
	// Networks are longest-prefix lookups in CIDR tables.
	Networks []Networks
}

// Networks looks up an address field in a CIDR table file and adds the
// matching row's columns as fields.
type Networks struct {
	// File is a CSV file: a header line "prefix,<column>,...", then one
	// line per prefix (IPv4 or IPv6, "10.0.0.0/8"). '#' starts a comment.
	File string
	// Address lists the elements to look up; the first one the template
	// has is used (e.g. sourceIPv4Address, sourceIPv6Address).
	Address []string
	// Columns maps a column of the file to the element it is added as,
	// e.g. asn: bgpSourceAsNumber. Rows without a match (and empty cells)
	// add the element's zero value.
	Columns []Rename
}

// Aggregate summarises records by key (RFC 7015).
type Aggregate struct {
	// Keys are the flow key elements. A record lacking some keys is
	// aggregated under the keys it has (its output template omits the
	// others). Variable-length keys are not supported.
	Keys []string
	// Values are the non-key elements kept per key: delta counters are
	// summed, minimum*, flowStart* and maximum*, flowEnd* keep the least
	// and greatest. Default octetDeltaCount and packetDeltaCount.
	// flowStartMilliseconds, flowEndMilliseconds and deltaFlowCount are
	// always added.
	Values []string
	// Interval closes every aggregate at the end of each wall-clock
	// interval (aligned to the Unix epoch); 0 means no interval.
	Interval time.Duration
	// ActiveTimeout emits an aggregate this long after its first record;
	// IdleTimeout one that received nothing this long. Defaults: 0 (off)
	// for both; with Interval also 0, ActiveTimeout defaults to 60 s.
	ActiveTimeout, IdleTimeout time.Duration
	// MaxKeys bounds the aggregates held; at the bound, the least
	// recently updated of a few sampled aggregates is emitted early
	// (counted as evicted). Default 1048576, at most MaxAggregateKeys.
	// The table grows with the keys held, up to the bound.
	MaxKeys int
	// TemplateID is the first template ID of the aggregates' templates
	// (one per set of keys present). Default 4096.
	TemplateID uint16
	// ObservationDomain is the domain aggregates are exported in.
	ObservationDomain uint32
}

// Error is a configuration error with its place in the file.
type Error struct {
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return "pipeline: line " + strconv.Itoa(e.Line) + ": " + e.Msg
	}
	return "pipeline: " + e.Msg
}

func errAt(line int, format string, args ...any) error {
	return &Error{Line: line, Msg: fmt.Sprintf(format, args...)}
}

// MaxFileSize bounds a pipeline file.
const MaxFileSize = 1 << 20

// MaxAggregateKeys bounds an aggregate stage's max_keys (its table then
// takes about 150 bytes per key for a 5-tuple key).
const MaxAggregateKeys = 1 << 24

// Default is the pipeline used when none is configured: every record to
// outputs unchanged.
func Default(outputs []string) *Config {
	return &Config{Pipelines: []Pipeline{{Name: "default", Outputs: outputs}}}
}

// Parse reads a pipeline file (YAML). Unknown keys, wrong types and
// out-of-range values are errors that name the line. Parse does not open
// files or outputs; Compile does.
func Parse(src []byte) (*Config, error) {
	if len(src) > MaxFileSize {
		return nil, errAt(0, "file is %d bytes, more than %d", len(src), MaxFileSize)
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(src))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errAt(0, "empty file") // no document at all
		}
		return nil, yamlError(err)
	}
	if len(doc.Content) == 0 {
		return nil, errAt(0, "empty file")
	}
	// A second document would be ignored: refuse it.
	var more yaml.Node
	if err := dec.Decode(&more); err == nil {
		return nil, errAt(more.Line, "more than one YAML document")
	} else if !errors.Is(err, io.EOF) {
		return nil, yamlError(err)
	}
	root := doc.Content[0]
	c := &Config{}
	err := eachKey(root, func(k string, v *yaml.Node) error {
		switch k {
		case "outputs":
			c.Outputs = map[string]string{}
			return eachKey(v, func(name string, spec *yaml.Node) error {
				s, err := str(spec)
				if err != nil {
					return err
				}
				c.Outputs[name] = s
				return nil
			})
		case "pipelines":
			if v.Kind != yaml.SequenceNode {
				return errAt(v.Line, "pipelines: want a list")
			}
			for _, pn := range v.Content {
				p, err := parsePipeline(pn)
				if err != nil {
					return err
				}
				c.Pipelines = append(c.Pipelines, p)
			}
			return nil
		}
		return errAt(v.Line, "unknown key %q (want outputs, pipelines)", k)
	})
	if err != nil {
		return nil, err
	}
	if len(c.Pipelines) == 0 {
		return nil, errAt(root.Line, "no pipelines")
	}
	return c, nil
}

// yamlError turns a YAML syntax error ("yaml: line 3: ...") into an
// *Error carrying the line.
func yamlError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, m, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(n); err == nil && line > 0 {
				return errAt(line, "%s", m)
			}
		}
	}
	return errAt(0, "%s", msg)
}

func parsePipeline(n *yaml.Node) (Pipeline, error) {
	p := Pipeline{Line: n.Line}
	err := eachKey(n, func(k string, v *yaml.Node) error {
		var err error
		switch k {
		case "name":
			p.Name, err = str(v)
		case "outputs":
			p.Outputs, err = strs(v)
		case "options":
			var s string
			if s, err = str(v); err == nil {
				switch s {
				case "pass":
				case "drop":
					p.DropOptions = true
				default:
					err = errAt(v.Line, "options: %q (want pass or drop)", s)
				}
			}
		case "stages":
			if v.Kind != yaml.SequenceNode {
				return errAt(v.Line, "stages: want a list")
			}
			for _, sn := range v.Content {
				s, err := parseStage(sn)
				if err != nil {
					return err
				}
				p.Stages = append(p.Stages, s)
			}
		default:
			err = errAt(v.Line, "unknown pipeline key %q (want name, stages, outputs, options)", k)
		}
		return err
	})
	return p, err
}

func parseStage(n *yaml.Node) (Stage, error) {
	s := Stage{Line: n.Line}
	if n.Kind != yaml.MappingNode || len(n.Content) != 2 {
		return s, errAt(n.Line, "a stage is a map with one key: select, project, rename, set, anonymise, sample, enrich or aggregate")
	}
	k, v := n.Content[0].Value, n.Content[1]
	var err error
	switch k {
	case "select":
		s.Select, err = str(v)
	case "project":
		s.Project = &Project{}
		err = eachKey(v, func(k string, v *yaml.Node) error {
			var err error
			switch k {
			case "keep":
				s.Project.Keep, err = strs(v)
			case "drop":
				s.Project.Drop, err = strs(v)
			default:
				err = errAt(v.Line, "unknown project key %q (want keep or drop)", k)
			}
			return err
		})
		if err == nil && (len(s.Project.Keep) == 0) == (len(s.Project.Drop) == 0) {
			err = errAt(n.Line, "project: give exactly one of keep and drop")
		}
	case "rename":
		s.Rename, err = pairs(v)
	case "set":
		var ps []Rename
		ps, err = pairs(v)
		for _, p := range ps {
			s.Set = append(s.Set, SetField{Name: p.From, Value: p.To})
		}
	case "anonymise", "anonymize":
		s.Anonymise, err = parseAnonymise(v)
	case "sample":
		s.Sample = &Sample{}
		err = eachKey(v, func(k string, v *yaml.Node) error {
			switch k {
			case "rate":
				r, err := uintVal(v, 1, 1<<32)
				s.Sample.Rate = r
				return err
			case "mode":
				m, err := str(v)
				if err == nil && m != "deterministic" && m != "random" {
					err = errAt(v.Line, "sample mode %q (want deterministic or random)", m)
				}
				s.Sample.Random = m == "random"
				return err
			}
			return errAt(v.Line, "unknown sample key %q (want rate, mode)", k)
		})
		if err == nil && s.Sample.Rate == 0 {
			err = errAt(n.Line, "sample: rate is required")
		}
	case "enrich":
		s.Enrich, err = parseEnrich(v)
	case "aggregate":
		s.Aggregate, err = parseAggregate(v)
	default:
		err = errAt(n.Content[0].Line, "unknown stage %q (want select, project, rename, set, anonymise, sample, enrich or aggregate)", k)
	}
	return s, err
}

func parseAnonymise(n *yaml.Node) (*Anonymise, error) {
	a := &Anonymise{}
	err := eachKey(n, func(k string, v *yaml.Node) error {
		var err error
		switch k {
		case "method":
			a.Method, err = str(v)
			if err == nil && a.Method != "cryptopan" && a.Method != "truncate" {
				err = errAt(v.Line, "anonymise method %q (want cryptopan or truncate)", a.Method)
			}
		case "key":
			a.Key, err = str(v)
		case "key_file":
			a.KeyFile, err = str(v)
		case "fields":
			a.Fields, err = strs(v)
		case "ipv4_prefix":
			var b uint64
			b, err = uintVal(v, 0, 32)
			a.IPv4Prefix = ptr(int(b))
		case "ipv6_prefix":
			var b uint64
			b, err = uintVal(v, 0, 128)
			a.IPv6Prefix = ptr(int(b))
		default:
			err = errAt(v.Line, "unknown anonymise key %q (want method, key, key_file, fields, ipv4_prefix, ipv6_prefix)", k)
		}
		return err
	})
	if err == nil && a.Method == "" {
		err = errAt(n.Line, "anonymise: method is required (cryptopan or truncate)")
	}
	return a, err
}

func parseEnrich(n *yaml.Node) (*Enrich, error) {
	e := &Enrich{}
	err := eachKey(n, func(k string, v *yaml.Node) error {
		var err error
		switch k {
		case "exporter":
			e.Exporter, err = boolVal(v)
		case "sampling":
			e.Sampling, err = boolVal(v)
		case "networks":
			if v.Kind != yaml.SequenceNode {
				return errAt(v.Line, "networks: want a list")
			}
			for _, nn := range v.Content {
				var nw Networks
				err := eachKey(nn, func(k string, v *yaml.Node) error {
					var err error
					switch k {
					case "file":
						nw.File, err = str(v)
					case "address":
						if v.Kind == yaml.ScalarNode {
							var s string
							s, err = str(v)
							nw.Address = []string{s}
						} else {
							nw.Address, err = strs(v)
						}
					case "columns":
						nw.Columns, err = pairs(v)
					default:
						err = errAt(v.Line, "unknown networks key %q (want file, address, columns)", k)
					}
					return err
				})
				if err != nil {
					return err
				}
				if nw.File == "" || len(nw.Address) == 0 || len(nw.Columns) == 0 {
					return errAt(nn.Line, "networks: file, address and columns are required")
				}
				e.Networks = append(e.Networks, nw)
			}
		default:
			err = errAt(v.Line, "unknown enrich key %q (want exporter, sampling, networks)", k)
		}
		return err
	})
	if err == nil && !e.Exporter && !e.Sampling && len(e.Networks) == 0 {
		err = errAt(n.Line, "enrich: nothing to add (set exporter, sampling or networks)")
	}
	return e, err
}

func parseAggregate(n *yaml.Node) (*Aggregate, error) {
	a := &Aggregate{}
	err := eachKey(n, func(k string, v *yaml.Node) error {
		var err error
		switch k {
		case "keys":
			a.Keys, err = strs(v)
		case "values":
			a.Values, err = strs(v)
		case "interval":
			a.Interval, err = durVal(v)
		case "active_timeout":
			a.ActiveTimeout, err = durVal(v)
		case "idle_timeout":
			a.IdleTimeout, err = durVal(v)
		case "max_keys":
			var u uint64
			u, err = uintVal(v, 1, MaxAggregateKeys)
			a.MaxKeys = int(u)
		case "template_id":
			var u uint64
			u, err = uintVal(v, 256, 65535-64)
			a.TemplateID = uint16(u)
		case "observation_domain":
			var u uint64
			u, err = uintVal(v, 0, 1<<32-1)
			a.ObservationDomain = uint32(u)
		default:
			err = errAt(v.Line, "unknown aggregate key %q (want keys, values, interval, active_timeout, idle_timeout, max_keys, template_id, observation_domain)", k)
		}
		return err
	})
	if err == nil && len(a.Keys) == 0 {
		err = errAt(n.Line, "aggregate: keys are required")
	}
	return a, err
}

// eachKey calls fn for each key of mapping n, in order; duplicate keys are
// errors.
func eachKey(n *yaml.Node, fn func(k string, v *yaml.Node) error) error {
	if n.Kind != yaml.MappingNode {
		return errAt(n.Line, "want a map")
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind != yaml.ScalarNode {
			return errAt(k.Line, "keys must be plain strings")
		}
		if seen[k.Value] {
			return errAt(k.Line, "key %q given twice", k.Value)
		}
		seen[k.Value] = true
		if err := fn(k.Value, n.Content[i+1]); err != nil {
			return err
		}
	}
	return nil
}

func str(n *yaml.Node) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", errAt(n.Line, "want a string")
	}
	return n.Value, nil
}

func strs(n *yaml.Node) ([]string, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, errAt(n.Line, "want a list of strings")
	}
	out := make([]string, 0, len(n.Content))
	for _, c := range n.Content {
		s, err := str(c)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// pairs reads a mapping of strings in order.
func pairs(n *yaml.Node) ([]Rename, error) {
	var out []Rename
	err := eachKey(n, func(k string, v *yaml.Node) error {
		s, err := str(v)
		out = append(out, Rename{From: k, To: s})
		return err
	})
	if err == nil && len(out) == 0 {
		err = errAt(n.Line, "empty map")
	}
	return out, err
}

func boolVal(n *yaml.Node) (bool, error) {
	s, err := str(n)
	if err != nil {
		return false, err
	}
	switch s {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, errAt(n.Line, "%q: want true or false", s)
}

func uintVal(n *yaml.Node, lo, hi uint64) (uint64, error) {
	s, err := str(n)
	if err != nil {
		return 0, err
	}
	u, err := strconv.ParseUint(s, 0, 64)
	if err != nil || u < lo || u > hi {
		return 0, errAt(n.Line, "%q: want an integer from %d to %d", s, lo, hi)
	}
	return u, nil
}

func durVal(n *yaml.Node) (time.Duration, error) {
	s, err := str(n)
	if err != nil {
		return 0, err
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, errAt(n.Line, "%q: want a duration such as 60s or 5m", s)
	}
	return d, nil
}

func ptr[T any](v T) *T { return &v }

var errNoFields = errors.New("no fields left")
