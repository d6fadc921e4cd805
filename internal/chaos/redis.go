package chaos

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Redis is one redis-server process on a loopback port, restartable on the
// same port and directory. Nothing is persisted but a cluster node's
// nodes.conf, so a restarted server is empty (a cluster node comes back as
// the node it was).
type Redis struct {
	Dir  string
	Port int
	args []string
	Proc *Proc
}

// Addr is host:port.
func (r *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.Port) }

// NewRedis starts redis-server in dir on a free port (with port+10000, the
// cluster bus, free too).
func NewRedis(dir string, extra ...string) (*Redis, error) {
	port, err := FreePort(true)
	if err != nil {
		return nil, err
	}
	r := &Redis{Dir: dir, Port: port}
	r.args = append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--protected-mode", "no"}, extra...)
	return r, r.Start()
}

// Start starts the server and waits until it answers PING.
func (r *Redis) Start() error {
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return err
	}
	p, err := Start(r.Dir, "redis", "redis-server", r.args...)
	if err != nil {
		return err
	}
	r.Proc = p
	return waitFor(10*time.Second, func() bool { return !p.Exited() && r.Ping() },
		func() string { return fmt.Sprintf("redis-server on %d did not answer PING:\n%s", r.Port, p.Tail(20)) })
}

// Ping reports whether the server answers PING.
func (r *Redis) Ping() bool {
	out, err := r.CLI("PING")
	return err == nil && out == "PONG"
}

// CLI runs redis-cli against the server.
func (r *Redis) CLI(args ...string) (string, error) {
	all := append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(r.Port)}, args...)
	cmd := exec.Command("redis-cli", all...)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return "", fmt.Errorf("chaos: redis-cli %v: timed out", args)
	}
	return strings.TrimSpace(string(out)), err
}

// Cluster is a Redis Cluster of three masters, each with one replica.
type Cluster struct {
	Nodes []*Redis
}

// NewCluster starts six nodes in dir and makes them a cluster with
// redis-cli --cluster create; nodes fail over after timeout.
func NewCluster(dir string, timeout time.Duration) (*Cluster, error) {
	c := &Cluster{}
	var addrs []string
	for i := range 6 {
		n, err := NewRedis(filepath.Join(dir, "node"+strconv.Itoa(i)), "--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf", "--cluster-node-timeout", strconv.Itoa(int(timeout.Milliseconds())),
			"--repl-diskless-sync-delay", "0")
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
		addrs = append(addrs, n.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		c.Stop()
		return nil, fmt.Errorf("chaos: redis-cli --cluster create: %v\n%s", err, out)
	}
	// Every node sees the cluster ok, and every replica has synced with
	// its master (one that has not cannot take over).
	err := waitFor(30*time.Second, func() bool {
		for _, n := range c.Nodes {
			if !n.clusterOK() {
				return false
			}
			info, err := n.CLI("info", "replication")
			if err != nil || (strings.Contains(info, "role:slave") && !strings.Contains(info, "master_link_status:up")) {
				return false
			}
		}
		return true
	}, func() string { return "cluster not ok, or a replica not synced, on every node" })
	if err != nil {
		c.Stop()
	}
	return c, err
}

func (r *Redis) clusterOK() bool {
	info, err := r.CLI("cluster", "info")
	return err == nil && strings.Contains(info, "cluster_state:ok")
}

// Addrs lists the nodes.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Addr())
	}
	return out
}

// MasterOf finds the node that is master for key's slot, asking a node
// other than skip (nil: any).
func (c *Cluster) MasterOf(key string, skip *Redis) (*Redis, error) {
	for _, n := range c.Nodes {
		if n == skip || n.Proc.Exited() {
			continue
		}
		slot, err := n.CLI("cluster", "keyslot", key)
		if err != nil {
			continue
		}
		s, err := strconv.Atoi(slot)
		if err != nil {
			continue
		}
		out, err := n.CLI("cluster", "nodes")
		if err != nil {
			continue
		}
		return c.masterFromNodes(out, s)
	}
	return nil, fmt.Errorf("chaos: no node answers for %q", key)
}

// masterFromNodes reads CLUSTER NODES: "id ip:port@bus flags master ...
// link-state slot-range...", and returns the master, not failed, that
// serves slot.
func (c *Cluster) masterFromNodes(out string, slot int) (*Redis, error) {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 9 || !strings.Contains(f[2], "master") || strings.Contains(f[2], "fail") {
			continue
		}
		for _, r := range f[8:] {
			lo, hi, found := strings.Cut(r, "-")
			if !found {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil || slot < a || slot > b {
				continue
			}
			hostPort, _, _ := strings.Cut(f[1], "@")
			_, ps, _ := strings.Cut(hostPort, ":")
			port, _ := strconv.Atoi(ps)
			for _, n := range c.Nodes {
				if n.Port == port {
					return n, nil
				}
			}
		}
	}
	return nil, fmt.Errorf("chaos: no master serves slot %d", slot)
}

// Stop ends every node.
func (c *Cluster) Stop() {
	for _, n := range c.Nodes {
		if n.Proc != nil {
			n.Proc.Stop(5 * time.Second)
		}
	}
}

// FreePort finds a loopback port free for TCP and UDP (and, with bus, port
// +10000 for TCP too).
func FreePort(bus bool) (int, error) {
	for range 200 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", l.Addr().String())
		if err != nil || (bus && port+10000 > 65535) {
			l.Close()
			if u != nil {
				u.Close()
			}
			continue
		}
		ok := true
		if bus {
			b, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
			if err != nil {
				ok = false
			} else {
				b.Close()
			}
		}
		l.Close()
		u.Close()
		if ok {
			return port, nil
		}
	}
	return 0, fmt.Errorf("chaos: no free port")
}

// waitFor polls ok every 20 ms until it holds or d passes.
func waitFor(d time.Duration, ok func() bool, msg func() string) error {
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("chaos: timed out after %v: %s", d, msg())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
