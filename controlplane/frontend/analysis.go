package frontend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/sluice-flow/sluice/controlplane/frontend/dispatch"
	"github.com/sluice-flow/sluice/dataplane/analysis"
	"github.com/sluice-flow/sluice/dataplane/meter"
)

// Analysis is the Analyzer of package analysis (records, topn, timeseries
// and graph) and of the flow meter (meter). A worker renders every format
// of a result (the PNG chart too), so reading one later costs the API
// nothing.
type Analysis struct{}

// Types implements Analyzer.
func (Analysis) Types() []string {
	return []string{analysis.JobRecords, analysis.JobTopN, analysis.JobTimeseries, analysis.JobGraph, JobMeter}
}

// FileTypes implements fileTyper: a meter job reads captures only.
func (Analysis) FileTypes(typ string) []string {
	if typ == JobMeter {
		return []string{"pcap", "pcapng"}
	}
	return nil
}

// fileTyper is implemented by an Analyzer whose job types read only some
// of the uploaded file types ("pcap", "pcapng", "ipfix"); FileTypes
// returns nil for a type that reads all of them. POST /api/v1/jobs
// refuses the others with 400.
type fileTyper interface {
	FileTypes(typ string) []string
}

// Check implements Analyzer: a bad parameter is an *InputError naming
// it, with the column of a filter that does not parse.
func (Analysis) Check(typ string, params json.RawMessage) error {
	if typ == JobMeter {
		_, err := ParseMeterParams(params)
		return err
	}
	err := analysis.ValidateParams(typ, params)
	var pe *analysis.ParamError
	if errors.As(err, &pe) {
		param := "params"
		if pe.Param != "" {
			param += "." + pe.Param
		}
		return &InputError{Param: param, Column: pe.Column, Err: err}
	}
	return err
}

// Run implements Analyzer.
func (Analysis) Run(ctx context.Context, typ string, files []string, params json.RawMessage, progress func(float64)) ([]dispatch.Output, error) {
	if typ == JobMeter {
		return runMeter(ctx, files, params, progress)
	}
	res, err := analysis.Run(ctx, typ, analysis.Input{Files: files, Progress: progress}, params)
	if err != nil {
		return nil, err
	}
	var outs []dispatch.Output
	for _, f := range res.Formats() {
		var b bytes.Buffer
		if err := res.Write(&b, f); err != nil {
			return nil, err
		}
		outs = append(outs, dispatch.Output{Format: f, ContentType: analysis.ContentType(f), Data: b.Bytes()})
	}
	return outs, nil
}

// JobMeter is the meter job type: captures of ordinary traffic metered
// into flows (dataplane/meter, as `sluice meter` does); the result is an
// RFC 5655 IPFIX file ("ipfix", the default) and a JSON summary ("json").
const JobMeter = "meter"

// MaxMeterFlows bounds a meter job's params.max_flows: about 300 MB of
// flow table on a worker (1.1 GB with dpi).
const MaxMeterFlows = 1 << 21

// maxMeterTimeout bounds params.active_timeout and params.idle_timeout.
const maxMeterTimeout = 7 * 24 * time.Hour

// MeterParams are the meter job's parameters; zero values are
// dataplane/meter's defaults.
type MeterParams struct {
	// Biflow makes one RFC 5103 record per bidirectional flow.
	Biflow bool `json:"biflow"`
	// DPI adds the TLS server name, HTTP method and Host, DNS query name
	// and type.
	DPI bool `json:"dpi"`
	// ActiveTimeout and IdleTimeout (a duration string such as "30s" or
	// a number of seconds): 0 means 1800 s and 15 s; 1 ms to 7 days.
	ActiveTimeout analysis.Duration `json:"active_timeout"`
	IdleTimeout   analysis.Duration `json:"idle_timeout"`
	// MaxFlows bounds the flow table: 0 means 262144, at most
	// MaxMeterFlows.
	MaxFlows int `json:"max_flows"`
}

var meterParamNames = []string{"active_timeout", "biflow", "dpi", "idle_timeout", "max_flows"}

// ParseMeterParams decodes and validates a meter job's parameters (empty
// or null: the defaults). Errors are *InputError naming the parameter.
func ParseMeterParams(raw json.RawMessage) (MeterParams, error) {
	var p MeterParams
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return p, nil
	}
	bad := func(param, format string, args ...any) error {
		name := "params"
		if param != "" {
			name += "." + param
		}
		return &InputError{Param: name, Err: fmt.Errorf("frontend: meter %s: "+format, append([]any{name}, args...)...)}
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return p, bad("", "not a JSON object")
	}
	var unknown []string
	for k := range obj {
		if !slices.Contains(meterParamNames, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return p, bad(unknown[0], "unknown parameter (known: %s)", strings.Join(meterParamNames, ", "))
	}
	for k, v := range obj {
		var dst any
		switch k {
		case "biflow":
			dst = &p.Biflow
		case "dpi":
			dst = &p.DPI
		case "active_timeout":
			dst = &p.ActiveTimeout
		case "idle_timeout":
			dst = &p.IdleTimeout
		case "max_flows":
			dst = &p.MaxFlows
		}
		if err := json.Unmarshal(v, dst); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				return p, bad(k, "want %s, not %s", kindName(te.Type.Kind()), te.Value)
			}
			return p, bad(k, "%v", err)
		}
	}
	for _, d := range []struct {
		name string
		v    analysis.Duration
	}{{"active_timeout", p.ActiveTimeout}, {"idle_timeout", p.IdleTimeout}} {
		if v := time.Duration(d.v); v != 0 && (v < time.Millisecond || v > maxMeterTimeout) {
			return p, bad(d.name, "%v out of range (want 1ms to %v, or 0 for the default)", v, maxMeterTimeout)
		}
	}
	if p.MaxFlows < 0 || p.MaxFlows > MaxMeterFlows {
		return p, bad("max_flows", "%d out of range (want 1 to %d, or 0 for the default)", p.MaxFlows, MaxMeterFlows)
	}
	return p, nil
}

func kindName(k reflect.Kind) string {
	switch k {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64:
		return "an integer"
	}
	return k.String()
}

// Config is the meter configuration of p.
func (p MeterParams) Config() meter.Config {
	return meter.Config{
		Biflow:        p.Biflow,
		DPI:           p.DPI,
		ActiveTimeout: time.Duration(p.ActiveTimeout),
		IdleTimeout:   time.Duration(p.IdleTimeout),
		MaxFlows:      p.MaxFlows,
	}
}

// MeterSummary is the meter job's "json" result: what was read and made.
// Packets equals Metered plus the skipped packets of every reason.
type MeterSummary struct {
	Files         int               `json:"files"`
	Packets       uint64            `json:"packets"`
	CapturedBytes uint64            `json:"captured_bytes"`
	Metered       uint64            `json:"metered"`
	Octets        uint64            `json:"octets"`
	Flows         uint64            `json:"flows"`
	EarlyExports  uint64            `json:"early_exports"`
	Messages      uint64            `json:"messages"`
	Fragments     uint64            `json:"fragments"`
	Skipped       map[string]uint64 `json:"skipped"`
	SkippedTotal  uint64            `json:"skipped_total"`
	// Warnings name captures that break off: what came before the
	// damage was metered (as `sluice meter` does).
	Warnings []string `json:"warnings,omitempty"`
}

// NewMeterSummary makes the summary of a meter's Stats.
func NewMeterSummary(files int, s meter.Stats) MeterSummary {
	sum := MeterSummary{Files: files, Packets: s.Packets, CapturedBytes: s.Bytes, Metered: s.Metered,
		Octets: s.Octets, Flows: s.Flows, EarlyExports: s.EarlyExports, Messages: s.Messages,
		Fragments: s.Fragments, Skipped: make(map[string]uint64, meter.NumReasons-1), SkippedTotal: s.SkippedTotal()}
	for r := 1; r < meter.NumReasons; r++ {
		sum.Skipped[meter.Reason(r).String()] = s.Skipped[r]
	}
	return sum
}

// meterProgressInterval is how often (wall clock) a meter job reports
// progress; the dispatch worker sends at most one update per 100 ms.
const meterProgressInterval = 100 * time.Millisecond

// runMeter meters files in order (one continuing the other, as `sluice
// meter` reads them) into an IPFIX file held in memory.
func runMeter(ctx context.Context, files []string, params json.RawMessage, progress func(float64)) ([]dispatch.Output, error) {
	p, err := ParseMeterParams(params)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, errors.New("frontend: a meter job needs a capture")
	}
	sizes := make([]int64, len(files))
	var total int64
	for i, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("frontend: meter: %w", err)
		}
		sizes[i] = st.Size()
		total += st.Size()
	}
	var done int64 // bytes of the files before the current one
	cfg := p.Config()
	cfg.ProgressInterval = meterProgressInterval
	cfg.Progress = func(pr meter.Progress) {
		if total > 0 && pr.FileBytes >= 0 {
			progress(min(float64(done+pr.FileBytes)/float64(total), 1))
		}
	}
	var out bytes.Buffer
	m, err := meter.New(cfg, meter.NewFileSink(&out))
	if err != nil {
		return nil, &InputError{Param: "params", Err: err}
	}
	var warnings []string
	for i, f := range files {
		err := m.ReadFile(ctx, f)
		if cerr := ctx.Err(); cerr != nil {
			m.Close()
			return nil, cerr
		}
		switch {
		case err == nil:
		case errors.Is(err, meter.ErrDamaged):
			warnings = append(warnings, err.Error()+" (the rest of the file is skipped)")
		default:
			m.Close()
			return nil, err
		}
		done += sizes[i]
	}
	if err := m.Close(); err != nil {
		return nil, err
	}
	sum := NewMeterSummary(len(files), m.Stats())
	sum.Warnings = warnings
	js, err := json.Marshal(sum)
	if err != nil {
		return nil, err
	}
	progress(1)
	return []dispatch.Output{
		{Format: "ipfix", ContentType: analysis.ContentType("ipfix"), Data: out.Bytes()},
		{Format: "json", ContentType: analysis.ContentType("json"), Data: append(js, '\n')},
	}, nil
}
