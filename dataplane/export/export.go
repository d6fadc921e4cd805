// Package export holds the outputs records leave Sluice through: JSON lines
// to stdout, a file or a TCP receiver, IPFIX re-export over TCP, UDP or to
// files, and discard (for measurements).
package export

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"sync/atomic"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
)

// Output receives decoded records. Record is called by one goroutine (the
// mediator's); r and everything m points to are valid only during the call.
// Records count as sent once they reached the destination (for buffered
// outputs: after a successful Flush).
type Output interface {
	Record(m *jsonl.Meta, r *ipfix.Record)
	// Flush pushes buffered records out; the mediator calls it when it goes
	// idle and before Close.
	Flush() error
	Close() error
	// Name identifies the output in metrics, e.g. "jsonl:-".
	Name() string
	// Stats reports records sent and dropped so far; safe from any goroutine.
	Stats() Stats
}

// Stats are an output's counters.
type Stats struct {
	Sent    uint64
	Dropped uint64
	Errors  uint64
}

// outputForms lists the output specs, for error messages.
const outputForms = "jsonl:-, jsonl:PATH, jsonl+tcp://HOST:PORT, discard, ipfix+tcp://HOST:PORT, ipfix+tls://HOST:PORT, ipfix+udp://HOST:PORT, ipfix-file:PATH, kafka://BROKER/TOPIC or graphql+http(s)://HOST/PATH"

// Parse builds an output from its flag form: "jsonl:-" (stdout),
// "jsonl:PATH[?rotate_size=256MiB&rotate_every=1h]" (a file, appended to;
// rotated only with the options), "jsonl+tcp://host:port[?queue=16MiB]"
// (newline-delimited JSON over TCP), "discard", or IPFIX re-export:
// "ipfix+tcp://host:port[?queue=16MiB]",
// "ipfix+tls://host:port[?queue=16MiB&ca_file=CA&cert_file=C&key_file=K&server_name=N]"
// (IPFIX over TLS: the server verified against ca_file, the system's roots
// without it; cert_file and key_file for mutual TLS; server_name defaults to
// the host),
// "ipfix+udp://host:port[?mtu=1428&template_interval=60s]" (without mtu,
// datagrams carry up to 1400 octets), and
// "ipfix-file:PATH[?rotate_size=256MiB&rotate_every=1h]", Kafka:
// "kafka://BROKER[,BROKER...]/TOPIC[?format=json|goflow2-pb&key=...]" (see
// KafkaConfig), and GraphQL ingestion: "graphql+http(s)://HOST/PATH[?batch=N]"
// (see GraphQLConfig).
func Parse(spec string, stdout io.Writer) (Output, error) {
	switch {
	case spec == "discard":
		return &Discard{}, nil
	case spec == "jsonl:-":
		return NewJSONL(spec, nopCloser{stdout}), nil
	case strings.HasPrefix(spec, "jsonl:"):
		path, size, every, err := parseJSONLFileSpec(spec)
		if err != nil {
			return nil, err
		}
		return NewJSONLFile(spec, path, size, every)
	case strings.HasPrefix(spec, "jsonl+tcp://"):
		addr, queue, err := parseJSONLTCPSpec(spec)
		if err != nil {
			return nil, err
		}
		return NewJSONLTCP(spec, addr, queue), nil
	case isIPFIXSpec(spec):
		return openIPFIX(spec)
	case strings.HasPrefix(spec, "kafka://"):
		c, err := parseKafkaSpec(spec)
		if err != nil {
			return nil, err
		}
		return NewKafka(spec, c)
	case strings.HasPrefix(spec, "graphql+http://"), strings.HasPrefix(spec, "graphql+https://"):
		c, err := parseGraphQLSpec(spec)
		if err != nil {
			return nil, err
		}
		return NewGraphQL(spec, c)
	}
	return nil, fmt.Errorf("export: unknown output %q (want %s)", spec, outputForms)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// Discard counts records and drops them. Record counts in a plain field
// (one goroutine calls it) and publishes the count every 1,024 records and
// at each Flush: an atomic add per record was a quarter of the mediator's
// time with this output.
type Discard struct {
	local uint64
	n     atomic.Uint64
}

func (d *Discard) Record(*jsonl.Meta, *ipfix.Record) {
	d.local++
	if d.local%1024 == 0 {
		d.n.Store(d.local)
	}
}
func (d *Discard) Flush() error { d.n.Store(d.local); return nil }
func (d *Discard) Close() error { return d.Flush() }
func (d *Discard) Name() string { return "discard" }
func (d *Discard) Stats() Stats { return Stats{Sent: d.n.Load()} }

// JSONL writes one JSON object per record through a buffer, to stdout or a
// file (rotated when made by NewJSONLFile with limits). It is driven by one
// goroutine (the mediator's); Stats is safe from any goroutine.
type JSONL struct {
	name string
	w    *bufio.Writer
	c    io.Closer
	rot  *jsonlRotation // nil: no rotation
	buf  []byte
	// pending counts records buffered since the last successful flush:
	// they are sent only once the flush succeeds.
	pending uint64
	sent    atomic.Uint64
	errs    atomic.Uint64
	drop    atomic.Uint64
	err     error
}

// NewJSONL returns an output writing JSON lines to w.
func NewJSONL(name string, w io.WriteCloser) *JSONL {
	return &JSONL{name: name, w: bufio.NewWriterSize(w, 256<<10), c: w, buf: make([]byte, 0, 4096)}
}

// Record implements Output. After a write or rotation error the output
// counts records as dropped instead of retrying forever.
func (j *JSONL) Record(m *jsonl.Meta, r *ipfix.Record) {
	if j.err != nil {
		j.drop.Add(1)
		return
	}
	j.buf = jsonl.AppendRecord(j.buf[:0], m, r)
	if j.rot != nil && j.rot.due(len(j.buf)) {
		if err := j.rotate(); err != nil {
			j.fail(err)
			j.drop.Add(1)
			return
		}
	}
	j.pending++
	if _, err := j.w.Write(j.buf); err != nil {
		j.fail(err)
		return
	}
	if j.rot != nil {
		j.rot.size += int64(len(j.buf))
	}
}

// fail records a write error: what was buffered is lost, and so is what
// comes next (a broken pipe or a full disk does not heal by retrying).
func (j *JSONL) fail(err error) {
	j.err = err
	j.errs.Add(1)
	j.drop.Add(j.pending)
	j.pending = 0
}

// Flush implements Output; it also rotates a file that is due while idle.
func (j *JSONL) Flush() error {
	if j.err != nil {
		return j.err
	}
	if j.rot != nil && j.rot.aged() {
		if err := j.rotate(); err != nil {
			j.fail(err)
			return err
		}
		return nil
	}
	if err := j.w.Flush(); err != nil {
		j.fail(err)
		return err
	}
	j.sent.Add(j.pending)
	j.pending = 0
	return nil
}

// Close implements Output.
func (j *JSONL) Close() error {
	ferr := j.Flush()
	if err := j.c.Close(); err != nil {
		return err
	}
	return ferr
}

func (j *JSONL) Name() string { return j.name }

func (j *JSONL) Stats() Stats {
	return Stats{Sent: j.sent.Load(), Dropped: j.drop.Load(), Errors: j.errs.Load()}
}
