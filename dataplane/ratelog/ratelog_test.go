package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time           { return c.t }
func (c *fakeClock) add(d time.Duration)      { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock                { return &fakeClock{t: time.Unix(1700000000, 0)} }
func lines(buf *bytes.Buffer, msg string) int { return strings.Count(buf.String(), msg) }

func TestLimiter(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	clock := newFakeClock()
	l := Limiter{Every: 50 * time.Millisecond, Now: clock.now}
	for range 10 {
		l.Warn(log, "bad input")
		clock.add(time.Millisecond)
	}
	if n := lines(&buf, "bad input"); n != 1 {
		t.Fatalf("%d lines in the first interval, want 1", n)
	}
	clock.add(39 * time.Millisecond) // 49 ms after the first line
	l.Warn(log, "bad input")
	if n := lines(&buf, "bad input"); n != 1 {
		t.Fatalf("%d lines before the interval ended, want 1", n)
	}
	clock.add(time.Millisecond) // 50 ms
	l.Warn(log, "bad input")
	if n := lines(&buf, "bad input"); n != 2 || !strings.Contains(buf.String(), "suppressed=10") {
		t.Fatalf("want a second line with the held-back count:\n%s", buf.String())
	}
	clock.add(time.Hour)
	l.Warn(log, "bad input")
	if n := lines(&buf, "bad input"); n != 3 || strings.Count(buf.String(), "suppressed=") != 1 {
		t.Fatalf("want a third line without a count (none held back):\n%s", buf.String())
	}
}

// The zero value lets every line through.
func TestLimiterZero(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	var l Limiter
	for range 5 {
		l.Warn(log, "bad input")
	}
	if n := lines(&buf, "bad input"); n != 5 || strings.Contains(buf.String(), "suppressed") {
		t.Fatalf("zero Limiter: %d lines, want 5 with no count:\n%s", n, buf.String())
	}
}

// Concurrent callers within one interval: one line, the others counted.
func TestLimiterConcurrent(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, nil))
	clock := newFakeClock()
	l := Limiter{Every: time.Second, Now: clock.now}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				l.Warn(log, "bad input")
			}
		}()
	}
	wg.Wait()
	clock.add(time.Second)
	l.Warn(log, "bad input")
	mu.Lock()
	defer mu.Unlock()
	if n := lines(&buf, "bad input"); n != 2 || !strings.Contains(buf.String(), "suppressed=799") {
		t.Fatalf("want 2 lines, the second with suppressed=799:\n%s", buf.String())
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}
