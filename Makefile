# Sluice build, run and test entry points. `make test` is what CI runs.
SHELL := /bin/bash
GO ?= go
BIN := bin
# Debian packages the tests drive: real exporters, an independent decoder,
# the traffic replayer, network namespace tools, Redis (shared templates) and
# libfixbuf's ipfixDump (a second independent decoder of re-exported IPFIX),
# libzmq (sluice-api links it through cgo); etcd-server backs the real
# kube-apiserver the Kubernetes tests start (internal/k8stest); buildah
# builds the images in deploy/images (the image test); chromium (the status
# page test drives it headless) and dnsmasq (a real DNS server for
# --collectors-dns); clang, llvm (llvm-strip) and libbpf-dev (bpf_helpers.h)
# rebuild the eBPF objects in `make generate`; openssl (s_client, a TLS
# exporter for tls:// listeners).
TEST_DEBS := tshark softflowd pmacct nfdump fprobe tcpreplay iproute2 redis-server libfixbuf-tools libzmq3-dev dbus-daemon dbus-bin etcd-server buildah chromium dnsmasq-base clang llvm libbpf-dev openssl
FUZZTIME ?= 20s
# package:FuzzTarget pairs run by fuzz-smoke.
FUZZ_TARGETS := \
	./dataplane/ipfix:FuzzMessage \
	./dataplane/ipfix:FuzzTemplateSet \
	./dataplane/ipfix:FuzzNetFlow9 \
	./dataplane/ipfix:FuzzNetFlow5 \
	./dataplane/ipfix:FuzzLists \
	./dataplane/offline/pcap:FuzzReader \
	./dataplane/offline/pcap:FuzzParseHeaders \
	./dataplane/meter:FuzzPacket \
	./dataplane/ring:FuzzRingOps \
	./dataplane/template/redistier:FuzzParseKey \
	./dataplane/template/redistier:FuzzDecodeValue \
	./controlplane/node:FuzzConfig \
	./dataplane/anon:FuzzParseKey \
	./dataplane/filter:FuzzParse \
	./dataplane/pipeline:FuzzParse \
	./dataplane/pipeline:FuzzAggTable \
	./dataplane/entry:FuzzParse \
	./bpf:FuzzDomain
# Packages under testdata/ are in the module but outside ./... patterns.
VET_EXTRA := ./testdata/exporters/...
# Files `make generate` writes; committed, so regenerating must not change them.
GENERATED := dataplane/ipfix/ies_iana.go dataplane/ipfix/ies_vendor.go \
	bpf/steer_bpfel.go bpf/steer_bpfel.o bpf/steer_bpfeb.go bpf/steer_bpfeb.o

.PHONY: all build run test test-deps test-k8s kube-apiserver deploy-check images check fmt-check vet tidy-check deps-check bench fuzz-smoke fuzz-long generate lint clean chaos soak

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/sluice ./cmd/sluice
	CGO_ENABLED=1 $(GO) build -trimpath -o $(BIN)/sluice-api ./cmd/sluice-api

run: build
	./$(BIN)/sluice run $(ARGS)

test-deps:
	@missing=(); for p in $(TEST_DEBS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing+=($$p); \
	done; \
	if [ $${#missing[@]} -gt 0 ]; then \
		echo "installing: $${missing[*]}"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends "$${missing[@]}" >/dev/null; \
	fi
	$(GO) mod download

# A real kube-apiserver for internal/k8stest, built from the Go module proxy
# through the wrapper module internal/k8stest/apiserver (the main module does
# not require k8s.io/kubernetes). Built only when missing or when KUBE_VERSION
# changes; a cold build takes minutes (README.md, "Set-up"), a rebuild from a
# warm Go build cache seconds. Tests find it through $(KUBE_DIR) or
# SLUICE_KUBE_APISERVER.
KUBE_VERSION := v1.37.2
KUBE_DIR := .cache/kube
kube-apiserver:
	@if [ -x $(KUBE_DIR)/kube-apiserver ] && [ "$$(cat $(KUBE_DIR)/kube-apiserver.version 2>/dev/null)" = "$(KUBE_VERSION)" ]; then \
		exit 0; \
	fi; \
	set -e; mkdir -p $(KUBE_DIR); \
	grep -q '^require k8s.io/kubernetes $(KUBE_VERSION)$$' internal/k8stest/apiserver/go.mod || { echo "internal/k8stest/apiserver/go.mod does not require k8s.io/kubernetes $(KUBE_VERSION)"; exit 1; }; \
	minor=$$(echo $(KUBE_VERSION) | cut -d. -f2); \
	echo "building kube-apiserver $(KUBE_VERSION) into $(KUBE_DIR) (cold: minutes)"; \
	start=$$(date +%s); \
	cd internal/k8stest/apiserver && $(GO) build -trimpath -o ../../../$(KUBE_DIR)/kube-apiserver.tmp \
		-ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$$minor" \
		k8s.io/kubernetes/cmd/kube-apiserver; \
	cd ../../..; mv $(KUBE_DIR)/kube-apiserver.tmp $(KUBE_DIR)/kube-apiserver; \
	echo $(KUBE_VERSION) > $(KUBE_DIR)/kube-apiserver.version; \
	echo "kube-apiserver built in $$(( $$(date +%s) - start ))s"

# The tests that start the real kube-apiserver (internal/k8stest). A cold
# build of it is about 8 minutes of both CPUs, which with the rest of a cold
# `make test` does not fit CI's 20 minutes, so `make test` leaves them out by
# name and `make test-k8s` runs them (after building the server once).
K8S_TESTS := ^(TestServerDryRun|TestServerRejectsBroken|TestRBAC|TestFleetKubernetes)$$

test-k8s: kube-apiserver
	$(GO) test -count=1 ./internal/k8stest/
	$(GO) test -count=1 -run '$(K8S_TESTS)' ./deploy/ ./controlplane/frontend/

# The deploy/ checks: render every overlay (kustomize Go API), strict
# decoding, rules against the real binaries, server-side dry run and RBAC
# against a real kube-apiserver, the collector pod run for real, and the
# images built with buildah. `make test` runs all but the API server's
# (K8S_TESTS); this target runs them all.
deploy-check: kube-apiserver
	$(GO) test -count=1 ./deploy/ ./internal/k8stest/

# Container images (deploy/images/), tagged localhost/NAME:latest, which is
# what deploy/base names. Base images and the Go builder are build args:
# make images IMAGE_ARGS='--build-arg BASE=... --build-arg BUILDER=...'.
IMAGE_VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
images:
	@set -e; for i in sluice sluice-controller sluice-api; do \
		buildah bud --build-arg VERSION=$(IMAGE_VERSION) $(IMAGE_ARGS) -f deploy/images/$$i.Containerfile -t localhost/$$i:latest . ; \
	done

test: test-deps check
	$(GO) test -count=1 -timeout 15m -bench . -benchtime=1x -skip '$(K8S_TESTS)' $$($(GO) list ./... | grep -v -x -e '.*/internal/k8stest')
	$(GO) test -count=1 -race ./dataplane/collector/... ./dataplane/ring/... ./dataplane/template/... ./dataplane/mediator/... ./dataplane/pipeline/... ./dataplane/export/...

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=5 ./...

# A target that moved or was renamed fails instead of fuzzing nothing.
fuzz-smoke:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		$(GO) test -list "^$$fn\$$" $$pkg | grep -qx "$$fn" || { echo "fuzz-smoke: no $$fn in $$pkg"; exit 1; }; \
		echo "fuzz $$pkg $$fn for $(FUZZTIME)"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME); \
	done

# Every fuzz target for FUZZTIME (30 minutes by default), FUZZ_JOBS at a
# time with one fuzz worker each; the executions each reached go to
# perf/results/fuzz-long.md. 17 targets x 30 minutes: hours of CPU in all.
FUZZ_JOBS ?= $(shell nproc)
fuzz-long:
	GO=$(GO) ./perf/fuzz-long.sh $(if $(filter command line environment,$(origin FUZZTIME)),$(FUZZTIME),30m) $(FUZZ_JOBS) perf/results/fuzz-long.md $(FUZZ_TARGETS)

# Chaos: each part of Sluice (split collector, split mediator, sluice run,
# Redis, a Redis Cluster master, the receiver of an ipfix+tcp output) killed
# with SIGKILL three times under load and started again; the table goes to
# perf/results/chaos.md. Bounded by the test timeout (10 minutes). make test
# runs one short round of the same test. It needs redis-server, redis-cli and
# softflowd (make test-deps installs them).
CHAOS_ARGS ?=
chaos:
	$(GO) test -count=1 -timeout 10m -run '^TestChaos$$' -v ./internal/chaos -args -chaos.full -chaos.report $(CURDIR)/perf/results/chaos.md $(CHAOS_ARGS)

# Soak: steady load at half the zero-loss rate with exporters coming and
# going, template churn and a pipeline reload every minute; RSS, goroutines
# and open files sampled every 10 s into perf/results/soak.csv and
# perf/soak.png, judged flat or not (perf/soak). make soak DURATION=1h.
DURATION ?= 1h
SOAK_ARGS ?=
soak:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/sluice ./cmd/sluice
	$(GO) build -o $(BIN)/soak ./perf/soak
	./$(BIN)/soak --sluice $(BIN)/sluice --duration $(DURATION) --csv perf/results/soak.csv --png perf/soak.png --results perf/RESULTS.md $(SOAK_ARGS)

# The generator reads IANA's registry and the vendor element lists from the
# shared folder beside the repository (../shared/data/iana/ipfix.xml,
# ../shared/data/vendor-ies/). The eBPF objects and their Go bindings come
# from bpf2go (pinned in go.mod) and clang with pinned flags (bpf/gen.go).
generate:
	cd dataplane/ipfix && $(GO) generate ./...
	cd bpf && $(GO) generate ./...
	@git diff --exit-code -- $(GENERATED) || { echo "generated files differ from the committed ones (above): commit them"; exit 1; }

# What CI checks besides the tests: the committed tree is gofmt-clean, vets
# (testdata programs included), has a tidy go.mod, regenerates to itself and
# keeps the data plane's dependency direction. `make test` runs it first.
check: fmt-check vet tidy-check generate deps-check

lint: check

# Files listed by git but deleted in the working tree are left out.
fmt-check:
	@files=(); while IFS= read -r f; do [ -f "$$f" ] && files+=("$$f"); done < <(git ls-files '*.go'); \
	out=$$(gofmt -l "$${files[@]}") || exit 1; \
	if [ -n "$$out" ]; then echo "gofmt needed (run gofmt -w on them):"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./... $(VET_EXTRA)

tidy-check:
	@$(GO) mod tidy -diff || { echo "go.mod or go.sum is not tidy (above): run go mod tidy"; exit 1; }

deps-check:
	$(GO) test -count=1 -run '^TestDependencies$$' ./dataplane/

clean:
	rm -rf $(BIN)

# Throughput measurements (README.md, "Performance"). Runner flags go in
# PERF_ARGS, e.g. make perf PERF_ARGS='--step 10s --outputs discard'.
.PHONY: perf perf-ceiling perf-compare perf-pipeline perf-steer perf-split perf-netns
perf:
	PERF_ARGS='$(PERF_ARGS)' PERF_COMMAND="make perf$(if $(PERF_ARGS), PERF_ARGS='$(PERF_ARGS)')" ./perf/run.sh

perf-ceiling:
	PERF_ARGS='$(PERF_ARGS)' PERF_COMMAND="make perf-ceiling$(if $(PERF_ARGS), PERF_ARGS='$(PERF_ARGS)')" ./perf/ceiling.sh

perf-compare:
	PERF_ARGS='$(PERF_ARGS)' PERF_COMMAND="make perf-compare$(if $(PERF_ARGS), PERF_ARGS='$(PERF_ARGS)')" ./perf/compare.sh

perf-pipeline:
	PERF_ARGS='$(PERF_ARGS)' PERF_COMMAND="make perf-pipeline$(if $(PERF_ARGS), PERF_ARGS='$(PERF_ARGS)')" ./perf/pipeline.sh

# eBPF steering against the kernel's hashing: zero-loss rates and the
# per-loop template cache with many source ports per exporter (needs root).
perf-steer:
	PERF_ARGS='$(PERF_ARGS)' PERF_COMMAND="make perf-steer$(if $(PERF_ARGS), PERF_ARGS='$(PERF_ARGS)')" ./perf/steer.sh

perf-split:
	PERF_ARGS='$(PERF_ARGS)' PERF_COMMAND="make perf-split$(if $(PERF_ARGS), PERF_ARGS='$(PERF_ARGS)')" ./perf/split.sh

# The generator in a network namespace of its own on CPU 1, sending over a
# veth pair to sluice run on CPU 0, then the same over loopback (needs root).
perf-netns:
	PERF_ARGS='$(PERF_ARGS)' PERF_COMMAND="make perf-netns$(if $(PERF_ARGS), PERF_ARGS='$(PERF_ARGS)')" ./perf/netns.sh
