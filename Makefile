# 1ld: the two commands a fresh Debian 12 machine needs, as root, are
# `make demo` and `make test`. Each installs what it needs first.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
SANDBOX_BIN := $(CURDIR)/target/sandbox/bin
SANDBOX_ROOT ?= /var/lib/pve-sandbox
export PVE_SANDBOX_ROOT := $(SANDBOX_ROOT)
PVE_SANDBOX_MIRROR ?= /var/cache/pve-sandbox/mirror
export PVE_SANDBOX_MIRROR
TEMPLATE := debian-12-standard_12.12-1_amd64.tar.zst

.PHONY: help deps build daemon-bin agents-bin fakes-bin sandbox-bin template sandbox sandbox-down demo \
        test test-fast test-sandbox lint fmt bench man clean debs deb deb-old deb-check \
        crash faults fuzz schemathesis

help:
	@echo "make demo          set everything up and run the main job on the sandbox node"
	@echo "make test          every test: lint, fast tier, sandbox tier (root)"
	@echo "make test-fast     cargo test, no root needed"
	@echo "make lint          fmt --check, clippy -D warnings, rustdoc -D warnings, cargo deny"
	@echo "make bench         print the performance figures (bench/results.md)"
	@echo "make crash         the crash campaign: SIGKILL 1ldd mid-operation, 20 trials per kind (root)"
	@echo "make faults        the fault campaign: host commands fail, hang, print garbage; disk full (root)"
	@echo "make fuzz          long fuzzing of every parser and request body, then schemathesis (docs/testing.md)"
	@echo "make schemathesis  schemathesis against /v1/openapi.json through a socat bridge (root)"
	@echo "make man           generate the man pages (1ldctl.1, 1ldd.8) into target/man/"
	@echo "make sandbox       build the sandbox PVE node and bring it up"
	@echo "make sandbox-down  remove every sandbox container, the bridge and dnsmasq"
	@echo "make template      build the Debian 12 template into the appliance mirror"
	@echo "make deb           build target/debian/1ld_<version>_amd64.deb (packaging/README.md)"
	@echo "make deb-check     lintian on the package (no errors, no warnings)"
	@echo "make debs          fetch the nginx proxy's .deb files on the host into target/debs"

deps:
	@bash scripts/install-deps.sh

build:
	$(CARGO) build --workspace --release

# The sandbox node: one multi-call binary linked as pct, pveam, vzdump, ...
sandbox-bin:
	$(CARGO) build --release -p pve-sandbox
	@mkdir -p $(SANDBOX_BIN)
	@cp -f target/release/pve-sandbox $(SANDBOX_BIN)/pve-sandbox
	@$(SANDBOX_BIN)/pve-sandbox install-links $(SANDBOX_BIN)

template: deps
	@bash tests/sandbox/template/build-template.sh

sandbox: deps sandbox-bin template
	$(SANDBOX_BIN)/pve-sandbox up
	$(SANDBOX_BIN)/pveam update
	@$(SANDBOX_BIN)/pveam list local | grep -q $(TEMPLATE) || $(SANDBOX_BIN)/pveam download local $(TEMPLATE)
	@$(SANDBOX_BIN)/pve-sandbox status

sandbox-down:
	@bash scripts/daemon-down.sh
	@bash scripts/fakes-down.sh
	@if [ -x $(SANDBOX_BIN)/pve-sandbox ]; then $(SANDBOX_BIN)/pve-sandbox down; \
	 else echo "sandbox-down: no sandbox binary; nothing to do"; fi
	@# The demo daemon's records describe the containers just removed.
	@rm -rf target/demo/state

daemon-bin:
	$(CARGO) build --release -p oneld --bins

# The agent binaries deploys push into containers ([apps] agents_dir; tests,
# the bench and the demo use target/release).
agents-bin:
	$(CARGO) build --release -p netbox-agent -p wikijs-integration

# Fake NetBox / Wiki.js / Home Assistant replaying recorded transcripts (test
# tooling, never shipped): scripts/fakes-up.sh starts it on the sandbox bridge.
fakes-bin:
	$(CARGO) build --release -p fake-upstreams

# The optional nginx proxy's packages (nginx-common, nginx: what the Debian 12
# template lacks), fetched on the host with apt-get download, verified, digests
# in SHA256SUMS. 1ldd fetches them itself when its [apps] packages_dir lacks
# them; this prefetches for tests and the demo.
DEBS_DIR ?= $(CURDIR)/target/debs
debs: deps
	@DEBS_DIR=$(DEBS_DIR) bash scripts/debs.sh

demo: sandbox daemon-bin agents-bin fakes-bin
	@bash scripts/demo.sh

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --quiet
	$(CARGO) deny check licenses bans sources

fmt:
	$(CARGO) fmt --all

# The Debian package (packaging/README.md): release binaries built here, on
# Debian 12, assembled with dpkg-deb. deb-old repackages the same binaries
# with a lower version so tests/deb.rs can exercise an upgrade.
VERSION := $(shell bash scripts/deb.sh --print-version)
deb: deps
	@bash scripts/deb.sh

deb-old: deb
	@bash scripts/deb.sh --no-build --version $(VERSION)~test1

# lintian: no errors, no warnings (the info-level tags are explained in
# packaging/lintian-notes.md). systemd-analyze verify runs in tests/deb.rs,
# inside the container the package is installed into.
deb-check: deb
	lintian --fail-on error,warning --info target/debian/1ld_$(VERSION)_amd64.deb

# Fast tier: no root, no containers.
test-fast:
	ONELD_REQUIRE_TOOLS=1 $(CARGO) test --workspace --no-fail-fast

# Sandbox tier: real LXC containers, real dnsmasq. Root only; never skips.
test-sandbox: deps sandbox-bin agents-bin template debs deb-old
	ONELD_REQUIRE_TOOLS=1 PVE_SANDBOX_E2E=1 PVE_SANDBOX_BIN_DIR=$(SANDBOX_BIN) $(CARGO) test --workspace --no-fail-fast -- --test-threads=1

test: deps lint deb-check test-fast test-sandbox

# The campaigns in full (make test runs them bounded: 2 crash trials per kind).
# CRASH_SEED=<n> replays a run.
crash: deps sandbox-bin agents-bin template
	ONELD_CRASH_TRIALS=$${CRASH_TRIALS:-20} ONELD_CRASH_SEED=$${CRASH_SEED:-} \
	ONELD_REQUIRE_TOOLS=1 PVE_SANDBOX_E2E=1 PVE_SANDBOX_BIN_DIR=$(SANDBOX_BIN) \
	$(CARGO) test -p oneld --test api crash:: -- --test-threads=1 --nocapture

faults: deps sandbox-bin agents-bin template
	ONELD_REQUIRE_TOOLS=1 PVE_SANDBOX_E2E=1 PVE_SANDBOX_BIN_DIR=$(SANDBOX_BIN) \
	$(CARGO) test -p oneld --test api -- --test-threads=1 --nocapture faults:: root_failures_at_each_step

# Bad input (issue 11, docs/testing.md): every target of tests/fuzz.rs
# with FUZZ_CASES cases (the fast tier runs the same targets with 64), then
# schemathesis.
FUZZ_CASES ?= 20000
fuzz: deps sandbox-bin
	PROPTEST_CASES=$(FUZZ_CASES) $(CARGO) test -p oneld --test fuzz -- --nocapture --test-threads=2
	@$(MAKE) --no-print-directory schemathesis

SCHEMATHESIS_EXAMPLES ?= 100
schemathesis: deps
	MAX_EXAMPLES=$(SCHEMATHESIS_EXAMPLES) bash scripts/schemathesis.sh

bench: deps sandbox-bin agents-bin template
	PVE_SANDBOX_BIN_DIR=$(SANDBOX_BIN) bash scripts/bench.sh

# Man pages, generated by build.rs from the clap definitions
# (src/client/cli.rs, src/daemon/cli.rs) on every build; copied to target/man/.
man:
	$(CARGO) build --release -p oneld --bin 1ldctl --bin 1ldd
	@d=$$(ls -td target/release/build/oneld-*/out/man 2>/dev/null | head -1); \
	 test -n "$$d" || { echo "make man: no generated pages (did build.rs run?)"; exit 1; }; \
	 mkdir -p target/man && cp -f "$$d"/* target/man/ && echo "man pages in target/man:" && ls target/man

clean:
	$(CARGO) clean
