//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// tcpReceiver is where the pipeline mode's ipfix+tcp outputs send: it
// accepts connections on a loopback port, reads and discards, and counts
// octets, messages and data records. One goroutine per connection owns its
// stream state; the counters are safe to read from any goroutine.
type tcpReceiver struct {
	ln net.Listener

	octets, messages, records atomic.Uint64
	// seqLost: records missing per the IPFIX sequence numbers (RFC 7011
	// section 3.1: each message carries the count of data records sent
	// before it in its domain).
	seqLost      atomic.Uint64
	unknownSets  atomic.Uint64 // data sets whose template was not seen
	streamErrors atomic.Uint64 // streams that stopped parsing (bad framing)
	conns        atomic.Uint64

	mu   sync.Mutex
	open map[net.Conn]struct{}
	wg   sync.WaitGroup
}

// recvCounts is what a receiver has counted so far.
type recvCounts struct {
	Octets, Messages, Records, SeqLost, UnknownSets, StreamErrors, Conns float64
}

func startReceiver() (*tcpReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &tcpReceiver{ln: ln, open: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// Addr is the receiver's host:port.
func (r *tcpReceiver) Addr() string { return r.ln.Addr().String() }

func (r *tcpReceiver) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.conns.Add(1)
		r.mu.Lock()
		r.open[c] = struct{}{}
		r.mu.Unlock()
		r.wg.Add(1)
		go r.serve(c)
	}
}

// serve reads one connection until EOF, counting as it goes.
func (r *tcpReceiver) serve(c net.Conn) {
	defer r.wg.Done()
	defer func() {
		r.mu.Lock()
		delete(r.open, c)
		r.mu.Unlock()
		c.Close()
	}()
	s := newIPFIXStream()
	buf := make([]byte, 1<<20)
	have := 0
	for {
		n, err := c.Read(buf[have:])
		if n > 0 {
			r.octets.Add(uint64(n))
			have += n
			used := s.feed(buf[:have])
			have = copy(buf, buf[used:have])
			if have == len(buf) { // cannot happen: messages are at most 64 KiB
				have = 0
			}
			r.publish(s)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				r.streamErrors.Add(1)
			}
			return
		}
	}
}

// publish moves a stream's counts since its last publish into the totals.
func (r *tcpReceiver) publish(s *ipfixStream) {
	r.messages.Add(s.messages)
	r.records.Add(s.records)
	r.seqLost.Add(s.seqLost)
	r.unknownSets.Add(s.unknownSets)
	if s.err != nil && !s.errCounted {
		s.errCounted = true
		r.streamErrors.Add(1)
	}
	s.messages, s.records, s.seqLost, s.unknownSets = 0, 0, 0, 0
}

func (r *tcpReceiver) counts() recvCounts {
	return recvCounts{Octets: float64(r.octets.Load()), Messages: float64(r.messages.Load()),
		Records: float64(r.records.Load()), SeqLost: float64(r.seqLost.Load()),
		UnknownSets: float64(r.unknownSets.Load()), StreamErrors: float64(r.streamErrors.Load()),
		Conns: float64(r.conns.Load())}
}

// Close stops accepting, closes the open connections and waits for their
// goroutines.
func (r *tcpReceiver) Close() {
	r.ln.Close()
	r.mu.Lock()
	for c := range r.open {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

type tplKey struct {
	domain uint32
	id     uint16
}

// ipfixStream counts the messages and data records of one IPFIX byte
// stream (RFC 7011 over TCP). Records per data set come from the record
// length of its template; sets of variable-length templates, or of
// templates never seen, are counted in unknownSets. Not safe for
// concurrent use.
type ipfixStream struct {
	recLen  map[tplKey]int
	nextSeq map[uint32]uint32 // per domain: the sequence number expected next
	msg     ipfix.Message
	tr      ipfix.TemplateRecord
	set     ipfix.Set

	messages, records, seqLost, unknownSets uint64
	err                                     error
	errCounted                              bool
}

var errStreamFraming = errors.New("receiver: not an IPFIX message stream")

func newIPFIXStream() *ipfixStream {
	return &ipfixStream{recLen: map[tplKey]int{}, nextSeq: map[uint32]uint32{}}
}

// feed counts the whole messages at the start of b and returns how many
// octets they took; the caller keeps the rest for the next call. After a
// framing error the stream consumes everything without counting.
func (s *ipfixStream) feed(b []byte) int {
	if s.err != nil {
		return len(b)
	}
	off := 0
	for len(b)-off >= ipfix.HeaderLenIPFIX {
		n := int(binary.BigEndian.Uint16(b[off+2:]))
		if binary.BigEndian.Uint16(b[off:]) != ipfix.VersionIPFIX || n < ipfix.HeaderLenIPFIX {
			s.err = errStreamFraming
			return len(b)
		}
		if len(b)-off < n {
			break
		}
		if err := s.message(b[off : off+n]); err != nil {
			s.err = err
			return len(b)
		}
		off += n
	}
	return off
}

func (s *ipfixStream) message(b []byte) error {
	if err := s.msg.Decode(b); err != nil {
		return err
	}
	s.messages++
	domain := s.msg.DomainID
	if want, ok := s.nextSeq[domain]; ok && s.msg.Sequence != want {
		// Sequence numbers wrap; a message behind the expected number is
		// a reordering no TCP stream has, so count only the gap ahead.
		if gap := s.msg.Sequence - want; gap < 1<<31 {
			s.seqLost += uint64(gap)
		}
	}
	var recs uint64
	it := s.msg.Sets()
	for it.Next(&s.set) {
		switch s.set.Kind {
		case ipfix.SetTemplate, ipfix.SetOptionsTemplate:
			ti := s.set.Templates()
			for ti.Next(&s.tr) {
				if s.tr.Withdrawal() {
					if s.tr.ID == ipfix.WithdrawAllTemplates || s.tr.ID == ipfix.WithdrawAllOptionsTemplates {
						for k := range s.recLen {
							if k.domain == domain {
								delete(s.recLen, k)
							}
						}
					} else {
						delete(s.recLen, tplKey{domain, s.tr.ID})
					}
					continue
				}
				l, err := ipfix.Compile(&s.tr)
				if err != nil {
					return err
				}
				s.recLen[tplKey{domain, s.tr.ID}] = l.RecordLen
			}
			if err := ti.Err(); err != nil {
				return err
			}
		case ipfix.SetData:
			rl := s.recLen[tplKey{domain, s.set.ID}]
			if rl <= 0 {
				s.unknownSets++
				continue
			}
			recs += uint64(len(s.set.Body) / rl)
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	s.records += recs
	s.nextSeq[domain] = s.msg.Sequence + uint32(recs)
	return nil
}
