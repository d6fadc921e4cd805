package export

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// rotatedStamp is the suffix format of rotated files (JSON lines and IPFIX):
// the UTC time the file was started, to the millisecond.
const rotatedStamp = "20060102T150405.000Z"

// parseJSONLFileSpec parses "jsonl:PATH[?rotate_size=256MiB&rotate_every=1h]";
// options left out are 0 (no rotation on that criterion).
func parseJSONLFileSpec(spec string) (path string, rotateSize int64, rotateEvery time.Duration, err error) {
	path, q, err := splitQuery(spec, strings.TrimPrefix(spec, "jsonl:"), "rotate_size", "rotate_every")
	if err != nil {
		return "", 0, 0, err
	}
	if path == "" {
		return "", 0, 0, fmt.Errorf("export: %q: missing path", spec)
	}
	if path == "-" {
		return "", 0, 0, fmt.Errorf("export: %q: stdout cannot rotate", spec)
	}
	if rotateSize, err = optSize(spec, q, "rotate_size", 0); err != nil {
		return "", 0, 0, err
	}
	if rotateEvery, err = optDuration(spec, q, "rotate_every", 0); err != nil {
		return "", 0, 0, err
	}
	return path, rotateSize, rotateEvery, nil
}

// NewJSONLFile opens path for appending. A rotateSize or rotateEvery above 0
// turns on rotation: before a line would take the file past rotateSize
// octets, or at the first Record or Flush once the file is rotateEvery old,
// the file is renamed path.YYYYMMDDTHHMMSS.mmmZ (the UTC time it was started:
// opened, or given its first line if it was empty; "-N" added if that name
// exists) and a new one is started. Files are rotated only between lines,
// and empty files are not rotated. With both 0 it is a plain appending
// output.
func NewJSONLFile(name, path string, rotateSize int64, rotateEvery time.Duration) (*JSONL, error) {
	if rotateSize <= 0 && rotateEvery <= 0 {
		f, _, err := openAppend(path)
		if err != nil {
			return nil, err
		}
		return NewJSONL(name, f), nil
	}
	r := &jsonlRotation{path: path, maxSize: max(rotateSize, 0), every: max(rotateEvery, 0), now: time.Now}
	if err := r.open(); err != nil {
		return nil, err
	}
	j := NewJSONL(name, r)
	j.rot = r
	return j, nil
}

// jsonlRotation is the file behind a rotating JSONL output. It is owned by
// the mediator goroutine, like the JSONL it belongs to.
type jsonlRotation struct {
	path    string
	maxSize int64         // 0: no size limit
	every   time.Duration // 0: no age limit
	now     func() time.Time

	f      *os.File  // nil after a failed rotation
	size   int64     // octets in the file, buffered ones included
	opened time.Time // when the file was started
	dueAt  time.Time // opened + every
}

func (r *jsonlRotation) open() error {
	f, size, err := openAppend(r.path)
	if err != nil {
		return err
	}
	r.f, r.size = f, size
	r.start()
	return nil
}

func (r *jsonlRotation) start() {
	r.opened = r.now()
	r.dueAt = r.opened.Add(r.every)
}

// due reports whether the file must be rotated before a line of n octets.
// An empty file is never rotated; its age, and its name when rotated, count
// from the first line.
func (r *jsonlRotation) due(n int) bool {
	if r.size == 0 {
		r.start()
		return false
	}
	if r.maxSize > 0 && r.size+int64(n) > r.maxSize {
		return true
	}
	return r.every > 0 && !r.now().Before(r.dueAt)
}

// aged reports whether a file with data is due by age (on Flush: size is
// checked only before a line).
func (r *jsonlRotation) aged() bool {
	return r.size > 0 && r.every > 0 && !r.now().Before(r.dueAt)
}

// Write writes to the current file; JSONL's buffer sits in front.
func (r *jsonlRotation) Write(p []byte) (int, error) {
	if r.f == nil {
		return 0, os.ErrClosed
	}
	return r.f.Write(p)
}

// Close closes the current file.
func (r *jsonlRotation) Close() error {
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}

// rotate writes out the lines buffered before keep (the offset in j.out of
// the line that did not fit), closes the current file, renames it and opens
// a new one; the line at keep stays buffered for the new file. An error
// leaves the output failed, as a write error does.
func (j *JSONL) rotate(keep int) error {
	if keep > 0 {
		if _, err := j.w.Write(j.out[:keep]); err != nil {
			return err
		}
		j.out = j.out[:copy(j.out, j.out[keep:])]
		j.sent.Add(j.pending)
		j.pending = 0
	}
	r := j.rot
	if err := r.Close(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	dst, err := rotatedName(r.path, r.opened)
	if err != nil {
		return err
	}
	if err := os.Rename(r.path, dst); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return r.open()
}

// errNoRotatedName reports that every candidate name for a rotated file
// exists.
var errNoRotatedName = errors.New("export: no free name for the rotated file")

// rotatedName returns path.STAMP, or path.STAMP-N for the smallest N that
// does not exist yet.
func rotatedName(path string, opened time.Time) (string, error) {
	base := path + "." + opened.UTC().Format(rotatedStamp)
	dst := base
	for i := 1; i <= 10000; i++ {
		if _, err := os.Lstat(dst); errors.Is(err, os.ErrNotExist) {
			return dst, nil
		}
		dst = base + "-" + strconv.Itoa(i)
	}
	return "", errNoRotatedName
}

var _ io.WriteCloser = (*jsonlRotation)(nil)
