package admin

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestHTTPLoggerUsesSlog(t *testing.T) {
	var buf bytes.Buffer
	l := HTTPLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	l.Printf("error when serving connection %q: %s", "127.0.0.1:1", "timeout")
	out := buf.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "component=fasthttp") || !strings.Contains(out, `timeout`) {
		t.Fatalf("logged %q", out)
	}
	buf.Reset()
	quiet := HTTPLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError}))}
	quiet.Printf("dropped at error level")
	if buf.Len() != 0 {
		t.Fatalf("logged %q above the level", buf.String())
	}
	HTTPLogger{}.Printf("no logger: no panic")
}
