// Package collector is Sluice's ingest: a gnet engine serving IPFIX and
// NetFlow over UDP and TCP, template lifecycles per RFC 7011, data held until
// its template arrives, sequence-number loss accounting, and per-loop rings
// that carry decoded-ready entries to the mediator side.
package collector

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/ratelog"
	"github.com/sluice-flow/sluice/dataplane/ring"
	"github.com/sluice-flow/sluice/dataplane/template"
)

// Collector receives flow export. Create with New, start with Run; Stop ends
// it. Its rings are read by the mediator side (one consumer per ring).
type Collector struct {
	cfg       Config
	log       *slog.Logger
	listeners []Listener
	shared    *template.Shared
	exporters exporterRegistry
	heldTotal atomic.Int64
	loops     []*loop
	// byEventLoop maps gnet's loops to ours; copy-on-write because loops
	// look it up concurrently and it changes only as loops first appear.
	byEventLoop atomic.Pointer[map[gnet.EventLoop]*loop]
	assignMu    sync.Mutex
	sessions    atomic.Uint64
	tcpOpen     atomic.Int64
	// tlsSessions holds the numbers of the open sessions relayed from a
	// tls:// listener, so the API can name their transport.
	tlsSessions     sync.Map // uint64 -> struct{}
	refusedSessions [numSessionRefusals]atomic.Uint64
	// sessionsPerAddr counts open TCP sessions by exporter address, for
	// MaxTCPSessionsPerExporter.
	sessionsMu      sync.Mutex
	sessionsPerAddr map[netip.Addr]int
	stopping        chan struct{} // closed when the ring consumers are gone
	eng             atomic.Pointer[gnet.Engine]
	booted          chan struct{}
	rcvbufOnce      sync.Map // listener fd -> struct{}: buffer size set and logged
	limiter         ratelog.Limiter
	boundLog        ratelog.Limiter // refusals by a bound
	allowLog        ratelog.Limiter // sources outside AllowExporters
	remote          Remote          // optional shared tier (Redis)

	hooks     hookBus
	rdir      *ringDir // file rings (split pod); nil: rings in process memory
	running   atomic.Bool
	draining  atomic.Bool
	stopped   chan struct{} // closed when Run has returned
	loopsDone chan struct{} // closed when the event loops have stopped
	rt        runtimeListeners
	steer     steering
	tls       tlsInput
	rates     rateTable // per exporter address, with RateLimit set
	// resumeKick wakes the resumer when a loop pauses a TCP session.
	resumeKick chan struct{}
}

func nowNanos() int64 { return time.Now().UnixNano() }

// tcpSession is a TCP session's state. It belongs to its loop's goroutine.
type tcpSession struct {
	id           uint64
	remote       netip.AddrPort
	loop         *loop
	conn         gnet.Conn
	framingError bool  // closed for bad framing (counted as such)
	paused       bool  // not reading: waiting for ring room (tcphold.go)
	queued       bool  // in loop.paused, to be woken
	pausedAt     int64 // Unix nanoseconds
}

// New checks cfg and prepares a collector.
func New(cfg Config, log *slog.Logger) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if cfg.Loops == 0 {
		cfg.Loops = runtime.GOMAXPROCS(0)
	}
	ls, _ := ParseListeners(cfg.Listen)
	if log == nil {
		log = slog.Default()
	}
	lim := template.Limits{Total: cfg.MaxTemplates, PerExporter: cfg.MaxTemplatesPerExporter, PerDomain: cfg.MaxTemplatesPerDomain}
	c := &Collector{cfg: cfg, log: log, listeners: ls, shared: template.NewSharedLimited(lim),
		stopping: make(chan struct{}), booted: make(chan struct{}), stopped: make(chan struct{}),
		loopsDone: make(chan struct{}), resumeKick: make(chan struct{}, 1)}
	c.rt.elsDone = make(chan struct{})
	c.limiter.Every = 10 * time.Second
	c.boundLog.Every = 10 * time.Second
	c.allowLog.Every = 10 * time.Second
	c.exporters.maxDomains = cfg.MaxDomainsPerExporter
	c.exporters.seen = func(k template.DomainKey) {
		c.hooks.exporterSeen(ExporterEvent{Exporter: k.Exporter, Domain: k.Domain, Version: k.Version, TCPSession: k.Session})
	}
	if cfg.RingDir != "" {
		d, err := openRingDir(cfg.RingDir, cfg.Loops, int(cfg.RingSize), log)
		if err != nil {
			return nil, err
		}
		c.rdir = d
		log.Info("rings", "dir", cfg.RingDir, "generation", d.gen, "loops", cfg.Loops, "size", int64(cfg.RingSize))
	}
	for i := range cfg.Loops {
		var r *ring.Ring
		if c.rdir != nil {
			r = c.rdir.files[i].Ring
		} else {
			r = ring.New(int(cfg.RingSize))
		}
		c.loops = append(c.loops, newLoop(c, i, r))
	}
	empty := map[gnet.EventLoop]*loop{}
	c.byEventLoop.Store(&empty)
	return c, nil
}

// Rings returns the loops' rings. Each must be consumed by one goroutine
// (with RingDir set, that consumer is normally another process's).
func (c *Collector) Rings() []*ring.Ring {
	out := make([]*ring.Ring, len(c.loops))
	for i, l := range c.loops {
		out[i] = l.ring
	}
	return out
}

// Templates returns the process-wide template store.
func (c *Collector) Templates() *template.Shared { return c.shared }

// ConsumersGone tells TCP input waiting for ring room to give up: call it
// if the ring consumers stop before the collector.
func (c *Collector) ConsumersGone() {
	select {
	case <-c.stopping:
	default:
		close(c.stopping)
	}
}

// Booted is closed once the listeners are open.
func (c *Collector) Booted() <-chan struct{} { return c.booted }

// Run serves until ctx ends or Stop is called, then returns after the event
// loops have stopped. Data sets still held for a template are dropped and
// counted then.
func (c *Collector) Run(ctx context.Context) error {
	var urls []string
	for _, l := range c.listeners {
		if l.Network != "tls" { // tls:// listeners are Go's (tls.go)
			urls = append(urls, l.URL())
		}
	}
	if !c.cfg.SharePort {
		if err := checkPortsFree(c.listeners); err != nil {
			return err
		}
	}
	if err := c.prepareSteering(); err != nil {
		return err
	}
	if err := c.openTLS(); err != nil {
		return err
	}
	if len(urls) == 0 {
		// tls:// listeners alone: gnet makes its event loops for its own
		// listeners, so give it one nobody uses, a unix socket in a
		// private directory.
		dir, err := os.MkdirTemp("", "sluice-loops-")
		if err != nil {
			c.closeTLS()
			return fmt.Errorf("collector: %w", err)
		}
		defer os.RemoveAll(dir)
		urls = append(urls, "unix://"+filepath.Join(dir, "idle.sock"))
	}
	c.serveTLS()
	h := &handler{c: c}
	tick := make(chan struct{})
	go c.ticker(ctx, tick)
	go c.resumer(tick)
	// Pausing a TCP session's reads (tcphold.go) needs gnet's default,
	// level-triggered I/O: no WithEdgeTriggeredIO.
	err := gnet.Rotate(h, urls,
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(c.cfg.Loops),
		gnet.WithReusePort(true),
		gnet.WithSocketRecvBuffer(int(c.cfg.UDPReceiveBuffer)),
		gnet.WithReadBufferCap(64<<10),
		gnet.WithLogger(gnetLogger{c.log}),
		// Half-open sessions (an exporter that vanished) close on their
		// own, and with them the templates they own.
		gnet.WithTCPKeepAlive(time.Minute),
		gnet.WithTicker(true),
	)
	close(tick)
	c.running.Store(false)
	c.steer.close()
	c.steer.mu.Lock()
	if err == nil {
		err = c.steer.err
	}
	c.steer.mu.Unlock()
	close(c.loopsDone)
	c.closeTLS()
	c.rt.closeAll()
	c.rt.closePeers()
	for _, l := range c.loops {
		if n := l.held.dropAll(); n > 0 {
			l.stats.droppedSets[DropShutdown].Add(uint64(n))
		}
		// The loops are gone; entries still spilled go into the ring as
		// the consumer makes room, for a while (Stop waited for the
		// spills already).
		for end := time.Now().Add(5 * time.Second); !l.flushSpill() && !l.consumersGone() && time.Now().Before(end); {
			time.Sleep(time.Millisecond)
		}
		l.dropSpill(DropShutdown)
		l.stats.heldSets.Store(0)
		l.stats.heldBytes.Store(0)
		// The loops are gone: tell a consumer in another process that
		// nothing more comes, so it may follow the next collector's rings
		// as soon as it has drained these.
		l.prod.Close()
	}
	select {
	case <-c.booted:
	default:
		close(c.booted)
	}
	close(c.stopped)
	return err
}

// Stop ends the collector without losing what exporters already handed
// over: it waits (at most half the time ctx leaves, and 5 s) until no TCP
// session has sent anything for a moment, reads what the UDP sockets still
// queue, then stops the engine. Data in the rings stays there for the
// consumers. A message a TCP session left incomplete is counted
// (tcp_partial); data sent after that is the exporter's to resend.
func (c *Collector) Stop(ctx context.Context) error {
	select {
	case <-c.booted:
	case <-ctx.Done():
		return ctx.Err()
	}
	eng := c.eng.Load()
	if eng == nil {
		return nil
	}
	c.rt.closeAll() // no new sessions or datagrams from run-time listeners
	c.closeTLSListeners()
	c.quiesce(ctx)
	err := eng.Stop(ctx)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// quiesce waits for TCP input to pause, then drains the UDP sockets on
// their loops.
func (c *Collector) quiesce(ctx context.Context) {
	budget := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(dl)/2)
	}
	deadline := time.Now().Add(budget)
	tcpBytes := func() uint64 {
		var n uint64
		for _, l := range c.loops {
			n += l.stats.bytes[transportTCP].Load()
		}
		return n
	}
	// Paused sessions and spills wait for the consumers, who may be
	// gone: then there is nothing to wait for.
	tcpHeld := func() bool {
		select {
		case <-c.stopping:
			return false
		default:
		}
		for _, l := range c.loops {
			if l.stats.pausedSessions.Load() > 0 || l.stats.spillBytes.Load() > 0 {
				return true
			}
		}
		return false
	}
	hasTCP := slices.ContainsFunc(c.listeners, func(l Listener) bool { return l.Network != "udp" })
	// Sessions still in the accept queue have not shown up yet, so wait
	// for a quiet moment even when none is open.
	last, since := tcpBytes(), time.Now()
	for hasTCP && time.Now().Before(deadline) && (time.Since(since) < 250*time.Millisecond || tcpHeld()) {
		time.Sleep(25 * time.Millisecond)
		if n := tcpBytes(); n != last {
			last, since = n, time.Now()
		}
	}
	var wg sync.WaitGroup
	for el, l := range *c.byEventLoop.Load() {
		wg.Add(1)
		err := el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			defer wg.Done()
			l.now = time.Now().UnixNano()
			for _, fd := range l.udpFDs {
				for range 1024 { // bounded: about 64k datagrams per socket
					if l.drainOnce(fd) < l.udp.size() {
						break
					}
				}
			}
			return nil
		}))
		if err != nil {
			wg.Done()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Until(deadline) + time.Second):
	}
}

// ticker runs the periodic work: each loop ages out held data and picks up
// templates other loops learned; the shared store drops expired templates.
func (c *Collector) ticker(ctx context.Context, done <-chan struct{}) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	lastEvict := time.Now()
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			if eng := c.eng.Load(); eng != nil {
				stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_ = eng.Stop(stopCtx)
				cancel()
			}
			return
		case now := <-t.C:
			c.shared.Expire(now.UnixNano())
			if now.Sub(lastEvict) > time.Minute {
				c.exporters.evict(now.UnixNano())
				lastEvict = now
			}
			for el, l := range *c.byEventLoop.Load() {
				if !l.sweepQueued.CompareAndSwap(false, true) {
					continue
				}
				_ = el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
					l.sweepQueued.Store(false)
					l.sweep(time.Now().UnixNano())
					return nil
				}))
			}
		}
	}
}

func (c *Collector) loopFor(el gnet.EventLoop) *loop {
	if l := (*c.byEventLoop.Load())[el]; l != nil {
		return l
	}
	c.assignMu.Lock()
	defer c.assignMu.Unlock()
	m := *c.byEventLoop.Load()
	if l := m[el]; l != nil {
		return l
	}
	if len(m) >= len(c.loops) {
		panic("BUG: collector: more gnet event loops than configured")
	}
	next := make(map[gnet.EventLoop]*loop, len(m)+1)
	for k, v := range m {
		next[k] = v
	}
	l := c.loops[len(m)]
	l.el = el
	next[el] = l
	c.byEventLoop.Store(&next)
	return l
}

// handler adapts gnet's callbacks. Each callback runs on the event loop that
// owns the connection.
type handler struct {
	gnet.BuiltinEventEngine
	c        *Collector
	tickOnce sync.Once
}

func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	if err := h.c.attachSteering(eng); err != nil {
		h.c.log.Error("not starting: udp steering failed", "err", err)
		close(h.c.booted)
		return gnet.Shutdown
	}
	h.c.eng.Store(&eng)
	h.c.running.Store(true)
	close(h.c.booted)
	for _, l := range h.c.listeners {
		if l.Network != "tls" { // logged once they accept (tls.go)
			h.c.log.Info("listening", "network", l.Network, "addr", l.Addr.String(), "loops", h.c.cfg.Loops)
		}
	}
	return gnet.None
}

// OnTick runs first once gnet has made its event loops (OnBoot runs before
// they exist), which is when the control connections can be enrolled.
func (h *handler) OnTick() (time.Duration, gnet.Action) {
	h.tickOnce.Do(func() {
		if eng := h.c.eng.Load(); eng != nil {
			go h.c.enrollControl(*eng)
		}
	})
	return time.Hour, gnet.None
}

func (h *handler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if h.c.rt.isControl(c) {
		h.c.rt.loopOpened(h.c, c.EventLoop(), c.Fd())
		return nil, gnet.None
	}
	remote := addrPortOf(c.RemoteAddr())
	if p, ok := c.Context().(*tlsPeer); ok {
		remote = p.remote // a TLS session relayed through a socket pair
	}
	if !h.c.allowed(remote.Addr()) {
		h.c.refusedSessions[refusedNotAllowed].Add(1)
		h.c.allowLog.Warn(h.c.log, "refusing tcp session: source not in allow_exporters", "source", remote.String())
		return nil, gnet.Close
	}
	if h.c.tcpOpen.Load() >= int64(h.c.cfg.MaxTCPSessions) {
		h.c.refusedSessions[refusedMaxSessions].Add(1)
		h.c.limiter.Warn(h.c.log, "refusing tcp session: too many open", "max", h.c.cfg.MaxTCPSessions)
		return nil, gnet.Close
	}
	if !h.c.sessionOpened(remote.Addr()) {
		h.c.refusedSessions[refusedPerExporter].Add(1)
		h.c.boundLog.Warn(h.c.log, "refusing tcp session: too many from one exporter", "source", remote.String(),
			"max", h.c.cfg.MaxTCPSessionsPerExporter)
		return nil, gnet.Close
	}
	l := h.c.loopFor(c.EventLoop())
	s := &tcpSession{id: h.c.sessions.Add(1), loop: l, remote: remote, conn: c}
	if _, ok := c.Context().(*tlsPeer); ok {
		h.c.tlsSessions.Store(s.id, struct{}{})
	}
	c.SetContext(s)
	h.c.tcpOpen.Add(1)
	return nil, gnet.None
}

// Reasons a TCP session is refused.
const (
	refusedMaxSessions = iota
	refusedPerExporter
	refusedNotAllowed
	numSessionRefusals
)

var sessionRefusalNames = [numSessionRefusals]string{"max_sessions", "max_sessions_per_exporter", "not_allowed"}

// sessionOpened counts a session from a, unless a has
// MaxTCPSessionsPerExporter open already.
func (c *Collector) sessionOpened(a netip.Addr) bool {
	c.sessionsMu.Lock()
	defer c.sessionsMu.Unlock()
	if c.sessionsPerAddr == nil {
		c.sessionsPerAddr = map[netip.Addr]int{}
	}
	if c.sessionsPerAddr[a] >= c.cfg.MaxTCPSessionsPerExporter {
		return false
	}
	c.sessionsPerAddr[a]++
	return true
}

func (c *Collector) sessionClosed(a netip.Addr) {
	c.sessionsMu.Lock()
	defer c.sessionsMu.Unlock()
	if n := c.sessionsPerAddr[a] - 1; n > 0 {
		c.sessionsPerAddr[a] = n
	} else {
		delete(c.sessionsPerAddr, a)
	}
}

// allowed reports whether AllowExporters admits source a.
func (c *Collector) allowed(a netip.Addr) bool {
	if len(c.cfg.AllowExporters) == 0 {
		return true
	}
	for _, p := range c.cfg.AllowExporters {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// admit reports whether a datagram from src may be decoded; one that may
// not is counted and logged (rate-limited) here.
func (l *loop) admit(src netip.AddrPort) bool {
	if l.c.allowed(src.Addr()) {
		return true
	}
	l.stats.packets[transportUDP].Add(1)
	l.stats.droppedSets[DropNotAllowed].Add(1)
	l.c.allowLog.Warn(l.c.log, "dropping datagram: source not in allow_exporters", "source", src.String())
	return false
}

func (h *handler) OnClose(c gnet.Conn, err error) gnet.Action {
	if s, ok := c.Context().(*tcpSession); ok {
		if n := c.InboundBuffered(); n > 0 && !s.framingError {
			// An incomplete message was left (peer closed mid-message,
			// or shutdown): count it rather than lose it quietly.
			s.loop.stats.droppedSets[DropTCPPartial].Add(1)
		}
		if s.paused {
			s.loop.pauseEnded(s)
		}
		s.loop.sessionClosed(s)
		h.c.tlsSessions.Delete(s.id)
		h.c.tcpOpen.Add(-1)
		h.c.sessionClosed(s.remote.Addr())
	}
	return gnet.None
}

func (h *handler) OnTraffic(c gnet.Conn) gnet.Action {
	if ctx := c.Context(); ctx != nil {
		if s, ok := ctx.(*tcpSession); ok {
			return h.tcp(c, s)
		}
		_, _ = c.Discard(-1) // a control connection: nothing is sent on it
		return gnet.None
	}
	l := h.c.loopFor(c.EventLoop())
	l.now = time.Now().UnixNano()
	buf, _ := c.Next(-1)
	if src := addrPortOf(c.RemoteAddr()); l.admit(src) {
		l.handle(buf, origin{src: src, transport: transportUDP})
	}
	if batchSupported && !h.c.cfg.StockUDPRead {
		h.drainUDP(l, c.Fd())
	}
	return gnet.None
}

// maxBatchRounds bounds one wake-up's recvmmsg calls so TCP sessions on the
// same loop are served too.
const maxBatchRounds = 16

// drainUDP reads the datagrams queued on a listener socket in batches and
// reports whether it read them all.
func (h *handler) drainUDP(l *loop, fd int) bool {
	if _, done := h.c.rcvbufOnce.LoadOrStore(fd, struct{}{}); !done {
		granted, forced := setReceiveBuffer(fd, int(h.c.cfg.UDPReceiveBuffer))
		h.c.log.Info("udp receive buffer", "fd", fd, "asked", h.c.cfg.UDPReceiveBuffer,
			"granted", granted, "forced", forced)
	}
	if l.udp == nil {
		l.udp = newUDPBatch(h.c.cfg.UDPBatch, h.c.cfg.MaxDatagram)
	}
	if !slices.Contains(l.udpFDs, fd) {
		l.udpFDs = append(l.udpFDs, fd)
	}
	for range maxBatchRounds {
		if l.drainOnce(fd) < l.udp.size() {
			return true // the socket is drained
		}
	}
	return false
}

// drainOnce reads and handles one recvmmsg batch and returns its size.
func (l *loop) drainOnce(fd int) int {
	n, err := l.udp.recv(fd)
	if err != nil {
		if !isAgain(err) {
			l.c.limiter.Warn(l.c.log, "recvmmsg failed", "err", err)
		}
		return 0
	}
	if n == 0 {
		return 0
	}
	l.stats.udpBatches.Add(1)
	l.now = time.Now().UnixNano()
	for i := range n {
		b, src, truncated := l.udp.datagram(i)
		if truncated {
			l.stats.packets[transportUDP].Add(1)
			l.stats.droppedSets[DropTruncated].Add(1)
			continue
		}
		if l.admit(src) {
			l.handle(b, origin{src: src, transport: transportUDP})
		}
	}
	return n
}

// tcp frames IPFIX messages out of a TCP stream by their length field. A
// message is begun only when the ring has room for TCP; otherwise the
// session pauses (tcphold.go) and is called again once there is.
func (h *handler) tcp(c gnet.Conn, s *tcpSession) gnet.Action {
	l := s.loop
	l.now = time.Now().UnixNano()
	o := origin{src: s.remote, transport: transportTCP, session: s}
	for {
		avail := c.InboundBuffered()
		if avail < 4 {
			l.unpause(c, s)
			return gnet.None
		}
		hdr, err := c.Peek(4)
		if err != nil {
			l.unpause(c, s)
			return gnet.None
		}
		version := binary.BigEndian.Uint16(hdr)
		n := int(binary.BigEndian.Uint16(hdr[2:]))
		if version != ipfix.VersionIPFIX || n < ipfix.HeaderLenIPFIX {
			// NetFlow has no length field and cannot be framed on TCP;
			// an IPFIX length below the header lies. Either way the
			// stream cannot be resynchronised.
			l.stats.droppedSets[DropTCPFraming].Add(1)
			s.framingError = true
			h.c.limiter.Warn(h.c.log, "closing tcp session: bad message framing",
				"exporter", s.remote.String(), "version", version, "length", n)
			return gnet.Close
		}
		if avail < n {
			l.unpause(c, s)
			return gnet.None
		}
		if !l.tcpRoom() {
			if l.pause(c, s) {
				return gnet.None
			}
			l.waitRoom(func() bool { return l.flushSpill() && l.tcpRoom() })
		}
		msg, err := c.Peek(n)
		if err != nil {
			l.unpause(c, s)
			return gnet.None
		}
		l.handle(msg, o)
		_, _ = c.Discard(n)
	}
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	case *net.TCPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}
