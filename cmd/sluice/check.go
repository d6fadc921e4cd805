package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/sluice-flow/sluice/controlplane/node"
	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/pipeline"
)

// runCheck is `sluice check FILE...`: each pipeline file is parsed and
// compiled (tables and key files read) with outputs validated but not
// opened, so a file can be checked before a reload.
func runCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", "FILE...", "Compiles pipeline files without running them: outputs are checked, not opened;\nerrors name the line.", stderr)
	if err := parseFlags(fs, args, 1, stdout); err != nil {
		return err
	}
	var failed bool
	for _, path := range fs.Args() {
		file, err := os.ReadFile(path)
		if err == nil {
			set := pipeline.NewOutputSet(func(spec string) (export.Output, error) {
				if err := export.CheckSpec(spec); err != nil {
					return nil, err
				}
				return &export.Discard{}, nil
			})
			var snap *pipeline.Snapshot
			if snap, err = node.CompilePipeline(file, set); err == nil {
				snap.Discard()
			}
		}
		if err != nil {
			fmt.Fprintf(stdout, "%s: %v\n", path, err)
			failed = true
			continue
		}
		fmt.Fprintf(stdout, "%s: ok\n", path)
	}
	if failed {
		return errors.New("some files do not compile")
	}
	return nil
}
