package chaos

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Env is what every scenario shares: the sluice binary, the traffic
// softflowd reads, and where the work goes.
type Env struct {
	Sluice string // the sluice binary
	// Traffic is a packet capture for softflowd -r; empty: no softflowd.
	Traffic string
	Dir     string
	Logf    func(format string, args ...any)
}

// node is a sluice process that can be killed and started again with the
// same arguments (same ports, same files).
type node struct {
	env   *Env
	name  string
	args  []string
	admin string // host:port of its admin API
	proc  *Proc
	// incarnations counts starts.
	incarnations int
}

func (e *Env) node(name string, args ...string) (*node, error) {
	port, err := FreePort(false)
	if err != nil {
		return nil, err
	}
	n := &node{env: e, name: name, admin: fmt.Sprintf("127.0.0.1:%d", port)}
	n.args = append(args, "--admin", n.admin)
	return n, nil
}

// start starts the process and waits for /readyz.
func (n *node) start(dir string) error {
	p, err := Start(dir, n.name, n.env.Sluice, n.args...)
	if err != nil {
		return err
	}
	n.proc = p
	n.incarnations++
	return waitFor(30*time.Second, func() bool { return !p.Exited() && Ready(n.admin) },
		func() string { return fmt.Sprintf("%s not ready (exited %v):\n%s", n.name, p.Exited(), p.Tail(30)) })
}

func (n *node) scrape() Metrics {
	if n.proc == nil || n.proc.Exited() {
		return nil
	}
	m, err := Scrape(n.admin)
	if err != nil {
		return nil
	}
	return m
}

// counters keeps the last scrape of each incarnation of a node, so that
// counters add up across restarts: what a killed incarnation counted after
// its last scrape is not known (scrapes are 100 ms apart).
type counters struct {
	base []Metrics // scrapes of ended incarnations
	last Metrics
}

func (c *counters) update(m Metrics) {
	if m != nil {
		c.last = m
	}
}

// fold ends the current incarnation.
func (c *counters) fold() {
	if c.last != nil {
		c.base = append(c.base, c.last)
		c.last = nil
	}
}

func (c *counters) sum(name string, match ...string) float64 {
	v := c.last.Sum(name, match...)
	for _, m := range c.base {
		v += m.Sum(name, match...)
	}
	return v
}

// genRun is one `sluice gen` process.
type genRun struct {
	proc    *Proc
	tcp     bool
	domains []uint32
	keys    int // per exporter
	sum     genSummary
}

type genSummary struct {
	Records    uint64 `json:"records"`
	SendErrors uint64 `json:"send_errors"`
	Reconnects uint64 `json:"reconnects"`
	Exporters  []struct {
		ObservationDomain uint32 `json:"observation_domain"`
		Records           uint64 `json:"records"`
		FirstSequence     uint32 `json:"first_sequence"`
		NextSequence      uint32 `json:"next_sequence"`
		Reconnects        uint64 `json:"reconnects"`
	} `json:"exporters"`
}

// startGen starts gen with two exporters of ipv6 records from domain
// first on, at rate records/s, until stopped (or maxTime).
func (e *Env) startGen(dir, name string, flow int, tcp bool, first uint32, rate int, maxTime time.Duration) (*genRun, error) {
	const exporters = 2
	keysPer := int(float64(rate)*maxTime.Seconds()/exporters) + 1000
	args := []string{"gen", "--addr", fmt.Sprintf("127.0.0.1:%d", flow), "--rate", fmt.Sprint(rate),
		"--duration", maxTime.String(), "--exporters", fmt.Sprint(exporters), "--records", "10", "--templates", "ipv6",
		"--keys", fmt.Sprint(keysPer * exporters), "--first-domain", fmt.Sprint(first)}
	if tcp {
		args = append(args, "--tcp", "--reconnect")
	}
	p, err := Start(dir, name, e.Sluice, args...)
	if err != nil {
		return nil, err
	}
	g := &genRun{proc: p, tcp: tcp, keys: keysPer}
	for i := range exporters {
		g.domains = append(g.domains, first+uint32(i))
	}
	return g, nil
}

// finish stops the generator (SIGINT: it prints its summary) and reads the
// summary.
func (g *genRun) finish() error {
	g.proc.Signal(2) // SIGINT
	if !g.proc.Wait(30 * time.Second) {
		g.proc.Stop(time.Second)
		return fmt.Errorf("chaos: %s did not stop", g.proc.Name)
	}
	out := strings.TrimSpace(g.proc.Output())
	last := out[strings.LastIndexByte(out, '\n')+1:]
	if err := json.Unmarshal([]byte(last), &g.sum); err != nil {
		return fmt.Errorf("chaos: %s printed %q: %w", g.proc.Name, out, err)
	}
	for _, x := range g.sum.Exporters {
		if x.FirstSequence != 0 || int(x.NextSequence) > g.keys {
			return fmt.Errorf("chaos: %s domain %d used sequence numbers %d..%d beyond its %d keys",
				g.proc.Name, x.ObservationDomain, x.FirstSequence, x.NextSequence, g.keys)
		}
	}
	return nil
}

// softflowd runs softflowd over env.Traffic to port flow, IPFIX over TCP
// or NetFlow v9 over UDP, and returns the data records it says it
// exported.
func (e *Env) softflowd(dir string, flow int, tcp bool) (int, error) {
	args := []string{"-d", "-c", "none", "-p", filepath.Join(dir, "softflowd.pid"), "-r", e.Traffic}
	name := "softflowd-v9-udp"
	if tcp {
		args = append(args, "-v", "10", "-P", "tcp")
		name = "softflowd-ipfix-tcp"
	} else {
		args = append(args, "-v", "9")
	}
	p, err := Start(dir, name, "softflowd", append(args, "-n", fmt.Sprintf("127.0.0.1:%d", flow))...)
	if err != nil {
		return 0, err
	}
	if !p.Wait(60 * time.Second) {
		p.Stop(time.Second)
		return 0, fmt.Errorf("chaos: softflowd did not finish:\n%s", p.Tail(20))
	}
	out := p.Output()
	var flows, records, packets, failures int
	i := strings.LastIndex(out, "Flows exported: ")
	if i < 0 {
		return 0, fmt.Errorf("chaos: softflowd printed no export statistics:\n%s", out)
	}
	if _, err := fmt.Sscanf(out[i:], "Flows exported: %d (%d records) in %d packets (%d failures)", &flows, &records, &packets, &failures); err != nil {
		return 0, fmt.Errorf("chaos: softflowd statistics %q: %w", out[i:], err)
	}
	if failures != 0 {
		return records, fmt.Errorf("chaos: softflowd reports %d send failures", failures)
	}
	return records, nil
}

func mkdir(path string) (string, error) { return path, os.MkdirAll(path, 0o755) }
