//go:build unix

package collector

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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
func openRingDir(dir string, loops, size int, log *slog.Logger) (*ringDir, error) {
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
	retainUnread(dir, log)
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

// maxRetained bounds the unread generations kept per ring index: each is a
// ring file's worth of memory on the tmpfs.
const maxRetained = 2

// retainUnread renames the ring files that still hold entries no mediator
// has read (the collector restarted while no mediator ran, or one that
// runs has not caught up) to ring.RetainedName, so that making the new
// generation does not replace them; the mediator drains and removes them.
// Beyond maxRetained generations per index the oldest are removed, and
// what they held is logged as lost.
func retainUnread(dir string, log *slog.Logger) {
	ents, _ := os.ReadDir(dir)
	kept := map[int][]uint64{}
	for _, e := range ents {
		if i, gen, ok := ring.ParseRetainedName(e.Name()); ok {
			kept[i] = append(kept[i], gen)
			continue
		}
		i, ok := ring.ParseFileName(e.Name())
		if !ok {
			continue
		}
		path := filepath.Join(dir, e.Name())
		f, err := ring.Open(path)
		if err != nil {
			continue // not a ring we can read: replaced as before
		}
		unread, gen := f.Len(), f.Meta().Generation
		f.Close()
		if unread == 0 {
			continue
		}
		if err := os.Rename(path, filepath.Join(dir, ring.RetainedName(i, gen))); err != nil {
			log.Error("cannot keep an unread ring; its entries will be lost", "file", path, "err", err)
			continue
		}
		kept[i] = append(kept[i], gen)
		log.Warn("ring has unread entries: kept for the mediator", "file", path, "generation", gen, "bytes", unread)
	}
	for i, gens := range kept {
		if len(gens) <= maxRetained {
			continue
		}
		slices.Sort(gens)
		for _, gen := range gens[:len(gens)-maxRetained] {
			path := filepath.Join(dir, ring.RetainedName(i, gen))
			n := -1
			if f, err := ring.Open(path); err == nil {
				n = f.Len()
				f.Close()
			}
			os.Remove(path)
			log.Error("unread ring removed: too many generations wait for a mediator; its entries are lost",
				"file", path, "generation", gen, "bytes", n, "kept", maxRetained)
		}
	}
}
