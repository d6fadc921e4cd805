package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// The real binaries, built once from this tree for the whole package.
var bins struct {
	once sync.Once
	dir  string
	err  error
}

// binary returns the path of sluice or sluice-api built from the tree
// (CGO_ENABLED=0 for sluice, as `make build` does).
func binary(t testing.TB, name string) string {
	t.Helper()
	bins.once.Do(func() {
		if d := os.Getenv("SLUICE_DEPLOY_BIN_DIR"); d != "" {
			bins.dir = d // binaries built beforehand (make build's bin/), kept
			return
		}
		bins.dir, bins.err = os.MkdirTemp("", "sluice-deploy-bin-")
		if bins.err != nil {
			return
		}
		for _, b := range []struct{ name, cgo string }{{"sluice", "0"}, {"sluice-api", "1"}} {
			// No -trimpath (make build's): it would change every
			// package's build and recompile them all on a cold cache,
			// where these flags reuse what the tests compiled.
			cmd := exec.Command("go", "build", "-o", filepath.Join(bins.dir, b.name), "../cmd/"+b.name)
			cmd.Env = append(os.Environ(), "CGO_ENABLED="+b.cgo)
			if out, err := cmd.CombinedOutput(); err != nil {
				bins.err = fmt.Errorf("go build %s: %v\n%s", b.name, err, out)
				return
			}
		}
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return filepath.Join(bins.dir, name)
}

var flagLine = regexp.MustCompile(`(?m)^  -([A-Za-z0-9][A-Za-z0-9-]*)(?: (\S+))?`)

// helpFlags runs `bin sub --help` and returns the flags it lists, each
// with whether it takes a value (flag's PrintDefaults shows a value name
// after the flag unless the flag is boolean).
func helpFlags(t testing.TB, bin, sub string) map[string]bool {
	t.Helper()
	// sluice exits 0 for --help; sluice-api's flag sets print the usage
	// and exit 2. Either way the usage lists the flags.
	out, _ := exec.Command(bin, sub, "--help").CombinedOutput()
	flags := map[string]bool{}
	for _, m := range flagLine.FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = m[2] != ""
	}
	if len(flags) == 0 {
		t.Fatalf("%s %s --help lists no flags:\n%s", filepath.Base(bin), sub, out)
	}
	return flags
}

// checkArgs checks a container's command line against the real binary:
// args[0] is a subcommand the binary has, every flag is one it lists, a
// flag that takes a value has one and a boolean flag none.
func checkArgs(t testing.TB, where string, bin string, args []string) (problems []string) {
	t.Helper()
	errorf := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	if len(args) == 0 {
		errorf("%s: no subcommand", where)
		return
	}
	flags := helpFlags(t, bin, args[0])
	for i := 1; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			errorf("%s: positional argument %q", where, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		takes, ok := flags[name]
		if !ok {
			errorf("%s: %s %s has no flag --%s", where, filepath.Base(bin), args[0], name)
			continue
		}
		if takes && !hasValue {
			if i+1 >= len(args) {
				errorf("%s: --%s without a value", where, name)
			}
			i++
		}
		if !takes && hasValue && value != "true" && value != "false" {
			errorf("%s: boolean --%s=%s", where, name, value)
		}
	}
	return problems
}

// flagValue returns the value of --name in args ("" when absent; the last
// one when repeated).
func flagValue(args []string, name string) string {
	v := ""
	for i, a := range args {
		if val, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			v = val
		} else if a == "--"+name && i+1 < len(args) {
			v = args[i+1]
		}
	}
	return v
}

// flagValues returns every value of the repeatable --name in args.
func flagValues(args []string, name string) []string {
	var vs []string
	for i, a := range args {
		if val, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			vs = append(vs, val)
		} else if a == "--"+name && i+1 < len(args) {
			vs = append(vs, args[i+1])
		}
	}
	return vs
}
