//go:build unix

package ring

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// shmDir returns a directory on /dev/shm when there is one (the tmpfs the
// split pod uses), else a test temp dir.
func shmDir(t testing.TB) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "sluice-ring-test-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}

func closeFile(t testing.TB, f *File) {
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	})
}

// TestFileRoundTrip makes a file ring, attaches to it as the other process
// would, and checks that the meta, the entries, the consumer's position
// and the producer's closed flag all travel through the file.
func TestFileRoundTrip(t *testing.T) {
	path := filepath.Join(shmDir(t), "ring-000")
	meta := Meta{Generation: 1234567, Index: 2, Count: 4}
	w, err := Create(path, 64<<10, meta)
	if err != nil {
		t.Fatal(err)
	}
	closeFile(t, w)
	if got, err := ReadMeta(path); err != nil || got != meta {
		t.Fatalf("ReadMeta = %+v, %v; want %+v", got, err, meta)
	}
	p := w.Producer()
	for i := range 5 {
		put(t, p, 10+i, 10+i, byte('a'+i))
	}

	r1, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if r1.Meta() != meta || r1.Cap() != 64<<10 || r1.Path() != path {
		t.Fatalf("attached: meta %+v cap %d path %s", r1.Meta(), r1.Cap(), r1.Path())
	}
	c := r1.Consumer()
	get(t, c, 10, 'a') // released
	// Two entries handed on and checkpointed but not released, as a
	// mediator killed between its flush and its release leaves them.
	for i := 1; i <= 2; i++ {
		if b := c.Next(); len(b) != 10+i {
			t.Fatalf("entry %d: %d bytes", i, len(b))
		}
		c.Skip()
		c.Checkpoint()
	}
	handed := c.Pos()
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}

	r2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	closeFile(t, r2)
	if r2.Checkpointed() != handed {
		t.Fatalf("Checkpointed = %d, want %d", r2.Checkpointed(), handed)
	}
	c2 := r2.Consumer()
	repeats := 0
	for i := 1; i < 5; i++ {
		b := c2.Next()
		if len(b) != 10+i || b[0] != byte('a'+i) {
			t.Fatalf("after reattach, entry %d: %q", i, b)
		}
		c2.Skip()
		if c2.Pos() <= r2.Checkpointed() {
			repeats++
		}
		c2.Publish()
	}
	if repeats != 2 {
		t.Fatalf("repeats = %d, want 2", repeats)
	}
	if c2.Next() != nil || r2.Closed() {
		t.Fatal("ring not empty, or closed before Close")
	}
	p.Close()
	if !r2.Closed() {
		t.Fatal("Close of the producer not seen through the file")
	}
}

// TestFileReplace makes a new ring at the path of one still mapped: the
// old mapping keeps its entries (the consumer drains it), the path holds
// the new one.
func TestFileReplace(t *testing.T) {
	path := filepath.Join(shmDir(t), "ring-000")
	old, err := Create(path, 4096, Meta{Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	closeFile(t, old)
	put(t, old.Producer(), 100, 100, 'o')
	cons, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	closeFile(t, cons)
	neu, err := Create(path, 8192, Meta{Generation: 2})
	if err != nil {
		t.Fatal(err)
	}
	closeFile(t, neu)
	if m, err := ReadMeta(path); err != nil || m.Generation != 2 {
		t.Fatalf("ReadMeta after replace = %+v, %v", m, err)
	}
	get(t, cons.Consumer(), 100, 'o')
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Fatalf("directory holds %d files, want 1 (no temporary left)", len(ents))
	}
}

// TestFileRefused checks that files of the wrong size, magic, version or
// with impossible positions are refused with an error naming the file.
func TestFileRefused(t *testing.T) {
	dir := shmDir(t)
	f := func(name string, edit func(path string), want error) {
		t.Helper()
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		r, err := Create(path, 4096, Meta{Generation: 9})
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
		edit(path)
		got, err := Open(path)
		if !errors.Is(err, want) || got != nil {
			t.Errorf("%s: Open = %v, %v; want %v", name, got, err, want)
			return
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %q does not name the file", name, err)
		}
		if _, err := ReadMeta(path); want != ErrCorrupt && !errors.Is(err, want) {
			t.Errorf("%s: ReadMeta error %v, want %v", name, err, want)
		}
	}
	patch := func(off int, v uint64, size int) func(string) {
		return func(path string) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if size == 4 {
				binary.NativeEndian.PutUint32(b[off:], uint32(v))
			} else {
				binary.NativeEndian.PutUint64(b[off:], v)
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	truncate := func(n int64) func(string) {
		return func(path string) {
			if err := os.Truncate(path, n); err != nil {
				t.Fatal(err)
			}
		}
	}
	f("grown", truncate(int64(MemSize(4096))+100), ErrSize)
	f("doubled", truncate(int64(MemSize(8192))), ErrSize)
	f("cut", truncate(HeaderSize+100), ErrSize)
	f("empty", truncate(0), ErrSize)
	f("version one", patch(offVersion, 1, 4), ErrVersion)
	f("future version", patch(offVersion, Version+1, 4), ErrVersion)
	f("no magic", patch(offMagic, 0x12345678, 4), ErrMagic)
	f("tail past head", patch(offTail, 64, 8), ErrCorrupt)
	if _, err := Open(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open of a missing file: %v", err)
	}
}
