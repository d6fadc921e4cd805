package analysis

import (
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/sluice-flow/sluice/dataplane/meter"
)

// Captures of ordinary traffic (what classify does not take for flow
// export, or every capture with params.input "traffic") are metered into
// flows by dataplane/meter with its default configuration, as `sluice
// meter` does, and the meter's IPFIX messages are decoded like those of an
// IPFIX file: a job over a traffic capture gives what the same job gives
// over the file `sluice meter -o FILE` writes for it. The traffic captures
// of a job continue one another (one meter for all of them, as `sluice
// meter A B`), and their flows still open are exported after the job's
// last file.

// TrafficSummary says what the flow meter read (Summary.Traffic).
type TrafficSummary struct {
	Files int `json:"files"`
	// Packets read from the captures; Metered of them were counted in a
	// flow, of Octets IP octets; the rest are Skipped by reason
	// (link_type, non_ip, truncated, malformed, fragment_unmatched).
	Packets uint64            `json:"packets"`
	Metered uint64            `json:"metered"`
	Octets  uint64            `json:"octets"`
	Flows   uint64            `json:"flows"`
	Skipped map[string]uint64 `json:"skipped,omitempty"`
}

// sniffed is why a capture was taken for ordinary traffic.
type sniffed struct {
	forced                     bool
	packets, datagrams, export uint64
}

func (t *sniffed) err(name string, err error) error {
	return &TrafficError{File: name, Forced: t.forced, Packets: t.packets, Datagrams: t.datagrams, Export: t.export, Err: err}
}

var errNotCapture = errors.New("not a pcap or pcapng capture")

// trafficSink decodes the meter's messages into the scan as ipfixFile
// decodes an IPFIX file's (same exporter, same templates).
type trafficSink struct{ s *scan }

func (t trafficSink) Message(msg []byte) error {
	var none netip.AddrPort
	if n, err := t.s.dec.Decode(none, msg, t.s.handle); n == 0 {
		return fmt.Errorf("analysis: BUG: the meter's message does not decode: %w", err)
	}
	return t.s.fail
}

func (trafficSink) Close() error { return nil }

// meterCapture meters the capture r (size bytes) into flows.
func (s *scan) meterCapture(name string, r io.Reader, size int64) error {
	if s.meter == nil {
		m, err := meter.New(meter.Config{}, trafficSink{s})
		if err != nil {
			return err
		}
		s.meter = m
		s.sum.Traffic = &TrafficSummary{}
	}
	s.sum.Traffic.Files++
	return s.meter.ReadCapture(s.ctx, name, r, size)
}

// closeMeter exports the flows still open at the end of a pass.
func (s *scan) closeMeter() error {
	m := s.meter
	if m == nil {
		return nil
	}
	s.meter = nil
	err := m.Close()
	if cerr := s.ctx.Err(); cerr != nil {
		return cerr
	}
	if s.fail != nil {
		return s.fail
	}
	if err != nil {
		return err
	}
	st := m.Stats()
	t := s.sum.Traffic
	t.Packets, t.Metered, t.Octets, t.Flows = st.Packets, st.Metered, st.Octets, st.Flows
	for r := 1; r < meter.NumReasons; r++ {
		if n := st.Skipped[r]; n > 0 {
			if t.Skipped == nil {
				t.Skipped = make(map[string]uint64)
			}
			t.Skipped[meter.Reason(r).String()] = n
		}
	}
	return nil
}
