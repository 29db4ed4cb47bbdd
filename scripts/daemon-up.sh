#!/usr/bin/env bash
# Starts 1ldd for the demo on the sandbox node, as the .deb's service would:
# groups `1ld`/`1ld-admin`, socket /run/1ld/1ld.sock, the sandbox's tools as
# `[pve] bin_dir`. State lives under target/demo. Idempotent: a running demo
# daemon is left alone. Stop it with scripts/daemon-down.sh (make sandbox-down does).
set -euo pipefail
TOP="$(cd "$(dirname "$0")/.." && pwd)"
DEMO="$TOP/target/demo"
mkdir -p "$DEMO"
for g in 1ld 1ld-admin; do
  getent group "$g" >/dev/null || groupadd --system "$g"
done
cat > "$DEMO/1ld.toml" <<CONF
state_dir = "$DEMO/state"
[pve]
bin_dir = "$TOP/target/sandbox/bin"
[apps]
agents_dir = "$TOP/target/release"
[supervise]
# The sandbox node's container configs and LXC path (a Proxmox node's are
# the defaults /etc/pve/lxc and /var/lib/lxc).
ct_config_dir = "${PVE_SANDBOX_ROOT:-/var/lib/pve-sandbox}/etc/pve/lxc"
lxc_path = "${PVE_SANDBOX_ROOT:-/var/lib/pve-sandbox}/lxc"
CONF
"$TOP/target/release/1ldd" --config "$DEMO/1ld.toml" --check-config >/dev/null
if [ -f "$DEMO/1ldd.pid" ] && kill -0 "$(cat "$DEMO/1ldd.pid")" 2>/dev/null; then
  echo "==> 1ldd already running (pid $(cat "$DEMO/1ldd.pid"))"
  exit 0
fi
echo "==> starting 1ldd (log: $DEMO/1ldd.log)"
setsid "$TOP/target/release/1ldd" --config "$DEMO/1ld.toml" </dev/null >>"$DEMO/1ldd.log" 2>&1 &
echo $! > "$DEMO/1ldd.pid"
for _ in $(seq 1 100); do
  curl -sf --unix-socket /run/1ld/1ld.sock http://localhost/ >/dev/null 2>&1 && exit 0
  kill -0 "$(cat "$DEMO/1ldd.pid")" 2>/dev/null || { echo "1ldd exited; see $DEMO/1ldd.log" >&2; tail -5 "$DEMO/1ldd.log" >&2; exit 1; }
  sleep 0.1
done
echo "1ldd did not answer on /run/1ld/1ld.sock; see $DEMO/1ldd.log" >&2
exit 1
