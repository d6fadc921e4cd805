// Package ratelog limits log lines from hot paths: a bad exporter must not
// flood the log, but the log must say that lines were held back.
package ratelog

import (
	"log/slog"
	"sync/atomic"
	"time"
)

// Limiter lets one warning through per interval and counts the rest; the
// next line that goes through carries the count. The zero value lets every
// line through. Safe for concurrent use; set the fields before first use.
type Limiter struct {
	Every time.Duration
	// Now is the clock; nil means time.Now. Tests set a fake one.
	Now        func() time.Time
	last       atomic.Int64
	suppressed atomic.Uint64
}

// Warn logs msg at warning level unless a line went out less than Every ago.
func (r *Limiter) Warn(log *slog.Logger, msg string, args ...any) {
	var now int64
	if r.Now != nil {
		now = r.Now().UnixNano()
	} else {
		now = time.Now().UnixNano()
	}
	last := r.last.Load()
	if now-last < int64(r.Every) || !r.last.CompareAndSwap(last, now) {
		r.suppressed.Add(1)
		return
	}
	if n := r.suppressed.Swap(0); n > 0 {
		args = append(args, "suppressed", n)
	}
	log.Warn(msg, args...)
}
