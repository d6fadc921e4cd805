// Command sluice is the Sluice IPFIX collector and mediator. Each
// subcommand parses its flags, builds a typed config and calls a library
// package: controlplane/node (run, collector, mediator),
// controlplane/controller (controller), dataplane/loadgen (gen),
// dataplane/offline/decode (decode), dataplane/meter (meter),
// dataplane/pipeline (check).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/sluice-flow/sluice/controlplane/buildinfo"
)

const usage = `usage: sluice <command> [flags] [args]

commands:
  run              start the all-in-one collector (listeners, mediator, admin API)
  collector        run the split pod's ingest into shared-memory rings
  mediator         run the split pod's pipelines and outputs from those rings
  controller       run the split pod's controller (private D-Bus, pod HTTP API)
  drain            drain a pod through its controller API (preStop hooks)
  gen              send IPFIX or NetFlow v9 load to a collector
  decode FILE...   decode pcap/pcapng captures, IPFIX files and raw NetFlow
                   payloads to one JSON object per data record
  meter CAPTURE... meter pcap/pcapng captures into IPFIX flows (-o FILE.ipfix, -o -)
  check FILE...    compile pipeline files without running them (outputs are
                   checked, not opened); errors name the line
  version          print the version, commit and Go version

Run 'sluice help <command>' or 'sluice <command> --help' for a command's flags.
`

// command is a subcommand: it returns flag.ErrHelp after printing help.
type command func(args []string, stdout, stderr io.Writer) error

var commands = map[string]command{
	"run":        runAll,
	"gen":        runGen,
	"decode":     runDecode,
	"check":      runCheck,
	"meter":      runMeter,
	"controller": runController,
	"drain":      runDrain,
	"collector":  runSplit("collector"),
	"mediator":   runSplit("mediator"),
	"version": func(args []string, stdout, _ io.Writer) error {
		if len(args) > 0 {
			return fmt.Errorf("version: unexpected argument %q", args[0])
		}
		fmt.Fprintln(stdout, versionString())
		return nil
	},
}

func main() {
	os.Exit(mainExit(os.Args[1:], os.Stdout, os.Stderr))
}

// mainExit runs the command line and returns the exit status: 0 on success
// and for help, 2 for usage errors, 1 for failures.
func mainExit(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	name, rest := args[0], args[1:]
	switch name {
	case "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "help":
		if len(rest) == 0 {
			fmt.Fprint(stdout, usage)
			return 0
		}
		if _, ok := commands[rest[0]]; !ok {
			fmt.Fprintf(stderr, "sluice: unknown command %q\n\n%s", rest[0], usage)
			return 2
		}
		name, rest = rest[0], []string{"--help"}
	case "-version", "--version":
		name, rest = "version", nil
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "sluice: unknown command %q\n\n%s", name, usage)
		return 2
	}
	err := cmd(rest, stdout, stderr)
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "sluice %s: %v\n", name, err)
		return 2
	}
	fmt.Fprintf(stderr, "sluice %s: %v\n", name, err)
	return 1
}

// usageError is a command line the command cannot run (exit status 2).
type usageError struct{ error }

// newFlagSet returns a flag set whose usage text (synopsis, one line of
// description, the flags) goes to stdout for --help and to stderr for a
// flag error.
func newFlagSet(name, synopsis, about string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: sluice %s %s\n\n%s\n\n", name, synopsis, about)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; --help prints the usage to stdout and --version
// the version, and both return flag.ErrHelp (exit status 0). minArgs is the number of positional arguments wanted (-1:
// any number; 0: none).
func parseFlags(fs *flag.FlagSet, args []string, minArgs int, stdout io.Writer) error {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help":
			fs.SetOutput(stdout)
			fs.Usage()
			return flag.ErrHelp
		case "-version", "--version":
			fmt.Fprintln(stdout, versionString())
			return flag.ErrHelp
		}
		if a == "--" {
			break
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	switch {
	case minArgs == 0 && fs.NArg() > 0:
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	case minArgs > 0 && fs.NArg() < minArgs:
		fs.Usage()
		return usageError{errors.New("missing arguments")}
	}
	return nil
}

func versionString() string { return buildinfo.Read().String() }
