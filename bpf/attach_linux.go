package bpf

import (
	"os"

	"golang.org/x/sys/unix"
)

func attachReuseport(fd, prog int) error {
	return os.NewSyscallError("setsockopt", unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_EBPF, prog))
}
