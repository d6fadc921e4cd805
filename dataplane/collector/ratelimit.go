package collector

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-flow/sluice/dataplane/yamlconf"
)

// RateLimitConfig bounds what one exporter address may send, in data
// records and in octets of data sets per second; what is over is dropped
// before the ring and counted as the exporter's
// (sluice_exporter_refused_total{reason="rate_limit"}, in records), the
// other exporters unaffected. Templates are never limited. Zero fields: no
// limit (the default).
type RateLimitConfig struct {
	RecordsPerSecond int           `yaml:"records_per_second"`
	BytesPerSecond   yamlconf.Size `yaml:"bytes_per_second"`
	// Burst is how much above the rate an exporter may send at once, as
	// time at the rate. Default: 1 s.
	Burst time.Duration `yaml:"burst"`
}

func (r RateLimitConfig) on() bool { return r.RecordsPerSecond > 0 || r.BytesPerSecond > 0 }

// rateBucket is a generic cell rate algorithm bucket: tat is the
// theoretical arrival time in Unix nanoseconds. Shared by the loops an
// exporter's traffic reaches; lock-free.
type rateBucket struct{ tat atomic.Int64 }

// allow takes cost nanoseconds of the rate if the bucket has them within
// burst of now.
func (b *rateBucket) allow(now, cost, burst int64) bool {
	for {
		old := b.tat.Load()
		tat := max(old, now)
		if tat+cost-now > burst {
			return false
		}
		if b.tat.CompareAndSwap(old, tat+cost) {
			return true
		}
	}
}

// exporterRate is one exporter address's buckets.
type exporterRate struct{ records, bytes rateBucket }

// rateTable finds an exporter's buckets. Bounded: past maxExporters
// addresses it starts afresh (the buckets fill again).
type rateTable struct {
	mu sync.Mutex
	m  map[netip.Addr]*exporterRate
}

func (t *rateTable) get(a netip.Addr) *exporterRate {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil || len(t.m) >= maxExporters {
		t.m = map[netip.Addr]*exporterRate{}
	}
	r := t.m[a]
	if r == nil {
		r = &exporterRate{}
		t.m[a] = r
	}
	return r
}

// allowData reports whether a data set of n records and size octets from
// the exporter whose buckets are r fits its rate limit.
func (c *Collector) allowData(r *exporterRate, now int64, n, size int) bool {
	rl := &c.cfg.RateLimit
	burst := int64(rl.Burst)
	if rl.RecordsPerSecond > 0 && !r.records.allow(now, int64(n)*int64(time.Second)/int64(rl.RecordsPerSecond), burst) {
		return false
	}
	if rl.BytesPerSecond > 0 && !r.bytes.allow(now, int64(size)*int64(time.Second)/int64(rl.BytesPerSecond), burst) {
		return false
	}
	return true
}
