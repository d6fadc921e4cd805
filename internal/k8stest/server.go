package k8stest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Version is the kube-apiserver release `make kube-apiserver` builds (the
// Makefile's KUBE_VERSION); a binary of another version is rebuilt there.
const Version = "v1.37.2"

// ServiceClusterIPRange is the range Services get their cluster IPs from.
const ServiceClusterIPRange = "10.96.0.0/16"

// ErrNoBinary means kube-apiserver or etcd was not found.
var ErrNoBinary = errors.New("k8stest: binary not found")

// Server is a running etcd and kube-apiserver pair. Its methods are safe for
// concurrent use; Stop ends both processes.
type Server struct {
	// URL is the API server's https address on 127.0.0.1.
	URL string
	// Dir holds the certificates, the token file, the kubeconfig, etcd's
	// data and both processes' logs. Removed by Stop.
	Dir string
	// CAFile is the PEM CA that signed the serving certificate.
	CAFile string
	// Kubeconfig is a kubeconfig file for the admin, for kubectl.
	Kubeconfig string
	// AdminToken authenticates as "admin" in group system:masters.
	AdminToken string
	// StartTime is how long the start took, etcd included, until /readyz
	// answered ok.
	StartTime time.Duration

	caPEM     []byte
	etcd      *proc
	apiserver *proc
	stopped   chan struct{}
}

// Binaries finds kube-apiserver (SLUICE_KUBE_APISERVER, else
// .cache/kube/kube-apiserver in the working directory or a parent, where
// `make kube-apiserver` puts it) and etcd (SLUICE_ETCD, else on PATH).
func Binaries() (apiserver, etcd string, err error) {
	apiserver = os.Getenv("SLUICE_KUBE_APISERVER")
	if apiserver == "" {
		dir, _ := os.Getwd()
		for dir != "" {
			p := filepath.Join(dir, ".cache", "kube", "kube-apiserver")
			if st, e := os.Stat(p); e == nil && st.Mode().IsRegular() {
				apiserver = p
				break
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	if apiserver == "" {
		return "", "", fmt.Errorf("%w: kube-apiserver (run make kube-apiserver, or set SLUICE_KUBE_APISERVER)", ErrNoBinary)
	}
	etcd = os.Getenv("SLUICE_ETCD")
	if etcd == "" {
		if etcd, err = exec.LookPath("etcd"); err != nil {
			return "", "", fmt.Errorf("%w: etcd (apt-get install etcd-server, or set SLUICE_ETCD)", ErrNoBinary)
		}
	}
	return apiserver, etcd, nil
}

// StartServer starts etcd and kube-apiserver in a fresh folder under
// os.TempDir and waits until the API server is ready (or timeout passes).
// Logs go to files in Server.Dir; an error carries the end of the log.
func StartServer(ctx context.Context, timeout time.Duration) (*Server, error) {
	apiserverBin, etcdBin, err := Binaries()
	if err != nil {
		return nil, err
	}
	begin := time.Now()
	dir, err := os.MkdirTemp("", "sluice-k8stest-")
	if err != nil {
		return nil, fmt.Errorf("k8stest: %w", err)
	}
	s := &Server{Dir: dir, stopped: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			s.Stop()
		}
	}()
	keys, err := makePKI(dir)
	if err != nil {
		return nil, err
	}
	s.CAFile = keys.caFile
	if s.caPEM, err = os.ReadFile(keys.caFile); err != nil {
		return nil, fmt.Errorf("k8stest: %w", err)
	}
	s.AdminToken = randomToken()
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(s.AdminToken+`,admin,admin-uid,"system:masters"`+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("k8stest: %w", err)
	}
	deadline := time.Now().Add(timeout)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	// A free port can be taken by another process between the probe and the
	// listen; a server that fails at once is retried on fresh ports.
	var etcdURL string
	for attempt := 0; ; attempt++ {
		client, peer := freePort(), freePort()
		etcdURL = "http://127.0.0.1:" + strconv.Itoa(client)
		peerURL := "http://127.0.0.1:" + strconv.Itoa(peer)
		s.etcd, err = startProcess(dir, "etcd", etcdBin,
			"--name", "k8stest",
			"--data-dir", filepath.Join(dir, "etcd"),
			"--listen-client-urls", etcdURL,
			"--advertise-client-urls", etcdURL,
			"--listen-peer-urls", peerURL,
			"--initial-advertise-peer-urls", peerURL,
			"--initial-cluster", "k8stest="+peerURL,
			"--log-level", "warn",
		)
		if err != nil {
			return nil, err
		}
		err = waitHTTP(ctx, s.etcd, http.DefaultClient, etcdURL+"/health", "")
		if err == nil {
			break
		}
		if attempt == 2 || ctx.Err() != nil {
			return nil, fmt.Errorf("k8stest: etcd not healthy: %w\n%s", err, logTail(dir, "etcd"))
		}
		stopProcess(s.etcd)
		os.RemoveAll(filepath.Join(dir, "etcd"))
	}

	httpClient := s.httpClient()
	for attempt := 0; ; attempt++ {
		port := freePort()
		s.URL = "https://127.0.0.1:" + strconv.Itoa(port)
		s.apiserver, err = startProcess(dir, "kube-apiserver", apiserverBin,
			"--etcd-servers", etcdURL,
			"--bind-address", "127.0.0.1",
			"--advertise-address", "127.0.0.1",
			"--secure-port", strconv.Itoa(port),
			"--cert-dir", filepath.Join(dir, "certs"),
			"--tls-cert-file", keys.certFile,
			"--tls-private-key-file", keys.keyFile,
			"--client-ca-file", keys.caFile,
			"--token-auth-file", tokens,
			"--authorization-mode", "RBAC",
			"--service-account-key-file", keys.saPubFile,
			"--service-account-signing-key-file", keys.saKeyFile,
			"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
			"--service-cluster-ip-range", ServiceClusterIPRange,
			// Without a controller loop for the kubernetes Service's
			// endpoints a loopback advertise address is fatal.
			"--endpoint-reconciler-type", "none",
			// No controller-manager creates the default ServiceAccount.
			"--disable-admission-plugins", "ServiceAccount",
			"--enable-priority-and-fairness=false",
			"--profiling=false",
		)
		if err != nil {
			return nil, err
		}
		err = waitHTTP(ctx, s.apiserver, httpClient, s.URL+"/readyz", s.AdminToken)
		if err == nil {
			break
		}
		if attempt == 2 || ctx.Err() != nil {
			return nil, fmt.Errorf("k8stest: kube-apiserver not ready: %w\n%s", err, logTail(dir, "kube-apiserver"))
		}
		stopProcess(s.apiserver)
	}
	s.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(s.Kubeconfig, s.kubeconfig(), 0o600); err != nil {
		return nil, fmt.Errorf("k8stest: %w", err)
	}
	s.StartTime = time.Since(begin)
	ok = true
	return s, nil
}

// Stop ends kube-apiserver, then etcd (SIGTERM, SIGKILL after 10 s), and
// removes Dir. Safe to call more than once.
func (s *Server) Stop() {
	select {
	case <-s.stopped:
		return
	default:
		close(s.stopped)
	}
	stopProcess(s.apiserver)
	stopProcess(s.etcd)
	os.RemoveAll(s.Dir)
}

// Config is a fresh client configuration for the admin.
func (s *Server) Config() *rest.Config {
	return &rest.Config{
		Host:            s.URL,
		BearerToken:     s.AdminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: s.caPEM},
		QPS:             200,
		Burst:           400,
		Timeout:         30 * time.Second,
	}
}

// ServiceAccountUser is the user name a service account authenticates as.
func ServiceAccountUser(namespace, name string) string {
	return "system:serviceaccount:" + namespace + ":" + name
}

// ServiceAccountConfig is the admin's configuration impersonating the service
// account namespace/name with the groups the server gives service accounts:
// requests are authorised by RBAC as that account's would be.
func (s *Server) ServiceAccountConfig(namespace, name string) *rest.Config {
	c := s.Config()
	c.Impersonate = rest.ImpersonationConfig{
		UserName: ServiceAccountUser(namespace, name),
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}
	return c
}

// TokenConfig is a configuration that authenticates with token, for example
// one from the TokenRequest API (CoreV1().ServiceAccounts(ns).CreateToken).
func (s *Server) TokenConfig(token string) *rest.Config {
	c := s.Config()
	c.BearerToken = token
	return c
}

// Clientset is a client-go clientset for c.
func Clientset(c *rest.Config) (*kubernetes.Clientset, error) {
	cs, err := kubernetes.NewForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("k8stest: %w", err)
	}
	return cs, nil
}

// Kubectl runs kubectl (on PATH) with the admin's kubeconfig and returns its
// combined output.
func (s *Server) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	bin, err := exec.LookPath("kubectl")
	if err != nil {
		return nil, fmt.Errorf("%w: kubectl", ErrNoBinary)
	}
	cmd := exec.CommandContext(ctx, bin, append([]string{"--kubeconfig", s.Kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+s.Kubeconfig)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("k8stest: kubectl %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

func (s *Server) kubeconfig() []byte {
	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: k8stest
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: k8stest
  context:
    cluster: k8stest
    user: admin
current-context: k8stest
`, s.URL, s.CAFile, s.AdminToken)
}

func (s *Server) httpClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.caPEM)
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
}

func randomToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic("BUG: no loopback port: " + err.Error())
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a started process; done is closed once it has been reaped.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startProcess starts bin with its output in dir/name.log. The process gets
// SIGKILL if the test binary dies without stopping it.
func startProcess(dir, name, bin string, args ...string) (*proc, error) {
	log, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("k8stest: %w", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("k8stest: start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		log.Close()
		close(p.done)
	}()
	return p, nil
}

// stopProcess ends p by its PID: SIGTERM, then SIGKILL after 10 s.
func stopProcess(p *proc) {
	if p == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(10 * time.Second):
	}
	p.cmd.Process.Kill()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// waitHTTP polls url until it answers 200 "ok", cmd exits or ctx ends.
func waitHTTP(ctx context.Context, p *proc, c *http.Client, url, token string) error {
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err == nil {
			var body [256]byte
			n, _ := resp.Body.Read(body[:])
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(body[:n]))
		}
		last = err
		select {
		case <-p.done:
			return fmt.Errorf("process exited (last: %v)", last)
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// logTail is the last lines of dir/name.log, for error messages.
func logTail(dir, name string) string {
	b, _ := os.ReadFile(filepath.Join(dir, name+".log"))
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return name + ".log:\n" + strings.Join(lines, "\n")
}
