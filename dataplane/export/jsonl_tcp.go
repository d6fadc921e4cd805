package export

import (
	"fmt"
	"strings"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
)

// parseJSONLTCPSpec parses "jsonl+tcp://host:port[?queue=16MiB]".
func parseJSONLTCPSpec(spec string) (addr string, queue int64, err error) {
	addr, q, err := splitQuery(spec, strings.TrimPrefix(spec, "jsonl+tcp://"), "queue")
	if err != nil {
		return "", 0, err
	}
	if err := checkHostPort(spec, addr); err != nil {
		return "", 0, err
	}
	if queue, err = optSize(spec, q, "queue", DefaultTCPQueueBytes); err != nil {
		return "", 0, err
	}
	if queue < 2*tcpChunkBytes {
		return "", 0, fmt.Errorf("export: %q: queue must be at least %d KiB", spec, 2*tcpChunkBytes>>10)
	}
	return addr, queue, nil
}

// JSONLTCP sends records as newline-delimited JSON over TCP (for Logstash,
// Vector or Fluent Bit tcp inputs). Record never blocks: it appends the line
// to a chunk queued for a writer goroutine that owns the connection; when
// the queue is full, records are dropped and counted. The writer reconnects
// with exponential backoff. Records count as sent once written to the
// socket. A line cut by a broken connection is dropped (counted), and each
// new connection starts at a line boundary, so a receiver sees at most a
// truncated last line on a broken connection, never two lines run together.
// Record, Flush and Close are called by one goroutine (the mediator's);
// Stats, Queued and Reconnects are safe from any goroutine.
type JSONLTCP struct {
	tcpStream // one unit per line
}

// NewJSONLTCP starts an output sending to addr ("host:port") with a queue of
// at most queueBytes octets (0: DefaultTCPQueueBytes; at least two chunks of
// 256 KiB).
func NewJSONLTCP(name, addr string, queueBytes int64) *JSONLTCP {
	t := &JSONLTCP{}
	t.start(name, addr, queueBytes, 16<<10, nil)
	return t
}

// Record implements Output.
func (t *JSONLTCP) Record(m *jsonl.Meta, r *ipfix.Record) {
	if t.closed {
		t.dropped.Add(1)
		return
	}
	b := t.begin()
	t.commit(jsonl.AppendRecord(b, m, r), 1)
}

// Flush implements Output: the current chunk is queued when the writer is
// idle, else the writer queues it when it runs out of work. While
// disconnected lines gather into full chunks instead, so small flushes do
// not use up the queue's slots.
func (t *JSONLTCP) Flush() error {
	t.flush()
	return nil
}

// Close implements Output: queued records get a few seconds (tcpCloseGrace)
// to go out; what is left is counted as dropped. Records given after Close
// are dropped.
func (t *JSONLTCP) Close() error {
	t.shutdown()
	return nil
}
