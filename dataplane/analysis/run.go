package analysis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Result is a job's result. Every result type of this package implements
// it; the concrete types carry the typed data.
type Result interface {
	// Formats lists the formats Write takes; the first is the default.
	Formats() []string
	// Write writes the result in a format of Formats ("" is the
	// default); any other gives an error wrapping ErrFormat.
	Write(w io.Writer, format string) error
}

// ErrFormat is a result format the job type does not offer.
var ErrFormat = errors.New("analysis: unknown result format")

func errFormat(f string, have []string) error {
	return fmt.Errorf("%w %q (have %s)", ErrFormat, f, strings.Join(have, ", "))
}

// ContentType is the media type of a result format.
func ContentType(format string) string {
	switch format {
	case "json":
		return "application/json"
	case "jsonl":
		return "application/x-ndjson"
	case "csv":
		return "text/csv; charset=utf-8"
	case "png":
		return "image/png"
	case "graphml":
		return "application/graphml+xml"
	case "dot":
		return "text/vnd.graphviz"
	}
	return "application/octet-stream"
}

// Run parses a job's JSON parameters and runs it: what a worker does with
// a job. Errors: *ParamError (the API's 400), ErrUnknownJob,
// *TrafficError (errors.Is ErrTrafficCapture: a capture of ordinary
// traffic the flow meter cannot read), *FileError, or the
// context's error when cancelled.
func Run(ctx context.Context, job string, in Input, params []byte) (Result, error) {
	switch job {
	case JobRecords:
		p, err := ParseRecordsParams(params)
		if err != nil {
			return nil, err
		}
		r, err := Records(ctx, in, p)
		if err != nil {
			return nil, err
		}
		return r, nil
	case JobTopN:
		p, err := ParseTopNParams(params)
		if err != nil {
			return nil, err
		}
		r, err := TopN(ctx, in, p)
		if err != nil {
			return nil, err
		}
		return r, nil
	case JobTimeseries:
		p, err := ParseTimeseriesParams(params)
		if err != nil {
			return nil, err
		}
		r, err := Timeseries(ctx, in, p)
		if err != nil {
			return nil, err
		}
		return r, nil
	case JobGraph:
		p, err := ParseGraphParams(params)
		if err != nil {
			return nil, err
		}
		r, err := Graph(ctx, in, p)
		if err != nil {
			return nil, err
		}
		return r, nil
	}
	return nil, ValidateParams(job, params)
}
