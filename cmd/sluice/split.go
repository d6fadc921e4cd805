package main

import (
	"io"
	"os"

	"github.com/sluice-flow/sluice/controlplane/node"
)

// runSplit is `sluice collector` and `sluice mediator`, the split pod's data
// processes: node.SplitFlags holds their flags, node their lifecycles.
func runSplit(role string) command {
	return func(args []string, stdout, stderr io.Writer) error {
		fs := newFlagSet(role, "--ring-dir DIR [flags]", node.SplitAbout(role), stderr)
		f := node.NewSplitFlags(role, fs)
		if err := parseFlags(fs, args, 0, stdout); err != nil {
			return err
		}
		return f.Run(os.Getenv, stdout, stderr)
	}
}
