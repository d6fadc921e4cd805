//go:build !linux

package bpf

import "errors"

func attachReuseport(fd, prog int) error { return errors.ErrUnsupported }
