package frontend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"

	"github.com/sluice-flow/sluice/controlplane/frontend/dispatch"
	"github.com/sluice-flow/sluice/dataplane/analysis"
)

// Analysis is the Analyzer of package analysis: records, topn, timeseries
// and graph. A worker renders every format of a result (the PNG chart
// too), so reading one later costs the API nothing.
type Analysis struct{}

// Types implements Analyzer.
func (Analysis) Types() []string {
	return []string{analysis.JobRecords, analysis.JobTopN, analysis.JobTimeseries, analysis.JobGraph}
}

// Check implements Analyzer: a bad parameter is an *InputError naming
// it, with the column of a filter that does not parse.
func (Analysis) Check(typ string, params json.RawMessage) error {
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
