package analysis

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluice-flow/sluice/dataplane/filter"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// Job types, as the API names them.
const (
	JobRecords    = "records"
	JobTopN       = "topn"
	JobTimeseries = "timeseries"
	JobGraph      = "graph"
)

// Bounds of the parameters.
const (
	DefaultRecordsLimit = 100
	MaxRecordsLimit     = 10000
	MaxRecordsOffset    = 1 << 40
	DefaultTopN         = 10
	MaxTopN             = 10000
	MaxKeyElements      = 8
	DefaultSeries       = 5
	MaxSeries           = 50
	DefaultStep         = time.Second
	MinStep             = time.Millisecond
	MaxStep             = 7 * 24 * time.Hour
	// MaxSteps bounds the points of a time series (its time range over
	// its step).
	MaxSteps          = 100000
	DefaultChartW     = 1000
	DefaultChartH     = 500
	MinChartSide      = 200
	MaxChartSide      = 4000
	DefaultGraphEdges = 10000
	MaxGraphEdges     = 1000000
)

// maxKeyWidth is the widest key: a presence byte then the values.
const maxKeyWidth = 64

// Common holds the parameters every job takes.
type Common struct {
	// Filter is a select expression (dataplane/filter); empty keeps every
	// record.
	Filter string `json:"filter,omitempty"`
	// Input is "" or "auto" (sniff each capture: flow export datagrams
	// are decoded, ordinary traffic is metered into flows with
	// dataplane/meter), "export" (decode as NetFlow/IPFIX whatever the
	// sniffing says) or "traffic" (meter every capture's packets into
	// flows; a file that is not a capture is then an error).
	Input string `json:"input,omitempty"`
}

// RecordsParams are the records job's parameters.
type RecordsParams struct {
	Common
	// Offset is how many matching records to skip.
	Offset int64 `json:"offset,omitempty"`
	// Limit is how many to return: 0 means DefaultRecordsLimit, at most
	// MaxRecordsLimit.
	Limit int `json:"limit,omitempty"`
	// SkipOptions leaves options records out (sluice decode shows them
	// with "options":true).
	SkipOptions bool `json:"skip_options,omitempty"`
}

// TopNParams are the topn job's parameters.
type TopNParams struct {
	Common
	// By names the key's elements (1 to MaxKeyElements fixed-width
	// elements: addresses, numbers, MACs, times), e.g.
	// ["sourceIPv4Address"] or a 5-tuple. A record lacking one of them
	// counts under a key with that value null.
	By []string `json:"by"`
	// Metric ranks the keys: "octets" (the default), "packets" or
	// "flows".
	Metric string `json:"metric,omitempty"`
	// N is how many keys to return: 0 means DefaultTopN, at most MaxTopN.
	N int `json:"n,omitempty"`
}

// TimeseriesParams are the timeseries job's parameters.
type TimeseriesParams struct {
	Common
	// Step is the width of a point: 0 means DefaultStep; MinStep to
	// MaxStep. JSON: a Go duration string ("1s", "5m") or seconds.
	Step Duration `json:"step,omitzero"`
	// SplitBy, when set, splits the series by a key (as TopNParams.By);
	// the Top keys by Metric get a series each, the rest are summed in
	// "other".
	SplitBy []string `json:"split_by,omitempty"`
	// Top is the number of split series: 0 means DefaultSeries, at most
	// MaxSeries.
	Top int `json:"top,omitempty"`
	// Metric ranks split series and is what the chart shows: "octets"
	// (the default), "packets" or "flows".
	Metric string `json:"metric,omitempty"`
	// Start and End, when not zero, clip the series to [Start, End).
	Start time.Time `json:"start,omitzero"`
	End   time.Time `json:"end,omitzero"`
	// Width and Height are the PNG chart's size in pixels: 0 means
	// DefaultChartW x DefaultChartH; MinChartSide to MaxChartSide.
	Width  int `json:"width,omitempty"`
	Height int `json:"height,omitempty"`
}

// GraphParams are the graph job's parameters.
type GraphParams struct {
	Common
	// MaxEdges bounds the edges returned (the heaviest by Metric are
	// kept): 0 means DefaultGraphEdges, at most MaxGraphEdges.
	MaxEdges int `json:"max_edges,omitempty"`
	// Metric ranks edges when there are more than MaxEdges: "octets" (the
	// default), "packets" or "flows".
	Metric string `json:"metric,omitempty"`
}

// Duration is a time.Duration that reads from JSON as a duration string
// ("1s") or a number of seconds, and writes as a string.
type Duration time.Duration

// UnmarshalJSON reads "1m30s" or 90.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return errors.New("not a duration such as \"1s\" or \"500ms\"")
		}
		*d = Duration(v)
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || f > float64(MaxStep/time.Second)*2 || f < -float64(MaxStep/time.Second)*2 {
		return errors.New("not a duration string or a number of seconds in range")
	}
	*d = Duration(f * float64(time.Second))
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return strconv.AppendQuote(nil, time.Duration(d).String()), nil
}

// Metric names a counter.
type Metric uint8

// Metrics.
const (
	Octets Metric = iota
	Packets
	Flows
)

var metricNames = [...]string{Octets: "octets", Packets: "packets", Flows: "flows"}

func (m Metric) String() string { return metricNames[m] }

func parseMetric(s string) (Metric, error) {
	switch s {
	case "", "octets":
		return Octets, nil
	case "packets":
		return Packets, nil
	case "flows":
		return Flows, nil
	}
	return 0, paramErr("metric", "%q is not octets, packets or flows", s)
}

type inputMode uint8

const (
	inputAuto inputMode = iota
	inputExport
	inputTraffic
)

// compiled is what every job takes from Common.
type compiled struct {
	expr  *filter.Expr
	input inputMode
}

// emptyLayout checks a filter's literals against the registry's types.
var emptyLayout = &ipfix.Layout{}

func (c *Common) compile() (compiled, error) {
	var out compiled
	switch c.Input {
	case "", "auto":
	case "export":
		out.input = inputExport
	case "traffic":
		out.input = inputTraffic
	default:
		return out, paramErr("input", "%q is not auto, export or traffic", c.Input)
	}
	if strings.TrimSpace(c.Filter) == "" {
		return out, nil
	}
	e, err := filter.Parse(c.Filter)
	if err != nil {
		pe := &ParamError{Param: "filter", Reason: err.Error(), Err: err}
		var fe *filter.Error
		if errors.As(err, &fe) {
			pe.Column = fe.Column
		}
		return out, pe
	}
	if _, err := e.Compile(emptyLayout); err != nil {
		return out, &ParamError{Param: "filter", Reason: err.Error(), Err: err}
	}
	out.expr = e
	return out, nil
}

// keyElem is one element of a key, at its canonical width.
type keyElem struct {
	ie    *ipfix.InfoElement
	off   int // in the key, after the presence byte
	width int
}

// keySpec is a parsed list of key elements.
type keySpec struct {
	elems []keyElem
	width int // presence byte and values
}

func parseKey(param string, names []string) (keySpec, error) {
	var ks keySpec
	if len(names) == 0 {
		return ks, paramErr(param, "name at least one element")
	}
	if len(names) > MaxKeyElements {
		return ks, paramErr(param, "at most %d elements, not %d", MaxKeyElements, len(names))
	}
	off := 1
	for i, n := range names {
		p := param + "[" + strconv.Itoa(i) + "]"
		ie, ok := ipfix.ElementByName(n)
		if !ok {
			return ks, paramErr(p, "unknown element %q", n)
		}
		w := fixedWidth(ie.Type)
		if w == 0 {
			return ks, paramErr(p, "%s is %s; keys must be fixed-width (addresses, numbers, MACs, times)", n, ie.Type)
		}
		for _, e := range ks.elems {
			if e.ie.PEN == ie.PEN && e.ie.ID == ie.ID {
				return ks, paramErr(p, "%s given twice", n)
			}
		}
		ks.elems = append(ks.elems, keyElem{ie: &ie, off: off, width: w})
		off += w
	}
	if off > maxKeyWidth {
		return ks, paramErr(param, "key of %d octets; at most %d", off-1, maxKeyWidth-1)
	}
	ks.width = off
	return ks, nil
}

// fixedWidth is the canonical encoded width of a type that can be a key, 0
// for the others (strings, octet arrays, lists).
func fixedWidth(t ipfix.DataType) int {
	switch t {
	case ipfix.TypeUnsigned8, ipfix.TypeSigned8, ipfix.TypeBoolean:
		return 1
	case ipfix.TypeUnsigned16, ipfix.TypeSigned16:
		return 2
	case ipfix.TypeUnsigned32, ipfix.TypeSigned32, ipfix.TypeFloat32, ipfix.TypeDateTimeSeconds, ipfix.TypeIPv4Address:
		return 4
	case ipfix.TypeUnsigned64, ipfix.TypeSigned64, ipfix.TypeFloat64, ipfix.TypeDateTimeMilliseconds,
		ipfix.TypeDateTimeMicroseconds, ipfix.TypeDateTimeNanoseconds:
		return 8
	case ipfix.TypeMACAddress:
		return 6
	case ipfix.TypeIPv6Address:
		return 16
	}
	return 0
}

// Validate checks p and says what is wrong in a *ParamError.
func (p *RecordsParams) Validate() error {
	if _, err := p.Common.compile(); err != nil {
		return err
	}
	if p.Offset < 0 || p.Offset > MaxRecordsOffset {
		return paramErr("offset", "%d is out of range 0..%d", p.Offset, int64(MaxRecordsOffset))
	}
	if p.Limit < 0 || p.Limit > MaxRecordsLimit {
		return paramErr("limit", "%d is out of range 1..%d (0: %d)", p.Limit, MaxRecordsLimit, DefaultRecordsLimit)
	}
	return nil
}

func (p *RecordsParams) limit() int {
	if p.Limit == 0 {
		return DefaultRecordsLimit
	}
	return p.Limit
}

// Validate checks p and says what is wrong in a *ParamError.
func (p *TopNParams) Validate() error {
	_, err := p.compile()
	return err
}

type topnConfig struct {
	compiled
	key    keySpec
	metric Metric
	n      int
}

func (p *TopNParams) compile() (topnConfig, error) {
	var c topnConfig
	var err error
	if c.compiled, err = p.Common.compile(); err != nil {
		return c, err
	}
	if c.key, err = parseKey("by", p.By); err != nil {
		return c, err
	}
	if c.metric, err = parseMetric(p.Metric); err != nil {
		return c, err
	}
	if p.N < 0 || p.N > MaxTopN {
		return c, paramErr("n", "%d is out of range 1..%d (0: %d)", p.N, MaxTopN, DefaultTopN)
	}
	c.n = cmp0(p.N, DefaultTopN)
	return c, nil
}

func cmp0(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// Validate checks p and says what is wrong in a *ParamError.
func (p *TimeseriesParams) Validate() error {
	_, err := p.compile()
	return err
}

type seriesConfig struct {
	compiled
	step       int64 // ns
	split      bool
	key        keySpec
	top        int
	metric     Metric
	start, end int64 // ns; 0 when open
	w, h       int
}

func (p *TimeseriesParams) compile() (seriesConfig, error) {
	var c seriesConfig
	var err error
	if c.compiled, err = p.Common.compile(); err != nil {
		return c, err
	}
	step := time.Duration(p.Step)
	if step == 0 {
		step = DefaultStep
	}
	if step < MinStep || step > MaxStep {
		return c, paramErr("step", "%s is out of range %s..%s", step, MinStep, MaxStep)
	}
	c.step = int64(step)
	if len(p.SplitBy) > 0 {
		c.split = true
		if c.key, err = parseKey("split_by", p.SplitBy); err != nil {
			return c, err
		}
	}
	if p.Top < 0 || p.Top > MaxSeries {
		return c, paramErr("top", "%d is out of range 1..%d (0: %d)", p.Top, MaxSeries, DefaultSeries)
	}
	c.top = cmp0(p.Top, DefaultSeries)
	if c.metric, err = parseMetric(p.Metric); err != nil {
		return c, err
	}
	if !p.Start.IsZero() {
		if p.Start.Year() < 1970 || p.Start.Year() > 2200 {
			return c, paramErr("start", "%s is out of range (years 1970 to 2200)", p.Start.Format(time.RFC3339))
		}
		c.start = p.Start.UnixNano()
	}
	if !p.End.IsZero() {
		if p.End.Year() < 1970 || p.End.Year() > 2200 {
			return c, paramErr("end", "%s is out of range (years 1970 to 2200)", p.End.Format(time.RFC3339))
		}
		c.end = p.End.UnixNano()
		if c.start != 0 && c.end <= c.start {
			return c, paramErr("end", "not after start")
		}
	}
	if c.start != 0 && c.end != 0 && (c.end-c.start)/c.step >= MaxSteps {
		return c, paramErr("step", "%s from start to end is more than %d steps of %s", time.Duration(c.end-c.start), MaxSteps, step)
	}
	c.w, c.h = cmp0(p.Width, DefaultChartW), cmp0(p.Height, DefaultChartH)
	if c.w < MinChartSide || c.w > MaxChartSide {
		return c, paramErr("width", "%d is out of range %d..%d", p.Width, MinChartSide, MaxChartSide)
	}
	if c.h < MinChartSide || c.h > MaxChartSide {
		return c, paramErr("height", "%d is out of range %d..%d", p.Height, MinChartSide, MaxChartSide)
	}
	return c, nil
}

// Validate checks p and says what is wrong in a *ParamError.
func (p *GraphParams) Validate() error {
	_, err := p.compile()
	return err
}

type graphConfig struct {
	compiled
	maxEdges int
	metric   Metric
}

func (p *GraphParams) compile() (graphConfig, error) {
	var c graphConfig
	var err error
	if c.compiled, err = p.Common.compile(); err != nil {
		return c, err
	}
	if p.MaxEdges < 0 || p.MaxEdges > MaxGraphEdges {
		return c, paramErr("max_edges", "%d is out of range 1..%d (0: %d)", p.MaxEdges, MaxGraphEdges, DefaultGraphEdges)
	}
	c.maxEdges = cmp0(p.MaxEdges, DefaultGraphEdges)
	if c.metric, err = parseMetric(p.Metric); err != nil {
		return c, err
	}
	return c, nil
}

// ParseRecordsParams decodes and validates a records job's parameters.
// Empty input or null gives the defaults.
func ParseRecordsParams(raw []byte) (RecordsParams, error) {
	var p RecordsParams
	if err := decodeStrict(raw, &p); err != nil {
		return p, err
	}
	return p, p.Validate()
}

// ParseTopNParams decodes and validates a topn job's parameters.
func ParseTopNParams(raw []byte) (TopNParams, error) {
	var p TopNParams
	if err := decodeStrict(raw, &p); err != nil {
		return p, err
	}
	return p, p.Validate()
}

// ParseTimeseriesParams decodes and validates a timeseries job's
// parameters.
func ParseTimeseriesParams(raw []byte) (TimeseriesParams, error) {
	var p TimeseriesParams
	if err := decodeStrict(raw, &p); err != nil {
		return p, err
	}
	return p, p.Validate()
}

// ParseGraphParams decodes and validates a graph job's parameters.
func ParseGraphParams(raw []byte) (GraphParams, error) {
	var p GraphParams
	if err := decodeStrict(raw, &p); err != nil {
		return p, err
	}
	return p, p.Validate()
}

// ValidateParams checks a job type and its JSON parameters, as Run would
// before reading any file, so the API can refuse a job when it is posted.
func ValidateParams(job string, raw []byte) error {
	var err error
	switch job {
	case JobRecords:
		_, err = ParseRecordsParams(raw)
	case JobTopN:
		_, err = ParseTopNParams(raw)
	case JobTimeseries:
		_, err = ParseTimeseriesParams(raw)
	case JobGraph:
		_, err = ParseGraphParams(raw)
	default:
		return fmt.Errorf("%w %q (want records, topn, timeseries or graph)", ErrUnknownJob, job)
	}
	return err
}

// maxParamsLen bounds a parameter object.
const maxParamsLen = 256 << 10

// decodeStrict decodes a JSON object into dst (a pointer to a params
// struct), refusing unknown names with a *ParamError naming them.
func decodeStrict(raw []byte, dst any) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if len(raw) > maxParamsLen {
		return paramErr("", "longer than %d bytes", maxParamsLen)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return paramErr("", "not a JSON object")
		}
		return paramErr("", "not valid JSON: %v", err)
	}
	known := knownNames(reflect.TypeOf(dst).Elem())
	var unknown []string
	for k := range obj {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return &ParamError{Param: unknown[0], Reason: "unknown parameter (known: " + strings.Join(known, ", ") + ")"}
	}
	// Each value on its own first, so an error names its parameter.
	t := reflect.TypeOf(dst).Elem()
	for _, k := range known {
		v, ok := obj[k]
		if !ok {
			continue
		}
		if err := json.Unmarshal(v, fieldFor(t, k)); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				return &ParamError{Param: k, Reason: "want " + jsonKind(te.Type) + ", not " + te.Value, Err: err}
			}
			return &ParamError{Param: k, Reason: err.Error(), Err: err}
		}
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return &ParamError{Reason: err.Error(), Err: err}
	}
	return nil
}

// fieldFor returns a new value of the field named k by its JSON tag.
func fieldFor(t reflect.Type, k string) any {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			if v := fieldFor(f.Type, k); v != nil {
				return v
			}
			continue
		}
		if tagName(f) == k {
			return reflect.New(f.Type).Interface()
		}
	}
	return nil
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice:
		return "an array"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint64, reflect.Float64:
		return "a number in range"
	}
	return t.String()
}

var knownCache sync.Map // reflect.Type -> []string

// knownNames lists the JSON names of a params struct, embedded Common
// included.
func knownNames(t reflect.Type) []string {
	if v, ok := knownCache.Load(t); ok {
		return v.([]string)
	}
	var names []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Anonymous {
				walk(f.Type)
				continue
			}
			names = append(names, tagName(f))
		}
	}
	walk(t)
	slices.Sort(names)
	knownCache.Store(t, names)
	return names
}

func tagName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return name
}
