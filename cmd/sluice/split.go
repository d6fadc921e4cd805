package main

import (
	"io"
	"os"
)

// runSplit is `sluice collector` and `sluice mediator`, the split pod's data
// processes: splitFlags holds their flags, node their lifecycles.
func runSplit(role string) command {
	return func(args []string, stdout, stderr io.Writer) error {
		fs := newFlagSet(role, "--ring-dir DIR [flags]", splitAbout(role), stderr)
		f := newSplitFlags(role, fs)
		if err := parseFlags(fs, args, 0, stdout); err != nil {
			return err
		}
		return f.Run(os.Getenv, stdout, stderr)
	}
}
