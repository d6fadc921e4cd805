package admin

import (
	"context"
	"fmt"
	"log/slog"
)

// HTTPLogger routes fasthttp's own messages (connection errors, panics in
// handlers) into the process's one structured logger, at warn level, so
// they share its format and stream instead of the standard log package's.
type HTTPLogger struct{ Log *slog.Logger }

// Printf implements fasthttp.Logger.
func (l HTTPLogger) Printf(format string, args ...any) {
	if l.Log == nil || !l.Log.Enabled(context.Background(), slog.LevelWarn) {
		return
	}
	l.Log.Warn(fmt.Sprintf(format, args...), "component", "fasthttp")
}
