package deploy

import (
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// The overlays `make deploy-check` renders; the first is the default.
var overlays = []string{"statefulset", "daemonset", "dev"}

// object is one rendered resource: its JSON and its typed, strictly decoded
// value.
type object struct {
	apiVersion, kind, name, namespace string
	raw                               []byte // JSON
	typed                             any
}

func (o object) String() string { return o.kind + "/" + o.name }

// serviceMonitor is the part of monitoring.coreos.com/v1 ServiceMonitor the
// component uses. The Prometheus Operator's Go module would raise k8s.io
// modules past the release this repository keeps, so the shape is written
// here; strict decoding still rejects any field not listed.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// types maps apiVersion/kind to a new typed value; a kind missing here is a
// test failure, so every object the overlays render is decoded.
var goTypes = map[string]func() any{
	"v1/Namespace":                             func() any { return new(corev1.Namespace) },
	"v1/ConfigMap":                             func() any { return new(corev1.ConfigMap) },
	"v1/Secret":                                func() any { return new(corev1.Secret) },
	"v1/Service":                               func() any { return new(corev1.Service) },
	"v1/ServiceAccount":                        func() any { return new(corev1.ServiceAccount) },
	"v1/PersistentVolumeClaim":                 func() any { return new(corev1.PersistentVolumeClaim) },
	"apps/v1/StatefulSet":                      func() any { return new(appsv1.StatefulSet) },
	"apps/v1/DaemonSet":                        func() any { return new(appsv1.DaemonSet) },
	"apps/v1/Deployment":                       func() any { return new(appsv1.Deployment) },
	"autoscaling/v2/HorizontalPodAutoscaler":   func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	"policy/v1/PodDisruptionBudget":            func() any { return new(policyv1.PodDisruptionBudget) },
	"rbac.authorization.k8s.io/v1/Role":        func() any { return new(rbacv1.Role) },
	"rbac.authorization.k8s.io/v1/RoleBinding": func() any { return new(rbacv1.RoleBinding) },
	"networking.k8s.io/v1/NetworkPolicy":       func() any { return new(networkingv1.NetworkPolicy) },
	"gateway.networking.k8s.io/v1/Gateway":     func() any { return new(gatewayv1.Gateway) },
	"gateway.networking.k8s.io/v1/HTTPRoute":   func() any { return new(gatewayv1.HTTPRoute) },
	"gateway.networking.k8s.io/v1/TCPRoute":    func() any { return new(gatewayv1.TCPRoute) },
	"gateway.networking.k8s.io/v1/UDPRoute":    func() any { return new(gatewayv1.UDPRoute) },
	"monitoring.coreos.com/v1/ServiceMonitor":  func() any { return new(serviceMonitor) },
}

var rendered struct {
	sync.Mutex
	m map[string][]object
}

// render builds overlay with the kustomize Go API (sigs.k8s.io/kustomize/api,
// what `kubectl kustomize` runs) and decodes every object strictly: unknown
// or duplicate fields are errors. Results are cached per overlay.
func render(t testing.TB, overlay string) []object {
	t.Helper()
	rendered.Lock()
	defer rendered.Unlock()
	if objs, ok := rendered.m[overlay]; ok {
		return objs
	}
	objs, err := renderOverlay(filepath.Join("overlays", overlay))
	if err != nil {
		t.Fatalf("overlay %s: %v", overlay, err)
	}
	if rendered.m == nil {
		rendered.m = map[string][]object{}
	}
	rendered.m[overlay] = objs
	return objs
}

func renderOverlay(dir string) ([]object, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build: %w", err)
	}
	var objs []object
	for _, r := range m.Resources() {
		raw, err := r.MarshalJSON()
		if err != nil {
			return nil, err
		}
		o := object{apiVersion: r.GetApiVersion(), kind: r.GetKind(), name: r.GetName(), namespace: r.GetNamespace(), raw: raw}
		newT, ok := goTypes[o.apiVersion+"/"+o.kind]
		if !ok {
			return nil, fmt.Errorf("%s: no Go type for %s %s", o, o.apiVersion, o.kind)
		}
		o.typed = newT()
		strict, err := sigsjson.UnmarshalStrict(raw, o.typed)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o, err)
		}
		if len(strict) > 0 {
			return nil, fmt.Errorf("%s: %v", o, strict)
		}
		objs = append(objs, o)
	}
	return objs, nil
}

// find returns the object of kind and name, failing the test when absent.
func find[T any](t testing.TB, objs []object, kind, name string) T {
	t.Helper()
	for _, o := range objs {
		if o.kind == kind && o.name == name {
			return o.typed.(T)
		}
	}
	t.Fatalf("no %s/%s rendered", kind, name)
	var zero T
	return zero
}

func all[T any](objs []object, kind string) []T {
	var out []T
	for _, o := range objs {
		if o.kind == kind {
			out = append(out, o.typed.(T))
		}
	}
	return out
}

// TestRender renders every overlay and decodes every object strictly; the
// objects the issue names must be there, in the overlay's namespace, with
// the common labels.
func TestRender(t *testing.T) {
	want := map[string][]string{
		"statefulset": {"Namespace/sluice", "StatefulSet/collector", "Service/collector", "Service/collector-flows",
			"Service/collector-api", "HorizontalPodAutoscaler/collector", "PodDisruptionBudget/collector",
			"Deployment/frontend", "Service/frontend", "HorizontalPodAutoscaler/frontend", "PodDisruptionBudget/frontend",
			"ServiceAccount/sluice-frontend", "Role/sluice-frontend", "RoleBinding/sluice-frontend",
			"ServiceAccount/sluice-collector", "Role/sluice-controller", "RoleBinding/sluice-controller",
			"NetworkPolicy/collector", "NetworkPolicy/frontend", "Gateway/sluice", "UDPRoute/collector-ipfix-udp",
			"TCPRoute/collector-ipfix-tcp", "HTTPRoute/frontend", "HTTPRoute/collector-api", "ConfigMap/sluice-config"},
		"daemonset": {"Namespace/sluice", "DaemonSet/collector", "Deployment/frontend", "Service/collector-flows"},
		"dev":       {"Namespace/sluice-dev", "StatefulSet/collector", "Deployment/redis", "Service/redis", "ServiceMonitor/collector"},
	}
	absent := map[string][]string{
		"daemonset": {"StatefulSet/collector", "HorizontalPodAutoscaler/collector"},
		"dev":       {"PersistentVolumeClaim/sluice-api-data"},
	}
	for _, ov := range overlays {
		t.Run(ov, func(t *testing.T) {
			objs := render(t, ov)
			have := map[string]bool{}
			var names []string
			for _, o := range objs {
				have[o.String()] = true
				names = append(names, o.String())
				if o.kind != "Namespace" && o.namespace != want[ov][0][len("Namespace/"):] {
					t.Errorf("%s in namespace %q", o, o.namespace)
				}
				var meta struct {
					Metadata metav1.ObjectMeta `json:"metadata"`
				}
				sigsjson.UnmarshalCaseSensitivePreserveInts(o.raw, &meta)
				if meta.Metadata.Labels["app.kubernetes.io/part-of"] != "sluice" {
					t.Errorf("%s: no app.kubernetes.io/part-of=sluice label", o)
				}
			}
			sort.Strings(names)
			for _, w := range want[ov] {
				if !have[w] {
					t.Errorf("%s missing; rendered: %v", w, names)
				}
			}
			for _, a := range absent[ov] {
				if have[a] {
					t.Errorf("%s rendered; the overlay removes it", a)
				}
			}
		})
	}
}
