package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"

	"github.com/panjf2000/gnet/v2/pkg/logging"
)

// checkPortsFree refuses listeners whose port another socket holds. Every
// event loop binds with SO_REUSEPORT, so the kernel would otherwise let a
// second collector (of the same user) join the port silently and take part
// of the traffic. For UDP a probe bound without SO_REUSEPORT fails exactly
// when some socket holds the address; for TCP the listening sockets are
// looked up.
func checkPortsFree(ls []Listener) error {
	for _, l := range ls {
		addr := net.JoinHostPort(l.Host, fmt.Sprint(l.Addr.Port()))
		var err error
		switch l.Network {
		case "udp":
			var pc net.PacketConn
			if pc, err = net.ListenPacket("udp", addr); err == nil {
				pc.Close()
			}
		case "tcp":
			// A bind probe would also trip over connections an earlier
			// run left (FIN_WAIT, TIME_WAIT): look for listeners instead.
			if other, ok := tcpListener(l.Addr); ok {
				return fmt.Errorf("collector: tcp %s is in use by another process (a listener on %s): stop it or choose another port (set share_port, --share-port, on every process meant to share it)", addr, other)
			}
		}
		switch {
		case errors.Is(err, syscall.EADDRINUSE):
			return fmt.Errorf("collector: %s %s is in use by another process: stop it or choose another port (set share_port, --share-port, on every process meant to share it)", l.Network, addr)
		case err != nil:
			return fmt.Errorf("collector: cannot listen on %s %s: %w", l.Network, addr, err)
		}
	}
	return nil
}

// gnetLogger routes gnet's logging into the collector's logger, so there is
// one log format, on the logger's stream, at its level: gnet's own default
// writes to standard output, where records go. gnet's info lines (its start
// banner) are debug here: the collector logs its listeners itself.
type gnetLogger struct{ log *slog.Logger }

var _ logging.Logger = gnetLogger{}

func (g gnetLogger) logf(level slog.Level, format string, args []any) {
	if g.log.Enabled(context.Background(), level) {
		g.log.Log(context.Background(), level, fmt.Sprintf(format, args...), "component", "gnet")
	}
}

func (g gnetLogger) Debugf(format string, args ...any) { g.logf(slog.LevelDebug, format, args) }
func (g gnetLogger) Infof(format string, args ...any)  { g.logf(slog.LevelDebug, format, args) }
func (g gnetLogger) Warnf(format string, args ...any)  { g.logf(slog.LevelWarn, format, args) }
func (g gnetLogger) Errorf(format string, args ...any) { g.logf(slog.LevelError, format, args) }
func (g gnetLogger) Fatalf(format string, args ...any) { g.logf(slog.LevelError, format, args) }
