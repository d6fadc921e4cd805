package main

import (
	"fmt"
	"strings"

	"github.com/sluice-flow/sluice/controlplane/controller"
)

// servicePorts is --service NAMESPACE/NAME's patcher, as the pod's
// service account.
func servicePorts(spec string) (*controller.ServicePorts, error) {
	ns, name, ok := strings.Cut(spec, "/")
	if !ok || ns == "" || name == "" {
		return nil, fmt.Errorf("%q: want NAMESPACE/NAME", spec)
	}
	return controller.InCluster(ns, name)
}
