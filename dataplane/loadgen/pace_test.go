package loadgen

import (
	"context"
	"math"
	"testing"
	"time"
)

var paceStart = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestPacer(t *testing.T) {
	f := func(r Rate, records, batch, exporters int, wantRate float64, wantBurst int) {
		t.Helper()
		cfg := Config{Rate: r, Records: records, Batch: batch, Exporters: exporters}.withDefaults()
		p := newPacer(&cfg, paceStart)
		if p.msgRate != wantRate || p.burst != wantBurst {
			t.Errorf("%+v, %d records, batch %d, %d exporters: %v messages/s in bursts of %d, want %v in %d",
				r, records, batch, exporters, p.msgRate, p.burst, wantRate, wantBurst)
		}
	}
	// Unpaced: full batches.
	f(Rate{}, 30, 0, 1, 0, 64)
	f(Rate{}, 30, 1024, 4, 0, 1024)
	// Records/s are divided by the records per message.
	f(Rate{PerSecond: 3e5}, 30, 0, 1, 1e4, 10)
	f(Rate{PerSecond: 3e5}, 30, 0, 4, 1e4, 2)
	f(Rate{PerSecond: 3e6}, 30, 0, 1, 1e5, 64)
	f(Rate{PerSecond: 3e6}, 30, 1024, 1, 1e5, 100)
	// pps counts messages.
	f(Rate{PerSecond: 3e5, Packets: true}, 30, 0, 4, 3e5, 64)
	f(Rate{PerSecond: 3e5, Packets: true}, 30, 1024, 4, 3e5, 75)
	// Slow rates go one message at a time.
	f(Rate{PerSecond: 1000}, 30, 0, 1, 1000.0/30, 1)
	f(Rate{PerSecond: 5, Packets: true}, 30, 0, 16, 5, 1)
	// A round (a burst per exporter) is about a millisecond of traffic at
	// most, unless one message each is already more.
	for _, rate := range []float64{1, 1e3, 33333, 1e5, 2.5e5, 1e6, 4e6, 1e7} {
		for _, exporters := range []int{1, 3, 4, 16, 100} {
			cfg := Config{Rate: Rate{PerSecond: rate, Packets: true}, Exporters: exporters, Batch: 1024}.withDefaults()
			p := newPacer(&cfg, paceStart)
			if round := float64(p.burst * exporters); p.burst > 1 && round > rate/1000 {
				t.Errorf("%v messages/s, %d exporters: rounds of %v messages, over a millisecond's %v", rate, exporters, round, rate/1000)
			}
			if p.burst < 1024 && float64((p.burst+1)*exporters) <= rate/1000 {
				t.Errorf("%v messages/s, %d exporters: bursts of %d, could be larger", rate, exporters, p.burst)
			}
		}
	}
}

func TestPacerDue(t *testing.T) {
	f := func(msgRate float64, sent uint64, want time.Duration) {
		t.Helper()
		p := pacer{start: paceStart, msgRate: msgRate}
		if got := p.due(sent).Sub(paceStart); got != want {
			t.Errorf("%v messages/s, %d sent: due after %v, want %v", msgRate, sent, got, want)
		}
	}
	f(1e4, 0, 0)
	f(1e4, 1, 100*time.Microsecond)
	f(1e4, 10000, time.Second)
	f(3, 1, 333333333*time.Nanosecond)
	f(3, 3, time.Second)
	// A day at 10M messages/s is still exact to the nanosecond: the due
	// time is worked out from the start, not summed per round.
	f(1e7, 864e9, 24*time.Hour)
	if due := (&pacer{start: paceStart}).due(123); !due.IsZero() {
		t.Errorf("unpaced: due %v, want the zero time", due)
	}
}

func TestPacerRoundSize(t *testing.T) {
	f := func(burst int, sent uint64, count, want int) {
		t.Helper()
		p := pacer{burst: burst}
		if got := p.roundSize(sent, count); got != want {
			t.Errorf("burst %d, %d sent of %d: %d, want %d", burst, sent, count, got, want)
		}
	}
	f(64, 0, 0, 64)
	f(64, 1e9, 0, 64)
	f(64, 0, 10, 10)
	f(5, 8, 10, 2)
	f(5, 10, 10, 0)
	f(5, 12, 10, 0)
}

// TestNoDrift runs long simulated runs on a clock that wakes up late from
// every sleep and moves on at every reading: the run still sends what the
// rate asks, to within one round.
func TestNoDrift(t *testing.T) {
	f := func(rate Rate, exporters int, d, over, step time.Duration) {
		t.Helper()
		c := newFakeClock()
		c.over, c.step = over, step
		cfg := Config{Rate: rate, Exporters: exporters, Records: 1, Duration: d}
		g, err := newGenerator(cfg, c)
		if err != nil {
			t.Fatal(err)
		}
		g.write = func(*exporter, []byte) error { return nil }
		g.flush = func(_ *exporter, n int) (int, error) { return n, nil }
		sum := g.Run(context.Background())
		p := newPacer(&g.cfg, paceStart)
		want := p.msgRate * cfg.Duration.Seconds()
		if got := float64(sum.Messages); math.Abs(got-want) > float64(p.burst*exporters) {
			t.Errorf("%+v, %d exporters, sleeps %v late, %v per reading: %v messages in %v, want %v",
				rate, exporters, over, step, got, cfg.Duration, want)
		}
		if c.naps == 0 {
			t.Errorf("%+v: never slept", rate)
		}
	}
	f(Rate{PerSecond: 1000}, 1, 20*time.Minute, 0, 0)
	f(Rate{PerSecond: 1000}, 1, 20*time.Minute, 100*time.Microsecond, time.Microsecond)
	f(Rate{PerSecond: 1000, Packets: true}, 3, 10*time.Minute, 3*time.Millisecond, 10*time.Microsecond)
	f(Rate{PerSecond: 1e5, Packets: true}, 4, 10*time.Second, 70*time.Microsecond, 0)
}
