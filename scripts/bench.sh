#!/usr/bin/env bash
# `make bench`: run every benchmark, print the figures and record them with
# the machine's description in bench/results.md, so runs can be compared.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench
out=bench/results.md
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
{
  echo "# Benchmark results"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "- cpu: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
  echo
  echo "## Command runner overhead"
  echo
  cargo bench -q -p oneld --bench runner
  echo
  echo "## Sandbox node"
  echo
  cargo bench -q -p oneld --bench sandbox
  echo
  echo "## Deploy to healthy vs the floor"
  echo
  cargo bench -q -p oneld --bench deploy 2>/dev/null
  echo
  echo "## Daemon (1ldd)"
  echo
  cargo bench -q -p oneld --bench daemon 2>/dev/null
  echo
  echo "## Client (1ldctl)"
  echo
  cargo bench -q -p oneld --bench cli 2>/dev/null
  echo
  echo "## Backups, restores, verification"
  echo
  cargo bench -q -p oneld --bench backup 2>/dev/null
  echo
  echo "## netbox-agent: scan and sync into NetBox (stateful fake, loopback)"
  echo
  cargo build -q --release -p netbox-agent --bins --examples
  target/release/examples/bench
  echo
  echo "## wikijs-integration: sync into Wiki.js (stateful fake, loopback)"
  echo
  cargo bench -q -p wikijs-integration --bench sync 2>/dev/null
  echo
  echo "## Supervision at scale"
  echo
  cargo bench -q -p oneld --bench supervise 2>/dev/null
} | tee "$tmp"
mv "$tmp" "$out"
trap - EXIT
echo
echo "bench: written to $out"
