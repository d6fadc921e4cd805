package deploy

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluice-flow/sluice/internal/testenv"
)

// The collector pod of the default overlay, run for real without
// Kubernetes: what a kubelet would do with the rendered StatefulSet, done
// by hand. The pod gets its own network namespace with a veth to the host
// (its pod IP), the memory emptyDir becomes a tmpfs of its sizeLimit, the
// ConfigMap and Secret become folders of their keys, and each container's
// args and env (with $(VAR) expanded as the kubelet does) run as the real
// sluice binary built from this tree, as the pod's user. Nothing about the
// commands comes from the test: it reads them from the manifests.

type pod struct {
	t       *testing.T
	ns      string // network namespace
	ip      string // the pod's address
	dir     string
	volumes map[string]string // volume name -> folder
	procs   map[string]*podProc
	uid     int
	passwd  string // the image's /etc/passwd and /etc/group
	group   string
}

type podProc struct {
	name string
	cmd  *exec.Cmd
	out  *lockedBuffer // stdout
	errb *lockedBuffer // stderr
	done chan struct{}
	err  error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func podPrereqs(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(t, "running the pod needs root (network namespaces, tmpfs)")
	}
	for _, b := range []string{"ip", "setpriv", "dbus-daemon", "mount", "umount"} {
		if _, err := exec.LookPath(b); err != nil {
			testenv.SkipOrFail(t, "%s not installed", b)
		}
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// newPod makes the pod's sandbox for spec: network namespace, veth, volumes.
func newPod(t *testing.T, objs []object, spec corev1.PodSpec) *pod {
	t.Helper()
	id := randHex(3)
	p := &pod{t: t, ns: "sluice-deploy-" + id, volumes: map[string]string{}, procs: map[string]*podProc{}}
	if sc := spec.SecurityContext; sc != nil && sc.RunAsUser != nil {
		p.uid = int(*sc.RunAsUser)
	}
	gid := p.uid
	if sc := spec.SecurityContext; sc != nil && sc.FSGroup != nil {
		gid = int(*sc.FSGroup)
	}
	var err error
	if p.dir, err = os.MkdirTemp("", "sluice-pod-"); err != nil {
		t.Fatal(err)
	}
	os.Chmod(p.dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(p.dir) })
	p.passwd, p.group = filepath.Join(p.dir, "passwd"), filepath.Join(p.dir, "group")
	os.WriteFile(p.passwd, fmt.Appendf(nil, "root:x:0:0:root:/root:/bin/sh\nsluice:x:%d:%d:sluice:/nonexistent:/usr/sbin/nologin\n", p.uid, gid), 0o644)
	os.WriteFile(p.group, fmt.Appendf(nil, "root:x:0:\nsluice:x:%d:\n", gid), 0o644)

	// Network: a namespace, lo up, a /30 to the host. The second and third
	// octets are random; an address already on the host is skipped.
	run(t, "ip", "netns", "add", p.ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", p.ns).Run() })
	host, peer := "sdh"+id, "sdp"+id
	run(t, "ip", "link", "add", host, "type", "veth", "peer", "name", peer)
	t.Cleanup(func() { exec.Command("ip", "link", "del", host).Run() })
	run(t, "ip", "link", "set", peer, "netns", p.ns)
	var b [2]byte
	rand.Read(b[:])
	net := fmt.Sprintf("10.%d.%d.", 200+int(b[0])%50, b[1]&0xfc)
	p.ip = net + "2"
	run(t, "ip", "addr", "add", net+"1/30", "dev", host)
	run(t, "ip", "link", "set", host, "up")
	run(t, "ip", "netns", "exec", p.ns, "ip", "link", "set", "lo", "up")
	run(t, "ip", "netns", "exec", p.ns, "ip", "addr", "add", p.ip+"/30", "dev", peer)
	run(t, "ip", "netns", "exec", p.ns, "ip", "link", "set", peer, "up")

	for _, v := range spec.Volumes {
		d := filepath.Join(p.dir, "vol-"+v.Name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		p.volumes[v.Name] = d
		switch {
		case v.EmptyDir != nil && v.EmptyDir.Medium == corev1.StorageMediumMemory:
			opt := fmt.Sprintf("mode=0770,uid=0,gid=%d", gid)
			if v.EmptyDir.SizeLimit != nil {
				opt += fmt.Sprintf(",size=%d", v.EmptyDir.SizeLimit.Value())
			}
			run(t, "mount", "-t", "tmpfs", "-o", opt, "tmpfs", d)
			t.Cleanup(func() { exec.Command("umount", "-l", d).Run() })
		case v.EmptyDir != nil:
			os.Chown(d, 0, gid)
			os.Chmod(d, 0o770)
		case v.ConfigMap != nil:
			cm := find[*corev1.ConfigMap](t, objs, "ConfigMap", v.ConfigMap.Name)
			for k, val := range cm.Data {
				os.WriteFile(filepath.Join(d, k), []byte(val), 0o644)
			}
		case v.Secret != nil:
			s := find[*corev1.Secret](t, objs, "Secret", v.Secret.SecretName)
			mode := os.FileMode(0o644)
			if v.Secret.DefaultMode != nil {
				mode = os.FileMode(*v.Secret.DefaultMode)
			}
			for k, val := range s.StringData {
				f := filepath.Join(d, k)
				os.WriteFile(f, []byte(val), mode)
				os.Chown(f, 0, gid)
				os.Chmod(f, mode)
			}
		default:
			t.Fatalf("volume %s: kind not handled by the test", v.Name)
		}
	}
	return p
}

// mapPath turns a path inside container c into the test's folder.
func (p *pod) mapPath(c corev1.Container, s string) string {
	mounts := slices.Clone(c.VolumeMounts)
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i].MountPath) > len(mounts[j].MountPath) })
	for _, m := range mounts {
		if rest, ok := strings.CutPrefix(s, m.MountPath); ok && (rest == "" || rest[0] == '/') {
			return p.volumes[m.Name] + rest
		}
	}
	return s
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// env is the container's environment as the kubelet builds it.
func (p *pod) env(objs []object, c corev1.Container) []string {
	vals := map[string]string{}
	var env []string
	for _, e := range c.Env {
		v := e.Value
		if f := e.ValueFrom; f != nil {
			switch {
			case f.ResourceFieldRef != nil && f.ResourceFieldRef.Resource == "limits.cpu":
				q := c.Resources.Limits[corev1.ResourceCPU]
				v = strconv.FormatInt((q.MilliValue()+999)/1000, 10)
			case f.ConfigMapKeyRef != nil:
				v = find[*corev1.ConfigMap](p.t, objs, "ConfigMap", f.ConfigMapKeyRef.Name).Data[f.ConfigMapKeyRef.Key]
			default:
				p.t.Fatalf("container %s env %s: source not handled by the test", c.Name, e.Name)
			}
		}
		vals[e.Name] = v
		env = append(env, e.Name+"="+v)
	}
	return append(env, "PATH=/usr/bin:/bin", "HOME=/tmp")
}

func expand(s string, env []string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		name := varRef.FindStringSubmatch(m)[1]
		for _, e := range env {
			if v, ok := strings.CutPrefix(e, name+"="); ok {
				return v
			}
		}
		return m
	})
}

// command is how the test runs argv inside the pod: in its network
// namespace, as the pod's user with the fsGroup, with sluice mapped to the
// binary built from the tree.
func (p *pod) command(c corev1.Container, env []string, argv []string) *exec.Cmd {
	args := []string{argv[0]} // the image's entrypoint, not a path in a volume
	for _, a := range argv[1:] {
		a = expand(a, env)
		if name, val, ok := strings.Cut(a, "="); ok && strings.HasPrefix(name, "--") {
			if addr, ok := strings.CutPrefix(val, "unix:path="); ok {
				a = name + "=unix:path=" + p.mapPath(c, addr)
			} else {
				a = name + "=" + p.mapPath(c, val)
			}
		} else {
			a = p.mapPath(c, a)
		}
		args = append(args, a)
	}
	// `ip netns exec` gives the command a mount namespace of its own: bind
	// the image's /etc/passwd and /etc/group (with the pod's user, as the
	// Containerfiles write them) over the host's, where dbus-daemon's
	// policy looks the user up.
	script := `mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group && shift 2 && exec setpriv --reuid="$0" --regid="$0" --clear-groups -- "$@"`
	full := []string{"netns", "exec", p.ns, "sh", "-c", script, strconv.Itoa(p.uid), p.passwd, p.group}
	full = append(full, args...)
	cmd := exec.Command("ip", full...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// start runs container c's image entrypoint (sluice) with its args.
func (p *pod) start(objs []object, c corev1.Container) {
	p.t.Helper()
	env := p.env(objs, c)
	cmd := p.command(c, env, append([]string{binary(p.t, "sluice")}, c.Args...))
	pr := &podProc{name: c.Name, cmd: cmd, out: &lockedBuffer{}, errb: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = pr.out, pr.errb
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", c.Name, err)
	}
	go func() { pr.err = cmd.Wait(); close(pr.done) }()
	p.procs[c.Name] = pr
	p.t.Cleanup(func() {
		select {
		case <-pr.done:
		default:
			cmd.Process.Kill()
			<-pr.done
		}
	})
}

// until polls ok until d passes, failing with the processes' logs; a
// process that exits fails at once.
func (p *pod) until(what string, d time.Duration, ok func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		for _, pr := range p.procs {
			select {
			case <-pr.done:
				p.fail("%s exited (%v) while waiting for %s", pr.name, pr.err, what)
			default:
			}
		}
		if time.Now().After(deadline) {
			p.fail("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func (p *pod) fail(format string, args ...any) {
	p.t.Helper()
	var sb strings.Builder
	fmt.Fprintf(&sb, format, args...)
	for _, n := range []string{"controller", "collector", "mediator"} {
		if pr := p.procs[n]; pr != nil {
			e := pr.errb.String()
			if len(e) > 3000 {
				e = e[len(e)-3000:]
			}
			fmt.Fprintf(&sb, "\n--- %s stderr:\n%s", n, e)
		}
	}
	p.t.Fatal(sb.String())
}

// servicePort resolves Service svc's port name to the container port the
// pod answers on, as kube-proxy would send it.
func servicePort(t *testing.T, objs []object, spec corev1.PodSpec, svc, port string) int {
	t.Helper()
	s := find[*corev1.Service](t, objs, "Service", svc)
	for _, sp := range s.Spec.Ports {
		if sp.Name != port {
			continue
		}
		for _, c := range spec.Containers {
			for _, cp := range c.Ports {
				if (sp.TargetPort.Type == intstr.String && cp.Name == sp.TargetPort.StrVal) ||
					(sp.TargetPort.Type == intstr.Int && cp.ContainerPort == sp.TargetPort.IntVal) {
					return int(cp.ContainerPort)
				}
			}
		}
	}
	t.Fatalf("Service/%s port %s reaches no container port", svc, port)
	return 0
}

func (p *pod) http(method, url, token, body string) (int, string) {
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func jsonLines(s string) int {
	n := 0
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "{") {
			n++
		}
	}
	return n
}

// TestPodRuns runs the default overlay's collector pod: the pod becomes
// ready through the controller's readiness probe, flows sent over UDP and
// TCP to the ports collector-flows names come out of the mediator, the
// controller API answers on the port collector-api names, and the preStop
// hook drains the pod before SIGTERM ends all three containers cleanly.
func TestPodRuns(t *testing.T) {
	podPrereqs(t)
	objs := render(t, "statefulset")
	sts := find[*appsv1.StatefulSet](t, objs, "StatefulSet", "collector")
	spec := sts.Spec.Template.Spec
	sluice := binary(t, "sluice")
	os.Chmod(filepath.Dir(sluice), 0o755)
	p := newPod(t, objs, spec)
	start := time.Now()
	cs := map[string]corev1.Container{}
	for _, c := range spec.Containers {
		cs[c.Name] = c
		p.start(objs, c)
	}
	api := fmt.Sprintf("http://%s:%d", p.ip, servicePort(t, objs, spec, "collector-api", "api"))
	probe := func(c corev1.Container, pr *corev1.Probe) (int, string) {
		port := pr.HTTPGet.Port.IntValue()
		for _, cp := range c.Ports {
			if cp.Name == pr.HTTPGet.Port.StrVal {
				port = int(cp.ContainerPort)
			}
		}
		return p.http("GET", fmt.Sprintf("http://%s:%d%s", p.ip, port, pr.HTTPGet.Path), "", "")
	}
	// Every container's readiness probe, as the kubelet runs it.
	for _, n := range []string{"controller", "collector", "mediator"} {
		c := cs[n]
		p.until(n+" ready ("+c.ReadinessProbe.HTTPGet.Path+")", 60*time.Second, func() bool {
			code, _ := probe(c, c.ReadinessProbe)
			return code == http.StatusOK
		})
		if code, body := probe(c, c.LivenessProbe); code != http.StatusOK {
			p.fail("%s liveness probe: %d %s", n, code, body)
		}
	}
	t.Logf("pod ready in %v", time.Since(start).Round(time.Millisecond))

	// The controller API through the Service's port.
	code, body := p.http("GET", api+"/api/v1/status", "", "")
	if code != http.StatusOK || !strings.Contains(body, `"version"`) {
		p.fail("GET /api/v1/status: %d %s", code, body)
	}
	token := strings.TrimSpace(find[*corev1.Secret](t, objs, "Secret", "sluice-admin-token").StringData["token"])
	if code, _ := p.http("GET", api+"/api/v1/pipeline", "", ""); code != http.StatusUnauthorized {
		p.fail("GET /api/v1/pipeline without the token: %d, want 401", code)
	}
	if code, body := p.http("GET", api+"/api/v1/pipeline", token, ""); code != http.StatusOK {
		p.fail("GET /api/v1/pipeline with the Secret's token: %d %s", code, body)
	}

	// Flows to the ports collector-flows names, from the host to the pod IP.
	udp := servicePort(t, objs, spec, "collector-flows", "ipfix-udp")
	tcp := servicePort(t, objs, spec, "collector-flows", "ipfix-tcp")
	send := func(args ...string) {
		out, err := exec.Command(sluice, append([]string{"gen", "--allow-remote", "--records", "10", "--duration", "0", "--exporters", "1"}, args...)...).CombinedOutput()
		if err != nil {
			p.fail("sluice gen %v: %v: %s", args, err, out)
		}
	}
	send("--addr", fmt.Sprintf("%s:%d", p.ip, tcp), "--tcp", "--count", "30")
	send("--addr", fmt.Sprintf("%s:%d", p.ip, udp), "--count", "20", "--rate", "2000")
	const want = 500 // (30 + 20) messages of 10 records
	med := p.procs["mediator"]
	p.until(fmt.Sprintf("%d records from the mediator", want), 60*time.Second, func() bool { return jsonLines(med.out.String()) >= want })
	if code, body := p.http("GET", api+"/api/v1/exporters", "", ""); code != http.StatusOK || !strings.Contains(body, "10.") {
		p.fail("GET /api/v1/exporters: %d %s", code, body)
	}

	// Termination as the kubelet does it: each container's preStop hook,
	// then SIGTERM. The hooks drain; the pod turns unready; all exit 0.
	drainStart := time.Now()
	var wg sync.WaitGroup
	hookErr := make([]error, len(spec.Containers))
	for i, c := range spec.Containers {
		argv := c.Lifecycle.PreStop.Exec.Command
		argv = append([]string{sluice}, argv[1:]...)
		cmd := p.command(c, p.env(objs, c), argv)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, err := cmd.CombinedOutput(); err != nil {
				hookErr[i] = fmt.Errorf("%s preStop: %v: %s", c.Name, err, out)
			}
		}()
	}
	wg.Wait()
	for _, err := range hookErr {
		if err != nil {
			p.fail("%v", err)
		}
	}
	if code, _ := probe(cs["controller"], cs["controller"].ReadinessProbe); code == http.StatusOK {
		p.fail("the controller is still ready after the drain")
	}
	grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	for _, pr := range p.procs {
		pr.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, pr := range p.procs {
		select {
		case <-pr.done:
			if pr.err != nil {
				p.fail("%s exited with %v after SIGTERM", pr.name, pr.err)
			}
		case <-time.After(grace - time.Since(drainStart)):
			p.fail("%s still running after the grace period", pr.name)
		}
	}
	if n := jsonLines(med.out.String()); n != want {
		t.Errorf("%d records out, want exactly %d", n, want)
	}
	t.Logf("drained and stopped in %v", time.Since(drainStart).Round(time.Millisecond))
}
