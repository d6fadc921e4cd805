//go:build !amd64

package pipeline

import "unsafe"

// prefetch has no portable form; drain's loads of the batch's slots do
// its work where it is missing.
func prefetch(unsafe.Pointer, uintptr) {}

const prefetching = false
