// Package export holds the outputs records leave Sluice through: JSON lines
// to stdout, a file or a TCP receiver, IPFIX re-export over TCP, UDP or to
// files, and discard (for measurements).
package export

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
)

// Output receives decoded records. Record, Flush and Close are called by
// one goroutine at a time (a mediator worker; Laned outputs also take
// records through lanes, one per worker); r and everything m points to are
// valid only during the call.
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

// Laned is an Output that also takes records from several goroutines at
// once: each goroutine writes through a lane of its own (Lane), which
// batches locally and hands whole batches to the output, so the records of
// one lane stay in their order. A lane is an Output driven by one
// goroutine: Record batches, Flush hands the batch over and flushes the
// output, Close is Flush (the output itself is closed once, by its owner).
// Lane returns nil when the output cannot take concurrent writers as
// configured (a rotating file).
type Laned interface {
	Output
	Lane() Output
}

// Discard counts records and drops them. Record counts in a plain field
// (one goroutine calls it) and publishes the count every 1,024 records and
// at each Flush: an atomic add per record was a quarter of the mediator's
// time with this output. Its lanes do the same with counts of their own.
type Discard struct {
	local uint64
	n     atomic.Uint64
}

func (d *Discard) Record(*jsonl.Meta, *ipfix.Record) {
	if d.local++; d.local == 1024 {
		d.n.Add(d.local)
		d.local = 0
	}
}
func (d *Discard) Flush() error { d.n.Add(d.local); d.local = 0; return nil }
func (d *Discard) Close() error { return d.Flush() }
func (d *Discard) Name() string { return "discard" }
func (d *Discard) Stats() Stats { return Stats{Sent: d.n.Load()} }

type discardLane struct {
	d     *Discard
	local uint64
}

func (l *discardLane) Record(*jsonl.Meta, *ipfix.Record) {
	if l.local++; l.local == 1024 {
		l.d.n.Add(l.local)
		l.local = 0
	}
}
func (l *discardLane) Flush() error { l.d.n.Add(l.local); l.local = 0; return nil }
func (l *discardLane) Close() error { return l.Flush() }
func (l *discardLane) Name() string { return "discard" }
func (l *discardLane) Stats() Stats { return l.d.Stats() }

// Lane implements Laned.
func (d *Discard) Lane() Output { return &discardLane{d: d} }

// JSONL writes one JSON object per record to stdout or a file (rotated when
// made by NewJSONLFile with limits), encoding straight into its buffer. It
// is driven by one goroutine (the mediator's), or, without rotation, by
// lanes (Lane) from several; Stats is safe from any goroutine.
type JSONL struct {
	name string
	w    io.Writer
	c    io.Closer
	rot  *jsonlRotation // nil: no rotation
	// mu serialises lanes' hand-offs with each other and with Flush and
	// Close; Record on the output itself does not take it.
	mu  sync.Mutex
	out []byte // lines not written yet
	// pending counts the records in out: they are sent once written.
	pending uint64
	sent    atomic.Uint64
	errs    atomic.Uint64
	drop    atomic.Uint64
	err     error
}

// jsonlBuffer is how much a JSONL output (or a lane) gathers before a
// write.
const jsonlBuffer = 256 << 10

// NewJSONL returns an output writing JSON lines to w.
func NewJSONL(name string, w io.WriteCloser) *JSONL {
	return &JSONL{name: name, w: w, c: w, out: make([]byte, 0, jsonlBuffer+8<<10)}
}

// Record implements Output. After a write or rotation error the output
// counts records as dropped instead of retrying forever.
func (j *JSONL) Record(m *jsonl.Meta, r *ipfix.Record) {
	if j.err != nil {
		j.drop.Add(1)
		return
	}
	start := len(j.out)
	j.out = jsonl.AppendRecord(j.out, m, r)
	if j.rot != nil {
		n := len(j.out) - start
		if j.rot.due(n) {
			if err := j.rotate(start); err != nil {
				j.fail(err)
				j.drop.Add(1)
				return
			}
		}
		j.rot.size += int64(n)
	}
	j.pending++
	if len(j.out) >= jsonlBuffer {
		j.write()
	}
}

// write writes out what is buffered.
func (j *JSONL) write() error {
	if j.err != nil {
		return j.err
	}
	if len(j.out) == 0 {
		return nil
	}
	if _, err := j.w.Write(j.out); err != nil {
		j.fail(err)
		return err
	}
	j.out = j.out[:0]
	j.sent.Add(j.pending)
	j.pending = 0
	return nil
}

// fail records a write error: what was buffered is lost, and so is what
// comes next (a broken pipe or a full disk does not heal by retrying).
func (j *JSONL) fail(err error) {
	j.err = err
	j.errs.Add(1)
	j.drop.Add(j.pending)
	j.pending = 0
	j.out = j.out[:0]
}

// Flush implements Output; it also rotates a file that is due while idle.
func (j *JSONL) Flush() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.flushLocked()
}

func (j *JSONL) flushLocked() error {
	if j.err != nil {
		return j.err
	}
	if j.rot != nil && j.rot.aged() {
		if err := j.rotate(len(j.out)); err != nil {
			j.fail(err)
			return err
		}
		return nil
	}
	return j.write()
}

// Close implements Output.
func (j *JSONL) Close() error {
	ferr := j.Flush()
	if err := j.c.Close(); err != nil {
		return err
	}
	return ferr
}

// Lane implements Laned: nil for a rotating file (its size is checked line
// by line).
func (j *JSONL) Lane() Output {
	if j.rot != nil {
		return nil
	}
	return &jsonlLane{j: j, buf: make([]byte, 0, jsonlLaneBuffer+8<<10)}
}

// jsonlLaneBuffer is what a lane gathers before handing it over.
const jsonlLaneBuffer = 64 << 10

// jsonlLane encodes into a buffer of its own and writes it to the output's
// writer whole, under the output's lock.
type jsonlLane struct {
	j   *JSONL
	buf []byte
	n   uint64 // records in buf
}

func (l *jsonlLane) Record(m *jsonl.Meta, r *ipfix.Record) {
	l.buf = jsonl.AppendRecord(l.buf, m, r)
	l.n++
	if len(l.buf) >= jsonlLaneBuffer {
		l.j.mu.Lock()
		l.handOff()
		l.j.mu.Unlock()
	}
}

// handOff writes the lane's lines (after what the output buffered itself);
// the caller holds j.mu.
func (l *jsonlLane) handOff() {
	j := l.j
	if l.n == 0 {
		return
	}
	if j.write() != nil {
		j.drop.Add(l.n)
	} else if _, err := j.w.Write(l.buf); err != nil {
		j.fail(err)
		j.drop.Add(l.n)
	} else {
		j.sent.Add(l.n)
	}
	l.buf, l.n = l.buf[:0], 0
}

func (l *jsonlLane) Flush() error {
	l.j.mu.Lock()
	defer l.j.mu.Unlock()
	l.handOff()
	return l.j.flushLocked()
}

func (l *jsonlLane) Close() error { return l.Flush() }
func (l *jsonlLane) Name() string { return l.j.name }
func (l *jsonlLane) Stats() Stats { return l.j.Stats() }

func (j *JSONL) Name() string { return j.name }

func (j *JSONL) Stats() Stats {
	return Stats{Sent: j.sent.Load(), Dropped: j.drop.Load(), Errors: j.errs.Load()}
}
