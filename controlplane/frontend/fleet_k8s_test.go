package frontend

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/sluice-flow/sluice/controlplane/controller"
	"github.com/sluice-flow/sluice/controlplane/fleet"
	"github.com/sluice-flow/sluice/controlplane/fleet/kube"
	"github.com/sluice-flow/sluice/internal/k8stest"
)

// applyRBAC creates the fleet's RBAC (controlplane/fleet/kube/testdata/
// rbac.yaml, the rules deploy/ is to ship) in namespace ns.
func applyRBAC(t *testing.T, ctx context.Context, admin kubernetes.Interface, ns string) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "fleet", "kube", "testdata", "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dec := serializer.NewCodecFactory(scheme.Scheme).UniversalDeserializer()
	for _, doc := range strings.Split(string(b), "\n---\n") {
		doc = strings.ReplaceAll(doc, "namespace: sluice", "namespace: "+ns)
		obj, _, err := dec.Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("rbac.yaml: %v\n%s", err, doc)
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			_, err = admin.CoreV1().ServiceAccounts(ns).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.Role:
			_, err = admin.RbacV1().Roles(ns).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			_, err = admin.RbacV1().RoleBindings(ns).Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("rbac.yaml: unexpected %T", obj)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// podFor is a collector Pod object whose container port "api" is the
// admin port of a real `sluice run` on 127.0.0.1; node set makes its
// deletion graceful (it lingers with a deletion timestamp, as a draining
// pod does, since no kubelet finishes it).
func podFor(name string, c *collector, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "sluice-collector"}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{
			Name: "collector", Image: "sluice:test",
			Ports: []corev1.ContainerPort{{Name: "ipfix", ContainerPort: 4739, Protocol: corev1.ProtocolUDP},
				{Name: "api", ContainerPort: int32(c.admin), Protocol: corev1.ProtocolTCP}},
		}}},
	}
}

// markRunning patches a pod's status as a kubelet would: Running, Ready,
// the loopback address where its process listens.
func markRunning(t *testing.T, ctx context.Context, admin kubernetes.Interface, ns, name string) {
	t.Helper()
	p, err := admin.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = "127.0.0.1"
	p.Status.PodIPs = []corev1.PodIP{{IP: "127.0.0.1"}}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
	if _, err := admin.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// servicePortsAs is the controller's Service patcher authenticated as cfg
// says (the admin impersonating a service account, in these tests).
func servicePortsAs(t *testing.T, cfg *rest.Config, ns, name string) controller.ServicePorts {
	t.Helper()
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return controller.ServicePorts{Client: hc, Host: cfg.Host, Namespace: ns, Name: name}
}

// forbidden reports whether err is the API server's RBAC refusal.
func forbidden(err error) bool {
	var ae *controller.APIError
	return errors.As(err, &ae) && ae.Code == 403 && ae.Reason == "Forbidden"
}

// TestFleetKubernetes runs the fleet against a real kube-apiserver with
// the RBAC of rbac.yaml: discovery (as the frontend's service account)
// follows Pod objects added, deleted gracefully (draining) and removed;
// a pipeline reaches the real `sluice run` processes behind them; scale
// changes the StatefulSet's replicas; the controller's Service patch adds
// a listener's port; and an account without the rights is refused by the
// server itself.
func TestFleetKubernetes(t *testing.T) {
	s := k8stest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, err := k8stest.Clientset(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	const ns = "sluice-fleet"
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	applyRBAC(t, ctx, admin, ns)
	two := int32(2)
	labels := map[string]string{"app": "sluice-collector"}
	if _, err := admin.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "collector"},
		Spec: appsv1.StatefulSetSpec{Replicas: &two, ServiceName: "collector",
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "collector", Image: "sluice:test"}}}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "collector"},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{
			{Name: "ipfix-udp", Protocol: corev1.ProtocolUDP, Port: 4739, TargetPort: intstr.FromInt32(4739)}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	r := startRedis(t)
	a, b, c := startCollector(t, ""), startCollector(t, ""), startCollector(t, "")
	for _, p := range []*corev1.Pod{podFor("collector-0", a, ""), podFor("collector-1", b, "node-a")} {
		if _, err := admin.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Created but not yet Running: not members.
	frontendSA, err := k8stest.Clientset(s.ServiceAccountConfig(ns, "sluice-frontend"))
	if err != nil {
		t.Fatal(err)
	}
	ts := fleetServer(t, r, kube.Discovery{Client: frontendSA, Namespace: ns, Selector: "app=sluice-collector"}, func(cfg *Config) {
		cfg.Fleet.Scaler = kube.Scaler{Client: frontendSA, Namespace: ns, StatefulSet: "collector"}
	})
	names := func() string {
		var out []string
		for _, m := range ts.Fleet().Members() {
			n := m.Name
			if m.Draining {
				n += "(draining)"
			}
			out = append(out, n)
		}
		return strings.Join(out, " ")
	}
	waitName := func(want string) {
		t.Helper()
		waitFor(t, "members "+want, func() bool { return names() == want })
	}
	markRunning(t, ctx, admin, ns, "collector-0")
	markRunning(t, ctx, admin, ns, "collector-1")
	waitName("collector-0 collector-1")

	file := pipelineFile("discard") + "# kubernetes\n"
	code, body := ts.putPipeline(t, "default", file)
	var ro rolloutView
	want(t, 200, code, body, &ro)
	if !ro.Complete || len(ro.Pods) != 2 {
		t.Fatalf("rollout: %s", body)
	}
	waitPods(t, time.Now(), file, a, b)

	// Scaled up: collector-2 appears (watch) and gets the pipeline.
	if _, err := admin.CoreV1().Pods(ns).Create(ctx, podFor("collector-2", c, ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	markRunning(t, ctx, admin, ns, "collector-2")
	waitName("collector-0 collector-1 collector-2")
	waitPods(t, time.Now(), file, c)

	// Scale through the API: the StatefulSet's replicas change; out of
	// bounds is refused before the API server is asked.
	code, _, body = call(t, "PUT", ts.url+"/api/v1/collectors/scale", tokenA, strings.NewReader(`{"replicas": 3}`))
	var sc fleet.ScaleStatus
	want(t, 200, code, body, &sc)
	if sc.Previous != 2 || sc.Replicas != 3 {
		t.Fatalf("scale: %s", body)
	}
	set, err := admin.AppsV1().StatefulSets(ns).Get(ctx, "collector", metav1.GetOptions{})
	if err != nil || *set.Spec.Replicas != 3 {
		t.Fatalf("statefulset replicas %v (%v)", set.Spec.Replicas, err)
	}
	code, _, body = call(t, "PUT", ts.url+"/api/v1/collectors/scale", tokenA, strings.NewReader(`{"replicas": 99}`))
	want(t, 400, code, body, nil)

	// Scale down: collector-1 (bound to a node) is deleted gracefully and
	// shown draining until it is gone; then it is no member.
	code, _, body = call(t, "PUT", ts.url+"/api/v1/collectors/scale", tokenA, strings.NewReader(`{"replicas": 2}`))
	want(t, 200, code, body, nil)
	grace := int64(30)
	if err := admin.CoreV1().Pods(ns).Delete(ctx, "collector-1", metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil {
		t.Fatal(err)
	}
	waitName("collector-0 collector-1(draining) collector-2")
	var fv fleet.FleetView
	code, _, body = call(t, "GET", ts.url+"/api/v1/collectors", tokenA, nil)
	want(t, 200, code, body, &fv)
	for _, p := range fv.Collectors {
		if p.Name == "collector-1" && !p.Draining {
			t.Fatalf("collector-1 not shown draining: %+v", p)
		}
	}
	zero := int64(0)
	if err := admin.CoreV1().Pods(ns).Delete(ctx, "collector-1", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	waitName("collector-0 collector-2")

	// The controller's Service patch, as the collector's service account.
	collectorSA, err := k8stest.Clientset(s.ServiceAccountConfig(ns, "sluice-collector"))
	if err != nil {
		t.Fatal(err)
	}
	sp := servicePortsAs(t, s.ServiceAccountConfig(ns, "sluice-collector"), ns, "collector")
	for _, u := range []string{"udp://:2055", "udp://:2055", "tcp://:2055"} {
		if err := sp.Add(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	svc, err := admin.CoreV1().Services(ns).Get(ctx, "collector", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ports []string
	for _, p := range svc.Spec.Ports {
		ports = append(ports, p.Name+"/"+string(p.Protocol)+"/"+strconv.Itoa(int(p.Port))+"->"+p.TargetPort.String())
	}
	if got := strings.Join(ports, " "); got != "ipfix-udp/UDP/4739->4739 udp-2055/UDP/2055->2055 tcp-2055/TCP/2055->2055" {
		t.Fatalf("service ports: %s", got)
	}

	// No rights: the server refuses (403 from RBAC), not our code. The
	// collector's account may not scale, list pods or touch another Service;
	// the frontend's may not patch Services.
	if _, err := (kube.Scaler{Client: collectorSA, Namespace: ns, StatefulSet: "collector"}).Scale(ctx, 1); !apierrors.IsForbidden(err) {
		t.Fatalf("scale as the collector: %v, want forbidden", err)
	}
	if _, err := collectorSA.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("list pods as the collector: %v, want forbidden", err)
	}
	if _, err := admin.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "other"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 1}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := servicePortsAs(t, s.ServiceAccountConfig(ns, "sluice-collector"), ns, "other").Add(ctx, "udp://:2056"); !forbidden(err) {
		t.Fatalf("patch another service: %v, want forbidden", err)
	}
	if err := servicePortsAs(t, s.ServiceAccountConfig(ns, "sluice-frontend"), ns, "collector").Add(ctx, "udp://:2057"); !forbidden(err) {
		t.Fatalf("patch the service as the frontend: %v, want forbidden", err)
	}
	nobody, err := k8stest.Clientset(s.ServiceAccountConfig(ns, "nobody"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (kube.Scaler{Client: nobody, Namespace: ns, StatefulSet: "collector"}).Scale(ctx, 1); !apierrors.IsForbidden(err) {
		t.Fatalf("scale without rights: %v, want forbidden", err)
	}
}
