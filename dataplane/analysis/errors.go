package analysis

import (
	"errors"
	"fmt"
	"strconv"
)

// ErrTrafficCapture is matched (errors.Is) by the error of a job over a
// capture taken for ordinary traffic, sniffed or by params.input
// "traffic", that could not be metered into flows: a capture that breaks
// off, or a file that is not a capture with params.input "traffic". The
// error returned is a *TrafficError.
var ErrTrafficCapture = errors.New("analysis: a capture of ordinary traffic could not be metered")

// ErrUnknownJob is returned by Run and ParseParams for a job type that is
// not one of JobRecords, JobTopN, JobTimeseries, JobGraph.
var ErrUnknownJob = errors.New("analysis: unknown job type")

// TrafficError says which file was taken for ordinary traffic, why, and
// what stopped the flow meter reading it.
type TrafficError struct {
	File string
	// Forced is true when params.input said "traffic"; otherwise the
	// capture was sniffed: Packets read, of which Datagrams were UDP and
	// Export looked like NetFlow or IPFIX messages.
	Forced                     bool
	Packets, Datagrams, Export uint64
	// Err is the meter's error (wrapping meter.ErrDamaged for a capture
	// that breaks off).
	Err error
}

func (e *TrafficError) Error() string {
	if e.Forced {
		return "analysis: " + e.File + ": metering it as ordinary traffic (params.input is traffic): " + e.Err.Error()
	}
	return "analysis: " + e.File + ": metering it as ordinary traffic (" + strconv.FormatUint(e.Export, 10) + " of " +
		strconv.FormatUint(e.Datagrams, 10) + " UDP datagrams in the first " + strconv.FormatUint(e.Packets, 10) +
		" packets are NetFlow or IPFIX; export over TCP is not read from captures): " + e.Err.Error() +
		`; set params.input to "export" to decode it as flow export`
}

// Is makes errors.Is(err, ErrTrafficCapture) true.
func (e *TrafficError) Is(target error) bool { return target == ErrTrafficCapture }

// Unwrap returns the meter's error.
func (e *TrafficError) Unwrap() error { return e.Err }

// ParamError is a job parameter that is unknown, of the wrong type or out
// of range. The API answers it with 400.
type ParamError struct {
	// Param is the parameter's JSON name ("filter", "by[1]"), empty for the
	// parameter object as a whole.
	Param string
	// Column is the 1-based byte column of a filter parse error, 0
	// otherwise.
	Column int
	Reason string
	// Err is the underlying error, if any (a *filter.Error for a filter
	// that does not parse).
	Err error
}

func (e *ParamError) Error() string {
	if e.Param == "" {
		return "analysis: params: " + e.Reason
	}
	return "analysis: params." + e.Param + ": " + e.Reason
}

func (e *ParamError) Unwrap() error { return e.Err }

func paramErr(param, format string, args ...any) *ParamError {
	return &ParamError{Param: param, Reason: fmt.Sprintf(format, args...)}
}

// FileError is an input file that cannot be read: missing, of no known
// type, truncated or corrupt. Offset is where reading stopped (-1 when
// unknown).
type FileError struct {
	File   string
	Offset int64
	Err    error
}

func (e *FileError) Error() string {
	s := "analysis: " + e.File
	if e.Offset >= 0 {
		s += ": at byte " + strconv.FormatInt(e.Offset, 10)
	}
	return s + ": " + e.Err.Error()
}

func (e *FileError) Unwrap() error { return e.Err }

// Errors of file contents, wrapped in a *FileError.
var (
	ErrUnknownFileType = errors.New("not a pcap, pcapng, IPFIX or NetFlow file")
	ErrTruncated       = errors.New("truncated message")
)
