package meter

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
)

// Sink receives a meter's IPFIX messages in order, on the meter's
// goroutine. msg is valid only during the call. Close is called once, by
// Meter.Close, after the last message.
type Sink interface {
	Message(msg []byte) error
	Close() error
}

// FileSink writes the messages back to back: an RFC 5655 IPFIX file. The
// export times and sequence numbers are the meter's (capture time), so the
// same captures give the same bytes.
type FileSink struct {
	w *bufio.Writer
	c io.Closer // nil: not closed
}

// NewFileSink writes to w, through a buffer; Close flushes it and closes w
// if it is an io.Closer.
func NewFileSink(w io.Writer) *FileSink {
	s := &FileSink{w: bufio.NewWriterSize(w, 256<<10)}
	if c, ok := w.(io.Closer); ok {
		s.c = c
	}
	return s
}

// Message implements Sink.
func (s *FileSink) Message(msg []byte) error {
	if _, err := s.w.Write(msg); err != nil {
		return fmt.Errorf("meter: writing IPFIX: %w", err)
	}
	return nil
}

// Close implements Sink.
func (s *FileSink) Close() error {
	err := s.w.Flush()
	if s.c != nil {
		if cerr := s.c.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("meter: writing IPFIX: %w", err)
	}
	return nil
}

// OutputSink hands each data record of the messages to export outputs
// (the --output specs of sluice run: JSON lines, IPFIX over TCP or UDP,
// IPFIX files). JSON lines carry the meter's export time; IPFIX outputs
// re-encode the records with their own export times and sequence numbers.
type OutputSink struct {
	outs    []export.Output
	layouts map[uint16]*ipfix.Layout
	meta    jsonl.Meta
	msg     ipfix.Message
	tr      ipfix.TemplateRecord
	rec     ipfix.Record
}

// NewOutputSink returns a sink feeding outs. Close flushes and closes them.
func NewOutputSink(outs ...export.Output) *OutputSink {
	return &OutputSink{outs: outs, layouts: make(map[uint16]*ipfix.Layout)}
}

// Message implements Sink.
func (s *OutputSink) Message(b []byte) error {
	if err := s.msg.Decode(b); err != nil {
		return fmt.Errorf("meter: BUG: own message: %w", err)
	}
	s.meta.Msg = &s.msg
	sets := s.msg.Sets()
	var set ipfix.Set
	for sets.Next(&set) {
		switch set.Kind {
		case ipfix.SetTemplate:
			it := set.Templates()
			for it.Next(&s.tr) {
				l, err := ipfix.Compile(&s.tr)
				if err != nil {
					return fmt.Errorf("meter: BUG: own template: %w", err)
				}
				s.layouts[l.ID] = l
			}
		case ipfix.SetData:
			l := s.layouts[set.ID]
			if l == nil {
				return fmt.Errorf("meter: BUG: no template %d", set.ID)
			}
			it := set.Records(l)
			for it.Next(&s.rec) {
				for _, o := range s.outs {
					o.Record(&s.meta, &s.rec)
				}
			}
		}
	}
	for _, o := range s.outs {
		if err := o.Flush(); err != nil {
			return fmt.Errorf("meter: output %s: %w", o.Name(), err)
		}
	}
	return nil
}

// Close implements Sink.
func (s *OutputSink) Close() error {
	var errs []error
	for _, o := range s.outs {
		if err := o.Close(); err != nil {
			errs = append(errs, fmt.Errorf("meter: output %s: %w", o.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// Outputs returns the outputs, in the order given (for their Stats).
func (s *OutputSink) Outputs() []export.Output { return s.outs }

// Tee sends every message to each sink in turn.
type Tee []Sink

// Message implements Sink.
func (t Tee) Message(msg []byte) error {
	for _, s := range t {
		if err := s.Message(msg); err != nil {
			return err
		}
	}
	return nil
}

// Close implements Sink.
func (t Tee) Close() error {
	var errs []error
	for _, s := range t {
		if err := s.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
