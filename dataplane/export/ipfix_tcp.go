package export

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
	"github.com/sluice-flow/sluice/dataplane/tlsfiles"
)

// IPFIXTCP re-exports records as IPFIX over TCP. Record never blocks: it
// encodes into chunks queued for a writer goroutine that owns the
// connection; when the queue is full, records are dropped and counted. The
// writer reconnects with exponential backoff and sends the templates in
// force first on each new connection. Records count as sent once written to
// the socket. A message cut by a broken connection is dropped (counted) and
// each new connection starts at a message boundary.
// Record, Flush and Close are called by one goroutine (the mediator's);
// Stats, Queued and Reconnects are safe from any goroutine.
type IPFIXTCP struct {
	tcpStream // one unit per message
	enc       *ipfixEncoder
	// track follows the templates of what was written; writer goroutine.
	track *tplTracker
}

// NewIPFIXTCP starts an output sending to addr ("host:port") with a queue of
// at most queueBytes octets (0: DefaultTCPQueueBytes; at least two chunks of
// 256 KiB).
func NewIPFIXTCP(name, addr string, queueBytes int64) *IPFIXTCP {
	t := &IPFIXTCP{track: newTplTracker()}
	t.enc = newIPFIXEncoder(maxTCPMessage, t.message)
	t.enc.withdraw = true
	t.start(name, addr, queueBytes, maxTCPMessage, t)
	return t
}

// NewIPFIXTLS is NewIPFIXTCP over TLS (RFC 7011 section 11): the server's
// certificate is verified against files.CA (the system's roots without
// one) for serverName, and files.Cert and Key, when given, are the client
// certificate for mutual TLS. The files are read again when they change.
func NewIPFIXTLS(name, addr string, queueBytes int64, files tlsfiles.Files, serverName string) (*IPFIXTCP, error) {
	store, err := tlsfiles.Load(files)
	if err != nil {
		return nil, fmt.Errorf("export: %q: %w", name, err)
	}
	t := &IPFIXTCP{track: newTplTracker()}
	t.enc = newIPFIXEncoder(maxTCPMessage, t.message)
	t.enc.withdraw = true
	dial := func(ctx context.Context, d *net.Dialer, addr string) (net.Conn, error) {
		_ = store.Reload() // changed files are used from the next connection on
		td := tls.Dialer{NetDialer: d, Config: store.ClientConfig(serverName)}
		return td.DialContext(ctx, "tcp", addr)
	}
	t.startDial(name, addr, queueBytes, maxTCPMessage, t, dial)
	return t, nil
}

// message is the encoder's sink.
func (t *IPFIXTCP) message(msg []byte, records int) {
	b := t.begin()
	t.commit(append(b, msg...), records)
}

// Record implements Output.
func (t *IPFIXTCP) Record(m *jsonl.Meta, r *ipfix.Record) {
	if t.closed {
		t.dropped.Add(1)
		return
	}
	t.enc.record(m, r)
}

// Flush implements Output: the open message is closed and queued when the
// writer is idle, else the writer queues it when it runs out of work. While
// disconnected records gather into full chunks instead, so small flushes do
// not use up the queue's slots.
func (t *IPFIXTCP) Flush() error {
	t.enc.finish()
	t.flush()
	return nil
}

// Close implements Output: queued records get a few seconds (tcpCloseGrace)
// to go out; what is left is counted as dropped. Records given after Close
// are dropped.
func (t *IPFIXTCP) Close() error {
	t.enc.finish()
	t.shutdown()
	return nil
}

// Stats implements Output.
func (t *IPFIXTCP) Stats() Stats {
	st := t.tcpStream.Stats()
	st.Dropped += t.enc.refused.Load()
	return st
}

// greeting implements streamHook: a connection starts with the templates in
// force.
func (t *IPFIXTCP) greeting(dst []byte) []byte {
	return t.track.appendAll(dst, maxTCPMessage, uint32(time.Now().Unix()))
}

// written implements streamHook. The templates of a cut message stay in
// force, since the messages after it may use them, but its records do not
// advance the sequence number: the receiver sees them lost.
func (t *IPFIXTCP) written(msg []byte, records int, whole bool) {
	if !whole {
		records = 0
	}
	t.track.update(msg, records)
}

// overflowed implements streamHook: the dropped messages may have carried
// templates.
func (t *IPFIXTCP) overflowed() { t.enc.forget.Store(true) }
