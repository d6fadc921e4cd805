//go:build tools

// Package apiserver is a build-only module: it pins k8s.io/kubernetes so that
// `make kube-apiserver` can build a real kube-apiserver for the tests in
// internal/k8stest without the main module requiring k8s.io/kubernetes.
// See ../../../../shared/design/K8S-TESTING.md for why it is built this way.
package apiserver

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
