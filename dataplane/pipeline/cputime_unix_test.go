//go:build unix

package pipeline

import (
	"syscall"
	"time"
)

// cpuTime is the process's user and system time: on a shared machine it
// measures the work where wall time also counts waiting for a CPU.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
