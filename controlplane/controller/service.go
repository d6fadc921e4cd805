package controller

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-flow/sluice/dataplane/collector"
)

// ServicePorts adds a port to the pods' Service for each listener added
// at run time, so exporters reach the new port through it (protocol and
// port, target the same port). It reads and replaces that one Service
// through the Kubernetes REST API (RBAC: get and update on services,
// resourceNames [Name]); plain HTTP and JSON keep client-go out of the
// data-plane binary.
type ServicePorts struct {
	// Client authenticates to the API server (the service account's
	// token and the cluster's CA: InCluster sets it up).
	Client    *http.Client
	Host      string // https://host:port
	Namespace string
	Name      string
}

// APIError is an answer of the API server other than 2xx.
type APIError struct {
	Code    int
	Reason  string // the Status object's reason: Forbidden, NotFound, Conflict...
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("kubernetes API: %d %s: %s", e.Code, e.Reason, e.Message)
}

// Service account files in a pod.
const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// InCluster returns the ServicePorts of Service namespace/name, talking to
// the API server as the pod's service account (its token is read again on
// every request: projected tokens rotate).
func InCluster(namespace, name string) (*ServicePorts, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, errors.New("controller: not in a Kubernetes pod (no KUBERNETES_SERVICE_HOST)")
	}
	pem, err := os.ReadFile(saDir + "/ca.crt")
	if err != nil {
		return nil, fmt.Errorf("controller: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("controller: " + saDir + "/ca.crt: no PEM certificate")
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return &ServicePorts{
		Client:    &http.Client{Timeout: 10 * time.Second, Transport: tokenFile{path: saDir + "/token", next: tr}},
		Host:      "https://" + net.JoinHostPort(host, port),
		Namespace: namespace, Name: name,
	}, nil
}

// tokenFile adds the Bearer token read from path to each request.
type tokenFile struct {
	path string
	next http.RoundTripper
}

func (t tokenFile) RoundTrip(r *http.Request) (*http.Response, error) {
	b, err := os.ReadFile(t.path)
	if err != nil {
		return nil, err
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(b)))
	return t.next.RoundTrip(r)
}

// Add adds the port of listener url (udp://host:port, tcp://...) to the
// Service; a port already there (another pod added it) is left alone. A
// conflicting update (another pod at the same moment) reads again.
func (s ServicePorts) Add(ctx context.Context, url string) error {
	ls, err := collector.ParseListeners([]string{url})
	if err != nil {
		return err
	}
	l := ls[0]
	proto := strings.ToUpper(l.Network)
	port := int(l.Addr.Port())
	path := s.Host + "/api/v1/namespaces/" + s.Namespace + "/services/" + s.Name
	for attempt := 0; ; attempt++ {
		var svc map[string]json.RawMessage // the whole object, kept as it is
		if err := s.do(ctx, "GET", path, nil, &svc); err != nil {
			return err
		}
		var spec map[string]json.RawMessage
		if err := json.Unmarshal(svc["spec"], &spec); err != nil {
			return fmt.Errorf("controller: service %s/%s: %w", s.Namespace, s.Name, err)
		}
		var ports []map[string]any
		if len(spec["ports"]) > 0 {
			if err := json.Unmarshal(spec["ports"], &ports); err != nil {
				return fmt.Errorf("controller: service %s/%s ports: %w", s.Namespace, s.Name, err)
			}
		}
		for _, p := range ports {
			pr, _ := p["protocol"].(string)
			if pr == "" {
				pr = "TCP"
			}
			if n, _ := p["port"].(float64); int(n) == port && pr == proto {
				return nil
			}
		}
		ports = append(ports, map[string]any{"name": l.Network + "-" + strconv.Itoa(port), "protocol": proto,
			"port": port, "targetPort": port})
		spec["ports"], _ = json.Marshal(ports)
		svc["spec"], _ = json.Marshal(spec)
		body, _ := json.Marshal(svc) // metadata.resourceVersion in it: a concurrent change is a 409
		err := s.do(ctx, "PUT", path, body, nil)
		var ae *APIError
		if err == nil || !errors.As(err, &ae) || ae.Code != http.StatusConflict || attempt == 4 {
			return err
		}
	}
}

func (s ServicePorts) do(ctx context.Context, method, url string, body []byte, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		return fmt.Errorf("controller: kubernetes API: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("controller: kubernetes API: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		ae := &APIError{Code: resp.StatusCode}
		var st struct{ Reason, Message string }
		if json.Unmarshal(b, &st) == nil {
			ae.Reason, ae.Message = st.Reason, st.Message
		}
		return ae
	}
	if v != nil {
		return json.Unmarshal(b, v)
	}
	return nil
}
