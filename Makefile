# ocivol: the two commands of the README are `make demo` and `make test`.
# Both install the system packages they need on a fresh Debian machine (as root).

SHELL := /bin/bash
CARGO ?= cargo
# runc and a static busybox for the test containers, containerd (with ctr), podman and crun for
# the engine tests, gcc for the LD_PRELOAD library of the hook environment test.
DEB_PACKAGES := runc containerd busybox-static podman crun gcc
# The benchmarks (make bench): hyperfine, GNU time (peak RSS), jq (results), podman (row 6).
BENCH_PACKAGES := runc busybox-static podman hyperfine time jq

# The build target is set in .cargo/config.toml (a static binary, see there).
BIN := target/x86_64-unknown-linux-gnu/debug/ocivol

.PHONY: all deps bench-deps build demo test lint unit clean bench bench-smoke

all: build

## deps: install the Debian packages the demo and the tests run (only those missing).
deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "make deps: missing$$missing; run as root to install them" >&2; exit 1; fi; \
	  echo "installing:$$missing"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi
	@$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy

## bench-deps: what the benchmarks need besides the demo's packages (only those missing).
bench-deps:
	@missing=""; for p in $(BENCH_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "make bench-deps: missing$$missing; run as root to install them" >&2; exit 1; fi; \
	  echo "installing:$$missing"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

build:
	$(CARGO) build

## bench: every benchmark of docs/PERFORMANCE.md with the release build; results in target/bench/
## (results.json, results.md, raw/). Sizes and repeat counts: BENCH_* variables, see bench/lib.sh.
bench: bench-deps
	$(CARGO) build --release
	bash bench/run.sh

## bench-smoke: the same benchmarks with tiny sizes (a few seconds each): they still run, nothing
## is timed against a target that matters.
bench-smoke: bench-deps
	$(CARGO) build --release
	BENCH_QUICK=1 bash bench/run.sh

## demo: containers on real runc sharing copy-on-write, volatile and named volumes, against a
## state root in a temp directory.
demo: deps build
	bash scripts/demo.sh $(BIN)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

## test: fmt, clippy, every test (root-only ones run as root), and no ocivol mount left behind.
test: deps bench-deps lint
	@before=$$(grep -c ocivol /proc/self/mountinfo || true); \
	$(CARGO) test; status=$$?; \
	after=$$(grep -c ocivol /proc/self/mountinfo || true); \
	if [ "$$after" -gt "$$before" ]; then \
	  echo "make test: ocivol mounts grew from $$before to $$after:" >&2; grep ocivol /proc/self/mountinfo >&2; exit 1; \
	fi; \
	exit $$status

clean:
	$(CARGO) clean
