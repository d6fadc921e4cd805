package frontend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sluice-flow/sluice/controlplane/frontend/dispatch"
)

// Analyzer runs the analysis job types. Check runs on the API replica when
// a job is posted; Run on a worker.
type Analyzer interface {
	// Types lists the job types it runs.
	Types() []string
	// Check validates a job's params before it is queued. Its errors are
	// the caller's (400); an *InputError carries a column for filters.
	Check(typ string, params json.RawMessage) error
	// Run runs a job over files (paths) and returns its result in every
	// format the type offers, the default first.
	Run(ctx context.Context, typ string, files []string, params json.RawMessage, progress func(float64)) ([]dispatch.Output, error)
}

// InputError is a request error answered with 400 and, for a filter that
// does not parse, the 1-based column of the fault.
type InputError struct {
	Param  string
	Column int
	Err    error
}

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// echoType is the built-in job type for dispatch benchmarks and tests
// (Config.EchoJobs): its result is params.data as JSON, after
// params.wait_ms milliseconds (at most 10 minutes) of progress reports.
const echoType = "echo"

type echoParams struct {
	Data   json.RawMessage `json:"data"`
	WaitMS int64           `json:"wait_ms"`
	Fail   string          `json:"fail"`
}

const maxEchoWait = 10 * time.Minute

func parseEcho(params json.RawMessage) (echoParams, error) {
	var p echoParams
	if len(params) > 0 && string(params) != "null" {
		dec := json.NewDecoder(bytes.NewReader(params))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			return p, &InputError{Param: "params", Err: fmt.Errorf("frontend: echo params: %w", err)}
		}
	}
	if p.WaitMS < 0 || time.Duration(p.WaitMS)*time.Millisecond > maxEchoWait {
		return p, &InputError{Param: "params.wait_ms", Err: errors.New("frontend: echo params.wait_ms: want 0 to 600000")}
	}
	if len(p.Data) == 0 {
		p.Data = json.RawMessage("null")
	}
	return p, nil
}

func runEcho(ctx context.Context, params json.RawMessage, progress func(float64)) ([]dispatch.Output, error) {
	p, err := parseEcho(params)
	if err != nil {
		return nil, err
	}
	if p.WaitMS > 0 {
		wait := time.Duration(p.WaitMS) * time.Millisecond
		start := time.Now()
		tick := time.NewTicker(min(wait/20+time.Millisecond, 100*time.Millisecond))
		defer tick.Stop()
		for d := time.Since(start); d < wait; d = time.Since(start) {
			progress(float64(d) / float64(wait))
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-tick.C:
			}
		}
	}
	progress(1)
	if p.Fail != "" {
		return nil, errors.New(p.Fail)
	}
	return []dispatch.Output{{Format: "json", ContentType: "application/json", Data: p.Data}}, nil
}
