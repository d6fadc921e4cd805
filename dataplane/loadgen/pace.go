package loadgen

import (
	"context"
	"time"
)

// pacer is the rate arithmetic of a run: how many messages each exporter
// sends per round, and when the run may go on after sent messages. The due
// time is computed from the start and the total sent, never accumulated per
// round, so rounding does not drift over a long run.
type pacer struct {
	start   time.Time
	msgRate float64 // messages per second in all; 0 = unpaced
	burst   int     // messages per exporter per round
}

// newPacer paces cfg (defaults filled in) from start.
func newPacer(cfg *Config, start time.Time) pacer {
	p := pacer{start: start, msgRate: cfg.Rate.PerSecond, burst: cfg.Batch}
	if !cfg.Rate.Packets && p.msgRate > 0 {
		p.msgRate /= float64(cfg.Records)
	}
	// Keep each round of bursts (one per exporter) within about a
	// millisecond of traffic at the target rate, so a slow rate is not sent
	// as a few large bursts that overflow a collector's socket buffer.
	if p.msgRate > 0 {
		p.burst = max(1, min(cfg.Batch, int(p.msgRate/1000/float64(cfg.Exporters*cfg.Ports))))
	}
	return p
}

// due is when the run has earned sending past sent messages; the zero time
// when it is not paced.
func (p *pacer) due(sent uint64) time.Time {
	if p.msgRate <= 0 {
		return time.Time{}
	}
	return p.start.Add(time.Duration(float64(sent) / p.msgRate * float64(time.Second)))
}

// roundSize is how many messages exporter sends in a round when sent have
// gone so far and count (0: no limit) is the total to send.
func (p *pacer) roundSize(sent uint64, count int) int {
	n := p.burst
	if count > 0 && sent+uint64(n) > uint64(count) {
		n = int(uint64(count) - min(sent, uint64(count)))
	}
	return n
}

// clock is the time source of a run; tests inject a fake one.
type clock interface {
	Now() time.Time
	// Sleep waits for d or until ctx is done.
	Sleep(ctx context.Context, d time.Duration)
}

// wallClock is the real time; its timer is reused, as a paced run sleeps
// after nearly every round.
type wallClock struct{ timer *time.Timer }

func (*wallClock) Now() time.Time { return time.Now() }

func (c *wallClock) Sleep(ctx context.Context, d time.Duration) {
	if c.timer == nil {
		c.timer = time.NewTimer(d)
	} else {
		c.timer.Reset(d)
	}
	select {
	case <-c.timer.C:
	case <-ctx.Done():
		c.timer.Stop()
	}
}
