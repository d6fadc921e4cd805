package deploy

import (
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// workload is a rendered pod template with where it came from.
type workload struct {
	name     string
	selector *metav1.LabelSelector
	pod      corev1.PodTemplateSpec
}

func workloads(objs []object) []workload {
	var ws []workload
	for _, o := range objs {
		switch v := o.typed.(type) {
		case *appsv1.StatefulSet:
			ws = append(ws, workload{o.String(), v.Spec.Selector, v.Spec.Template})
		case *appsv1.DaemonSet:
			ws = append(ws, workload{o.String(), v.Spec.Selector, v.Spec.Template})
		case *appsv1.Deployment:
			ws = append(ws, workload{o.String(), v.Spec.Selector, v.Spec.Template})
		}
	}
	return ws
}

// selected returns the workloads whose pod labels sel matches.
func selected(ws []workload, sel labels.Selector) []workload {
	var out []workload
	for _, w := range ws {
		if sel.Matches(labels.Set(w.pod.Labels)) {
			out = append(out, w)
		}
	}
	return out
}

// containerPort finds port (a name or a number) among the pod's containers.
func containerPort(pod corev1.PodSpec, port intstr.IntOrString, proto corev1.Protocol) bool {
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, c := range pod.Containers {
		for _, p := range c.Ports {
			pp := p.Protocol
			if pp == "" {
				pp = corev1.ProtocolTCP
			}
			if pp != proto {
				continue
			}
			if (port.Type == intstr.String && p.Name == port.StrVal) || (port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
				return true
			}
		}
	}
	return false
}

func has(objs []object, kind, name string) bool {
	for _, o := range objs {
		if o.kind == kind && o.name == name {
			return true
		}
	}
	return false
}

// TestRules checks, for every overlay, what ties the objects together:
// selectors match pod labels, Services, probes, routes and policies name
// ports that exist with the right protocol, references name objects and
// keys that exist, volume mounts name volumes.
func TestRules(t *testing.T) {
	for _, ov := range overlays {
		t.Run(ov, func(t *testing.T) {
			objs := render(t, ov)
			ws := workloads(objs)
			for _, w := range ws {
				checkWorkload(t, objs, w)
			}
			for _, svc := range all[*corev1.Service](objs, "Service") {
				sel := labels.SelectorFromSet(svc.Spec.Selector)
				pods := selected(ws, sel)
				if len(pods) == 0 {
					t.Errorf("Service/%s selects no pods", svc.Name)
				}
				for _, p := range svc.Spec.Ports {
					for _, w := range pods {
						if !containerPort(w.pod.Spec, p.TargetPort, p.Protocol) {
							t.Errorf("Service/%s port %s: %s has no %s port %s", svc.Name, p.Name, w.name, p.Protocol, p.TargetPort.String())
						}
					}
				}
			}
			for _, h := range all[*autoscalingv2.HorizontalPodAutoscaler](objs, "HorizontalPodAutoscaler") {
				if !has(objs, h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name) {
					t.Errorf("HPA/%s scales %s/%s, not rendered", h.Name, h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
				}
			}
			for _, pdb := range all[*policyv1.PodDisruptionBudget](objs, "PodDisruptionBudget") {
				sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
				if err != nil || len(selected(ws, sel)) == 0 {
					t.Errorf("PDB/%s selects no pods (%v)", pdb.Name, err)
				}
			}
			for _, np := range all[*networkingv1.NetworkPolicy](objs, "NetworkPolicy") {
				sel, _ := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
				pods := selected(ws, sel)
				if len(pods) == 0 {
					t.Errorf("NetworkPolicy/%s selects no pods", np.Name)
				}
				for _, in := range np.Spec.Ingress {
					for _, p := range in.Ports {
						proto := corev1.ProtocolTCP
						if p.Protocol != nil {
							proto = *p.Protocol
						}
						for _, w := range pods {
							if p.Port != nil && !containerPort(w.pod.Spec, *p.Port, proto) {
								t.Errorf("NetworkPolicy/%s: %s has no %s port %s", np.Name, w.name, proto, p.Port.String())
							}
						}
					}
				}
			}
			for _, rb := range all[*rbacv1.RoleBinding](objs, "RoleBinding") {
				if !has(objs, rb.RoleRef.Kind, rb.RoleRef.Name) {
					t.Errorf("RoleBinding/%s: no %s/%s", rb.Name, rb.RoleRef.Kind, rb.RoleRef.Name)
				}
				for _, s := range rb.Subjects {
					if s.Kind != "ServiceAccount" || !has(objs, "ServiceAccount", s.Name) || s.Namespace != rb.Namespace {
						t.Errorf("RoleBinding/%s: subject %+v is not a ServiceAccount of the overlay's namespace", rb.Name, s)
					}
				}
			}
			checkRoutes(t, objs)
			for _, sm := range all[*serviceMonitor](objs, "ServiceMonitor") {
				sel, _ := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
				var svcs []*corev1.Service
				for _, svc := range all[*corev1.Service](objs, "Service") {
					if sel.Matches(labels.Set(svc.Labels)) {
						svcs = append(svcs, svc)
					}
				}
				if len(svcs) != 1 {
					t.Fatalf("ServiceMonitor/%s selects %d Services, want 1", sm.Name, len(svcs))
				}
				for _, e := range sm.Spec.Endpoints {
					if !slices.ContainsFunc(svcs[0].Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == e.Port }) {
						t.Errorf("ServiceMonitor/%s: Service/%s has no port %s", sm.Name, svcs[0].Name, e.Port)
					}
				}
			}
		})
	}
}

// checkWorkload checks one pod template.
func checkWorkload(t *testing.T, objs []object, w workload) {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(w.selector)
	if err != nil || !sel.Matches(labels.Set(w.pod.Labels)) {
		t.Errorf("%s: selector does not match its pod labels (%v)", w.name, err)
	}
	spec := w.pod.Spec
	if spec.ServiceAccountName != "" && !has(objs, "ServiceAccount", spec.ServiceAccountName) {
		t.Errorf("%s: no ServiceAccount/%s", w.name, spec.ServiceAccountName)
	}
	if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("%s: pod not runAsNonRoot", w.name)
	}
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
		if v.ConfigMap != nil && !has(objs, "ConfigMap", v.ConfigMap.Name) {
			t.Errorf("%s: volume %s: no ConfigMap/%s", w.name, v.Name, v.ConfigMap.Name)
		}
		if v.Secret != nil && !has(objs, "Secret", v.Secret.SecretName) {
			t.Errorf("%s: volume %s: no Secret/%s", w.name, v.Name, v.Secret.SecretName)
		}
		if v.PersistentVolumeClaim != nil && !has(objs, "PersistentVolumeClaim", v.PersistentVolumeClaim.ClaimName) {
			t.Errorf("%s: volume %s: no PersistentVolumeClaim/%s", w.name, v.Name, v.PersistentVolumeClaim.ClaimName)
		}
	}
	for _, c := range spec.Containers {
		where := w.name + " container " + c.Name
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("%s: want a read-only root, no privilege escalation, all capabilities dropped", where)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: no CPU request or memory limit", where)
		}
		for _, m := range c.VolumeMounts {
			if _, ok := vols[m.Name]; !ok {
				t.Errorf("%s: mounts %s, no such volume", where, m.Name)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil && !keyExists(objs, "ConfigMap", r.Name, r.Key) {
				t.Errorf("%s: env %s: no key %s in ConfigMap/%s", where, e.Name, r.Key, r.Name)
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil && (r.Optional == nil || !*r.Optional) && !keyExists(objs, "Secret", r.Name, r.Key) {
				t.Errorf("%s: env %s: no key %s in Secret/%s", where, e.Name, r.Key, r.Name)
			}
		}
		for _, p := range []*corev1.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
			if p != nil && p.HTTPGet != nil && !containerPort(corev1.PodSpec{Containers: []corev1.Container{c}}, p.HTTPGet.Port, corev1.ProtocolTCP) {
				t.Errorf("%s: probe on port %s the container does not have", where, p.HTTPGet.Port.String())
			}
		}
		if c.LivenessProbe == nil || c.ReadinessProbe == nil {
			t.Errorf("%s: needs liveness and readiness probes", where)
		}
		// Files the command names are in mounted volumes, and the ConfigMap
		// or Secret keys behind them exist.
		for _, a := range append(slices.Clone(c.Args), preStop(c)...) {
			_, v, ok := strings.Cut(a, "=")
			if !ok || !strings.HasPrefix(v, "/") || strings.HasPrefix(a, "--bus=") {
				continue
			}
			m, ok := mountFor(c, v)
			if !ok {
				t.Errorf("%s: %s is in no mounted volume", where, a)
				continue
			}
			vol := vols[m.Name]
			rel := strings.TrimPrefix(strings.TrimPrefix(v, m.MountPath), "/")
			switch {
			case vol.ConfigMap != nil && !keyExists(objs, "ConfigMap", vol.ConfigMap.Name, rel):
				t.Errorf("%s: %s: no key %s in ConfigMap/%s", where, a, rel, vol.ConfigMap.Name)
			case vol.Secret != nil && !keyExists(objs, "Secret", vol.Secret.SecretName, rel):
				t.Errorf("%s: %s: no key %s in Secret/%s", where, a, rel, vol.Secret.SecretName)
			}
		}
	}
	if len(spec.Containers) == 3 {
		checkSplitPod(t, w)
	}
}

// preStop is the container's preStop command without the binary.
func preStop(c corev1.Container) []string {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil || len(c.Lifecycle.PreStop.Exec.Command) < 2 {
		return nil
	}
	return c.Lifecycle.PreStop.Exec.Command[1:]
}

// mountFor is the volume mount that holds file.
func mountFor(c corev1.Container, file string) (corev1.VolumeMount, bool) {
	for _, m := range c.VolumeMounts {
		if file == m.MountPath || strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/") {
			return m, true
		}
	}
	return corev1.VolumeMount{}, false
}

func keyExists(objs []object, kind, name, key string) bool {
	for _, o := range objs {
		if o.kind != kind || o.name != name {
			continue
		}
		switch v := o.typed.(type) {
		case *corev1.ConfigMap:
			_, ok := v.Data[key]
			return ok
		case *corev1.Secret:
			_, ok := v.StringData[key]
			_, ok2 := v.Data[key]
			return ok || ok2
		}
	}
	return false
}

// checkSplitPod checks the collector pod: collector, mediator and
// controller share one memory volume that holds the rings and the bus,
// the two data containers reach the bus where the controller puts it,
// and every preStop hook drains through the controller's API port.
func checkSplitPod(t *testing.T, w workload) {
	t.Helper()
	cs := map[string]corev1.Container{}
	for _, c := range w.pod.Spec.Containers {
		cs[c.Name] = c
	}
	col, med, ctl := cs["collector"], cs["mediator"], cs["controller"]
	if col.Name == "" || med.Name == "" || ctl.Name == "" {
		t.Fatalf("%s: want containers collector, mediator, controller", w.name)
	}
	if col.Args[0] != "collector" || med.Args[0] != "mediator" || ctl.Args[0] != "controller" {
		t.Fatalf("%s: subcommands %s %s %s", w.name, col.Args[0], med.Args[0], ctl.Args[0])
	}
	busDir := flagValue(ctl.Args, "bus-dir")
	shared, ok := mountFor(ctl, busDir+"/bus")
	if !ok || shared.MountPath != busDir {
		t.Fatalf("%s: the controller's --bus-dir %s is not a volume mount", w.name, busDir)
	}
	var vol corev1.Volume
	for _, v := range w.pod.Spec.Volumes {
		if v.Name == shared.Name {
			vol = v
		}
	}
	if vol.EmptyDir == nil || vol.EmptyDir.Medium != corev1.StorageMediumMemory || vol.EmptyDir.SizeLimit == nil {
		t.Errorf("%s: volume %s: want emptyDir {medium: Memory} with a sizeLimit", w.name, vol.Name)
	}
	for _, c := range []corev1.Container{col, med} {
		m, ok := mountFor(c, busDir+"/bus")
		if !ok || m.Name != shared.Name || m.MountPath != shared.MountPath {
			t.Errorf("%s: %s does not mount %s at %s", w.name, c.Name, shared.Name, shared.MountPath)
		}
		if bus := flagValue(c.Args, "bus"); bus != "unix:path="+path.Join(busDir, "bus") {
			t.Errorf("%s: %s --bus=%s, the controller's bus is unix:path=%s/bus", w.name, c.Name, bus, busDir)
		}
		if rd := flagValue(c.Args, "ring-dir"); !strings.HasPrefix(rd, shared.MountPath+"/") {
			t.Errorf("%s: %s --ring-dir=%s is not in the shared volume", w.name, c.Name, rd)
		}
	}
	if flagValue(col.Args, "ring-dir") != flagValue(med.Args, "ring-dir") {
		t.Errorf("%s: collector and mediator --ring-dir differ", w.name)
	}
	// Flow ports: the collector listens where its container ports say.
	for _, l := range flagValues(col.Args, "listen") {
		proto, hostport, _ := strings.Cut(l, "://")
		port := hostport[strings.LastIndex(hostport, ":")+1:]
		if !containerPort(corev1.PodSpec{Containers: []corev1.Container{col}}, intstr.Parse(port), corev1.Protocol(strings.ToUpper(proto))) {
			t.Errorf("%s: collector listens on %s, no such container port", w.name, l)
		}
	}
	apiPort := ctl.Ports[0]
	if apiPort.Name != "api" || !strings.HasSuffix(flagValue(ctl.Args, "api"), ":"+strconv.Itoa(int(apiPort.ContainerPort))) {
		t.Errorf("%s: controller --api=%s, container port %s %d", w.name, flagValue(ctl.Args, "api"), apiPort.Name, apiPort.ContainerPort)
	}
	for _, c := range []corev1.Container{col, med} {
		if a := flagValue(c.Args, "admin"); !containerPort(corev1.PodSpec{Containers: []corev1.Container{c}}, intstr.Parse(strings.TrimPrefix(a, ":")), corev1.ProtocolTCP) {
			t.Errorf("%s: %s --admin=%s is no container port", w.name, c.Name, a)
		}
	}
	for _, c := range []corev1.Container{col, med, ctl} {
		ps := preStop(c)
		if len(ps) == 0 || ps[0] != "drain" || !strings.HasSuffix(flagValue(ps, "api"), ":"+strconv.Itoa(int(apiPort.ContainerPort))) {
			t.Errorf("%s: %s: preStop %v does not drain through the controller's port", w.name, c.Name, ps)
		}
	}
	if g := w.pod.Spec.TerminationGracePeriodSeconds; g == nil || *g < 60 {
		t.Errorf("%s: terminationGracePeriodSeconds %v, want room for a 60 s drain", w.name, g)
	}
}

// checkRoutes: every route's parent is a listener of the Gateway with the
// route's protocol, and its backends are Service ports of that protocol.
func checkRoutes(t *testing.T, objs []object) {
	t.Helper()
	listeners := map[string]gatewayv1.ProtocolType{}
	for _, g := range all[*gatewayv1.Gateway](objs, "Gateway") {
		for _, l := range g.Spec.Listeners {
			listeners[g.Name+"/"+string(l.Name)] = l.Protocol
		}
	}
	type route struct {
		name     string
		proto    gatewayv1.ProtocolType
		svcProto corev1.Protocol
		parents  []gatewayv1.ParentReference
		backends []gatewayv1.BackendRef
	}
	var routes []route
	for _, r := range all[*gatewayv1.UDPRoute](objs, "UDPRoute") {
		rt := route{name: "UDPRoute/" + r.Name, proto: gatewayv1.UDPProtocolType, svcProto: corev1.ProtocolUDP, parents: r.Spec.ParentRefs}
		for _, rule := range r.Spec.Rules {
			rt.backends = append(rt.backends, rule.BackendRefs...)
		}
		routes = append(routes, rt)
	}
	for _, r := range all[*gatewayv1.TCPRoute](objs, "TCPRoute") {
		rt := route{name: "TCPRoute/" + r.Name, proto: gatewayv1.TCPProtocolType, svcProto: corev1.ProtocolTCP, parents: r.Spec.ParentRefs}
		for _, rule := range r.Spec.Rules {
			rt.backends = append(rt.backends, rule.BackendRefs...)
		}
		routes = append(routes, rt)
	}
	for _, r := range all[*gatewayv1.HTTPRoute](objs, "HTTPRoute") {
		rt := route{name: "HTTPRoute/" + r.Name, proto: gatewayv1.HTTPProtocolType, svcProto: corev1.ProtocolTCP, parents: r.Spec.ParentRefs}
		for _, rule := range r.Spec.Rules {
			for _, b := range rule.BackendRefs {
				rt.backends = append(rt.backends, b.BackendRef)
			}
		}
		routes = append(routes, rt)
	}
	if len(routes) < 4 {
		t.Errorf("%d routes, want UDP, TCP and two HTTP routes", len(routes))
	}
	for _, r := range routes {
		for _, p := range r.parents {
			if p.SectionName == nil || listeners[string(p.Name)+"/"+string(*p.SectionName)] != r.proto {
				t.Errorf("%s: parent %s is no %s listener", r.name, p.Name, r.proto)
			}
		}
		for _, b := range r.backends {
			svc := find[*corev1.Service](t, objs, "Service", string(b.Name))
			if b.Port == nil || !slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool {
				return sp.Port == int32(*b.Port) && (sp.Protocol == r.svcProto || sp.Protocol == "" && r.svcProto == corev1.ProtocolTCP)
			}) {
				t.Errorf("%s: Service/%s has no %s port %v", r.name, b.Name, r.svcProto, b.Port)
			}
		}
	}
}

// TestFlagsAccepted runs every container's and preStop hook's command line
// against the real binary's flag list: a flag the binary does not have, or
// a value given to a boolean, fails.
func TestFlagsAccepted(t *testing.T) {
	// The check itself catches what it is for.
	bad := checkArgs(t, "probe", binary(t, "sluice"), []string{"collector", "--no-such-flag=1", "--share-port=yes", "--ring-size"})
	if len(bad) != 3 {
		t.Fatalf("a flag the binary lacks, a value for a boolean and a missing value: %d problems found: %v", len(bad), bad)
	}
	for _, ov := range overlays {
		t.Run(ov, func(t *testing.T) {
			for _, w := range workloads(render(t, ov)) {
				for _, c := range w.pod.Spec.Containers {
					where := w.name + " container " + c.Name
					var bin string
					switch c.Image {
					case "localhost/sluice:latest", "localhost/sluice-controller:latest":
						bin = binary(t, "sluice")
					case "localhost/sluice-api:latest":
						bin = binary(t, "sluice-api")
					default:
						continue // a third-party image (dev's Redis)
					}
					if len(c.Command) > 0 {
						t.Errorf("%s: command %v overrides the image's entrypoint", where, c.Command)
					}
					for _, e := range checkArgs(t, where, bin, c.Args) {
						t.Error(e)
					}
					if ps := preStop(c); len(ps) > 0 {
						if c.Lifecycle.PreStop.Exec.Command[0] != "sluice" {
							t.Errorf("%s: preStop runs %s", where, c.Lifecycle.PreStop.Exec.Command[0])
						}
						for _, e := range checkArgs(t, where+" preStop", binary(t, "sluice"), ps) {
							t.Error(e)
						}
					}
				}
			}
		})
	}
}

// TestDaemonSetMatchesStatefulSet: the DaemonSet overlay runs the same three
// containers as the default StatefulSet (its own copy must not drift).
func TestDaemonSetMatchesStatefulSet(t *testing.T) {
	sts := find[*appsv1.StatefulSet](t, render(t, "statefulset"), "StatefulSet", "collector")
	ds := find[*appsv1.DaemonSet](t, render(t, "daemonset"), "DaemonSet", "collector")
	// The one intended difference: the collector steers with eBPF and
	// holds the two capabilities that needs.
	cs := make([]corev1.Container, 0, 3)
	for _, c := range ds.Spec.Template.Spec.Containers {
		c = *c.DeepCopy()
		if c.Name == "collector" {
			if !slices.Contains(c.Args, "--steer=ebpf") || !slices.Equal(c.SecurityContext.Capabilities.Add, []corev1.Capability{"BPF", "NET_ADMIN"}) {
				t.Errorf("DaemonSet collector: want --steer=ebpf with capabilities BPF and NET_ADMIN, have %v %v", c.Args, c.SecurityContext.Capabilities.Add)
			}
			c.Args = slices.DeleteFunc(c.Args, func(a string) bool { return a == "--steer=ebpf" })
			c.SecurityContext.Capabilities.Add = nil
		}
		cs = append(cs, c)
	}
	if !reflect.DeepEqual(sts.Spec.Template.Spec.Containers, cs) {
		t.Errorf("the DaemonSet's containers differ from the StatefulSet's")
	}
	if !reflect.DeepEqual(sts.Spec.Template.Spec.Volumes, ds.Spec.Template.Spec.Volumes) {
		t.Errorf("the DaemonSet's volumes differ from the StatefulSet's")
	}
	p := ds.Spec.Template.Spec
	if !p.HostNetwork || len(p.NodeSelector) == 0 || len(p.Tolerations) == 0 {
		t.Errorf("DaemonSet: want hostNetwork, a node selector and a toleration")
	}
}

// TestDevRedis: the dev overlay's collector pod and frontend use its Redis.
func TestDevRedis(t *testing.T) {
	objs := render(t, "dev")
	svc := find[*corev1.Service](t, objs, "Service", "redis")
	addr := svc.Name + ":" + strconv.Itoa(int(svc.Spec.Ports[0].Port))
	sts := find[*appsv1.StatefulSet](t, objs, "StatefulSet", "collector")
	for _, c := range sts.Spec.Template.Spec.Containers {
		if c.Name != "mediator" && flagValue(c.Args, "redis") != addr {
			t.Errorf("dev %s: --redis=%q, want %s", c.Name, flagValue(c.Args, "redis"), addr)
		}
	}
	if cm := find[*corev1.ConfigMap](t, objs, "ConfigMap", "sluice-redis"); cm.Data["addresses"] != addr {
		t.Errorf("dev sluice-redis addresses %q, want %s", cm.Data["addresses"], addr)
	}
}
