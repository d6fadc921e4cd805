package collector

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/sluice-flow/sluice/dataplane/tlsfiles"
)

// IPFIX over TLS (RFC 7011 section 11). gnet has no TLS, so tls://
// listeners are Go listeners: a goroutine per session completes the
// handshake, then relays the plaintext into one end of a socket pair whose
// other end is enrolled in an event loop (Engine.Register). From there the
// session is a TCP session like any other: framed by the message length,
// templates scoped by the session, the same bounds. Backpressure carries
// through: a session paused for ring room is not read (tcphold.go), the pair's
// buffer fills, the relay stops reading TLS, and TCP's window closes on the
// exporter.

// tlsPeer is the gnet context of a relayed session until OnOpen replaces
// it: the exporter's real address (the pair's own is a unix socket's).
type tlsPeer struct{ remote netip.AddrPort }

// tlsInput is the collector's TLS state.
type tlsInput struct {
	files     *tlsfiles.Store
	listeners []net.Listener
	mu        sync.Mutex
	conns     map[net.Conn]struct{} // open TLS sessions, closed at stop
	stopped   bool
	wg        sync.WaitGroup
	failures  [numTLSFailures]atomic.Uint64
}

// Reasons a TLS session ends before it reaches a loop.
const (
	tlsHandshake = iota // the handshake failed (a missing or unverified client certificate among others)
	tlsRegister         // no event loop took it (stopping)
	numTLSFailures
)

var tlsFailureNames = [numTLSFailures]string{"handshake", "register"}

// openTLS opens the tls:// listeners (before the engine starts, so a port
// in use stops the start).
func (c *Collector) openTLS() error {
	var ls []Listener
	for _, l := range c.listeners {
		if l.Network == "tls" {
			ls = append(ls, l)
		}
	}
	if len(ls) == 0 {
		return nil
	}
	files, err := tlsfiles.Load(tlsfiles.Files{Cert: c.cfg.TLS.CertFile, Key: c.cfg.TLS.KeyFile, CA: c.cfg.TLS.ClientCAFile})
	if err != nil {
		return fmt.Errorf("collector: %w", err)
	}
	c.tls.files = files
	c.tls.conns = map[net.Conn]struct{}{}
	for _, l := range ls {
		ln, err := net.Listen("tcp", net.JoinHostPort(l.Host, fmt.Sprint(l.Addr.Port())))
		if err != nil {
			c.closeTLS()
			return fmt.Errorf("collector: cannot listen on tls %s: %w", l.Addr, err)
		}
		c.tls.listeners = append(c.tls.listeners, ln)
	}
	return nil
}

// serveTLS accepts on the tls:// listeners once the loops can be reached.
func (c *Collector) serveTLS() {
	if len(c.tls.listeners) == 0 {
		return
	}
	go func() {
		if err := c.waitControl(); err != nil {
			c.log.Error("tls listeners cannot reach the event loops", "err", err)
			return
		}
		for _, ln := range c.tls.listeners {
			c.log.Info("listening", "network", "tls", "addr", ln.Addr().String(), "mutual", c.cfg.TLS.ClientCAFile != "")
			c.tls.wg.Add(1)
			go c.acceptTLS(ln)
		}
	}()
}

func (c *Collector) acceptTLS(ln net.Listener) {
	defer c.tls.wg.Done()
	for {
		raw, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			c.limiter.Warn(c.log, "tls accept failed", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		remote := addrPortOf(raw.RemoteAddr())
		if !c.allowed(remote.Addr()) {
			// Before the handshake: a source outside the list costs no
			// cryptography.
			c.refusedSessions[refusedNotAllowed].Add(1)
			c.allowLog.Warn(c.log, "refusing tls session: source not in allow_exporters", "source", remote.String())
			raw.Close()
			continue
		}
		if !c.trackTLS(raw) {
			raw.Close()
			return
		}
		go c.relayTLS(raw, remote)
	}
}

// trackTLS records an open session so stopping can close it; false once
// stopped.
func (c *Collector) trackTLS(conn net.Conn) bool {
	c.tls.mu.Lock()
	defer c.tls.mu.Unlock()
	if c.tls.stopped {
		return false
	}
	c.tls.conns[conn] = struct{}{}
	c.tls.wg.Add(1)
	return true
}

func (c *Collector) untrackTLS(conn net.Conn) {
	c.tls.mu.Lock()
	delete(c.tls.conns, conn)
	c.tls.mu.Unlock()
	c.tls.wg.Done()
}

// relayTLS runs one session: handshake, enrolment of the pair's end, then
// the copy until either side ends.
func (c *Collector) relayTLS(raw net.Conn, remote netip.AddrPort) {
	defer c.untrackTLS(raw)
	defer raw.Close()
	tc := tls.Server(raw, c.tls.files.ServerConfig())
	_ = tc.SetDeadline(time.Now().Add(c.cfg.TLS.HandshakeTimeout))
	if err := tc.Handshake(); err != nil {
		c.tls.failures[tlsHandshake].Add(1)
		c.limiter.Warn(c.log, "tls handshake failed", "exporter", remote.String(), "err", err)
		return
	}
	_ = tc.SetDeadline(time.Time{})
	mine, relay, err := socketPair()
	if err != nil {
		c.tls.failures[tlsRegister].Add(1)
		c.limiter.Warn(c.log, "tls session: no socket pair", "err", err)
		return
	}
	defer relay.Close()
	eng := c.eng.Load()
	if eng == nil {
		mine.Close()
		c.tls.failures[tlsRegister].Add(1)
		return
	}
	ctx := gnet.NewNetConnContext(gnet.NewContext(context.Background(), &tlsPeer{remote: remote}), mine)
	c.rt.regMu.Lock()
	res, err := eng.Register(ctx)
	c.rt.regMu.Unlock()
	if err == nil {
		if rr := <-res; rr.Err != nil {
			err = rr.Err
		}
	}
	mine.Close() // gnet works on its own duplicate
	if err != nil {
		c.tls.failures[tlsRegister].Add(1)
		c.limiter.Warn(c.log, "tls session: no event loop took it", "err", err)
		return
	}
	// The loop closes its end when it refuses or ends the session (too
	// many sessions, bad framing, shutdown): then end the TLS session.
	loopDone := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, relay)
		tc.Close()
		close(loopDone)
	}()
	_, _ = io.Copy(relay, tc)
	// The exporter ended (or the loop did): let the loop read what is left,
	// then see the end of the stream.
	_ = relay.(*net.UnixConn).CloseWrite()
	<-loopDone
}

// socketPair returns the two ends of a unix stream socket pair.
func socketPair() (net.Conn, net.Conn, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return nil, nil, err
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "tls-relay")
		conns[i], err = net.FileConn(f)
		f.Close()
		if err != nil {
			if i == 1 {
				conns[0].Close()
			} else {
				syscall.Close(fds[1])
			}
			return nil, nil, err
		}
	}
	return conns[0], conns[1], nil
}

// closeTLSListeners stops accepting TLS sessions.
func (c *Collector) closeTLSListeners() {
	c.tls.mu.Lock()
	defer c.tls.mu.Unlock()
	for _, ln := range c.tls.listeners {
		ln.Close()
	}
}

// closeTLS closes the tls:// listeners and the open sessions, and waits
// for their goroutines.
func (c *Collector) closeTLS() {
	c.tls.mu.Lock()
	c.tls.stopped = true
	for _, ln := range c.tls.listeners {
		ln.Close()
	}
	for conn := range c.tls.conns {
		conn.Close()
	}
	c.tls.mu.Unlock()
	c.tls.wg.Wait()
}

// ReloadTLS reads the tls:// listeners' certificate, key and client CA
// files again if they changed (cmd/ calls it on SIGHUP; changed files are
// also picked up on their own within a second of a session opening). On an
// error the files in use stay. Without tls:// listeners it does nothing.
func (c *Collector) ReloadTLS() error {
	if c.tls.files == nil {
		return nil
	}
	return c.tls.files.Reload()
}
