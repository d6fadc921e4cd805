package ring

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// mapFile makes a file of MemSize(size) bytes, on /dev/shm when there is
// one (the tmpfs the split pod uses), and maps it shared.
func mapFile(t *testing.T, size int) (path string, mem []byte) {
	t.Helper()
	dir := t.TempDir()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "sluice-ring-test-"); err == nil {
			dir = d
			t.Cleanup(func() { os.RemoveAll(d) })
		}
	}
	path = filepath.Join(dir, "ring")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(int64(MemSize(size))); err != nil {
		t.Fatal(err)
	}
	return path, mmap(t, f)
}

func mmap(t *testing.T, f *os.File) []byte {
	t.Helper()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Munmap(mem) })
	return mem
}

// TestMmap runs a producer and a consumer on two Ring values built by On
// over one shared file mapping, then over two mappings of the file at
// different addresses, as two processes would see it: the only state they
// share is the memory.
func TestMmap(t *testing.T) {
	entries := uint64(stressEntries)
	if testing.Short() {
		entries /= 10
	}
	t.Run("one mapping", func(t *testing.T) {
		_, mem := mapFile(t, 64<<10)
		prod, err := On(mem, true)
		if err != nil {
			t.Fatal(err)
		}
		cons, err := On(mem, false)
		if err != nil {
			t.Fatal(err)
		}
		runStress(t, prod.Producer(), cons.Consumer(), cons, entries)
	})
	t.Run("two mappings", func(t *testing.T) {
		path, mem := mapFile(t, 64<<10)
		prod, err := On(mem, true)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		mem2 := mmap(t, f)
		if &mem2[0] == &mem[0] {
			t.Fatal("second mapping at the same address")
		}
		cons, err := On(mem2, false)
		if err != nil {
			t.Fatal(err)
		}
		runStress(t, prod.Producer(), cons.Consumer(), prod, entries)

		// The file holds the state: a third attach sees an empty ring that
		// has moved, and an entry left in it.
		b := prod.Producer().Reserve(5)
		copy(b, "hello")
		prod.Producer().Commit(5)
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if binary.NativeEndian.Uint32(raw[offMagic:]) != magic {
			t.Fatal("no magic in the file")
		}
		h, tl := binary.NativeEndian.Uint64(raw[offHead:]), binary.NativeEndian.Uint64(raw[offTail:])
		if h-tl != 16 || tl < entries {
			t.Fatalf("file has head %d tail %d", h, tl)
		}
		cp := alignedMem(64 << 10)
		copy(cp, raw)
		r3, err := On(cp, false)
		if err != nil {
			t.Fatal(err)
		}
		if e := r3.Consumer().Next(); string(e) != "hello" {
			t.Fatalf("entry read from the file copy: %q", e)
		}
	})
}
