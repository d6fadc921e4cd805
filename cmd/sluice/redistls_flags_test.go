package main

import (
	"flag"
	"io"
	"testing"

	"github.com/sluice-flow/sluice/internal/testcert"
)

// --redis-tls-ca and --redis-tls-server-name turn TLS on for the template
// tier; a CA file that holds no certificate is refused with its name.
func TestRedisTLSFlags(t *testing.T) {
	ca, _, _ := testcert.SelfSigned(t, t.TempDir(), "redis")
	var f runFlags
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f.register(fs)
	if err := fs.Parse([]string{"--redis", "127.0.0.1:6379", "--redis-tls-ca", ca, "--redis-tls-server-name", "redis.example"}); err != nil {
		t.Fatal(err)
	}
	c, err := f.nodeConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !c.Redis.TLS || c.Redis.CAFile != ca || c.Redis.ServerName != "redis.example" {
		t.Fatalf("redis config %+v", c.Redis.Config)
	}
	if tc, err := f.redisTLS.config(); err != nil || tc == nil || tc.ServerName != "redis.example" || tc.RootCAs == nil {
		t.Fatalf("tls config %v, %v", tc, err)
	}

	var none redisTLSFlags
	if tc, err := none.config(); tc != nil || err != nil {
		t.Fatalf("no flags: %v, %v", tc, err)
	}
	bad := redisTLSFlags{ca: f.config + "/nonexistent-ca.pem"}
	if _, err := bad.config(); err == nil {
		t.Fatal("a missing CA file was accepted")
	}
}
