//go:build unix

package ring

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"unsafe"
)

// File is a Ring kept in a memory-mapped file, so that a producer in one
// process (the collector) and a consumer in another (the mediator) share
// it: on a tmpfs (an emptyDir with medium Memory in Kubernetes) the file
// is memory and nothing is written to a disk. Everything both sides share,
// positions included, is in the mapping; the Ring's doc comment says who
// owns which end.
type File struct {
	*Ring
	path string
	mem  []byte
}

// Create makes a file ring of MemSize(size) bytes at path, formatted empty
// with meta in its header. It is written under a temporary name in the
// same directory and renamed over path, so a consumer never sees a
// half-made file, and one that still maps an earlier ring at path keeps
// its own (unlinked) copy to drain.
func Create(path string, size int, meta Meta) (*File, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("ring: %w", err)
	}
	ok := false
	defer func() {
		tmp.Close()
		if !ok {
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Truncate(int64(MemSize(size))); err != nil {
		return nil, fmt.Errorf("ring: %w", err)
	}
	mem, err := mmapFile(tmp, MemSize(size))
	if err != nil {
		return nil, fmt.Errorf("ring: %s: %w", path, err)
	}
	prefault(mem)
	r, err := On(mem, true)
	if err != nil {
		syscall.Munmap(mem)
		return nil, err
	}
	r.setMeta(meta)
	if err := os.Rename(tmp.Name(), path); err != nil {
		syscall.Munmap(mem)
		return nil, fmt.Errorf("ring: %w", err)
	}
	ok = true
	return &File{Ring: r, path: path, mem: mem}, nil
}

// Open maps the ring file at path and attaches to the ring in it. A file
// whose size, magic, layout version or positions are wrong is refused with
// an error that wraps ErrSize, ErrMagic, ErrVersion or ErrCorrupt and
// names the file; nothing is changed in it.
func Open(path string) (*File, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("ring: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("ring: %w", err)
	}
	n := st.Size()
	if err := checkFileSize(n, path); err != nil {
		return nil, err
	}
	mem, err := mmapFile(f, int(n))
	if err != nil {
		return nil, fmt.Errorf("ring: %s: %w", path, err)
	}
	r, err := On(mem, false)
	if err != nil {
		syscall.Munmap(mem)
		return nil, fmt.Errorf("%w, in %s", err, path)
	}
	return &File{Ring: r, path: path, mem: mem}, nil
}

// checkFileSize refuses a file that cannot hold a ring: HeaderSize plus a
// power of two between MinCap and MaxCap.
func checkFileSize(n int64, path string) error {
	c := n - HeaderSize
	if c < MinCap || c > MaxCap || c&(c-1) != 0 {
		return fmt.Errorf("%w: %d bytes, want %d plus a power of two between %d and %d, in %s",
			ErrSize, n, HeaderSize, MinCap, MaxCap, path)
	}
	return nil
}

// mmapFile maps f shared. MAP_POPULATE maps every page at once: a fresh
// tmpfs file otherwise costs a page fault per 4 KiB on each side during the
// first pass through the ring, which measured 10 to 50 times the ring's
// steady cost per entry on a VM (BenchmarkMediatorPoll with 12,000 entries).
func mmapFile(f *os.File, n int) ([]byte, error) {
	return syscall.Mmap(int(f.Fd()), 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|mapPopulate)
}

// prefault writes to every page of a new ring's mapping (the pages are
// zero, and stay so): MAP_POPULATE maps a shared mapping's pages for
// reading only, so the producer's first write to each would still fault.
func prefault(mem []byte) {
	for i := 0; i < len(mem); i += os.Getpagesize() {
		mem[i] = 0
	}
}

// Path returns the file's path.
func (f *File) Path() string { return f.path }

// Close unmaps the file; the Ring and every view into it must no longer be
// used. The file stays for the other side.
func (f *File) Close() error {
	if f.mem == nil {
		return nil
	}
	err := syscall.Munmap(f.mem)
	f.mem = nil
	return err
}

// ReadMeta reads the header of the ring file at path without mapping it,
// for a consumer deciding whether path still holds the ring it maps. It
// checks the magic and the version.
func ReadMeta(path string) (Meta, error) {
	f, err := os.Open(path)
	if err != nil {
		return Meta{}, fmt.Errorf("ring: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Meta{}, fmt.Errorf("ring: %w", err)
	}
	if err := checkFileSize(st.Size(), path); err != nil {
		return Meta{}, err
	}
	var words [lineSize / 8]uint64 // aligned for the atomic load of the magic
	b := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), lineSize)
	if _, err := f.ReadAt(b, 0); err != nil {
		return Meta{}, fmt.Errorf("%w: %v, in %s", ErrSize, err, path)
	}
	if err := checkIdent(b); err != nil {
		return Meta{}, fmt.Errorf("%w, in %s", err, path)
	}
	if c := binary.NativeEndian.Uint64(b[offCap:]); int64(c)+HeaderSize != st.Size() {
		return Meta{}, fmt.Errorf("%w: header says %d bytes of entries, the file holds %d, in %s", ErrSize, c, st.Size()-HeaderSize, path)
	}
	r := Ring{mem: b}
	return r.Meta(), nil
}
