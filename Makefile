# ocivol: the two commands of the README are `make demo` and `make test`.
# Both install the system packages they need on a fresh Debian machine (as root).

SHELL := /bin/bash
CARGO ?= cargo
# runc and a static busybox for the test containers, containerd (with ctr), podman and crun for
# the engine tests, gcc for the LD_PRELOAD library of the hook environment test, protoc for the
# CRI client of tests/kubernetes.rs (the k8s-cri crate compiles Kubernetes' api.proto).
DEB_PACKAGES := runc containerd busybox-static podman crun gcc protobuf-compiler
# The benchmarks (make bench): GNU time (peak RSS), jq (results), podman (row 6), gcc
# (bench/pair.c, which times the commands of a case side by side, and bench/floor.c and
# bench/hop.c, the floors of rows 1 and 8), protoc (row 3's `cargo bench`
# builds the dev-dependencies, the k8s-cri crate among them).
BENCH_PACKAGES := runc busybox-static podman time jq gcc protobuf-compiler

# The build target is set in .cargo/config.toml (a static musl binary, see there); `make
# toolchain` adds it to the rustup toolchain when missing.
TARGET := x86_64-unknown-linux-musl
BIN := target/$(TARGET)/debug/ocivol

RELEASE_BIN := target/$(TARGET)/release/ocivol

# make install: PREFIX, DESTDIR, and the directories below can be set on the command line.
# INSTALL_BIN is the binary to install (default: the release build, built if missing).
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
SYSCONFDIR ?= /etc
SYSTEMDDIR ?= $(PREFIX)/lib/systemd/system
INSTALL_BIN ?= $(RELEASE_BIN)
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
DEB_DIR ?= target/deb

# Everything `make install` puts under DESTDIR, but the config (kept if present).
INSTALLED := $(BINDIR)/ocivol $(BINDIR)/ocivol-runtime \
	$(DATADIR)/ocivol/hooks.d/ocivol.json $(DATADIR)/ocivol/hooks.d/podman/ocivol-precreate.json \
	$(DATADIR)/ocivol/containerd/ocivol.toml $(DATADIR)/ocivol/containerd/ocivol-v3.toml \
	$(DATADIR)/ocivol/crio/99-ocivol.conf $(DATADIR)/ocivol/podman/ocivol.conf \
	$(DATADIR)/ocivol/docker/daemon.json \
	$(SYSTEMDDIR)/ocivol-gc.service $(SYSTEMDDIR)/ocivol-gc.timer \
	$(DATADIR)/bash-completion/completions/ocivol $(DATADIR)/zsh/site-functions/_ocivol \
	$(DATADIR)/fish/vendor_completions.d/ocivol.fish

.PHONY: all deps toolchain bench-deps build release demo test lint unit clean install uninstall deb bench bench-smoke stress chaos runc-suite

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
	@$(MAKE) --no-print-directory toolchain

## toolchain: the Rust standard library for $(TARGET), added with rustup when missing.
toolchain:
	@if ! rustc --print sysroot >/dev/null 2>&1 || \
	    [ ! -d "$$(rustc --print sysroot)/lib/rustlib/$(TARGET)" ]; then \
	  echo "adding the Rust target $(TARGET) (ocivol is a static musl binary)"; \
	  rustup target add $(TARGET); \
	fi

## bench-deps: what the benchmarks need besides the demo's packages (only those missing).
bench-deps:
	@missing=""; for p in $(BENCH_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "make bench-deps: missing$$missing; run as root to install them" >&2; exit 1; fi; \
	  echo "installing:$$missing"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

build: toolchain
	$(CARGO) build

release: $(RELEASE_BIN)

$(RELEASE_BIN): | toolchain
	$(CARGO) build --release

## install: the binary and its runc name, the config (never overwritten; an old config.json is
## converted into config.toml and kept as config.json.old), the hooks.d files and
## the engine drop-ins (under $(DATADIR)/ocivol, not active until copied: see docs/INSTALL.md),
## the gc units, man pages and completions. Paths in the shipped files follow BINDIR.
install: $(INSTALL_BIN)
	install -D -m 0755 $(INSTALL_BIN) $(DESTDIR)$(BINDIR)/ocivol
	ln -sf ocivol $(DESTDIR)$(BINDIR)/ocivol-runtime
	@cfg=$(DESTDIR)$(SYSCONFDIR)/ocivol; \
	if [ -e $$cfg/config.toml ]; then echo "keeping $$cfg/config.toml"; \
	elif [ -e $$cfg/config.json ]; then \
	  $(INSTALL_BIN) config --convert $$cfg/config.json > $$cfg/config.toml.new && chmod 0644 $$cfg/config.toml.new && \
	  mv $$cfg/config.toml.new $$cfg/config.toml && mv $$cfg/config.json $$cfg/config.json.old && \
	  echo "converted $$cfg/config.json (the old format, no longer read) into $$cfg/config.toml; the old file is now $$cfg/config.json.old"; \
	else install -D -m 0644 packaging/config.toml $$cfg/config.toml; fi
	@set -e; for f in hooks.d/ocivol.json:hooks.d/ocivol.json \
	    hooks.d/podman/ocivol-precreate.json:hooks.d/podman/ocivol-precreate.json \
	    packaging/containerd/ocivol.toml:containerd/ocivol.toml \
	    packaging/containerd/ocivol-v3.toml:containerd/ocivol-v3.toml \
	    packaging/crio/99-ocivol.conf:crio/99-ocivol.conf packaging/podman/ocivol.conf:podman/ocivol.conf \
	    packaging/docker/daemon.json:docker/daemon.json; do \
	  src=$${f%%:*}; dst=$(DESTDIR)$(DATADIR)/ocivol/$${f#*:}; \
	  mkdir -p $$(dirname $$dst); sed 's|/usr/local/bin/|$(BINDIR)/|g' $$src > $$dst; chmod 0644 $$dst; \
	done
	@set -e; for u in ocivol-gc.service ocivol-gc.timer; do \
	  mkdir -p $(DESTDIR)$(SYSTEMDDIR); \
	  sed 's|/usr/local/bin/|$(BINDIR)/|g' packaging/systemd/$$u > $(DESTDIR)$(SYSTEMDDIR)/$$u; \
	  chmod 0644 $(DESTDIR)$(SYSTEMDDIR)/$$u; \
	done
	$(INSTALL_BIN) man $(DESTDIR)$(MANDIR)/man1
	mkdir -p $(DESTDIR)$(DATADIR)/bash-completion/completions $(DESTDIR)$(DATADIR)/zsh/site-functions \
	  $(DESTDIR)$(DATADIR)/fish/vendor_completions.d
	$(INSTALL_BIN) completions bash > $(DESTDIR)$(DATADIR)/bash-completion/completions/ocivol
	$(INSTALL_BIN) completions zsh > $(DESTDIR)$(DATADIR)/zsh/site-functions/_ocivol
	$(INSTALL_BIN) completions fish > $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/ocivol.fish

## uninstall: removes what install put there; the config only if it is still the shipped one.
uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED)) $(DESTDIR)$(MANDIR)/man1/ocivol.1 $(DESTDIR)$(MANDIR)/man1/ocivol-*.1
	@if cmp -s packaging/config.toml $(DESTDIR)$(SYSCONFDIR)/ocivol/config.toml; then \
	  rm -f $(DESTDIR)$(SYSCONFDIR)/ocivol/config.toml; rmdir $(DESTDIR)$(SYSCONFDIR)/ocivol 2>/dev/null || true; \
	else [ ! -e $(DESTDIR)$(SYSCONFDIR)/ocivol/config.toml ] || echo "keeping the changed $(DESTDIR)$(SYSCONFDIR)/ocivol/config.toml"; fi
	rm -rf $(DESTDIR)$(DATADIR)/ocivol

## deb: a Debian package of the same files, PREFIX=/usr, in $(DEB_DIR).
deb: $(INSTALL_BIN)
	rm -rf $(DEB_DIR)/root
	$(MAKE) --no-print-directory install DESTDIR=$(abspath $(DEB_DIR))/root PREFIX=/usr SYSCONFDIR=/etc \
	  SYSTEMDDIR=/lib/systemd/system INSTALL_BIN=$(abspath $(INSTALL_BIN))
	mkdir -p $(DEB_DIR)/root/DEBIAN
	sed 's/@VERSION@/$(VERSION)/' packaging/debian/control.in > $(DEB_DIR)/root/DEBIAN/control
	cp packaging/debian/conffiles $(DEB_DIR)/root/DEBIAN/conffiles
	install -m 0755 packaging/debian/postinst $(DEB_DIR)/root/DEBIAN/postinst
	dpkg-deb --root-owner-group --build $(DEB_DIR)/root $(DEB_DIR)/ocivol_$(VERSION)_amd64.deb

## bench: every benchmark of docs/PERFORMANCE.md with the release build; results in target/bench/
## (results.json, results.md, raw/). Sizes and repeat counts: BENCH_* variables, see bench/lib.sh.
bench: bench-deps toolchain
	$(CARGO) build --release
	bash bench/run.sh

## bench-smoke: the same benchmarks with tiny sizes (a few seconds each): they still run, nothing
## is timed against a target that matters.
bench-smoke: bench-deps toolchain
	$(CARGO) build --release
	BENCH_QUICK=1 bash bench/run.sh

## demo: containers on real runc sharing copy-on-write, volatile and named volumes, against a
## state root in a temp directory.
demo: deps build
	bash scripts/demo.sh $(BIN)

lint: toolchain
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

## test: fmt, clippy, every test (root-only ones run as root), and no ocivol mount left behind.
## The whole suite takes about 7 min here; a hung test stops it at TEST_TIMEOUT instead of
## at CI's own limit, with a line that says so.
TEST_TIMEOUT ?= 30m

test: deps bench-deps lint
	@before=$$(grep -cE 'ocivol|/tmp/' /proc/self/mountinfo || true); \
	timeout --kill-after=60 $(TEST_TIMEOUT) $(CARGO) test; status=$$?; \
	if [ "$$status" = 124 ] || [ "$$status" = 137 ]; then \
	  echo "make test: cargo test did not end within $(TEST_TIMEOUT) and was stopped: a test hangs (the one libtest said 'has been running for over 60 seconds' above)" >&2; \
	fi; \
	after=$$(grep -cE 'ocivol|/tmp/' /proc/self/mountinfo || true); \
	if [ "$$after" -gt "$$before" ]; then \
	  echo "make test: ocivol mounts grew from $$before to $$after:" >&2; grep -E 'ocivol|/tmp/' /proc/self/mountinfo >&2; exit 1; \
	fi; \
	exit $$status

## stress: the path-swap race of tests/pinning.rs for 60 s (10 s in make test), both ways in.
stress: deps build
	OCIVOL_RACE_SECONDS=$${OCIVOL_RACE_SECONDS:-60} $(CARGO) test --test pinning \
	  a_swap_race_never_gets_a_container_the_hosts_root -- --nocapture

## chaos: random SIGKILLs (tests/chaos.rs) through every way in (the runtime wrapper, runc with
## the hooks, a private containerd), with gc and the invariants checked after every round:
## CHAOS_N containers per way in and seed (default 100), seeds CHAOS_SEEDS (default 1..5, or a
## list 1,4,9) or one CHAOS_SEED; CHAOS_WAYS=runtime,hooks,containerd picks ways in. make test
## runs the short version (60 containers per way in, a seed from the clock, printed).
chaos: deps build
	CHAOS_N=$${CHAOS_N:-100} CHAOS_SEEDS=$${CHAOS_SEEDS:-1..5} $(CARGO) test --test chaos -- \
	  --nocapture --test-threads=1

## runc-suite: runc's own bats integration suite (from Debian's runc 1.1.5 source package) with
## the suite's runc replaced by `ocivol runtime`, twice: the specs as they are (no ocivol key:
## every command must reach runc untouched) and with an ocivol volume added to each spec; first
## with plain runc as the baseline of this machine. The pass/fail counts and every test whose
## result differs from plain runc's are printed last; RUNC_SUITE_TESTS picks .bats files.
RUNC_SUITE_PACKAGES := runc busybox-static bats jq gawk xz-utils golang-go \
	golang-github-containerd-console-dev golang-github-urfave-cli-dev golang-golang-x-sys-dev \
	golang-github-cyphar-filepath-securejoin-dev
runc-suite: build
	@missing=""; for p in $(RUNC_SUITE_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "make runc-suite: missing$$missing; run as root to install them" >&2; exit 1; fi; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi
	@status=0; for mode in runc plain volumes; do bash scripts/runc-suite.sh $(BIN) $$mode || status=1; done; \
	cat target/runc-suite/summary-runc.txt target/runc-suite/summary-plain.txt target/runc-suite/summary-volumes.txt; \
	exit $$status

clean:
	$(CARGO) clean
