package main

import (
	"flag"
	"strings"
	"testing"
)

func TestSteerFlag(t *testing.T) {
	f := func(args []string, want, wantErr string) {
		t.Helper()
		fs := flag.NewFlagSet("collector", flag.ContinueOnError)
		sf := newSplitFlags("collector", fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		cfg, err := sf.Config(func(string) string { return "" })
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("%v: error %v, want one naming %s", args, err, wantErr)
			}
			return
		}
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if cfg.Collector.Steer != want {
			t.Errorf("%v: steer %q, want %q", args, cfg.Collector.Steer, want)
		}
	}
	f(nil, "", "")
	f([]string{"--steer", "kernel"}, "kernel", "")
	f([]string{"--steer", "ebpf"}, "ebpf", "")
	f([]string{"--steer", "xdp"}, "", "steer")
	f([]string{"--steer", "ebpf", "--share-port"}, "", "share_port")
}
