package meter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sluice-flow/sluice/dataplane/offline/pcap"
)

// ErrDamaged is wrapped by ReadCapture's error when a capture breaks off
// (a truncated or malformed record or block): the packets before the damage
// were metered, the rest of the file is lost, and Stats counts one skip
// with reason capture_error.
var ErrDamaged = errors.New("meter: damaged capture")

// progressEvery is how many packets pass between looks at the wall clock
// and the context.
const progressEvery = 8192

type progressState struct {
	last time.Time
}

// countingReader counts the bytes read from a capture, for progress.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

// ReadFile meters the capture at path; see ReadCapture.
func (m *Meter) ReadFile(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("meter: %w", err)
	}
	defer f.Close()
	size := int64(-1)
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		size = fi.Size()
	}
	return m.ReadCapture(ctx, path, f, size)
}

// ReadCapture meters every packet of the pcap or pcapng capture r (name
// names it in progress reports and errors; size is its length, or -1).
// Captures read one after another continue one another: flows stay open
// across them, as across the files of a rotated capture. It returns an
// error wrapping pcap.ErrNotCapture for input that is not a capture,
// ErrDamaged for a capture that breaks off, and ctx's error when ctx ends
// (the packets read so far are metered; Close still exports them).
func (m *Meter) ReadCapture(ctx context.Context, name string, r io.Reader, size int64) error {
	if m.closed {
		return errors.New("meter: ReadCapture after Close")
	}
	cr := &countingReader{r: r}
	rd, err := pcap.NewReader(cr)
	if err != nil {
		return fmt.Errorf("meter: %s: %w", name, err)
	}
	var p pcap.Packet
	n := 0
	report := func() {
		if m.cfg.Progress != nil {
			m.cfg.Progress(Progress{File: name, FileBytes: cr.n, FileSize: size, Stats: m.Stats()})
		}
	}
	m.progressState.last = time.Now()
	for {
		err := rd.NextPacket(&p)
		if err != nil {
			report()
			if errors.Is(err, io.EOF) {
				return m.err
			}
			m.stats.Skipped[ReasonCapture]++
			return fmt.Errorf("%w: %s: %w", ErrDamaged, name, err)
		}
		var ts int64
		if !p.Time.IsZero() {
			ts = p.Time.UnixNano()
		}
		m.Packet(ts, p.LinkType, p.Data)
		if n++; n%progressEvery == 0 {
			if err := ctx.Err(); err != nil {
				report()
				return err
			}
			if m.err != nil {
				return m.err
			}
			if now := time.Now(); now.Sub(m.progressState.last) >= m.cfg.ProgressInterval {
				m.progressState.last = now
				report()
			}
		}
	}
}
