package frontend

import (
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// BenchmarkGetJob measures GET /api/v1/jobs/{id} (token check, one Redis
// HGETALL, JSON) from parallel keep-alive clients, in requests/s.
func BenchmarkGetJob(b *testing.B) {
	r := startRedis(b)
	ts := newTestServer(b, r, -1, nil)
	id := ts.postJob(b, tokenA, "echo", nil, `{"data":1}`)
	client := &fasthttp.HostClient{Addr: ts.Addr(), MaxConns: 64}
	url := ts.url + "/api/v1/jobs/" + id
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(url)
		req.Header.Set("Authorization", "Bearer "+tokenA)
		for pb.Next() {
			if err := client.Do(req, resp); err != nil {
				b.Error(err)
				return
			}
			if resp.StatusCode() != 200 {
				b.Errorf("status %d: %s", resp.StatusCode(), resp.Body())
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

// BenchmarkEchoJobThroughAPI measures a job's whole round trip: POST, claim
// from Redis, dispatch over ZeroMQ to a worker process, outcome written,
// seen done by polling GET (an upper bound: the poll adds up to 1 ms).
func BenchmarkEchoJobThroughAPI(b *testing.B) {
	r := startRedis(b)
	ts := newTestServer(b, r, 1, func(c *Config) { c.CompletionLog = nil })
	b.ResetTimer()
	for range b.N {
		id := ts.postJob(b, tokenA, "echo", nil, "")
		for {
			if v := ts.job(b, tokenA, id); v.State == stateDone {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/job")
}
