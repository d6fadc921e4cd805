package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// genConfig is `sluice gen`'s configuration.
type genConfig struct {
	addr          netip.AddrPort
	tcp           bool
	version       uint16
	rate          float64 // per second; 0 = as fast as possible
	ratePackets   bool    // rate counts messages, not records
	duration      time.Duration
	count         int // messages in all; 0 = no limit
	exporters     int
	records       int
	templates     []string
	tplInterval   time.Duration
	dataFirst     bool
	distinctAddrs bool
	allowRemote   bool
	batch         int
	gso           bool
	keys          int // distinct flow keys in all; 0 = 16 messages' worth per exporter
}

// Template kinds the generator can send.
var genTemplates = map[string][]ipfix.FieldSpec{
	// 46 octets: the classic 5-tuple record.
	"5tuple": {
		{ID: 8, Length: 4}, {ID: 12, Length: 4}, {ID: 7, Length: 2}, {ID: 11, Length: 2},
		{ID: 4, Length: 1}, {ID: 6, Length: 1}, {ID: 1, Length: 8}, {ID: 2, Length: 8},
		{ID: 152, Length: 8}, {ID: 153, Length: 8},
	},
	"ipv6": {
		{ID: 27, Length: 16}, {ID: 28, Length: 16}, {ID: 7, Length: 2}, {ID: 11, Length: 2},
		{ID: 4, Length: 1}, {ID: 6, Length: 1}, {ID: 31, Length: 3}, {ID: 1, Length: 8},
		{ID: 2, Length: 8}, {ID: 152, Length: 8}, {ID: 153, Length: 8},
	},
	"varlen": {
		{ID: 8, Length: 4}, {ID: 12, Length: 4}, {ID: 7, Length: 2}, {ID: 11, Length: 2},
		{ID: 4, Length: 1}, {ID: 1, Length: 8}, {ID: 2, Length: 8},
		{ID: 82, Length: ipfix.VarLen}, {ID: 94, Length: ipfix.VarLen},
	},
}

var genOptionsFields = []ipfix.FieldSpec{
	{ID: 144, Length: 4}, // exportingProcessId (scope)
	{ID: 305, Length: 4}, // samplingPacketInterval
	{ID: 306, Length: 4}, // samplingPacketSpace
	{ID: 160, Length: 8}, // systemInitTimeMilliseconds
}

func parseRate(s string) (float64, bool, error) {
	packets := false
	switch {
	case strings.HasSuffix(s, "pps"):
		packets, s = true, strings.TrimSuffix(s, "pps")
	case strings.HasSuffix(s, "rps"):
		s = strings.TrimSuffix(s, "rps")
	}
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "k"):
		mult, s = 1e3, strings.TrimSuffix(s, "k")
	case strings.HasSuffix(s, "M"):
		mult, s = 1e6, strings.TrimSuffix(s, "M")
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 {
		return 0, false, fmt.Errorf("bad rate %q: want a number with an optional k or M and pps or rps, e.g. 1Mrps or 300kpps", s)
	}
	return v * mult, packets, nil
}

func runGen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:4739", "collector address")
	rate := fs.String("rate", "0", "target rate: records/s, or with a suffix 100krps, 300kpps (0 = as fast as possible)")
	duration := fs.Duration("duration", 10*time.Second, "how long to send (0 = until --count)")
	count := fs.Int("count", 0, "data messages to send in all (0 = until --duration)")
	exporters := fs.Int("exporters", 1, "exporters: each its own socket, source port, observation domain, templates and sequence numbers")
	records := fs.Int("records", 30, "data records per message")
	tcp := fs.Bool("tcp", false, "send over TCP (IPFIX only)")
	version := fs.Int("version", 10, "10 (IPFIX) or 9 (NetFlow v9)")
	templates := fs.String("templates", "5tuple", "data templates, comma-separated: 5tuple, ipv6, varlen; add options for an options template and record")
	tplInterval := fs.Duration("template-interval", time.Second, "template retransmit interval (UDP)")
	dataFirst := fs.Bool("data-first", false, "send the first data messages before any template")
	distinct := fs.Bool("distinct-addrs", false, "give each exporter its own loopback source address (127.0.1.N)")
	allowRemote := fs.Bool("allow-remote", false, "allow a destination outside loopback")
	batch := fs.Int("batch", 64, "messages per sendmmsg call")
	gso := fs.Bool("gso", true, "use UDP GSO when every message has the same size")
	keys := fs.Int("keys", 0, "distinct 5-tuples the data records cycle through, split among the exporters (0 = each exporter cycles through 16 messages' worth)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: sluice gen [flags]\n\nSends IPFIX or NetFlow v9 load and prints one JSON line with what it sent.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := genConfig{tcp: *tcp, version: uint16(*version), duration: *duration, count: *count,
		exporters: *exporters, records: *records, tplInterval: *tplInterval, dataFirst: *dataFirst,
		distinctAddrs: *distinct, allowRemote: *allowRemote, batch: *batch, gso: *gso, keys: *keys}
	var err error
	if cfg.rate, cfg.ratePackets, err = parseRate(*rate); err != nil {
		return err
	}
	ap, err := netip.ParseAddrPort(*addr)
	if err != nil {
		return fmt.Errorf("gen: --addr: %v", err)
	}
	cfg.addr = ap
	if !ap.Addr().IsLoopback() && !cfg.allowRemote {
		return fmt.Errorf("gen: %s is outside loopback; pass --allow-remote to send there", ap)
	}
	for _, t := range strings.Split(*templates, ",") {
		if _, ok := genTemplates[t]; !ok && t != "options" {
			return fmt.Errorf("gen: unknown template %q (5tuple, ipv6, varlen, options)", t)
		}
		cfg.templates = append(cfg.templates, t)
	}
	switch {
	case cfg.version != 9 && cfg.version != 10:
		return fmt.Errorf("gen: --version must be 9 or 10")
	case cfg.tcp && cfg.version == 9:
		return fmt.Errorf("gen: NetFlow v9 has no TCP framing; use --version 10 with --tcp")
	case cfg.exporters < 1 || cfg.exporters > 10000:
		return fmt.Errorf("gen: --exporters must be 1..10000")
	case cfg.records < 1:
		return fmt.Errorf("gen: --records must be at least 1")
	case cfg.batch < 1 || cfg.batch > 1024:
		return fmt.Errorf("gen: --batch must be 1..1024")
	case cfg.duration == 0 && cfg.count == 0:
		return fmt.Errorf("gen: give --duration or --count")
	case cfg.keys < 0 || cfg.keys > maxGenKeys:
		return fmt.Errorf("gen: --keys must be 0..%d", maxGenKeys)
	case cfg.keys > 0 && cfg.keys < cfg.exporters:
		return fmt.Errorf("gen: --keys must be at least --exporters")
	case cfg.keys > 0 && cfg.exporters > 255:
		// The exporter is one octet of the source address.
		return fmt.Errorf("gen: --keys needs --exporters 255 or fewer")
	}
	g, err := newGenerator(cfg)
	if err != nil {
		return err
	}
	defer g.close()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(stop)
	sum, err := g.run(stop)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(sum)
	fmt.Fprintf(stdout, "%s\n", b)
	return nil
}

// genExporter is one simulated exporter.
type genExporter struct {
	domain    uint32
	conn      net.Conn
	fd        int
	src       netip.AddrPort
	w         ipfix.MessageWriter
	tpl       []byte   // template message (patched per send)
	opt       []byte   // options data message, or nil
	data      [][]byte // data messages to cycle through (headers patched per send)
	recs      []int    // records in each data message
	next      int
	lastTpl   time.Time
	sentTpl   bool
	messages  uint64
	records   uint64
	bytes     uint64
	firstSeq  uint32
	templates uint64
}

// GenSummary is printed at the end of a run.
type GenSummary struct {
	Messages         uint64             `json:"messages"`
	Records          uint64             `json:"records"`
	Bytes            uint64             `json:"bytes"`
	TemplateMessages uint64             `json:"template_messages"`
	Seconds          float64            `json:"seconds"`
	RecordsPerSecond float64            `json:"records_per_second"`
	PacketsPerSecond float64            `json:"packets_per_second"`
	SendErrors       uint64             `json:"send_errors"`
	GSO              bool               `json:"gso"`
	Exporters        []GenExporterCount `json:"exporters"`
}

// GenExporterCount is one exporter's share of a run.
type GenExporterCount struct {
	Source            string `json:"source"`
	ObservationDomain uint32 `json:"observation_domain"`
	Messages          uint64 `json:"messages"`
	Records           uint64 `json:"records"`
	Bytes             uint64 `json:"bytes"`
	FirstSequence     uint32 `json:"first_sequence"`
	NextSequence      uint32 `json:"next_sequence"`
}

type generator struct {
	cfg     genConfig
	exps    []*genExporter
	sender  *batchSender
	errs    uint64
	useGSO  bool
	started time.Time
}

func newGenerator(cfg genConfig) (*generator, error) {
	g := &generator{cfg: cfg}
	for i := range cfg.exporters {
		e, err := g.newExporter(i)
		if err != nil {
			g.close()
			return nil, err
		}
		g.exps = append(g.exps, e)
	}
	g.useGSO = cfg.gso && !cfg.tcp && gsoAvailable && sameSizes(g.exps)
	g.sender = newBatchSender(cfg.batch, g.useGSO)
	return g, nil
}

func sameSizes(exps []*genExporter) bool {
	n := -1
	for _, e := range exps {
		for _, d := range e.data {
			if n >= 0 && len(d) != n {
				return false
			}
			n = len(d)
		}
	}
	return true
}

func (g *generator) close() {
	for _, e := range g.exps {
		if e.conn != nil {
			e.conn.Close()
		}
	}
}

func (g *generator) newExporter(i int) (*genExporter, error) {
	cfg := g.cfg
	e := &genExporter{domain: uint32(i + 1)}
	e.w = ipfix.MessageWriter{Version: cfg.version, DomainID: e.domain}
	network := "udp"
	if cfg.tcp {
		network = "tcp"
	}
	var local net.Addr
	if cfg.distinctAddrs && cfg.addr.Addr().Is4() && cfg.addr.Addr().IsLoopback() {
		src := netip.AddrFrom4([4]byte{127, 0, 1 + byte((i+1)>>8), byte(i + 1)})
		if cfg.tcp {
			local = &net.TCPAddr{IP: src.AsSlice()}
		} else {
			local = &net.UDPAddr{IP: src.AsSlice()}
		}
	}
	d := net.Dialer{LocalAddr: local}
	conn, err := d.Dial(network, cfg.addr.String())
	if err != nil {
		return nil, fmt.Errorf("gen: exporter %d: %w", i, err)
	}
	e.conn = conn
	if ap, err := netip.ParseAddrPort(conn.LocalAddr().String()); err == nil {
		e.src = ap
	}
	if sc, ok := conn.(syscall.Conn); ok && !cfg.tcp {
		raw, err := sc.SyscallConn()
		if err == nil {
			raw.Control(func(fd uintptr) { e.fd = int(fd) })
		}
		setSendBuffer(e.fd, 4<<20)
	}
	g.buildMessages(e)
	e.firstSeq = e.w.Sequence
	return e, nil
}

const (
	genTemplateBase = 256
	genOptionsID    = 400
	// maxGenKeys bounds --keys: the prepared messages take about 50 octets
	// per key. An exporter's keys would stay distinct up to 122,880,000:
	// the source address holds the key modulo 2^16, the source port modulo
	// 60000.
	maxGenKeys = 1 << 24
)

// exporterKeys is how many of cfg.keys exporter i (0-based) cycles through.
func (cfg *genConfig) exporterKeys(i int) int {
	n := cfg.keys / cfg.exporters
	if i < cfg.keys%cfg.exporters {
		n++
	}
	return n
}

// buildMessages prepares an exporter's template message and a cycle of data
// messages; sequence numbers and export times are patched at send time.
func (g *generator) buildMessages(e *genExporter) {
	cfg := g.cfg
	w := ipfix.MessageWriter{Version: cfg.version, DomainID: e.domain}
	now := uint32(time.Now().Unix())
	var dataKinds []string
	options := false
	for _, t := range cfg.templates {
		if t == "options" {
			options = true
			continue
		}
		dataKinds = append(dataKinds, t)
	}
	b := w.Begin(nil, now)
	b = w.BeginSet(b, ipfix.TemplateSetID)
	for i, t := range dataKinds {
		b = ipfix.AppendTemplateRecord(b, uint16(genTemplateBase+i), genTemplates[t])
		w.AddTemplates(1)
	}
	b = w.EndSet(b)
	if options {
		b = w.BeginSet(b, ipfix.OptionsTemplateSetID)
		if cfg.version == 9 {
			b = ipfix.AppendV9OptionsTemplateRecord(b, genOptionsID, 1, genOptionsFields)
		} else {
			b = ipfix.AppendOptionsTemplateRecord(b, genOptionsID, 1, genOptionsFields)
		}
		w.AddTemplates(1)
		b = w.EndSet(b)
	}
	e.tpl, _ = w.Finish(b)
	if options {
		b = w.Begin(nil, now)
		b = w.BeginSet(b, genOptionsID)
		b = ipfix.AppendUint(b, uint64(e.domain), 4)
		b = ipfix.AppendUint(b, 1, 4)
		b = ipfix.AppendUint(b, 0, 4)
		b = ipfix.AppendUint(b, uint64(time.Now().Add(-time.Hour).UnixMilli()), 8)
		b = w.EndSet(b)
		w.AddRecords(1)
		e.opt, _ = w.Finish(b)
	}
	// Record n of the cycle gets the n-th 5-tuple of its exporter. With
	// --keys, n wraps at the exporter's share of the keys, and the cycle is
	// as long as it takes to send each of them.
	cycle, keys := 16, 0
	if cfg.keys > 0 {
		keys = cfg.exporterKeys(int(e.domain) - 1)
		cycle = (keys + cfg.records - 1) / cfg.records
	}
	start := time.Now().UnixMilli()
	for i := range cycle * len(dataKinds) {
		kind := dataKinds[i%len(dataKinds)]
		id := uint16(genTemplateBase + i%len(dataKinds))
		b := w.Begin(nil, now)
		b = w.BeginSet(b, id)
		for r := range cfg.records {
			n := i*cfg.records + r
			if keys > 0 {
				n %= keys
			}
			b = appendGenRecord(b, kind, int(e.domain), n, start)
		}
		b = w.EndSet(b)
		w.AddRecords(cfg.records)
		b, _ = w.Finish(b)
		e.data = append(e.data, b)
		e.recs = append(e.recs, cfg.records)
	}
}

func appendGenRecord(b []byte, kind string, exporter, n int, startMs int64) []byte {
	src4 := netip.AddrFrom4([4]byte{10, byte(exporter), byte(n >> 8), byte(n)})
	dst4 := netip.AddrFrom4([4]byte{192, 0, 2, byte(n)})
	sport := uint64(1024 + n%60000)
	switch kind {
	case "5tuple":
		b = ipfix.AppendAddr(b, src4)
		b = ipfix.AppendAddr(b, dst4)
		b = ipfix.AppendUint(b, sport, 2)
		b = ipfix.AppendUint(b, 443, 2)
		b = ipfix.AppendUint(b, 6, 1)
		b = ipfix.AppendUint(b, 0x1b, 1)
		b = ipfix.AppendUint(b, uint64(64+n%1400), 8)
		b = ipfix.AppendUint(b, uint64(1+n%10), 8)
		b = ipfix.AppendUint(b, uint64(startMs), 8)
		b = ipfix.AppendUint(b, uint64(startMs+int64(n%1000)), 8)
	case "ipv6":
		src := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, byte(exporter), 12: byte(n >> 24), 13: byte(n >> 16), 14: byte(n >> 8), 15: byte(n)})
		dst := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 2, 15: byte(n)})
		b = ipfix.AppendAddr(b, src)
		b = ipfix.AppendAddr(b, dst)
		b = ipfix.AppendUint(b, sport, 2)
		b = ipfix.AppendUint(b, 443, 2)
		b = ipfix.AppendUint(b, 17, 1)
		b = ipfix.AppendUint(b, 0, 1)
		b = ipfix.AppendUint(b, uint64(n&0xfffff), 3)
		b = ipfix.AppendUint(b, uint64(64+n%1400), 8)
		b = ipfix.AppendUint(b, uint64(1+n%10), 8)
		b = ipfix.AppendUint(b, uint64(startMs), 8)
		b = ipfix.AppendUint(b, uint64(startMs+int64(n%1000)), 8)
	case "varlen":
		b = ipfix.AppendAddr(b, src4)
		b = ipfix.AppendAddr(b, dst4)
		b = ipfix.AppendUint(b, sport, 2)
		b = ipfix.AppendUint(b, 80, 2)
		b = ipfix.AppendUint(b, 6, 1)
		b = ipfix.AppendUint(b, uint64(64+n%1400), 8)
		b = ipfix.AppendUint(b, uint64(1+n%10), 8)
		b = ipfix.AppendVarlen(b, []byte("eth"+strconv.Itoa(n%8)))
		b = ipfix.AppendVarlen(b, []byte("application-"+strconv.Itoa(n%97)))
	}
	return b
}

// patch writes the sequence number and export time into a prepared message.
func patch(msg []byte, version uint16, seq, now uint32) {
	if version == 9 {
		binary.BigEndian.PutUint32(msg[8:], now)
		binary.BigEndian.PutUint32(msg[12:], seq)
		return
	}
	binary.BigEndian.PutUint32(msg[4:], now)
	binary.BigEndian.PutUint32(msg[8:], seq)
}

func (g *generator) run(stop <-chan os.Signal) (*GenSummary, error) {
	cfg := g.cfg
	g.started = time.Now()
	var deadline time.Time
	if cfg.duration > 0 {
		deadline = g.started.Add(cfg.duration)
	}
	// Messages per second to aim for.
	msgRate := cfg.rate
	if !cfg.ratePackets && cfg.rate > 0 {
		msgRate = cfg.rate / float64(cfg.records)
	}
	// Keep each round of bursts (one batch per exporter) within about a
	// millisecond of traffic at the target rate, so a slow rate is not sent
	// as a few large bursts that overflow a collector's socket buffer.
	batch := cfg.batch
	if msgRate > 0 {
		batch = max(1, min(cfg.batch, int(msgRate/1000/float64(len(g.exps)))))
	}
	var sent uint64
	now32 := uint32(g.started.Unix())
	if !cfg.dataFirst {
		g.sendTemplates(now32)
	}
	for round := 0; ; round++ {
		select {
		case <-stop:
			return g.summary(), nil
		default:
		}
		now := time.Now()
		if !deadline.IsZero() && !now.Before(deadline) {
			break
		}
		if cfg.count > 0 && sent >= uint64(cfg.count) {
			break
		}
		now32 = uint32(now.Unix())
		if !cfg.tcp || !g.exps[0].sentTpl {
			for _, e := range g.exps {
				if (cfg.dataFirst && round == 1 && !e.sentTpl) || (!cfg.tcp && e.sentTpl && now.Sub(e.lastTpl) >= cfg.tplInterval) {
					g.sendTemplate(e, now32)
				}
			}
		}
		for _, e := range g.exps {
			n := batch
			if cfg.count > 0 && sent+uint64(n) > uint64(cfg.count) {
				n = int(uint64(cfg.count) - sent)
			}
			if n <= 0 {
				break
			}
			sent += uint64(g.sendData(e, n, now32))
		}
		if msgRate > 0 {
			// Sleep off any lead over the target rate.
			due := g.started.Add(time.Duration(float64(sent) / msgRate * float64(time.Second)))
			if ahead := time.Until(due); ahead > 0 {
				time.Sleep(ahead)
			}
		}
	}
	return g.summary(), nil
}

func (g *generator) sendTemplates(now uint32) {
	for _, e := range g.exps {
		g.sendTemplate(e, now)
	}
}

func (g *generator) sendTemplate(e *genExporter, now uint32) {
	patch(e.tpl, g.cfg.version, e.w.Sequence, now)
	if g.cfg.version == 9 {
		e.w.Sequence++
	}
	if _, err := e.conn.Write(e.tpl); err != nil {
		g.errs++
	}
	e.templates++
	e.bytes += uint64(len(e.tpl))
	if e.opt != nil {
		patch(e.opt, g.cfg.version, e.w.Sequence, now)
		// One record (IPFIX counts records) in one packet (v9 counts packets).
		e.w.Sequence++
		if _, err := e.conn.Write(e.opt); err == nil {
			e.messages++
			e.records++
			e.bytes += uint64(len(e.opt))
		} else {
			g.errs++
		}
	}
	e.sentTpl = true
	e.lastTpl = time.Now()
}

// sendData sends n data messages of exporter e and returns n: sequence
// numbers of messages that failed to go are used up all the same (that is
// loss a collector must see), and only what went is counted as sent.
func (g *generator) sendData(e *genExporter, n int, now uint32) int {
	v := g.cfg.version
	for i := range n {
		d := e.data[e.next]
		e.next = (e.next + 1) % len(e.data)
		buf := g.sender.slot(i, len(d))
		copy(buf, d)
		patch(buf, v, e.w.Sequence, now)
		if v == 9 {
			e.w.Sequence++
		} else {
			e.w.Sequence += uint32(g.cfg.records)
		}
	}
	var sent int
	var err error
	if g.cfg.tcp {
		sent, err = g.sender.writeStream(e.conn, n)
	} else {
		sent, err = g.sender.send(e.fd, e.conn, n)
	}
	if err != nil {
		g.errs++
	}
	// Sequence numbers of unsent messages were consumed: that is loss the
	// collector must see, so count only what went.
	e.messages += uint64(sent)
	e.records += uint64(sent * g.cfg.records)
	e.bytes += uint64(g.sender.bytes(sent))
	return n
}

func (g *generator) summary() *GenSummary {
	s := &GenSummary{Seconds: time.Since(g.started).Seconds(), SendErrors: g.errs, GSO: g.useGSO}
	for _, e := range g.exps {
		s.Messages += e.messages
		s.Records += e.records
		s.Bytes += e.bytes
		s.TemplateMessages += e.templates
		s.Exporters = append(s.Exporters, GenExporterCount{Source: e.src.String(), ObservationDomain: e.domain,
			Messages: e.messages, Records: e.records, Bytes: e.bytes, FirstSequence: e.firstSeq, NextSequence: e.w.Sequence})
	}
	if s.Seconds > 0 {
		s.RecordsPerSecond = float64(s.Records) / s.Seconds
		s.PacketsPerSecond = float64(s.Messages) / s.Seconds
	}
	return s
}

// batchBuf holds one batch of messages back to back, so a GSO send can
// pass runs of them as one buffer.
type batchBuf struct {
	mem  []byte
	size []int
	off  []int
}

func newBatchBuf(batch int) batchBuf {
	return batchBuf{size: make([]int, batch), off: make([]int, batch)}
}

// slot returns room for message i of the batch, right after message i-1.
func (s *batchBuf) slot(i, size int) []byte {
	off := 0
	if i > 0 {
		off = s.off[i-1] + s.size[i-1]
	}
	if need := off + size; need > len(s.mem) {
		grown := make([]byte, max(need, 2*len(s.mem)))
		copy(grown, s.mem)
		s.mem = grown
	}
	s.off[i], s.size[i] = off, size
	return s.mem[off : off+size]
}

// bytes returns the length of the first n messages.
func (s *batchBuf) bytes(n int) int {
	t := 0
	for i := range n {
		t += s.size[i]
	}
	return t
}
