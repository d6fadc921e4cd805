package bpf

// The object files are committed so that building Sluice needs no clang;
// `make generate` rebuilds them and CI fails if they differ. The flags are
// pinned for reproducible output: -g for the BTF that map definitions need
// (DWARF is stripped with llvm-strip), and the source directory mapped to
// "." so that no absolute path ends up in the BTF line info.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -strip llvm-strip -target bpfel,bpfeb -output-stem steer steer steer.c -- -O2 -g -Wall -Werror -nostdinc -I/usr/include -Iinclude -ffile-prefix-map=${PWD}=. -fno-ident
