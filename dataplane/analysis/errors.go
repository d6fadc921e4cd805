package analysis

import (
	"errors"
	"fmt"
	"strconv"
)

// ErrTrafficCapture is the error of a job over a capture of ordinary
// traffic (or with params.input "traffic"): such captures must first be
// metered into flows, which is not available yet. Test with errors.Is; the
// error returned is a *TrafficError.
var ErrTrafficCapture = errors.New("analysis: metering of ordinary traffic is not available yet")

// ErrUnknownJob is returned by Run and ParseParams for a job type that is
// not one of JobRecords, JobTopN, JobTimeseries, JobGraph.
var ErrUnknownJob = errors.New("analysis: unknown job type")

// TrafficError says which file was taken for ordinary traffic and why.
type TrafficError struct {
	File string
	// Forced is true when params.input said "traffic"; otherwise the
	// capture was sniffed: Packets read, of which Datagrams were UDP and
	// Export looked like NetFlow or IPFIX messages.
	Forced                     bool
	Packets, Datagrams, Export uint64
}

func (e *TrafficError) Error() string {
	if e.Forced {
		return "analysis: " + e.File + ": params.input is traffic: metering of ordinary traffic is not available yet"
	}
	return "analysis: " + e.File + ": ordinary traffic (" + strconv.FormatUint(e.Export, 10) + " of " +
		strconv.FormatUint(e.Datagrams, 10) + " UDP datagrams in the first " + strconv.FormatUint(e.Packets, 10) +
		" packets are NetFlow or IPFIX; export over TCP is not read from captures): metering of ordinary traffic is not available yet; " +
		`set params.input to "export" to decode it as flow export anyway`
}

// Is makes errors.Is(err, ErrTrafficCapture) true.
func (e *TrafficError) Is(target error) bool { return target == ErrTrafficCapture }

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
