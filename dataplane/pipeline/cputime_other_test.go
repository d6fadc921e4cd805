//go:build !unix

package pipeline

import "time"

// cpuTime is not measured here (0: the benchmarks leave the metric out).
func cpuTime() time.Duration { return 0 }
