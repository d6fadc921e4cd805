// Package kube is the fleet's Kubernetes side: it lists and watches the
// collector pods (each Ready pod's IP and the container port named
// "api"), and scales their StatefulSet through its /scale subresource.
// It runs in the cluster with the service account's token or outside
// with a kubeconfig; the rights it needs are in deploy/ (RBAC).
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sluice-flow/sluice/controlplane/fleet"
)

// APIPort is the name of the pods' container port the fleet talks to.
const APIPort = "api"

// Config returns the API server's client configuration: kubeconfig's when
// given, else the in-cluster service account's.
func Config(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kube: %w", err)
		}
		return c, nil
	}
	c, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("kube: not in a cluster and no --kubeconfig: %w", err)
	}
	return c, nil
}

// ParseTarget reads "namespace/labelSelector".
func ParseTarget(s string) (namespace, selector string, err error) {
	ns, sel, ok := strings.Cut(s, "/")
	if !ok || ns == "" || sel == "" {
		return "", "", fmt.Errorf("kube: %q: want namespace/labelSelector", s)
	}
	if _, err := labels.Parse(sel); err != nil {
		return "", "", fmt.Errorf("kube: selector %q: %w", sel, err)
	}
	return ns, sel, nil
}

// Discovery lists and watches the pods matching Selector in Namespace: a
// Ready pod with an IP and a container port named "api" is a member; a
// pod being deleted stays a member, marked draining, until it is gone or
// no longer Ready.
type Discovery struct {
	Client    kubernetes.Interface
	Namespace string
	Selector  string
	Log       *slog.Logger
}

// Run lists, then watches from the list's resource version, re-listing
// when the watch ends (expired versions included), until ctx ends.
func (d Discovery) Run(ctx context.Context, update func([]fleet.Member)) error {
	log := d.Log
	if log == nil {
		log = slog.Default()
	}
	pods := d.Client.CoreV1().Pods(d.Namespace)
	var last []fleet.Member
	first := true
	publish := func(byName map[string]*corev1.Pod) {
		ms := members(byName)
		if first || !slices.Equal(ms, last) {
			update(ms)
			last, first = ms, false
		}
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: d.Selector})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("fleet: kubernetes: listing pods", "err", err)
			if !sleep(ctx, backoff) {
				return nil
			}
			backoff = min(backoff*2, 10*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		byName := map[string]*corev1.Pod{}
		for i := range list.Items {
			byName[list.Items[i].Name] = &list.Items[i]
		}
		publish(byName)
		w, err := pods.Watch(ctx, metav1.ListOptions{LabelSelector: d.Selector, ResourceVersion: list.ResourceVersion, AllowWatchBookmarks: true})
		if err != nil {
			log.Warn("fleet: kubernetes: watching pods", "err", err)
			continue
		}
		d.watch(ctx, w, byName, publish, log)
		w.Stop()
	}
	return nil
}

func (d Discovery) watch(ctx context.Context, w watch.Interface, byName map[string]*corev1.Pod, publish func(map[string]*corev1.Pod), log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.ResultChan():
			if !ok {
				return
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				if p, ok := ev.Object.(*corev1.Pod); ok {
					byName[p.Name] = p
				}
			case watch.Deleted:
				if p, ok := ev.Object.(*corev1.Pod); ok {
					delete(byName, p.Name)
				}
			case watch.Error:
				log.Info("fleet: kubernetes: watch ended; listing again", "status", ev.Object)
				return
			default: // bookmarks
				continue
			}
			publish(byName)
		}
	}
}

// members turns pods into fleet members, sorted by name.
func members(byName map[string]*corev1.Pod) []fleet.Member {
	out := []fleet.Member{}
	for _, p := range byName {
		port := apiPort(p)
		// A pod being deleted is shown (draining) while it still has an IP,
		// even once its readiness turned false for the drain.
		if port == 0 || p.Status.PodIP == "" || (!ready(p) && p.DeletionTimestamp == nil) {
			continue
		}
		out = append(out, fleet.Member{Name: p.Name,
			URL:      "http://" + net.JoinHostPort(p.Status.PodIP, strconv.Itoa(int(port))),
			Draining: p.DeletionTimestamp != nil})
	}
	slices.SortFunc(out, func(a, b fleet.Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func apiPort(p *corev1.Pod) int32 {
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == APIPort {
				return cp.ContainerPort
			}
		}
	}
	return 0
}

func ready(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Scaler scales the StatefulSet StatefulSet in Namespace through its
// /scale subresource (the only right it needs on it: get and update of
// statefulsets/scale).
type Scaler struct {
	Client      kubernetes.Interface
	Namespace   string
	StatefulSet string
}

// ErrNoStatefulSet is a scale request without a StatefulSet to scale.
var ErrNoStatefulSet = errors.New("kube: no StatefulSet named (--collectors-statefulset)")

func (s Scaler) Scale(ctx context.Context, replicas int) (fleet.ScaleStatus, error) {
	if s.StatefulSet == "" {
		return fleet.ScaleStatus{}, ErrNoStatefulSet
	}
	sets := s.Client.AppsV1().StatefulSets(s.Namespace)
	sc, err := sets.GetScale(ctx, s.StatefulSet, metav1.GetOptions{})
	if err != nil {
		return fleet.ScaleStatus{}, fmt.Errorf("kube: %w", err)
	}
	st := fleet.ScaleStatus{Previous: int(sc.Spec.Replicas), Replicas: replicas}
	sc.Spec.Replicas = int32(replicas)
	if _, err := sets.UpdateScale(ctx, s.StatefulSet, sc, metav1.UpdateOptions{}); err != nil {
		return fleet.ScaleStatus{}, fmt.Errorf("kube: %w", err)
	}
	return st, nil
}
