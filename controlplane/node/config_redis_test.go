package node

import (
	"testing"
	"time"
)

func TestConfigRedis(t *testing.T) {
	var rc Config
	err := Load("test.yaml", []byte(`
redis:
  addresses: [10.0.0.5:6379, "redis-1.redis:6379"]
  username: sluice
  password: s3cret
  tls: true
  tls_ca_file: /etc/sluice/redis-ca.pem
  tls_server_name: redis.internal
  database: 2
  warm_up: ["192.0.2.1", "[2001:db8::1]:2055", "*"]
  start_wait: 2s
`), &rc)
	if err != nil {
		t.Fatal(err)
	}
	r := rc.Redis
	if len(r.Addrs) != 2 || r.Addrs[1] != "redis-1.redis:6379" || r.Username != "sluice" || r.Password != "s3cret" ||
		!r.TLS || r.CAFile != "/etc/sluice/redis-ca.pem" || r.ServerName != "redis.internal" || r.DB != 2 ||
		len(rc.Redis.WarmUp) != 3 || rc.Redis.WarmUp[1] != "[2001:db8::1]:2055" || rc.Redis.StartWait != 2*time.Second {
		t.Fatalf("redis config not applied: %+v", r)
	}

	f := wantConfigError(t)
	f("redis:\n  addresses: [localhost]\n", "line 2")
	f("redis:\n  addresses: [\"h:0\"]\n", "line 2")
	f("redis:\n  warm_up: [router-1]\n", "line 2")
	f("redis:\n  database: -1\n", "line 2")
	f("redis:\n  tls: maybe\n", "line 2")
	f("redis:\n  adresses: [h:1]\n", "line 2")
}

func TestRedisFlag(t *testing.T) {
	addrs, err := ParseRedisAddrs("10.0.0.1:6379, 10.0.0.2:6380")
	if err != nil || len(addrs) != 2 || addrs[1] != "10.0.0.2:6380" {
		t.Fatalf("parseRedisAddrs: %v %v", addrs, err)
	}
	for _, bad := range []string{"10.0.0.1", "10.0.0.1:6379,", ":6379", "h:99999"} {
		if _, err := ParseRedisAddrs(bad); err == nil {
			t.Errorf("ParseRedisAddrs(%q) accepted", bad)
		}
	}
}
