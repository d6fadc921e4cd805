package frontend

import (
	"slices"
	"strings"
	"sync"

	"github.com/sluice-flow/sluice/dataplane/promtext"
)

var (
	mRequests     = promtext.Counter("sluice_api_requests_total", "HTTP requests by route pattern and status code.")
	mJobsPosted   = promtext.Counter("sluice_api_jobs_posted_total", "Jobs accepted by this replica, by tenant.")
	mJobsRejected = promtext.Counter("sluice_api_jobs_rejected_total", "Job posts refused, by reason (busy, unavailable, invalid).")
	mJobsFinished = promtext.Counter("sluice_api_jobs_finished_total", "Jobs this replica saw end, by tenant and state.")
	mJobsRetried  = promtext.Counter("sluice_api_jobs_retried_total", "Jobs moved to another worker after losing theirs.")
	mUploads      = promtext.Counter("sluice_api_uploads_total", "Files stored, by tenant.")
	mUploadBytes  = promtext.Counter("sluice_api_upload_bytes_total", "Bytes of files stored, by tenant.")
	mWorkers      = promtext.Gauge("sluice_api_workers", "Workers connected to this replica's broker.")
	mWorkersLost  = promtext.Counter("sluice_api_workers_lost_total", "Workers that left or stopped answering.")
	mRestarts     = promtext.Counter("sluice_api_worker_restarts_total", "Worker processes started again by this replica.")
	mOwned        = promtext.Gauge("sluice_api_jobs_owned", "Jobs this replica holds (claimed, not finished).")
	mRedisUp      = promtext.Gauge("sluice_api_redis_up", "1 when the last Redis check succeeded.")
)

// counters is a set of labelled counters of one family; the label values
// are bounded by their callers (route patterns, codes, tenant labels).
// Safe for concurrent use.
type counters struct {
	mu sync.Mutex
	m  map[string]uint64 // label values joined by \x00
}

func (c *counters) add(n uint64, values ...string) {
	k := strings.Join(values, "\x00")
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]uint64{}
	}
	c.m[k] += n
	c.mu.Unlock()
}

// write appends c's samples with the given label names, in a stable order.
func (c *counters) write(w *promtext.Writer, f *promtext.Family, names ...string) {
	c.mu.Lock()
	keys := make([]string, 0, len(c.m))
	for k := range c.m {
		keys = append(keys, k)
	}
	vals := make(map[string]uint64, len(c.m))
	for k, v := range c.m {
		vals[k] = v
	}
	c.mu.Unlock()
	slices.Sort(keys)
	w.Head(f)
	labels := make([]string, 0, 2*len(names))
	for _, k := range keys {
		labels = labels[:0]
		for i, v := range strings.Split(k, "\x00") {
			if i < len(names) {
				labels = append(labels, names[i], v)
			}
		}
		w.Uint(f, vals[k], labels...)
	}
}

type metrics struct {
	requests, posted, rejected, finished, uploads, uploadBytes counters
	retried, lost                                              counters
}
