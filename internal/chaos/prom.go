package chaos

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Metrics are the series of one Prometheus text exposition: the series
// (name and labels as written) to its value.
type Metrics map[string]float64

var client = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// Get is an HTTP GET with a short timeout.
func Get(url string) (int, []byte, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return resp.StatusCode, b, err
}

// Scrape reads http://ADDR/metrics.
func Scrape(addr string) (Metrics, error) {
	code, b, err := Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("chaos: %s/metrics: HTTP %d", addr, code)
	}
	m := Metrics{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			continue
		}
		m[l[:i]] = v
	}
	return m, nil
}

// Sum adds the series of family name whose labels contain every one of
// match (each written as in the exposition, e.g. `reason="ring_full"`).
func (m Metrics) Sum(name string, match ...string) float64 {
	v := 0.0
	for series, f := range m {
		rest, ok := strings.CutPrefix(series, name)
		if !ok || (rest != "" && rest[0] != '{') {
			continue
		}
		all := true
		for _, s := range match {
			if !strings.Contains(rest, s) {
				all = false
				break
			}
		}
		if all {
			v += f
		}
	}
	return v
}

// Ready reports whether http://ADDR/readyz answers 200.
func Ready(addr string) bool {
	code, _, err := Get("http://" + addr + "/readyz")
	return err == nil && code == http.StatusOK
}
