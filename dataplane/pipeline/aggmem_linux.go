package pipeline

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

const hugePageSize = 2 << 20

// mapWords maps n zeroed words of their own, aligned to and rounded up to
// huge pages, and advises the kernel to back them with transparent huge
// pages. It reports false (nothing mapped) if the mapping fails; a
// refused advice (THP not built in) keeps the mapping on small pages.
func (m *tableMem) mapWords(n int) bool {
	size := (n*8 + hugePageSize - 1) &^ (hugePageSize - 1)
	p, err := unix.MmapPtr(-1, 0, nil, uintptr(size+hugePageSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return false
	}
	// Keep the aligned part, unmap the rest.
	skip := int((hugePageSize - uintptr(p)%hugePageSize) % hugePageSize)
	if skip > 0 {
		unix.MunmapPtr(p, uintptr(skip))
	}
	if tail := hugePageSize - skip; tail > 0 {
		unix.MunmapPtr(unsafe.Add(p, skip+size), uintptr(tail))
	}
	mem := unsafe.Slice((*byte)(unsafe.Add(p, skip)), size)
	m.huge = unix.Madvise(mem, unix.MADV_HUGEPAGE) == nil
	m.mapped = mem
	m.words = unsafe.Slice((*uint64)(unsafe.Pointer(&mem[0])), n)
	return true
}

func (m *tableMem) unmap() {
	unix.MunmapPtr(unsafe.Pointer(&m.mapped[0]), uintptr(len(m.mapped)))
}
