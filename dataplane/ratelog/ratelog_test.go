package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	l := Limiter{Every: 50 * time.Millisecond}
	for range 10 {
		l.Warn(log, "bad input")
	}
	if n := strings.Count(buf.String(), "bad input"); n != 1 {
		t.Fatalf("%d lines in the first interval, want 1", n)
	}
	time.Sleep(60 * time.Millisecond)
	l.Warn(log, "bad input")
	if !strings.Contains(buf.String(), "suppressed=9") {
		t.Fatalf("held-back count missing:\n%s", buf.String())
	}
}
