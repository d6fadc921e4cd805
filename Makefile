# Sluice build, run and test entry points. `make test` is what CI runs.
SHELL := /bin/bash
GO ?= go
BIN := bin
# Debian packages the tests drive: real exporters, an independent decoder,
# the traffic replayer, network namespace tools, Redis (shared templates) and
# libfixbuf's ipfixDump (a second independent decoder of re-exported IPFIX),
# libzmq (sluice-api links it through cgo), chromium (the status page test
# drives it headless) and dnsmasq (a real DNS server for --collectors-dns).
TEST_DEBS := tshark softflowd pmacct nfdump fprobe tcpreplay iproute2 redis-server libfixbuf-tools libzmq3-dev dbus-daemon dbus-bin chromium dnsmasq-base
FUZZTIME ?= 20s
# package:FuzzTarget pairs run by fuzz-smoke.
FUZZ_TARGETS := \
	./dataplane/ipfix:FuzzMessage \
	./dataplane/ipfix:FuzzTemplateSet \
	./dataplane/ipfix:FuzzNetFlow9 \
	./dataplane/ipfix:FuzzNetFlow5 \
	./dataplane/ipfix:FuzzLists \
	./dataplane/offline/pcap:FuzzReader \
	./dataplane/meter:FuzzPacket \
	./dataplane/ring:FuzzRingOps \
	./dataplane/template/redistier:FuzzParseKey \
	./dataplane/template/redistier:FuzzDecodeValue \
	./controlplane/node:FuzzConfig \
	./dataplane/anon:FuzzParseKey \
	./dataplane/filter:FuzzParse \
	./dataplane/pipeline:FuzzParse \
	./dataplane/entry:FuzzParse
# Packages under testdata/ are in the module but outside ./... patterns.
VET_EXTRA := ./testdata/exporters/...
# Files `make generate` writes; committed, so regenerating must not change them.
GENERATED := dataplane/ipfix/ies_iana.go dataplane/ipfix/ies_vendor.go

.PHONY: all build run test test-deps check fmt-check vet tidy-check deps-check bench fuzz-smoke generate lint clean

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

test: test-deps check
	$(GO) test -count=1 ./...
	$(GO) test -count=1 -race ./dataplane/collector/... ./dataplane/ring/... ./dataplane/template/... ./dataplane/mediator/... ./dataplane/pipeline/... ./dataplane/export/...
	$(GO) test -count=1 -run '^$$' -bench . -benchtime=1x ./...

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

# The generator reads IANA's registry and the vendor element lists from the
# shared folder beside the repository (../shared/data/iana/ipfix.xml,
# ../shared/data/vendor-ies/).
generate:
	cd dataplane/ipfix && $(GO) generate ./...
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
.PHONY: perf perf-ceiling perf-compare perf-pipeline
perf:
	PERF_ARGS='$(PERF_ARGS)' PERF_COMMAND="make perf$(if $(PERF_ARGS), PERF_ARGS='$(PERF_ARGS)')" ./perf/run.sh

perf-ceiling:
	PERF_ARGS='$(PERF_ARGS)' PERF_COMMAND="make perf-ceiling$(if $(PERF_ARGS), PERF_ARGS='$(PERF_ARGS)')" ./perf/ceiling.sh

perf-compare:
	PERF_ARGS='$(PERF_ARGS)' PERF_COMMAND="make perf-compare$(if $(PERF_ARGS), PERF_ARGS='$(PERF_ARGS)')" ./perf/compare.sh

perf-pipeline:
	PERF_ARGS='$(PERF_ARGS)' PERF_COMMAND="make perf-pipeline$(if $(PERF_ARGS), PERF_ARGS='$(PERF_ARGS)')" ./perf/pipeline.sh
