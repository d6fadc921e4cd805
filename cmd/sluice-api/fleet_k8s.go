package main

import (
	"log/slog"

	"k8s.io/client-go/kubernetes"

	"github.com/sluice-flow/sluice/controlplane/fleet"
	"github.com/sluice-flow/sluice/controlplane/fleet/kube"
)

// kubernetesFleet is the Kubernetes discovery of target
// (namespace/labelSelector) and the scaler of its StatefulSet.
func kubernetesFleet(target, kubeconfig, statefulSet string, log *slog.Logger) (fleet.Discovery, fleet.Scaler, error) {
	ns, sel, err := kube.ParseTarget(target)
	if err != nil {
		return nil, nil, err
	}
	rc, err := kube.Config(kubeconfig)
	if err != nil {
		return nil, nil, err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, err
	}
	return kube.Discovery{Client: cs, Namespace: ns, Selector: sel, Log: log},
		kube.Scaler{Client: cs, Namespace: ns, StatefulSet: statefulSet}, nil
}
