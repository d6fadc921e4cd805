package k8stest

import (
	"context"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-flow/sluice/internal/testenv"
)

func TestMain(m *testing.M) { Main(m) }

// TestServer proves the server is a real, RBAC-enforcing API server: the
// admin writes, a service account is refused until a RoleBinding allows it
// (refused by the server: a 403 from RBAC), through impersonation and
// through a token the server itself signed; kubectl works with Kubeconfig.
func TestServer(t *testing.T) {
	s := Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := Clientset(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	v, err := admin.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != Version {
		t.Fatalf("server version %s, want %s (rebuild: make kube-apiserver)", v.GitVersion, Version)
	}
	const ns = "k8stest"
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "reader"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sa, err := Clientset(s.ServiceAccountConfig(ns, "reader"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = sa.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("list pods without a binding: err %v, want forbidden", err)
	}
	if _, err := admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "pod-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "reader", Namespace: ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// RBAC's cache follows the binding within moments: wait on the answer.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err = sa.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("list pods with the binding: %v", err)
	}
	if _, err := sa.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{}, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("create pod, only list is bound: err %v, want forbidden", err)
	}

	// A token the server signs with the service-account key made here.
	tr, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "reader", &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{ExpirationSeconds: new(int64(600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bytoken, err := Clientset(s.TokenConfig(tr.Status.Token))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bytoken.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("list pods with the account's token: %v", err)
	}
	if _, err := bytoken.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("list secrets with the account's token: err %v, want forbidden", err)
	}

	out, err := s.Kubectl(ctx, "auth", "can-i", "list", "pods", "-n", ns, "--as", ServiceAccountUser(ns, "reader"))
	if errors.Is(err, ErrNoBinary) {
		testenv.SkipOrFail(t, "kubectl not on PATH")
	}
	if err != nil || strings.TrimSpace(lastLine(out)) != "yes" {
		t.Fatalf("kubectl auth can-i list pods: %q %v", out, err)
	}
	out, _ = s.Kubectl(ctx, "auth", "can-i", "delete", "pods", "-n", ns, "--as", ServiceAccountUser(ns, "reader"))
	if strings.TrimSpace(lastLine(out)) != "no" {
		t.Fatalf("kubectl auth can-i delete pods: %q, want no", out)
	}
}

// TestStopEndsProcesses proves Stop leaves no process behind.
func TestStopEndsProcesses(t *testing.T) {
	if _, _, err := Binaries(); err != nil {
		testenv.SkipOrFail(t, "%v", err)
	}
	s, err := StartServer(context.Background(), StartTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver with etcd ready in %v", s.StartTime.Round(time.Millisecond))
	pids := []int{s.apiserver.cmd.Process.Pid, s.etcd.cmd.Process.Pid}
	s.Stop()
	for _, p := range []*proc{s.apiserver, s.etcd} {
		select {
		case <-p.done:
		default:
			t.Fatalf("process %d still running after Stop", p.cmd.Process.Pid)
		}
	}
	if out, err := exec.Command("ps", "-o", "pid=", "-p", strconv.Itoa(pids[0]), "-p", strconv.Itoa(pids[1])).Output(); err == nil && len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("ps still lists %s", out)
	}
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
