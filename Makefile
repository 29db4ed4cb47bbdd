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

.PHONY: help deps build daemon-bin fakes-bin sandbox-bin template sandbox sandbox-down demo \
        test test-fast test-sandbox lint fmt bench clean

help:
	@echo "make demo          set everything up and run the main job on the sandbox node"
	@echo "make test          every test: lint, fast tier, sandbox tier (root)"
	@echo "make test-fast     cargo test, no root needed"
	@echo "make lint          fmt --check, clippy -D warnings, rustdoc -D warnings, cargo deny"
	@echo "make bench         print the performance figures (bench/results.md)"
	@echo "make sandbox       build the sandbox PVE node and bring it up"
	@echo "make sandbox-down  remove every sandbox container, the bridge and dnsmasq"
	@echo "make template      build the Debian 12 template into the appliance mirror"

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
	@if [ -x $(SANDBOX_BIN)/pve-sandbox ]; then $(SANDBOX_BIN)/pve-sandbox down; \
	 else echo "sandbox-down: no sandbox binary; nothing to do"; fi

daemon-bin:
	$(CARGO) build --release -p oneld --bin 1ldd

# Fake NetBox / Wiki.js / Home Assistant replaying recorded transcripts (test
# tooling, never shipped): scripts/fakes-up.sh starts it on the sandbox bridge.
fakes-bin:
	$(CARGO) build --release -p fake-upstreams

demo: sandbox daemon-bin
	@bash scripts/demo.sh

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --quiet
	$(CARGO) deny check licenses bans sources

fmt:
	$(CARGO) fmt --all

# Fast tier: no root, no containers.
test-fast:
	$(CARGO) test --workspace

# Sandbox tier: real LXC containers, real dnsmasq. Root only; never skips.
test-sandbox: deps sandbox-bin template
	PVE_SANDBOX_E2E=1 PVE_SANDBOX_BIN_DIR=$(SANDBOX_BIN) $(CARGO) test --workspace -- --test-threads=1

test: deps lint test-fast test-sandbox

bench: deps sandbox-bin template
	PVE_SANDBOX_BIN_DIR=$(SANDBOX_BIN) bash scripts/bench.sh

clean:
	$(CARGO) clean
