package controller

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/sluice-flow/sluice/dataplane/collector"
)

// ServicePorts adds a port to the pods' Service for each listener added
// at run time, so exporters reach the new port through it (protocol and
// port, target the same port). It reads and updates that one Service
// (RBAC: get and update on services, resourceNames [Name]).
type ServicePorts struct {
	Client    kubernetes.Interface
	Namespace string
	Name      string
}

// portName is the Service port's name for a listener: "udp-2055".
func portName(l collector.Listener) string {
	return l.Network + "-" + strconv.Itoa(int(l.Addr.Port()))
}

// Add adds the port of listener url (udp://host:port, tcp://...) to the
// Service; a port already there (another pod added it) is left alone.
func (s ServicePorts) Add(ctx context.Context, url string) error {
	ls, err := collector.ParseListeners([]string{url})
	if err != nil {
		return err
	}
	l := ls[0]
	proto := corev1.Protocol(strings.ToUpper(l.Network))
	port := int32(l.Addr.Port())
	svcs := s.Client.CoreV1().Services(s.Namespace)
	// Read, change, update; a conflict (someone else changed it) reads again.
	for attempt := 0; ; attempt++ {
		svc, err := svcs.Get(ctx, s.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("controller: service %s/%s: %w", s.Namespace, s.Name, err)
		}
		i := slices.IndexFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == port && p.Protocol == proto })
		if i >= 0 {
			return nil
		}
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: portName(l), Protocol: proto, Port: port,
			TargetPort: intstr.FromInt32(port)})
		_, err = svcs.Update(ctx, svc, metav1.UpdateOptions{})
		if err == nil {
			return nil
		}
		if !errors.IsConflict(err) || attempt == 4 {
			return fmt.Errorf("controller: service %s/%s: %w", s.Namespace, s.Name, err)
		}
	}
}
