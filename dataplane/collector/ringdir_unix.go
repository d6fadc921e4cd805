//go:build unix

package collector

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ring"
)

// ringDir is the collector's hold on a ring directory: a lock, so that two
// collectors never write into one directory, and the loops' file rings.
type ringDir struct {
	lock  *os.File
	files []*ring.File
	gen   uint64
}

// openRingDir locks dir and makes one file ring per loop, named by
// ring.FileName, with a generation newer than the files it replaces. Files
// of a former collector with more loops are removed; a mediator that maps
// them drains its mapping all the same.
func openRingDir(dir string, loops, size int) (*ringDir, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("collector: ring dir: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "collector.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("collector: ring dir: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("collector: ring dir %s is in use by another collector", dir)
		}
		return nil, fmt.Errorf("collector: ring dir %s: lock: %w", dir, err)
	}
	d := &ringDir{lock: lock, gen: uint64(time.Now().UnixNano())}
	if m, err := ring.ReadMeta(filepath.Join(dir, ring.FileName(0))); err == nil && m.Generation >= d.gen {
		d.gen = m.Generation + 1 // the clock went back: stay newer
	}
	for i := range loops {
		f, err := ring.Create(filepath.Join(dir, ring.FileName(i)), size, ring.Meta{Generation: d.gen, Index: i, Count: loops})
		if err != nil {
			d.close()
			return nil, fmt.Errorf("collector: %w", err)
		}
		d.files = append(d.files, f)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if i, ok := ring.ParseFileName(e.Name()); ok && i >= loops {
			os.Remove(filepath.Join(dir, e.Name()))
		} else if strings.HasPrefix(e.Name(), ".ring-") && strings.Contains(e.Name(), ".tmp") {
			os.Remove(filepath.Join(dir, e.Name())) // left by a collector killed while creating
		}
	}
	_ = lock.Truncate(0)
	_, _ = lock.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return d, nil
}

// unlock releases the lock; the mappings stay.
func (d *ringDir) unlock() { d.lock.Close() }

// close unmaps the rings and releases the lock.
func (d *ringDir) close() {
	for _, f := range d.files {
		f.Close()
	}
	d.files = nil
	d.lock.Close()
}
