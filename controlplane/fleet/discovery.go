package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Member is one collector pod as discovery found it.
type Member struct {
	// Name is the pod's name (Kubernetes), the SRV target's first label,
	// or host:port.
	Name string `json:"name"`
	// URL is the pod's API base, "http://host:port".
	URL string `json:"url"`
	// Draining is set for a pod that is being deleted (Kubernetes).
	Draining bool `json:"draining,omitempty"`
}

// Discovery finds the collector pods. Run calls update with the whole set
// each time it changes (and once at start), from one goroutine, until ctx
// ends.
type Discovery interface {
	Run(ctx context.Context, update func([]Member)) error
}

// Static is a fixed list of pods.
type Static []Member

// ParseStatic reads a comma-separated list of URLs ("http://host:port";
// a bare host:port gets http://). Each pod is named host:port.
func ParseStatic(list string) (Static, error) {
	var out Static
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "://") {
			s = "http://" + s
		}
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || u.Port() == "" {
			return nil, fmt.Errorf("fleet: collector %q: want http://host:port", s)
		}
		m := Member{Name: u.Host, URL: u.Scheme + "://" + u.Host}
		if slices.ContainsFunc(out, func(o Member) bool { return o.Name == m.Name }) {
			return nil, fmt.Errorf("fleet: collector %s named twice", u.Host)
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("fleet: no collector URL in %q", list)
	}
	return out, nil
}

func (s Static) Run(ctx context.Context, update func([]Member)) error {
	update(slices.Clone(s))
	<-ctx.Done()
	return nil
}

// DNS finds the pods behind a name, re-resolved every Interval: its SRV
// records (the headless Service's named port) when there are any, else
// its A/AAAA records with Port.
type DNS struct {
	Name string
	// Port is the API port for A/AAAA answers. Default 8080.
	Port int
	// Interval between resolutions. Default 10 s.
	Interval time.Duration
	// Resolver; default net.DefaultResolver.
	Resolver *net.Resolver
	Log      *slog.Logger
}

func (d DNS) Run(ctx context.Context, update func([]Member)) error {
	if d.Port == 0 {
		d.Port = 8080
	}
	if d.Interval <= 0 {
		d.Interval = 10 * time.Second
	}
	if d.Resolver == nil {
		d.Resolver = net.DefaultResolver
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	var last []Member
	first := true
	t := time.NewTicker(d.Interval)
	defer t.Stop()
	for {
		ms, err := d.resolve(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			// Keep the last answer: a resolver hiccup must not empty the fleet.
			d.Log.Warn("fleet: dns", "name", d.Name, "err", err)
		case err == nil && (first || !slices.Equal(ms, last)):
			update(ms)
			last, first = ms, false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (d DNS) resolve(ctx context.Context) ([]Member, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var out []Member
	_, srvs, err := d.Resolver.LookupSRV(ctx, "", "", d.Name)
	if err == nil && len(srvs) > 0 {
		for _, s := range srvs {
			target := strings.TrimSuffix(s.Target, ".")
			addrs, err := d.Resolver.LookupHost(ctx, target)
			if err != nil || len(addrs) == 0 {
				return nil, fmt.Errorf("fleet: dns: %s: %v", target, err)
			}
			name, _, _ := strings.Cut(target, ".")
			hp := net.JoinHostPort(addrs[0], strconv.Itoa(int(s.Port)))
			out = append(out, Member{Name: name, URL: "http://" + hp})
		}
	} else {
		addrs, err := d.Resolver.LookupHost(ctx, d.Name)
		if err != nil {
			return nil, fmt.Errorf("fleet: dns: %w", err)
		}
		for _, a := range addrs {
			hp := net.JoinHostPort(a, strconv.Itoa(d.Port))
			out = append(out, Member{Name: hp, URL: "http://" + hp})
		}
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
