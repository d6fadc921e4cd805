# Sluice build, run and test entry points. `make test` is what CI runs.
SHELL := /bin/bash
GO ?= go
BIN := bin
# Debian packages the tests drive: real exporters, an independent decoder,
# the traffic replayer, network namespace tools, Redis (shared templates) and
# libfixbuf's ipfixDump (a second independent decoder of re-exported IPFIX).
TEST_DEBS := tshark softflowd pmacct nfdump fprobe tcpreplay iproute2 redis-server libfixbuf-tools
FUZZTIME ?= 20s
# package:FuzzTarget pairs run by fuzz-smoke.
FUZZ_TARGETS := \
	./dataplane/ipfix:FuzzMessage \
	./dataplane/ipfix:FuzzTemplateSet \
	./dataplane/ipfix:FuzzNetFlow9 \
	./dataplane/ipfix:FuzzNetFlow5 \
	./dataplane/ipfix:FuzzLists \
	./dataplane/offline/pcap:FuzzReader \
	./dataplane/ring:FuzzRingOps \
	./dataplane/template/redistier:FuzzParseKey \
	./dataplane/template/redistier:FuzzDecodeValue \
	./cmd/sluice:FuzzConfig \
	./dataplane/anon:FuzzParseKey \
	./dataplane/filter:FuzzParse \
	./dataplane/pipeline:FuzzParse

.PHONY: all build run test test-deps bench fuzz-smoke generate lint clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/sluice ./cmd/sluice

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

test: test-deps
	$(GO) vet ./...
	$(GO) test -count=1 ./...
	$(GO) test -count=1 -race ./dataplane/collector/... ./dataplane/ring/... ./dataplane/template/... ./dataplane/mediator/... ./dataplane/pipeline/... ./dataplane/export/...
	$(GO) test -count=1 -run '^$$' -bench . -benchtime=1x ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=5 ./...

fuzz-smoke:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$pkg $$fn for $(FUZZTIME)"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME); \
	done

generate:
	cd dataplane/ipfix && $(GO) generate ./...
	git diff --exit-code -- dataplane/ipfix/ies_iana.go

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) test -count=1 -run 'TestDependencies' ./...

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
