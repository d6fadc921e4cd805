// Command sluice is the Sluice IPFIX collector and mediator. Subcommands:
// run (the all-in-one collector) and decode (captures and IPFIX files to
// JSON lines).
package main

import (
	"fmt"
	"os"
)

const usage = `usage: sluice <command> [flags] [args]

commands:
  run              start the all-in-one collector (listeners, mediator, admin API)
  gen              send IPFIX or NetFlow v9 load to a collector
  decode FILE...   decode pcap/pcapng captures, IPFIX files and raw NetFlow
                   payloads to one JSON object per data record
  check FILE...    compile pipeline files without running them (outputs are
                   checked, not opened); errors name the line

Run 'sluice <command> -h' for a command's flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runAll(os.Args[2:], os.Stdout, os.Stderr)
	case "gen":
		err = runGen(os.Args[2:], os.Stdout, os.Stderr)
	case "decode":
		err = runDecode(os.Args[2:], os.Stdout, os.Stderr)
	case "check":
		err = runCheck(os.Args[2:], os.Stdout)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(os.Stdout, usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "sluice: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluice:", err)
		os.Exit(1)
	}
}
