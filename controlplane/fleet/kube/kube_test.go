package kube

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-flow/sluice/controlplane/fleet"
)

// The list and watch against a real API server are in
// controlplane/frontend (TestFleetKubernetes); this checks which pods are
// members.
func TestMembers(t *testing.T) {
	now := metav1.Now()
	pod := func(name, ip string, phase corev1.PodPhase, ready bool, port string, deleting bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
				{Name: "ipfix", ContainerPort: 4739}, {Name: port, ContainerPort: 8080}}}}},
			Status: corev1.PodStatus{Phase: phase, PodIP: ip}}
		st := corev1.ConditionFalse
		if ready {
			st = corev1.ConditionTrue
		}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}
		if deleting {
			p.DeletionTimestamp = &now
		}
		return p
	}
	got := members(map[string]*corev1.Pod{
		"c-2": pod("c-2", "10.0.0.2", corev1.PodRunning, true, "api", false),
		"c-0": pod("c-0", "fd00::1", corev1.PodRunning, true, "api", false),
		"c-1": pod("c-1", "10.0.0.1", corev1.PodRunning, false, "api", true),  // draining
		"c-3": pod("c-3", "10.0.0.3", corev1.PodRunning, false, "api", false), // not ready
		"c-4": pod("c-4", "", corev1.PodPending, false, "api", false),         // no IP yet
		"c-5": pod("c-5", "10.0.0.5", corev1.PodRunning, true, "http", false), // no port named api
		"c-6": pod("c-6", "10.0.0.6", corev1.PodSucceeded, true, "api", false),
	})
	want := []fleet.Member{
		{Name: "c-0", URL: "http://[fd00::1]:8080"},
		{Name: "c-1", URL: "http://10.0.0.1:8080", Draining: true},
		{Name: "c-2", URL: "http://10.0.0.2:8080"},
	}
	if len(got) != len(want) {
		t.Fatalf("%+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("member %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestParseTarget(t *testing.T) {
	ns, sel, err := ParseTarget("sluice/app=sluice-collector,tier in (edge)")
	if err != nil || ns != "sluice" || sel != "app=sluice-collector,tier in (edge)" {
		t.Fatalf("%q %q %v", ns, sel, err)
	}
	for _, bad := range []string{"", "sluice", "/app=x", "sluice/", "sluice/app in ("} {
		if _, _, err := ParseTarget(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
