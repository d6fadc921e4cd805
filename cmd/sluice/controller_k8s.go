package main

import (
	"fmt"
	"strings"

	"k8s.io/client-go/kubernetes"

	"github.com/sluice-flow/sluice/controlplane/controller"
	"github.com/sluice-flow/sluice/controlplane/fleet/kube"
)

// servicePorts is --service NAMESPACE/NAME's patcher.
func servicePorts(spec, kubeconfig string) (*controller.ServicePorts, error) {
	ns, name, ok := strings.Cut(spec, "/")
	if !ok || ns == "" || name == "" {
		return nil, fmt.Errorf("%q: want NAMESPACE/NAME", spec)
	}
	rc, err := kube.Config(kubeconfig)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return &controller.ServicePorts{Client: cs, Namespace: ns, Name: name}, nil
}
