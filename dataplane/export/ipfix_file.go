package export

import (
	"bufio"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
)

// IPFIXFile defaults.
const (
	DefaultRotateSize  = 256 << 20
	DefaultRotateEvery = time.Hour
)

// IPFIXFile writes an RFC 5655 IPFIX file (messages back to back) at path,
// appending if it exists. When the file would outgrow the rotation size or
// is older than the rotation interval, it is renamed with a UTC timestamp
// suffix, the same as rotated JSON lines files have
// (path.20060102T150405.000Z), and a new file is started with every
// template, so each file decodes alone. Records count as sent after a
// successful flush.
type IPFIXFile struct {
	name, path  string
	rotateSize  int64
	rotateEvery time.Duration
	now         func() time.Time

	f       *os.File
	w       *bufio.Writer
	size    int64
	opened  time.Time
	hasData bool
	enc     *ipfixEncoder
	track   *tplTracker
	tpl     []byte
	pending uint64
	err     error
	sent    atomic.Uint64
	dropped atomic.Uint64
	errs    atomic.Uint64
}

// NewIPFIXFile opens path for appending. Zero sizes and durations mean the
// defaults.
func NewIPFIXFile(name, path string, rotateSize int64, rotateEvery time.Duration) (*IPFIXFile, error) {
	if rotateSize <= 0 {
		rotateSize = DefaultRotateSize
	}
	if rotateEvery <= 0 {
		rotateEvery = DefaultRotateEvery
	}
	x := &IPFIXFile{name: name, path: path, rotateSize: rotateSize, rotateEvery: rotateEvery,
		now: time.Now, track: newTplTracker()}
	x.enc = newIPFIXEncoder(maxTCPMessage, x.message)
	x.enc.withdraw = true
	if err := x.open(); err != nil {
		return nil, err
	}
	return x, nil
}

// openAppend opens path for appending and returns its size.
func openAppend(path string) (*os.File, int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, 0, fmt.Errorf("export: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("export: %w", err)
	}
	return f, st.Size(), nil
}

func (x *IPFIXFile) open() error {
	f, size, err := openAppend(x.path)
	if err != nil {
		return err
	}
	x.f, x.size, x.opened, x.hasData = f, size, x.now(), size > 0
	if x.w == nil {
		x.w = bufio.NewWriterSize(f, 256<<10)
	} else {
		x.w.Reset(f)
	}
	if x.tpl = x.track.appendAll(x.tpl[:0], maxTCPMessage, uint32(x.opened.Unix())); len(x.tpl) > 0 {
		if _, err := x.w.Write(x.tpl); err != nil {
			return err
		}
		x.size += int64(len(x.tpl))
	}
	return nil
}

func (x *IPFIXFile) message(msg []byte, records int) {
	if x.err != nil {
		x.dropped.Add(uint64(records))
		return
	}
	if x.hasData && (x.size+int64(len(msg)) > x.rotateSize || x.now().Sub(x.opened) >= x.rotateEvery) {
		if err := x.rotate(); err != nil {
			x.fail(err)
			x.dropped.Add(uint64(records))
			return
		}
	}
	if _, err := x.w.Write(msg); err != nil {
		x.fail(err)
		x.dropped.Add(uint64(records))
		return
	}
	x.size += int64(len(msg))
	x.hasData = true
	x.pending += uint64(records)
	x.track.update(msg, records)
}

func (x *IPFIXFile) fail(err error) {
	x.err = err
	x.errs.Add(1)
	x.dropped.Add(x.pending)
	x.pending = 0
}

// rotate closes the current file, renames it with a timestamp suffix and
// opens a new one.
func (x *IPFIXFile) rotate() error {
	if err := x.w.Flush(); err != nil {
		return err
	}
	x.sent.Add(x.pending)
	x.pending = 0
	err := x.f.Close()
	x.f = nil
	if err != nil {
		return err
	}
	dst, err := rotatedName(x.path, x.opened)
	if err != nil {
		return err
	}
	if err := os.Rename(x.path, dst); err != nil {
		return err
	}
	return x.open()
}

// Record implements Output.
func (x *IPFIXFile) Record(m *jsonl.Meta, r *ipfix.Record) {
	x.enc.record(m, r)
}

// Flush implements Output; it also rotates a file that is due while idle.
func (x *IPFIXFile) Flush() error {
	x.enc.finish()
	if x.err != nil {
		return x.err
	}
	if x.hasData && x.now().Sub(x.opened) >= x.rotateEvery {
		if err := x.rotate(); err != nil {
			x.fail(err)
			return err
		}
		return nil
	}
	if err := x.w.Flush(); err != nil {
		x.fail(err)
		return err
	}
	x.sent.Add(x.pending)
	x.pending = 0
	return nil
}

// Close implements Output.
func (x *IPFIXFile) Close() error {
	ferr := x.Flush()
	if x.f == nil {
		return ferr
	}
	if err := x.f.Close(); err != nil {
		return err
	}
	x.f = nil
	return ferr
}

func (x *IPFIXFile) Name() string { return x.name }

func (x *IPFIXFile) Stats() Stats {
	return Stats{Sent: x.sent.Load(), Dropped: x.dropped.Load() + x.enc.refused.Load(), Errors: x.errs.Load()}
}
