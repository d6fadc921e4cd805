package export

import (
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
)

// IPFIXUDP defaults.
const (
	DefaultUDPPayload          = 1400
	DefaultUDPTemplateInterval = 60 * time.Second
)

// IPFIXUDP re-exports records as IPFIX over UDP: one message per datagram,
// sized to the MTU; every template is sent again each template interval.
// Datagrams are sent from the mediator goroutine as messages fill up (and on
// Flush); a record counts as sent when its datagram was handed to the
// kernel.
type IPFIXUDP struct {
	name     string
	conn     net.Conn
	enc      *ipfixEncoder
	track    *tplTracker
	payload  int
	interval time.Duration
	lastTpl  time.Time
	tpl      []byte
	sent     atomic.Uint64
	dropped  atomic.Uint64
	errs     atomic.Uint64
}

// NewIPFIXUDP connects a UDP socket to addr. mtu is the IP MTU (0: payloads
// of DefaultUDPPayload octets); interval 0 means the default.
func NewIPFIXUDP(name, addr string, mtu int, interval time.Duration) (*IPFIXUDP, error) {
	conn, err := net.Dial("udp", addr)
	if err != nil {
		return nil, err
	}
	payload := DefaultUDPPayload
	if mtu > 0 {
		hdr := 28 // IPv4 + UDP
		if ra, ok := conn.RemoteAddr().(*net.UDPAddr); ok && ra.IP.To4() == nil {
			hdr = 48
		}
		payload = min(mtu-hdr, ipfix.MaxMessageLen)
	}
	if interval <= 0 {
		interval = DefaultUDPTemplateInterval
	}
	u := &IPFIXUDP{name: name, conn: conn, track: newTplTracker(), payload: payload, interval: interval}
	u.enc = newIPFIXEncoder(payload, u.message)
	return u, nil
}

// Payload returns the largest datagram payload sent.
func (u *IPFIXUDP) Payload() int { return u.payload }

func (u *IPFIXUDP) message(msg []byte, records int) {
	u.templates(time.Now())
	if err := u.write(msg); err != nil {
		u.errs.Add(1)
		u.dropped.Add(uint64(records))
	} else {
		u.sent.Add(uint64(records))
	}
	u.track.update(msg, records)
}

// templates sends every known template when the interval has passed.
func (u *IPFIXUDP) templates(now time.Time) {
	if now.Sub(u.lastTpl) < u.interval {
		return
	}
	u.lastTpl = now
	if u.track.empty() {
		return
	}
	u.tpl = u.track.appendAll(u.tpl[:0], u.payload, uint32(now.Unix()))
	for b := u.tpl; len(b) >= ipfix.HeaderLenIPFIX; {
		n := int(b[2])<<8 | int(b[3])
		if err := u.write(b[:n]); err != nil {
			u.errs.Add(1)
		}
		b = b[n:]
	}
}

// write sends one datagram. A connected UDP socket reports an ICMP error
// (nobody listening) on the next send, which is then not sent: retry once.
func (u *IPFIXUDP) write(b []byte) error {
	_, err := u.conn.Write(b)
	if errors.Is(err, syscall.ECONNREFUSED) {
		_, err = u.conn.Write(b)
	}
	return err
}

// Record implements Output.
func (u *IPFIXUDP) Record(m *jsonl.Meta, r *ipfix.Record) {
	u.enc.record(m, r)
}

// Flush implements Output: sends the open message, and the templates when
// they are due.
func (u *IPFIXUDP) Flush() error {
	u.enc.finish()
	u.templates(time.Now())
	return nil
}

// Close implements Output.
func (u *IPFIXUDP) Close() error {
	u.enc.finish()
	return u.conn.Close()
}

func (u *IPFIXUDP) Name() string { return u.name }

func (u *IPFIXUDP) Stats() Stats {
	return Stats{Sent: u.sent.Load(), Dropped: u.dropped.Load() + u.enc.refused.Load(), Errors: u.errs.Load()}
}
