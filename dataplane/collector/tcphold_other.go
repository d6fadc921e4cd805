//go:build !linux || poll_opt

package collector

// Elsewhere (and with gnet's poll_opt poller, whose events carry pointers)
// a TCP session's reads cannot be paused: a full ring makes the loop wait,
// as it did before pausing existed.

const (
	epollUnknown = -1
	epollNone    = -2
)

func (l *loop) stopReading(int) bool { return false }

func (l *loop) startReading(int) {}
