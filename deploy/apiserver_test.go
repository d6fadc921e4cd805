package deploy

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"

	"github.com/sluice-flow/sluice/internal/k8stest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	k8stest.StopShared()
	if bins.dir != "" && os.Getenv("SLUICE_DEPLOY_BIN_DIR") == "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// cluster is the shared API server with the Gateway API CRDs installed.
type cluster struct {
	srv    *k8stest.Server
	admin  *kubernetes.Clientset
	dyn    *dynamic.DynamicClient
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	s := k8stest.Shared(t)
	admin, err := k8stest.Clientset(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{srv: s, admin: admin, dyn: dyn,
		mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(admin.Discovery()))}
	c.installGatewayCRDs(t)
	return c
}

// installGatewayCRDs applies the standard channel of sigs.k8s.io/gateway-api
// (the module version go.mod pins, from the module cache) and waits until
// the server serves gateway.networking.k8s.io/v1.
func (c *cluster) installGatewayCRDs(t *testing.T) {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		t.Fatalf("go list -m sigs.k8s.io/gateway-api: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard")
	files, _ := filepath.Glob(filepath.Join(dir, "gateway.networking.k8s.io_*.yaml"))
	if len(files) == 0 {
		t.Fatalf("no CRDs in %s", dir)
	}
	ctx := context.Background()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewYAMLOrJSONDecoder(strings.NewReader(string(b)), 1<<16)
		for {
			var u unstructured.Unstructured
			if err := dec.Decode(&u.Object); err != nil {
				break
			}
			if len(u.Object) == 0 {
				continue
			}
			raw, _ := u.MarshalJSON()
			if err := c.apply(ctx, raw, false); err != nil {
				t.Fatalf("%s: %v", filepath.Base(f), err)
			}
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		c.mapper.Reset()
		_, err := c.mapper.RESTMapping(schema.GroupKind{Group: "gateway.networking.k8s.io", Kind: "UDPRoute"}, "v1")
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Gateway API CRDs not served: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// apply is a server-side apply of one object (JSON), a dry run when dry.
func (c *cluster) apply(ctx context.Context, raw []byte, dry bool) error {
	var u unstructured.Unstructured
	if err := u.UnmarshalJSON(raw); err != nil {
		return err
	}
	gvk := u.GroupVersionKind()
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		c.mapper.Reset()
		m, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return err
	}
	var res dynamic.ResourceInterface = c.dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		res = c.dyn.Resource(m.Resource).Namespace(u.GetNamespace())
	}
	opts := metav1.PatchOptions{FieldManager: "sluice-deploy-check", Force: new(true)}
	if dry {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err = res.Patch(ctx, u.GetName(), types.ApplyPatchType, raw, opts)
	return err
}

// serverChecked is false for kinds whose CRD the test server lacks: the
// Prometheus Operator's ServiceMonitor (its CRDs are not in a Go module the
// repository can use; strict decoding above still checks it).
func serverChecked(o object) bool { return o.kind != "ServiceMonitor" }

// TestServerDryRun has the real API server judge every overlay: its
// validation, defaulting, admission and the Gateway API CRD schemas. The
// overlay's namespace is created for real (a dry run cannot create what the
// rest needs); everything else is a server-side dry run.
func TestServerDryRun(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	for _, ov := range overlays {
		t.Run(ov, func(t *testing.T) {
			objs := render(t, ov)
			for _, o := range objs {
				if o.kind == "Namespace" {
					if err := c.apply(ctx, o.raw, false); err != nil {
						t.Fatalf("%s: %v", o, err)
					}
				}
			}
			n := 0
			for _, o := range objs {
				if o.kind == "Namespace" || !serverChecked(o) {
					continue
				}
				if err := c.apply(ctx, o.raw, true); err != nil {
					t.Errorf("%s: %v", o, err)
				}
				n++
			}
			t.Logf("%s: %d objects pass the server's dry run", ov, n)
		})
	}
}

// TestServerRejectsBroken proves the dry run judges: a StatefulSet with a
// port out of range and a UDPRoute without its backend port come back as
// the server's validation errors.
func TestServerRejectsBroken(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	objs := render(t, "statefulset")
	for _, o := range objs {
		if o.kind == "Namespace" {
			if err := c.apply(ctx, o.raw, false); err != nil {
				t.Fatal(err)
			}
		}
	}
	broken := func(kind, name string, edit func(m map[string]any)) {
		for _, o := range objs {
			if o.kind != kind || o.name != name {
				continue
			}
			var m map[string]any
			json.Unmarshal(o.raw, &m)
			edit(m)
			raw, _ := json.Marshal(m)
			err := c.apply(ctx, raw, true)
			if !apierrors.IsInvalid(err) {
				t.Errorf("broken %s/%s: err %v, want the server's Invalid", kind, name, err)
			} else {
				t.Logf("broken %s/%s refused: %v", kind, name, err)
			}
			return
		}
		t.Fatalf("no %s/%s", kind, name)
	}
	broken("StatefulSet", "collector", func(m map[string]any) {
		c := dig(m, "spec", "template", "spec", "containers").([]any)[0].(map[string]any)
		c["ports"].([]any)[0].(map[string]any)["containerPort"] = 70000
	})
	broken("UDPRoute", "collector-ipfix-udp", func(m map[string]any) {
		b := dig(m, "spec", "rules").([]any)[0].(map[string]any)["backendRefs"].([]any)[0].(map[string]any)
		delete(b, "port")
	})
}

func dig(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		v = v.(map[string]any)[k]
	}
	return v
}

// access is one authorisation question for a service account.
type access struct {
	verb, group, resource, sub, name string
	allowed                          bool
}

func (a access) String() string {
	r := a.resource
	if a.sub != "" {
		r += "/" + a.sub
	}
	if a.group != "" {
		r += "." + a.group
	}
	if a.name != "" {
		r += " " + a.name
	}
	return a.verb + " " + r
}

// TestRBAC applies the default overlay for real and asks the server, as the
// frontend's and the collector pods' service accounts, what they may do
// (what `kubectl auth can-i --as` asks): exactly what they need, nothing
// more. Then the accounts make the real calls: the frontend scales the
// StatefulSet through /scale, the controller adds a port to its Service,
// and each is refused by the server beyond that.
func TestRBAC(t *testing.T) {
	c := newCluster(t)
	ctx := context.Background()
	objs := render(t, "statefulset")
	for _, o := range objs {
		if o.kind == "Namespace" {
			if err := c.apply(ctx, o.raw, false); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, o := range objs {
		if o.kind != "Namespace" && serverChecked(o) {
			if err := c.apply(ctx, o.raw, false); err != nil {
				t.Fatalf("apply %s: %v", o, err)
			}
		}
	}
	const ns = "sluice"
	frontend := []access{
		{"get", "", "pods", "", "", true},
		{"list", "", "pods", "", "", true},
		{"watch", "", "pods", "", "", true},
		{"get", "apps", "statefulsets", "scale", "collector", true},
		{"patch", "apps", "statefulsets", "scale", "collector", true},
		{"update", "apps", "statefulsets", "scale", "collector", false},
		{"patch", "apps", "statefulsets", "scale", "other", false},
		{"patch", "apps", "statefulsets", "", "collector", false},
		{"get", "apps", "statefulsets", "", "collector", false},
		{"create", "", "pods", "", "", false},
		{"delete", "", "pods", "", "", false},
		{"get", "", "secrets", "", "", false},
		{"patch", "", "services", "", "collector-flows", false},
	}
	controller := []access{
		{"get", "", "services", "", "collector-flows", true},
		{"patch", "", "services", "", "collector-flows", true},
		{"patch", "", "services", "", "frontend", false},
		{"delete", "", "services", "", "collector-flows", false},
		{"create", "", "services", "", "", false},
		{"list", "", "pods", "", "", false},
		{"get", "", "secrets", "", "", false},
		{"patch", "apps", "statefulsets", "scale", "collector", false},
	}
	for sa, want := range map[string][]access{"sluice-frontend": frontend, "sluice-collector": controller} {
		cs, err := k8stest.Clientset(c.srv.ServiceAccountConfig(ns, sa))
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range want {
			// RBAC's informer sees the new bindings within moments: poll
			// the allowed ones until they turn true.
			var got bool
			deadline := time.Now().Add(20 * time.Second)
			for {
				r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{
					Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{
						Namespace: ns, Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.sub, Name: a.name}},
				}, metav1.CreateOptions{})
				if err != nil {
					t.Fatalf("%s: can-i %s: %v", sa, a, err)
				}
				got = r.Status.Allowed
				if got == a.allowed || !a.allowed || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if got != a.allowed {
				t.Errorf("%s can-i %s: %v, want %v", sa, a, got, a.allowed)
			}
		}
	}

	// The real calls.
	fe, _ := k8stest.Clientset(c.srv.ServiceAccountConfig(ns, "sluice-frontend"))
	if _, err := fe.AppsV1().StatefulSets(ns).Patch(ctx, "collector", types.MergePatchType,
		[]byte(`{"spec":{"replicas":3}}`), metav1.PatchOptions{}, "scale"); err != nil {
		t.Fatalf("frontend scales the StatefulSet: %v", err)
	}
	sts, err := c.admin.AppsV1().StatefulSets(ns).Get(ctx, "collector", metav1.GetOptions{})
	if err != nil || *sts.Spec.Replicas != 3 {
		t.Fatalf("after the frontend's scale: %v replicas, err %v", sts.Spec.Replicas, err)
	}
	if _, err := fe.AppsV1().StatefulSets(ns).Patch(ctx, "collector", types.MergePatchType,
		[]byte(`{"spec":{"template":{"metadata":{"labels":{"x":"y"}}}}}`), metav1.PatchOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("frontend patches the StatefulSet's template: err %v, want forbidden", err)
	}
	if _, err := fe.CoreV1().Secrets(ns).Get(ctx, "sluice-admin-token", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("frontend reads a Secret: err %v, want forbidden", err)
	}
	ctl, _ := k8stest.Clientset(c.srv.ServiceAccountConfig(ns, "sluice-collector"))
	patch := `{"spec":{"ports":[{"name":"nf9-udp","port":2055,"targetPort":2055,"protocol":"UDP"}]}}`
	if _, err := ctl.CoreV1().Services(ns).Patch(ctx, "collector-flows", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("controller adds a listener port to its Service: %v", err)
	}
	svc, err := c.admin.CoreV1().Services(ns).Get(ctx, "collector-flows", metav1.GetOptions{})
	if err != nil || len(svc.Spec.Ports) != 3 {
		t.Fatalf("collector-flows after the patch: %v ports, err %v", len(svc.Spec.Ports), err)
	}
	if _, err := ctl.CoreV1().Services(ns).Patch(ctx, "frontend", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("controller patches the frontend's Service: err %v, want forbidden", err)
	}
}
