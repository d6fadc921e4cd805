package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// Summary is what a run sent. Its JSON form is the line `sluice gen`
// prints, which perf/runner parses: keep the field names.
type Summary struct {
	// Messages and Records count data messages and options records (data
	// records for the sequence numbers) that went; Bytes adds the template
	// messages, which TemplateMessages counts.
	Messages         uint64  `json:"messages"`
	Records          uint64  `json:"records"`
	Bytes            uint64  `json:"bytes"`
	TemplateMessages uint64  `json:"template_messages"`
	Seconds          float64 `json:"seconds"`
	RecordsPerSecond float64 `json:"records_per_second"`
	PacketsPerSecond float64 `json:"packets_per_second"`
	SendErrors       uint64  `json:"send_errors"`
	// Reconnects counts TCP connections made again after one broke
	// (Config.Reconnect).
	Reconnects uint64            `json:"reconnects"`
	GSO        bool              `json:"gso"`
	Exporters  []ExporterSummary `json:"exporters"`
}

// ExporterSummary is one exporter's share of a run. A collector that lost
// nothing saw sequence numbers from FirstSequence up to NextSequence
// (exclusive, modulo 2^32): data records for IPFIX, export packets for v9.
// Messages that failed to go used up their sequence numbers all the same.
type ExporterSummary struct {
	Source            string `json:"source"`
	ObservationDomain uint32 `json:"observation_domain"`
	Messages          uint64 `json:"messages"`
	Records           uint64 `json:"records"`
	Bytes             uint64 `json:"bytes"`
	Reconnects        uint64 `json:"reconnects"`
	FirstSequence     uint32 `json:"first_sequence"`
	NextSequence      uint32 `json:"next_sequence"`
}

// exporter is one simulated exporter.
type exporter struct {
	messages
	index     int // 0-based
	domain    uint32
	conn      net.Conn
	fd        int // the UDP socket, for sendmmsg; 0 without one
	src       netip.AddrPort
	seq       uint32 // the next message's sequence number
	firstSeq  uint32
	next      int // index of the next data message
	lastTpl   time.Time
	sentTpl   bool
	sent      uint64 // data messages and options messages
	records   uint64
	bytes     uint64
	templates uint64
	// With Config.Reconnect: broken is set when a write failed; the next
	// dial is due at redial.
	broken     bool
	redial     time.Time
	reconnects uint64
}

// Generator sends the load of one Config. It is not safe for concurrent
// use: New, Run once, Close.
type Generator struct {
	cfg    Config
	exps   []*exporter
	sender *batchSender
	clock  clock
	gso    bool
	// flush sends messages [0, n) of sender's batch for e and returns how
	// many went; write sends one message. Tests replace both.
	flush func(e *exporter, n int) (int, error)
	write func(e *exporter, msg []byte) error

	started time.Time
	errs    uint64
}

// New checks cfg, prepares every exporter's messages and opens its socket.
// Close releases the sockets.
func New(cfg Config) (*Generator, error) {
	g, err := newGenerator(cfg, &wallClock{})
	if err != nil {
		return nil, err
	}
	for _, e := range g.exps {
		if err := g.dial(e); err != nil {
			g.Close()
			return nil, err
		}
	}
	g.flush, g.write = g.flushSocket, writeSocket
	return g, nil
}

// newGenerator is New without the sockets.
func newGenerator(cfg Config, c clock) (*Generator, error) {
	cfg = cfg.withDefaults()
	if err := cfg.check(); err != nil {
		return nil, err
	}
	g := &Generator{cfg: cfg, clock: c}
	now := c.Now()
	for i := range cfg.Exporters * cfg.Ports {
		x := i / cfg.Ports // the exporter; its ports share its address and domain
		e := &exporter{index: x, domain: cfg.FirstDomain + uint32(x)}
		var err error
		if e.messages, err = buildMessages(&g.cfg, e.domain, now); err != nil {
			return nil, err
		}
		g.exps = append(g.exps, e)
	}
	g.gso = !cfg.NoGSO && !cfg.TCP && gsoAvailable && sameSizes(g.exps)
	g.sender = newBatchSender(cfg.Batch, g.gso)
	return g, nil
}

func sameSizes(exps []*exporter) bool {
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

// dial opens exporter e's socket.
func (g *Generator) dial(e *exporter) error {
	cfg := &g.cfg
	network := "udp"
	if cfg.TCP {
		network = "tcp"
	}
	var local net.Addr
	if cfg.DistinctAddrs && cfg.Addr.Addr().Is4() && cfg.Addr.Addr().IsLoopback() {
		src := sourceAddr(e.index)
		if cfg.TCP {
			local = &net.TCPAddr{IP: src.AsSlice()}
		} else {
			local = &net.UDPAddr{IP: src.AsSlice()}
		}
	}
	d := net.Dialer{LocalAddr: local}
	conn, err := d.Dial(network, cfg.Addr.String())
	if err != nil {
		return fmt.Errorf("loadgen: exporter %d: %w", e.index, err)
	}
	e.conn = conn
	if ap, err := netip.ParseAddrPort(conn.LocalAddr().String()); err == nil {
		e.src = ap
	}
	if sc, ok := conn.(syscall.Conn); ok && !cfg.TCP {
		if raw, err := sc.SyscallConn(); err == nil {
			raw.Control(func(fd uintptr) { e.fd = int(fd) })
		}
		setSendBuffer(e.fd, 4<<20)
	}
	return nil
}

// Close closes the exporters' sockets.
func (g *Generator) Close() error {
	var errs []error
	for _, e := range g.exps {
		if e.conn != nil {
			errs = append(errs, e.conn.Close())
		}
	}
	return errors.Join(errs...)
}

func writeSocket(e *exporter, msg []byte) error {
	_, err := e.conn.Write(msg)
	return err
}

func (g *Generator) flushSocket(e *exporter, n int) (int, error) {
	if g.cfg.TCP {
		return g.sender.writeStream(e.conn, n)
	}
	return g.sender.send(e.fd, e.conn, n)
}

// Run sends until Config.Duration has passed, Config.Count data messages
// have been sent, or ctx is done, and returns what went. Failed sends are
// counted in Summary.SendErrors, not returned.
func (g *Generator) Run(ctx context.Context) Summary {
	cfg := &g.cfg
	g.started = g.clock.Now()
	p := newPacer(cfg, g.started)
	var deadline time.Time
	if cfg.Duration > 0 {
		deadline = g.started.Add(cfg.Duration)
	}
	var sent uint64
	if !cfg.DataFirst {
		now32 := uint32(g.started.Unix())
		for _, e := range g.exps {
			g.sendTemplate(e, now32)
		}
	}
	for round := 0; ctx.Err() == nil; round++ {
		now := g.clock.Now()
		if !deadline.IsZero() && !now.Before(deadline) {
			break
		}
		if cfg.Count > 0 && sent >= uint64(cfg.Count) {
			break
		}
		now32 := uint32(now.Unix())
		if cfg.Reconnect {
			g.redialBroken(now, now32)
		}
		// Over TCP the templates go once; with DataFirst after round 0.
		if !cfg.TCP || !g.exps[0].sentTpl {
			for _, e := range g.exps {
				if (cfg.DataFirst && round == 1 && !e.sentTpl) ||
					(!cfg.TCP && e.sentTpl && now.Sub(e.lastTpl) >= cfg.TemplateInterval) {
					g.sendTemplate(e, now32)
				}
			}
		}
		for _, e := range g.exps {
			n := p.roundSize(sent, cfg.Count)
			if n <= 0 {
				break
			}
			sent += uint64(g.sendData(e, n, now32))
		}
		// Sleep off any lead over the target rate.
		if due := p.due(sent); !due.IsZero() {
			if ahead := due.Sub(g.clock.Now()); ahead > 0 {
				g.clock.Sleep(ctx, ahead)
			}
		}
	}
	return g.summary()
}

// sendTemplate sends exporter e's template message and, with Options, its
// options record.
func (g *Generator) sendTemplate(e *exporter, now uint32) {
	v := g.cfg.Protocol
	patch(e.tpl, v, e.seq, now)
	if v == NetFlowV9 {
		e.seq++
	}
	if err := g.write(e, e.tpl); err != nil {
		g.errs++
		g.broke(e)
	}
	e.templates++
	e.bytes += uint64(len(e.tpl))
	if e.opt != nil {
		patch(e.opt, v, e.seq, now)
		// One record (IPFIX counts records) in one packet (v9 counts packets).
		e.seq++
		if err := g.write(e, e.opt); err == nil {
			e.sent++
			e.records++
			e.bytes += uint64(len(e.opt))
		} else {
			g.errs++
			g.broke(e)
		}
	}
	e.sentTpl = true
	e.lastTpl = g.clock.Now()
}

// sendData sends n data messages of exporter e and returns n: sequence
// numbers of messages that failed to go are used up all the same (that is
// loss a collector must see), and only what went is counted as sent.
func (g *Generator) sendData(e *exporter, n int, now uint32) int {
	v := g.cfg.Protocol
	for i := range n {
		d := e.data[e.next]
		e.next = (e.next + 1) % len(e.data)
		buf := g.sender.slot(i, len(d))
		copy(buf, d)
		patch(buf, v, e.seq, now)
		if v == NetFlowV9 {
			e.seq++
		} else {
			e.seq += uint32(g.cfg.Records)
		}
	}
	if e.broken {
		// Disconnected (Config.Reconnect): the messages are not sent.
		return n
	}
	sent, err := g.flush(e, n)
	if err != nil {
		g.errs++
		g.broke(e)
	}
	e.sent += uint64(sent)
	e.records += uint64(sent * g.cfg.Records)
	e.bytes += uint64(g.sender.bytes(sent))
	return n
}

// broke marks exporter e's TCP connection broken after a failed write,
// with Config.Reconnect: it is closed, and dialled again by redialBroken.
func (g *Generator) broke(e *exporter) {
	if !g.cfg.Reconnect || e.broken {
		return
	}
	e.broken = true
	e.redial = g.clock.Now().Add(ReconnectInterval)
	if e.conn != nil {
		_ = e.conn.Close()
		e.conn = nil
	}
}

// redialBroken dials the broken exporters whose next dial is due; one that
// connects sends its templates first, as a new session needs them.
func (g *Generator) redialBroken(now time.Time, now32 uint32) {
	for _, e := range g.exps {
		if !e.broken || now.Before(e.redial) {
			continue
		}
		if err := g.dial(e); err != nil {
			e.redial = now.Add(ReconnectInterval)
			continue
		}
		e.broken = false
		e.reconnects++
		g.sendTemplate(e, now32)
	}
}

func (g *Generator) summary() Summary {
	s := Summary{Seconds: g.clock.Now().Sub(g.started).Seconds(), SendErrors: g.errs, GSO: g.gso}
	for _, e := range g.exps {
		s.Messages += e.sent
		s.Records += e.records
		s.Bytes += e.bytes
		s.TemplateMessages += e.templates
		s.Reconnects += e.reconnects
		s.Exporters = append(s.Exporters, ExporterSummary{Source: e.src.String(), ObservationDomain: e.domain,
			Messages: e.sent, Records: e.records, Bytes: e.bytes, Reconnects: e.reconnects,
			FirstSequence: e.firstSeq, NextSequence: e.seq})
	}
	if s.Seconds > 0 {
		s.RecordsPerSecond = float64(s.Records) / s.Seconds
		s.PacketsPerSecond = float64(s.Messages) / s.Seconds
	}
	return s
}
