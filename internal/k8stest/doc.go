// Package k8stest runs a real Kubernetes API server for tests: Debian's etcd
// and a kube-apiserver built from the Go module proxy (`make kube-apiserver`,
// ../../../shared/design/K8S-TESTING.md), both on free loopback ports in a
// temporary folder, with certificates made here, RBAC on, a token for an
// admin and service-account tokens signed by keys made here. No kubelet or
// controller-manager runs: objects are stored, validated, defaulted and
// authorised exactly as a cluster would, but no pod starts.
//
// Shared gives a test package one server (stopped by Main from TestMain);
// Start gives a test its own. A missing binary skips the test, or fails it
// when CI is set (internal/testenv).
package k8stest
