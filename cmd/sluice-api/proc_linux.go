package main

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel end a worker whose serve process died.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
