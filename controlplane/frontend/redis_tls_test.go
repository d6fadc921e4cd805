package frontend

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/template/redistier"
	"github.com/sluice-flow/sluice/internal/testcert"
)

// The frontend reaches a Redis that speaks only TLS: a job is stored and
// read back through it. Without TLS, or trusting another CA, the server
// does not start (rueidis dials at once).
func TestRedisOverTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := testcert.SelfSigned(t, dir, "redis")
	r := startRedisTLS(t, certFile, keyFile)
	tc, err := redistier.ClientTLS(certFile, "")
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, r, -1, func(c *Config) { c.Redis.TLS = tc })
	id := ts.postJob(t, tokenA, "echo", nil, `{"data":1}`)
	if v := ts.job(t, tokenA, id); v.ID != id || v.State == "" {
		t.Fatalf("job read back over TLS: %+v", v)
	}
	if _, _, body := call(t, "GET", ts.url+"/readyz", "", nil); !strings.Contains(string(body), `"redis":true`) {
		t.Fatalf("/readyz over TLS: %s", body)
	}

	otherCA, _, _ := testcert.SelfSigned(t, t.TempDir(), "other")
	wrong, err := redistier.ClientTLS(otherCA, "")
	if err != nil {
		t.Fatal(err)
	}
	for name, tls := range map[string]*RedisConfig{
		"plain TCP": {Addrs: []string{r.Addr()}, Timeout: 500 * time.Millisecond},
		"other CA":  {Addrs: []string{r.Addr()}, Timeout: 500 * time.Millisecond, TLS: wrong},
	} {
		cfg := Config{Listen: "127.0.0.1:0", Redis: *tls, DataDir: t.TempDir(), TokensFile: ts.cfg.TokensFile, Workers: -1,
			Broker: "ipc://" + t.TempDir() + "/broker.sock"}
		if s, err := New(cfg, Analysis{}); err == nil {
			s.st.close()
			if s.ln != nil {
				s.ln.Close()
			}
			t.Errorf("%s to a TLS-only Redis: the server was built", name)
		}
	}
}
