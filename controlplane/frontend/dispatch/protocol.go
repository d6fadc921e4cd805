package dispatch

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
)

// Job is one unit of work as the broker hands it to a worker.
type Job struct {
	ID     string          `json:"id"`
	Type   string          `json:"type"`
	Files  []string        `json:"files,omitempty"` // paths the worker can open
	Params json.RawMessage `json:"params,omitempty"`
	// Attempt counts from 1; the broker raises it when a job moves to
	// another worker after its first one was lost.
	Attempt int `json:"attempt"`
}

// Output is one rendering of a job's result (for instance JSON and CSV of
// the same table).
type Output struct {
	Format      string `json:"format"`
	ContentType string `json:"content_type"`
	Data        []byte `json:"-"`
}

// WorkerInfo says who a worker is. ID is the broker's name for the
// connection (a fresh one per connection); PID and Host come from the
// worker's READY.
type WorkerInfo struct {
	ID   string `json:"id"`
	PID  int    `json:"pid"`
	Host string `json:"host"`
}

const tag = "SLD1"

// Commands, as the second frame of every message.
const (
	cmdReady  = "READY"
	cmdHB     = "HB"
	cmdProg   = "PROG"
	cmdDone   = "DONE"
	cmdFail   = "FAIL"
	cmdBye    = "BYE"
	cmdJob    = "JOB"
	cmdCancel = "CANCEL"
	cmdReset  = "RESET"
)

var (
	errBadTag     = errors.New("dispatch: message without the protocol tag")
	errShortFrame = errors.New("dispatch: message too short for its command")
)

func appendProgress(dst []byte, p float64) []byte {
	return binary.BigEndian.AppendUint64(dst, math.Float64bits(p))
}

func parseProgress(b []byte) (float64, error) {
	if len(b) != 8 {
		return 0, errShortFrame
	}
	p := math.Float64frombits(binary.BigEndian.Uint64(b))
	if math.IsNaN(p) {
		return 0, nil
	}
	return min(max(p, 0), 1), nil
}

// frames converts frames to the variadic arguments SendMessage takes.
func frames(parts ...[]byte) []any {
	out := make([]any, len(parts))
	for i, p := range parts {
		out[i] = p
	}
	return out
}
