# catalyzer — see README.md. Everything here runs as root on Linux.
SHELL := /bin/bash
GO ?= go
export GOTOOLCHAIN ?= auto
BIN := bin/catalyzer

.PHONY: all build deps examples test test-short demo bench fuzz zdtm clean

all: build

deps:
	@bash scripts/install-deps.sh

build:
	$(GO) build -o $(BIN) ./cmd/catalyzer

examples: build
	@bash examples/build.sh

# The whole suite, as CI runs it: unit tests, and the kernel-facing tests
# for real (they need root; without it they skip and say why).
test: deps build examples
	$(GO) mod tidy -diff
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	$(GO) test -p 1 -count=1 -timeout 15m ./...

test-short: build examples
	$(GO) test -short -count=1 ./...

# Build, start the daemon on embedded defaults, deploy and invoke the
# bundled examples, print a latency table, stop.
demo: deps build examples
	@bash scripts/demo.sh

# Fuzz each parser for a short while (FUZZTIME each, default 30s): every
# Fuzz target in the tree, found by name.
FUZZTIME ?= 30s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; $(GO) test $$pkg -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME); \
	  done; \
	done

# CRIU's zdtm static suite against our checkpoint/restore (scripts/zdtm.sh;
# docs/ZDTM.md). CRIU's sources are not ours: give CRIU_SRC (a checkout) or
# CRIU_GIT (a git directory); without either it skips. Not part of test.
zdtm: build
	@bash scripts/zdtm.sh

clean:
	rm -rf bin
