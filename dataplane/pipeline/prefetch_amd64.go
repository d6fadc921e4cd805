package pipeline

import "unsafe"

// prefetch asks the CPU to bring the cache lines of [p, p+n) in, n > 0,
// without waiting for them (PREFETCHT0). The aggregate stage issues it for
// a record's slot when it takes the record, so the slot arrives while the
// rest of the batch is decoded.
//
//go:noescape
func prefetch(p unsafe.Pointer, n uintptr)

// prefetching: prefetch does something here.
const prefetching = true
