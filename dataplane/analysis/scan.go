package analysis

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"

	"github.com/sluice-flow/sluice/dataplane/filter"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/meter"
	"github.com/sluice-flow/sluice/dataplane/offline/decode"
	"github.com/sluice-flow/sluice/dataplane/offline/pcap"
)

// Input is what a job reads, and the operator's bounds on it.
type Input struct {
	// Files are read in order, with templates kept from one to the next
	// as `sluice decode` keeps them.
	Files []string
	// Progress, when not nil, is called with the fraction (0 to 1) of the
	// input bytes read so far, from the goroutine running the job, at
	// most once per 256 KiB read and once with 1 at the end.
	Progress func(fraction float64)
	// MaxKeys bounds the distinct keys a job holds (topn keys, split
	// series candidates, graph hosts and conversations): 0 means
	// DefaultMaxKeys. What does not fit is counted in the result's
	// Overflow.
	MaxKeys int
	// ScopeByPort scopes templates by exporter address and port, as
	// `sluice decode --scope-port`.
	ScopeByPort bool
}

// DefaultMaxKeys bounds a job's tables. At the bound a topn table takes
// about 100 MB (8-octet keys) to 210 MB (64-octet keys), a graph about
// 400 MB (hosts and conversations each at the bound).
const DefaultMaxKeys = 2 << 20

func (in *Input) maxKeys() int {
	if in.MaxKeys <= 0 {
		return DefaultMaxKeys
	}
	return in.MaxKeys
}

// Summary says what a job read.
type Summary struct {
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
	// Datagrams counts the UDP datagrams of captures.
	Datagrams      uint64 `json:"datagrams"`
	Messages       uint64 `json:"messages"`
	DataRecords    uint64 `json:"data_records"`
	OptionsRecords uint64 `json:"options_records"`
	// Matched counts the records the filter kept and the job used (data
	// records; the records job counts options records too).
	Matched uint64 `json:"matched"`
	// FilterErrors counts records of templates the filter does not
	// compile for (a field key typed unlike the literal): they do not
	// match.
	FilterErrors uint64 `json:"filter_errors,omitempty"`
	// DecodeErrors counts decoding failures by reason, as `sluice decode`
	// reports them (unknown_template, bad_set_length, ...).
	DecodeErrors map[string]uint64 `json:"decode_errors,omitempty"`
	// Traffic says what the flow meter read, when captures of ordinary
	// traffic were metered into flows (the messages and records above
	// count the meter's).
	Traffic *TrafficSummary `json:"traffic,omitempty"`
}

// sink receives the records a scan keeps. The record and what it points
// to are valid only during the call.
type sink interface {
	record(r *decode.Record)
}

const (
	readBufSize  = 256 << 10
	sniffPackets = 4096
	maxPlans     = 4096
	maxUptimes   = 1 << 16
	// maxRawNetFlow bounds a raw NetFlow payload file: one datagram.
	maxRawNetFlow = 1 << 16
)

// scan reads a job's files and hands the records its filter keeps to a
// sink. It belongs to the goroutine running the job.
type scan struct {
	ctx     context.Context
	in      *Input
	cfg     compiled
	sizes   []int64
	total   int64
	passes  int
	pass    int
	read    int64 // bytes read in this pass
	lastRep int64
	br      *bufio.Reader

	dec     *decode.Decoder
	handle  decode.Handler
	sink    sink
	options bool
	filters layoutCache[filterPlan]
	uptimes uptimeTable
	sum     Summary
	// traffic[i] is the sniffing of file i when it is a capture of
	// ordinary traffic, metered into flows by meter (nil otherwise).
	traffic []*sniffed
	meter   *meter.Meter
	// fail, set by a sink, stops the reading at the next buffer refill.
	fail error
}

type filterPlan struct{ p *filter.Program }

// newScan checks the files and sniffs captures. passes is how often the
// job will read them (for progress).
func newScan(ctx context.Context, in *Input, cfg compiled, passes int) (*scan, error) {
	if len(in.Files) == 0 {
		return nil, &ParamError{Param: "files", Reason: "no input files"}
	}
	s := &scan{ctx: ctx, in: in, cfg: cfg, passes: passes, br: bufio.NewReaderSize(nil, readBufSize)}
	for _, name := range in.Files {
		st, err := os.Stat(name)
		if err != nil {
			return nil, &FileError{File: name, Offset: -1, Err: err}
		}
		if !st.Mode().IsRegular() {
			return nil, &FileError{File: name, Offset: -1, Err: errors.New("not a regular file")}
		}
		s.sizes = append(s.sizes, st.Size())
		s.total += st.Size()
	}
	for _, name := range in.Files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t, err := s.classify(name)
		if err != nil {
			return nil, err
		}
		s.traffic = append(s.traffic, t)
	}
	s.handle = s.record
	return s, nil
}

// run reads every file once, handing records to k. options passes options
// records too.
func (s *scan) run(k sink, options bool) error {
	s.sink, s.options = k, options
	s.dec = decode.New()
	s.dec.ScopeByPort = s.in.ScopeByPort
	s.filters = layoutCache[filterPlan]{}
	s.uptimes = uptimeTable{}
	s.sum = Summary{Files: len(s.in.Files), Bytes: s.total}
	s.read, s.lastRep = 0, 0
	s.meter = nil
	for i, name := range s.in.Files {
		if err := s.file(i, name); err != nil {
			return err
		}
	}
	if err := s.closeMeter(); err != nil {
		return err
	}
	if s.fail != nil {
		return s.fail
	}
	st := &s.dec.Stats
	s.sum.Messages, s.sum.DataRecords, s.sum.OptionsRecords = st.Messages, st.DataRecords, st.OptionsRecords
	for reason, n := range st.Errors {
		if s.sum.DecodeErrors == nil {
			s.sum.DecodeErrors = make(map[string]uint64)
		}
		s.sum.DecodeErrors[reason] += n
	}
	s.pass++
	if s.pass == s.passes {
		s.report(1)
	}
	return s.ctx.Err()
}

func (s *scan) report(f float64) {
	if s.in.Progress != nil {
		s.in.Progress(f)
	}
}

// countReader counts the bytes a scan reads, reports progress and stops
// the reading once the job is cancelled: a check every 256 KiB is cheap
// and often enough.
type countReader struct {
	r io.Reader
	s *scan
}

func (c *countReader) Read(b []byte) (int, error) {
	if err := c.s.ctx.Err(); err != nil {
		return 0, err
	}
	if c.s.fail != nil {
		return 0, c.s.fail
	}
	n, err := c.r.Read(b)
	s := c.s
	s.read += int64(n)
	if s.total > 0 && s.read-s.lastRep >= readBufSize {
		s.lastRep = s.read
		s.report((float64(s.pass) + float64(min(s.read, s.total))/float64(s.total)) / float64(s.passes))
	}
	return n, err
}

// file decodes file i, telling captures from IPFIX and NetFlow files by
// their first bytes as `sluice decode` does; a capture of ordinary
// traffic is metered into flows.
func (s *scan) file(i int, name string) error {
	f, err := os.Open(name)
	if err != nil {
		return &FileError{File: name, Offset: -1, Err: err}
	}
	defer f.Close()
	br := s.br
	br.Reset(&countReader{r: f, s: s})
	head, _ := br.Peek(4)
	var off int64 = -1
	switch {
	case pcap.IsCapture(head) && s.traffic[i] != nil:
		if err = s.meterCapture(name, br, s.sizes[i]); err != nil {
			err = s.traffic[i].err(name, err)
		}
	case pcap.IsCapture(head):
		err = s.capture(br)
	case len(head) >= 2 && head[0] == 0 && head[1] == ipfix.VersionIPFIX:
		off, err = s.ipfixFile(br)
	case len(head) >= 2 && head[0] == 0 && (head[1] == ipfix.VersionNetFlow9 || head[1] == ipfix.VersionNetFlow5):
		off, err = 0, s.netflowFile(br)
	default:
		err = ErrUnknownFileType
	}
	br.Reset(nil)
	if cerr := s.ctx.Err(); cerr != nil {
		return cerr
	}
	if s.fail != nil {
		return s.fail
	}
	var te *TrafficError
	if errors.As(err, &te) {
		return te
	}
	if err != nil {
		return &FileError{File: name, Offset: off, Err: err}
	}
	return nil
}

// ipfixFile decodes an RFC 5655 file (messages back to back) straight from
// the read buffer. It returns the offset of the message it stopped at.
func (s *scan) ipfixFile(br *bufio.Reader) (int64, error) {
	var none netip.AddrPort
	var off int64
	for {
		h, err := br.Peek(4)
		if len(h) == 0 && err == io.EOF {
			return off, nil
		}
		if len(h) < 4 {
			return off, fmt.Errorf("%w: %d bytes after the last message", ErrTruncated, len(h))
		}
		if v := binary.BigEndian.Uint16(h); v != ipfix.VersionIPFIX {
			return off, fmt.Errorf("not an IPFIX message (version %d)", v)
		}
		n := int(binary.BigEndian.Uint16(h[2:]))
		if n < ipfix.HeaderLenIPFIX {
			return off, fmt.Errorf("IPFIX message length %d is shorter than its header", n)
		}
		b, _ := br.Peek(n)
		if len(b) < n {
			if err := s.ctx.Err(); err != nil {
				return off, err
			}
			return off, fmt.Errorf("%w: %d of %d bytes", ErrTruncated, len(b), n)
		}
		if k, err := s.dec.Decode(none, b, s.handle); k == 0 {
			return off, err
		}
		br.Discard(n)
		off += int64(n)
	}
}

// netflowFile decodes a raw NetFlow v9 or v5 payload: one message.
func (s *scan) netflowFile(br *bufio.Reader) error {
	b, err := io.ReadAll(io.LimitReader(br, maxRawNetFlow+1))
	if err != nil {
		return err
	}
	if len(b) > maxRawNetFlow {
		return errors.New("NetFlow payload file longer than a datagram")
	}
	_, err = s.dec.Decode(netip.AddrPort{}, b, s.handle)
	return err
}

func (s *scan) capture(r io.Reader) error {
	pr, err := pcap.NewReader(r)
	if err != nil {
		return err
	}
	var dg pcap.Datagram
	for {
		err := pr.Next(&dg)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		s.sum.Datagrams++
		b := dg.Payload
		for len(b) >= 4 {
			n, _ := s.dec.Decode(dg.Src, b, s.handle)
			if n == 0 || b[1] != ipfix.VersionIPFIX {
				break
			}
			b = b[n:]
		}
	}
}

// record is the decoder's handler: options records teach the uptime
// table, the filter decides, the sink takes the rest.
func (s *scan) record(r *decode.Record) {
	l := r.Rec.Layout
	if l.Options {
		s.uptimes.learn(r, s.in.ScopeByPort)
		if !s.options {
			return
		}
	}
	if s.cfg.expr != nil {
		fp := s.filters.lookup(l)
		if fp == nil {
			fp = s.compileFilter(l)
		}
		if fp.p == nil {
			s.sum.FilterErrors++
			return
		}
		if !fp.p.Match(r.Rec) {
			return
		}
	}
	s.sum.Matched++
	s.sink.record(r)
}

func (s *scan) compileFilter(l *ipfix.Layout) *filterPlan {
	p, err := s.cfg.expr.Compile(l)
	if err != nil {
		p = nil
	}
	fp := &filterPlan{p: p}
	s.filters.store(l, fp)
	return fp
}

// layoutCache maps layouts to what a job compiled for them. Layouts are
// compared by pointer: the decoder compiles a template once per
// definition it reads. Bounded: it starts over when full.
type layoutCache[P any] struct {
	last  *ipfix.Layout
	lastP *P
	m     map[*ipfix.Layout]*P
}

// lookup returns l's plan or nil. Small enough to inline.
func (c *layoutCache[P]) lookup(l *ipfix.Layout) *P {
	if l == c.last {
		return c.lastP
	}
	return c.slow(l)
}

func (c *layoutCache[P]) slow(l *ipfix.Layout) *P {
	p := c.m[l]
	if p != nil {
		c.last, c.lastP = l, p
	}
	return p
}

func (c *layoutCache[P]) store(l *ipfix.Layout, p *P) {
	if c.m == nil || len(c.m) >= maxPlans {
		c.m = make(map[*ipfix.Layout]*P)
	}
	c.m[l] = p
	c.last, c.lastP = l, p
}

// classify sniffs a capture for flow export unless params.input decides.
// It returns nil for export (IPFIX and NetFlow files, captures of export
// datagrams) and what it saw for a capture of ordinary traffic.
func (s *scan) classify(name string) (*sniffed, error) {
	if s.cfg.input == inputExport {
		return nil, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, &FileError{File: name, Offset: -1, Err: err}
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	head, _ := br.Peek(4)
	if !pcap.IsCapture(head) {
		if s.cfg.input == inputTraffic {
			return nil, &TrafficError{File: name, Forced: true, Err: errNotCapture}
		}
		return nil, nil // IPFIX and NetFlow files are export; file() judges the rest
	}
	if s.cfg.input == inputTraffic {
		return &sniffed{forced: true}, nil
	}
	pr, err := pcap.NewReader(br)
	if err != nil {
		return nil, &FileError{File: name, Offset: -1, Err: err}
	}
	var dg pcap.Datagram
	var datagrams, export uint64
	for pr.Stats().Packets < sniffPackets {
		if err := pr.Next(&dg); err != nil {
			break // read errors are reported by the decoding pass
		}
		datagrams++
		if looksLikeExport(dg.Payload) {
			export++
		}
	}
	if export > 0 && 2*export >= datagrams {
		return nil, nil
	}
	return &sniffed{packets: pr.Stats().Packets, datagrams: datagrams, export: export}, nil
}

// looksLikeExport reports whether a UDP payload is NetFlow v5 or v9 or
// IPFIX: a valid header, and sets that tile the message.
func looksLikeExport(b []byte) bool {
	var m ipfix.Message
	ipfixSeen := false
	for len(b) > 0 {
		if err := m.Decode(b); err != nil {
			return false
		}
		switch m.Version {
		case ipfix.VersionNetFlow5:
			return len(b)-m.Length < 48
		case ipfix.VersionNetFlow9:
			return setsValid(&m)
		}
		if !setsValid(&m) {
			return false
		}
		ipfixSeen = true
		b = b[m.Length:]
	}
	return ipfixSeen
}

func setsValid(m *ipfix.Message) bool {
	var set ipfix.Set
	it := m.Sets()
	n := 0
	for it.Next(&set) {
		n++
	}
	return it.Err() == nil && n > 0
}

// uptimeTable holds each exporter's systemInitTimeMilliseconds, learned
// from its options records: IPFIX flowStartSysUpTime and flowEndSysUpTime
// count from it (RFC 7011's IE 22 and 21 definitions).
type uptimeTable struct {
	m      map[uptimeKey]int64
	last   uptimeKey
	lastNs int64
	lastOK bool
}

type uptimeKey struct {
	exporter netip.AddrPort
	domain   uint32
}

const ieSystemInitTimeMilliseconds = 160

func keyOf(r *decode.Record, byPort bool) uptimeKey {
	e := r.Exporter
	if !byPort {
		e = netip.AddrPortFrom(e.Addr(), 0)
	}
	return uptimeKey{e, r.Msg.DomainID}
}

func (t *uptimeTable) learn(r *decode.Record, byPort bool) {
	j := r.Rec.Layout.Index(0, ieSystemInitTimeMilliseconds)
	if j < 0 || len(r.Rec.Bytes(j)) == 0 || len(r.Rec.Bytes(j)) > 8 {
		return
	}
	if t.m == nil {
		t.m = make(map[uptimeKey]int64)
	}
	k := keyOf(r, byPort)
	if _, ok := t.m[k]; !ok && len(t.m) >= maxUptimes {
		return
	}
	t.m[k] = r.Rec.UnixNano(j)
	t.lastOK = false
}

// initNs returns the exporter's init time in ns.
func (t *uptimeTable) initNs(r *decode.Record, byPort bool) (int64, bool) {
	k := keyOf(r, byPort)
	if t.lastOK && k == t.last {
		return t.lastNs, true
	}
	v, ok := t.m[k]
	if ok {
		t.last, t.lastNs, t.lastOK = k, v, true
	}
	return v, ok
}
