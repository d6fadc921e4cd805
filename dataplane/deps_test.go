package dataplane_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the dependency direction cmd -> controlplane ->
// dataplane -> bpf: nothing in dataplane may pull in the control plane or
// its libraries (fasthttp, godbus, zmq4).
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"github.com/sluice-flow/sluice/controlplane",
		"github.com/sluice-flow/sluice/cmd",
		"github.com/valyala/fasthttp",
		"github.com/godbus/dbus",
		"github.com/pebbe/zmq4",
	}
	n := 0
	for _, pkg := range strings.Fields(string(out)) {
		n++
		for _, f := range forbidden {
			if pkg == f || strings.HasPrefix(pkg, f+"/") {
				t.Errorf("dataplane depends on %s", pkg)
			}
		}
	}
	if n < 5 {
		t.Fatalf("go list -deps found only %d packages; is the test running in dataplane/?", n)
	}
}
