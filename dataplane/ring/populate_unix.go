//go:build unix && !linux

package ring

// mapPopulate is Linux's; elsewhere pages are mapped as they are touched
// (the producer's prefault still allocates them up front).
const mapPopulate = 0
