package mediator

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/sluice-flow/sluice/dataplane/entry"
	"github.com/sluice-flow/sluice/dataplane/ring"
)

// A collector announces each template on a ring once, before the first
// data that needs it; a mediator that restarts resumes after those
// announcements. So, with file rings, the mediator keeps the template
// entries it has read in a file of its own next to the ring
// (ring-000.<generation>.templates: 4-octet native-endian length, then the
// entry as the ring held it), truncated at each reset entry, and a
// successor loads it before reading the ring. The file holds at least the
// templates announced before the ring's tail: a reset is a release point
// (the outputs are flushed and the ring released up to it before the file
// is truncated), so the entries a successor reads again never need a
// template the file forgot.

func statePath(ringPath string, gen uint64) string {
	return ringPath + "." + strconv.FormatUint(gen, 10) + ".templates"
}

// loadState reads the templates a former mediator kept for rs, then opens
// the file for appending.
func (m *Mediator) loadState(rs *ringState) error {
	// Named after the ring's own name, not the file's: a ring kept under
	// ring.RetainedName finds the templates its first reader wrote.
	path := statePath(filepath.Join(filepath.Dir(rs.file.Path()), ring.FileName(rs.file.Meta().Index)), rs.gen)
	if b, err := os.ReadFile(path); err == nil {
		n := 0
		for len(b) >= 4 {
			l := int(binary.NativeEndian.Uint32(b))
			if l > len(b)-4 {
				break // cut by a kill in the middle of a write
			}
			var h entry.Header
			if _, err := entry.Parse(b[4:4+l], &h); err == nil && h.Kind == entry.KindTemplate {
				m.entry(rs, b[4:4+l], nil) // templates only
				n++
			}
			b = b[4+l:]
		}
		if n > 0 {
			m.log.Info("templates restored", "file", path, "templates", n)
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("mediator: template state: %w", err)
	}
	rs.state = f
	return nil
}

// keepTemplate appends a template entry to rs's state file.
func (m *Mediator) keepTemplate(rs *ringState, b []byte) {
	buf := binary.NativeEndian.AppendUint32(rs.stateBuf[:0], uint32(len(b)))
	buf = append(buf, b...)
	rs.stateBuf = buf
	if _, err := rs.state.Write(buf); err != nil {
		m.logs.Warn(m.log, "cannot keep a template for a restart", "err", err)
	}
}

// forgetTemplates handles a reset entry: release everything up to it, then
// empty the state file.
func (m *Mediator) forgetTemplates(rs *ringState) {
	m.flush()
	rs.c.Publish()
	if err := rs.state.Truncate(0); err != nil {
		m.logs.Warn(m.log, "cannot reset the template state", "err", err)
	}
}

// dropState closes and removes rs's state file (its ring is retired).
func dropState(rs *ringState) {
	if rs.state != nil {
		rs.state.Close()
		os.Remove(rs.state.Name())
		rs.state = nil
	}
}
