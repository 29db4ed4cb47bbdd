#!/usr/bin/env bash
# Install everything `make test`, `make demo` and `make bench` need on a fresh
# Debian 12 machine, as root, without prompts. Idempotent: a second run only
# checks.
set -euo pipefail

APT_PACKAGES=(
  lxc            # lxc-start/lxc-attach/lxc-usernsexec: the sandbox's containers
  uidmap         # newuidmap/newgidmap for unprivileged containers
  dnsmasq-base   # DHCP on the sandbox bridge
  debootstrap    # builds the Debian 12 template
  zstd gzip lzop # vzdump compressors and the template format
  iproute2       # bridge and veth management, `ip -json addr` in a CT's netns
  util-linux     # nsenter, flock
  tar rsync ca-certificates
  curl           # the demo talks to the API socket with curl --unix-socket
  build-essential pkg-config
  dpkg-dev       # dpkg-shlibdeps for the .deb's Depends (make deb)
  lintian        # make deb-check
  git            # wikijs-integration's tests build real repositories
  lighttpd       # ...and serve them over HTTP(S) with git http-backend
  socat          # make schemathesis bridges the API socket to 127.0.0.1
  python3-venv   # ...and installs schemathesis into a venv under target/
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: must run as root (it installs apt packages)" >&2
  exit 1
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q </dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
fi

# The toolchain is pinned by rust-toolchain.toml; rustup installs it on first use.
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "install-deps: cargo not found; install rustup first (https://rustup.rs)" >&2
    exit 1
  fi
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# The lint gate's licence/ban/source check. Built from crates.io (~3 min once).
if ! cargo deny --version >/dev/null 2>&1; then
  echo "install-deps: installing cargo-deny"
  cargo install --locked cargo-deny --version 0.20.2 </dev/null
fi

# promtool (`promtool check metrics` validates GET /metrics in the tests),
# taken out of Debian's prometheus package without installing the server.
tools="$(cd "$(dirname "$0")/.." && pwd)/target/tools"
if [ ! -x "$tools/promtool" ]; then
  echo "install-deps: extracting promtool from Debian's prometheus package"
  work="$(mktemp -d)"; chmod 0755 "$work"
  (cd "$work" && apt-get download prometheus </dev/null >/dev/null)
  dpkg-deb -x "$work"/prometheus_*.deb "$work/x"
  mkdir -p "$tools"
  install -m 0755 "$work/x/usr/bin/promtool" "$tools/promtool"
  rm -rf "$work"
fi

# Unprivileged containers map root to 100000..165535, as on Proxmox VE.
for f in /etc/subuid /etc/subgid; do
  grep -q '^root:100000:65536$' "$f" 2>/dev/null || echo 'root:100000:65536' >> "$f"
done
echo "install-deps: ok"
