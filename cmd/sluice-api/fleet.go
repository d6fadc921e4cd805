package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/sluice-flow/sluice/controlplane/fleet"
	"github.com/sluice-flow/sluice/controlplane/frontend"
)

// fleetFlags are serve's flags for finding and managing the collector
// pods.
type fleetFlags struct {
	static, dns, k8s, kubeconfig, tokenFile string
	statefulSet                             string
	dnsPort                                 int
	dnsEvery                                time.Duration
}

func (f *fleetFlags) register(fs *flag.FlagSet, cfg *frontend.Config) {
	fs.StringVar(&f.static, "collectors", "", "collector pods' API URLs, http://host:port[,...] (a static list)")
	fs.StringVar(&f.dns, "collectors-dns", "", "a name whose SRV (or A/AAAA) records are the collector pods (the headless Service), re-resolved periodically")
	fs.IntVar(&f.dnsPort, "collectors-dns-port", 8080, "the pods' API port when --collectors-dns has A/AAAA records only")
	fs.DurationVar(&f.dnsEvery, "collectors-dns-interval", 10*time.Second, "how often --collectors-dns is resolved again")
	fs.StringVar(&f.k8s, "collectors-k8s", "", "namespace/labelSelector of the collector pods in Kubernetes")
	fs.StringVar(&f.statefulSet, "collectors-statefulset", "collector", "the collector pods' StatefulSet (in --collectors-k8s's namespace), for PUT /api/v1/collectors/scale")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig for --collectors-k8s outside the cluster (default: the service account)")
	fs.StringVar(&f.tokenFile, "collector-token-file", "", "file holding the Bearer token of the pods' APIs")
	fs.StringVar(&cfg.Fleet.Pipeline, "pipeline-name", "default", "the pipeline the collector pods run (sluice:pipeline:<name> in Redis)")
	fs.IntVar(&cfg.Fleet.History, "pipeline-history", 10, "versions of each pipeline kept in Redis")
	fs.DurationVar(&cfg.Fleet.Timeout, "collector-timeout", 2*time.Second, "bound on each request to one pod")
	fs.DurationVar(&cfg.Fleet.Reconcile, "reconcile", 5*time.Second, "how often every pod's pipeline is checked and pushed again if it is not the current one")
	fs.DurationVar(&cfg.Fleet.Sample, "sample", 2*time.Second, "how often each pod's records/s is sampled")
	fs.IntVar(&cfg.Fleet.MaxReplicas, "max-replicas", 32, "largest replica count PUT /api/v1/collectors/scale accepts")
	fs.BoolVar(&cfg.PublicStatus, "public-status", false, "serve the status page and the read-only collector views without a token")
}

func (f *fleetFlags) apply(cfg *frontend.Config, log *slog.Logger) error {
	n := 0
	for _, s := range []string{f.static, f.dns, f.k8s} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("serve: --collectors, --collectors-dns and --collectors-k8s exclude each other: %w", errUsage)
	}
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return fmt.Errorf("serve: --collector-token-file: %w", err)
		}
		cfg.Fleet.Token = strings.TrimSpace(string(b))
	}
	switch {
	case f.static != "":
		st, err := fleet.ParseStatic(f.static)
		if err != nil {
			return fmt.Errorf("serve: --collectors: %w", err)
		}
		cfg.Collectors = st
	case f.dns != "":
		cfg.Collectors = fleet.DNS{Name: f.dns, Port: f.dnsPort, Interval: f.dnsEvery, Log: log}
	case f.k8s != "":
		d, sc, err := kubernetesFleet(f.k8s, f.kubeconfig, f.statefulSet, log)
		if err != nil {
			return fmt.Errorf("serve: --collectors-k8s: %w", err)
		}
		cfg.Collectors, cfg.Fleet.Scaler = d, sc
	}
	return nil
}
