#!/usr/bin/env bash
# schemathesis against the daemon's own OpenAPI document (issue 11, "Bad
# input"): a private 1ldd on a private sandbox node (tools only, no
# containers), its Unix socket bridged to 127.0.0.1 by socat, schemathesis
# (PyPI, in a venv under target/) generating requests for every operation.
# Checks: no 5xx, status codes / content types / bodies conform to the
# schema. Bounded by MAX_EXAMPLES per operation (default 25).
#
# Needs root (1ldd refuses to start without the capabilities pct needs).
# Usage: scripts/schemathesis.sh   (make schemathesis)
# Env: MAX_EXAMPLES, SCHEMATHESIS_VERSION, SCHEMATHESIS_SEED,
# PVE_SANDBOX_BIN_DIR (a dir with pve-sandbox; default: make sandbox-bin's
# target/sandbox/bin, else a debug build), ONELDD (a 1ldd binary; default:
# a debug build), KEEP_WORK=1 (keep the temp dir with 1ldd's log).
set -euo pipefail
TOP="$(cd "$(dirname "$0")/.." && pwd)"
cd "$TOP"
CARGO="${CARGO:-cargo}"
TARGET="${CARGO_TARGET_DIR:-$TOP/target}"
MAX_EXAMPLES="${MAX_EXAMPLES:-25}"
SCHEMATHESIS_VERSION="${SCHEMATHESIS_VERSION:-4.32.5}"
SEED="${SCHEMATHESIS_SEED:-1}"
VENV="$TARGET/schemathesis-venv"

[ "$(id -u)" = 0 ] || { echo "schemathesis.sh: run as root (1ldd needs its capabilities)" >&2; exit 1; }
command -v socat >/dev/null || { echo "schemathesis.sh: socat missing (make deps)" >&2; exit 1; }

# --- binaries ---------------------------------------------------------------
if [ -z "${ONELDD:-}" ]; then
  "$CARGO" build -q -p oneld --bin 1ldd
  ONELDD="$TARGET/debug/1ldd"
fi
SANDBOX=""
for c in "${PVE_SANDBOX_BIN_DIR:-/nonexistent}/pve-sandbox" "$TOP/target/sandbox/bin/pve-sandbox"; do
  if [ -x "$c" ]; then SANDBOX="$c"; break; fi
done
if [ -z "$SANDBOX" ]; then
  "$CARGO" build -q -p pve-sandbox
  SANDBOX="$TARGET/debug/pve-sandbox"
fi

# --- schemathesis -------------------------------------------------------------
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# --- a private sandbox node and daemon (as tests/daemon/mod.rs SandboxTools) ----
WORK="$(mktemp -d /tmp/1ld-schemathesis.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP_WORK:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
ROOT="$WORK/sbx"; MIRROR="$WORK/mirror"; BIN="$WORK/pvebin"
mkdir -p "$ROOT/etc/pve" "$ROOT/var/lib/vz" "$ROOT/ctdata" "$MIRROR/system" "$BIN" "$WORK/run"
printf 'node: pve\npve-major: 9\nbridge: vmbr1ldt\nsubnet: 10.231.0.0/24\n' > "$ROOT/etc/sandbox.conf"
printf 'dir: local\n\tpath %s\n\tcontent backup,iso,vztmpl\n\ndir: ctdata\n\tpath %s\n\tcontent rootdir,images\n' \
  "$ROOT/var/lib/vz" "$ROOT/ctdata" > "$ROOT/etc/pve/storage.cfg"
TINY=tiny-1ldt_1.0-1_amd64.tar.zst
echo "not really a template" > "$MIRROR/system/$TINY"
SHA="$(sha512sum "$MIRROR/system/$TINY" | cut -d' ' -f1)"
cat > "$MIRROR/aplinfo-pve-8.dat" <<APL
Package: tiny-1ldt
Version: 1.0-1
Type: lxc
OS: debian-12
Section: system
Maintainer: 1ld tests
Architecture: amd64
Location: system/$TINY
sha512sum: $SHA
Infopage: https://example.invalid/
Description: tiny test template

APL
for tool in pct pveam pvesm pvesh pveversion vzdump; do
  printf '#!/bin/sh\nPVE_SANDBOX_ROOT=%q PVE_SANDBOX_MIRROR=%q exec %q %s "$@"\n' \
    "$ROOT" "$MIRROR" "$SANDBOX" "$tool" > "$BIN/$tool"
  chmod 755 "$BIN/$tool"
done
"$BIN/pveam" update | grep -q "update successful"
mkdir -p "$WORK/agents"
for a in netbox-agent wikijs-integration; do printf '#!/bin/false\n' > "$WORK/agents/$a"; chmod 755 "$WORK/agents/$a"; done
GROUP="$(id -gn)"
cat > "$WORK/1ld.toml" <<CONF
state_dir = "$WORK/state"
[api]
socket = "$WORK/run/1ld.sock"
group = "$GROUP"
admin_group = "$GROUP"
[pve]
bin_dir = "$BIN"
node = "pve"
command_timeout_secs = 10
long_command_timeout_secs = 20
[apps]
agents_dir = "$WORK/agents"
storage = "ctdata"
[ops]
shutdown_grace_secs = 5
# A target, so the notification routes reach their handlers (port 9 of
# 127.0.0.1: deliveries fail at once, they are never sent anywhere).
[notify.targets.hook]
kind = "webhook"
url = "http://127.0.0.1:9/hook"
CONF
# ...and schemathesis is told its name.
cat > "$WORK/schemathesis.toml" <<ST
[[operations]]
include-path-regex = "^/v1/notifications/targets/"
parameters = { name = "hook" }
ST
"$ONELDD" --config "$WORK/1ld.toml" </dev/null >"$WORK/1ldd.log" 2>&1 &
DPID=$!
PIDS+=("$DPID")
for _ in $(seq 1 200); do
  [ -S "$WORK/run/1ld.sock" ] && break
  kill -0 "$DPID" 2>/dev/null || { echo "1ldd exited:" >&2; cat "$WORK/1ldd.log" >&2; exit 1; }
  sleep 0.05
done
# A free loopback port for the bridge.
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
socat "TCP-LISTEN:$PORT,bind=127.0.0.1,reuseaddr,fork" "UNIX-CONNECT:$WORK/run/1ld.sock" &
PIDS+=("$!")
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/" >/dev/null 2>&1 && break
  sleep 0.05
done
curl -sf "http://127.0.0.1:$PORT/v1/openapi.json" -o "$WORK/openapi.json"

echo "==> schemathesis $SCHEMATHESIS_VERSION: $MAX_EXAMPLES examples per operation, seed $SEED"
set +e
# (schemathesis keeps its example database in the working directory.)
cd "$WORK"
"$VENV/bin/schemathesis" --config-file "$WORK/schemathesis.toml" run "$WORK/openapi.json" \
  --url "http://127.0.0.1:$PORT" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "$MAX_EXAMPLES" \
  --seed "$SEED" \
  --exclude-path "/v1/events" \
  --exclude-path "/v1/deployments/{name}/logs" \
  --request-timeout 20 \
  --no-color \
  --report junit --report-dir "$TARGET/schemathesis-report" \
  --generation-database none \
  2>&1 | tee "$WORK/schemathesis.out"
rc=${PIPESTATUS[0]}
set -e
kill -0 "$DPID" 2>/dev/null || { echo "1ldd died during the run:" >&2; tail -30 "$WORK/1ldd.log" >&2; exit 1; }
if grep -q "panicked" "$WORK/1ldd.log"; then
  echo "1ldd logged a panic:" >&2; grep -n -A5 panicked "$WORK/1ldd.log" >&2; exit 1
fi
cp "$WORK/schemathesis.out" "$TARGET/schemathesis-report/last-run.txt" 2>/dev/null || true
exit "$rc"
