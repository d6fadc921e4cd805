//go:build unix

package ring

import (
	"fmt"
	"path/filepath"
	"testing"
)

// BenchmarkFileRingSPSC is BenchmarkRingSPSC over a file ring on /dev/shm
// mapped twice, as the collector and the mediator map it: the producer
// writes through one mapping, the consumer reads through the other and
// cannot be woken by the producer, so it polls (Wait's 50 us..1 ms back-off
// when the ring runs empty). The difference from BenchmarkRingSPSC is the
// cost per entry of the split pod's shared-memory ring.
func BenchmarkFileRingSPSC(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			path := filepath.Join(shmDir(b), "ring-000")
			w, err := Create(path, 1<<20, Meta{Generation: 1, Count: 1})
			if err != nil {
				b.Fatal(err)
			}
			closeFile(b, w)
			r, err := Open(path)
			if err != nil {
				b.Fatal(err)
			}
			closeFile(b, r)
			benchSPSC(b, w.Producer(), r.Consumer(), size)
		})
	}
}
