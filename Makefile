# catalyzer — see README.md. Everything here runs as root on Linux.
SHELL := /bin/bash
GO ?= go
export GOTOOLCHAIN ?= auto
BIN := bin/catalyzer

.PHONY: all build deps examples test test-short demo bench bench-oci validate-oci fuzz zdtm clean

all: build

deps:
	@bash scripts/install-deps.sh

# bin/catalyzer-runc is the OCI runtime (runc's command line): a link
# to the same binary, which dispatches on its name.
# The Java agent is rebuilt from its sources when JDK 17 is here (the
# build is reproducible, so the committed jar stays as it is unless a
# source changed); without a JDK the committed jar is embedded as it is.
JAVAC17 := /usr/lib/jvm/java-17-openjdk-amd64/bin/javac
build:
	@if [ -x $(JAVAC17) ]; then sh internal/agent/runtimes/java/build.sh; fi
	$(GO) build -o $(BIN) ./cmd/catalyzer
	$(GO) build -o bin/catalyzer-plot ./cmd/catalyzer-plot
	ln -sf catalyzer bin/catalyzer-runc

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

# ctr run start-to-exit of busybox true: catalyzer-runc against runc
# (and crun when installed), p50/p99, one private containerd, one run.
bench-oci: deps build
	@bash scripts/oci-bench.sh $(or $(N),50)

# The runtime-tools validation suite against catalyzer-runc and runc,
# same run (a few minutes; its own target).
validate-oci: deps build
	@bash scripts/validate-oci.sh

# Fuzz each parser for a short while (FUZZTIME each, default 30s): every
# Fuzz target in the tree, found by name (a package whose tests do not
# build stops it, rather than being passed over), then the count.
FUZZTIME ?= 30s
fuzz:
	@set -e; n=0; for pkg in $$($(GO) list ./...); do \
	  list=$$($(GO) test -list '^Fuzz' $$pkg) || { echo "fuzz: cannot list the targets of $$pkg"; exit 1; }; \
	  for f in $$(echo "$$list" | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; $(GO) test $$pkg -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME); n=$$((n+1)); \
	  done; \
	done; echo "fuzz: $$n targets"

# CRIU's zdtm static suite against our checkpoint/restore (scripts/zdtm.sh;
# docs/ZDTM.md). CRIU's sources are not ours: give CRIU_SRC (a checkout) or
# CRIU_GIT (a git directory); without either it skips. Not part of test.
zdtm: build
	@bash scripts/zdtm.sh

clean:
	rm -rf bin
