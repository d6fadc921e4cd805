// Package deploy holds Sluice's Kubernetes manifests (kustomize: base/,
// overlays/, components/) and container images (images/). It has no Go code
// of its own: its tests are `make deploy-check`, which renders every
// overlay, decodes every object strictly into its Go type, checks the rules
// that tie the objects and the binaries together, judges the manifests with
// a real kube-apiserver and runs the collector pod's containers for real.
package deploy
