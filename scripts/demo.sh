#!/usr/bin/env bash
# `make demo` on a machine without Proxmox. The sandbox PVE node is up (the
# Makefile's `sandbox` target) and the binaries are built. This starts 1ldd
# on it, starts the fake NetBox and Wiki.js on the sandbox bridge (they
# replay recorded transcripts of the real servers; the containers reach them,
# nothing else is contacted), deploys both agents with 1ldctl and shows
# `1ldctl ls`. Idempotent: deployments that exist are left alone.
set -euo pipefail
TOP="$(cd "$(dirname "$0")/.." && pwd)"
DEMO="$TOP/target/demo"
export PATH="$TOP/target/release:$TOP/target/sandbox/bin:$PATH"
export ONELD_SOCKET=/run/1ld/1ld.sock

bash "$TOP/scripts/daemon-up.sh"
bash "$TOP/scripts/fakes-up.sh"
subnet=$(sed -n 's/^subnet:[[:space:]]*//p' "${PVE_SANDBOX_ROOT:-/var/lib/pve-sandbox}/etc/sandbox.conf" | tail -n1)
host="${subnet%.*}.1"

echo
echo "==> 1ldctl host"
1ldctl host

deploy() { # app, then deploy arguments
  local app=$1; shift
  local rc=0
  1ldctl status "$app" >/dev/null 2>&1 || rc=$?
  case $rc in
    0) echo "==> $app is already deployed" ;;
    3) echo
       echo "==> 1ldctl deploy $app $*"
       1ldctl deploy "$app" --name "$app" "$@" ;;
    *) 1ldctl status "$app"; exit "$rc" ;;  # not "not found": show why and stop
  esac
}
deploy netbox-agent --set "netbox_url=http://$host:8000" --secret "netbox_token=@$DEMO/netbox-token"
deploy wikijs-integration --set "wikijs_url=http://$host:3000" --secret "wikijs_api_key=@$DEMO/wikijs-key"

echo
echo "==> 1ldctl ls"
1ldctl ls
echo
# Supervision picks new deployments up within 10 s; show its first verdict.
for _ in $(seq 1 30); do
  1ldctl --json health netbox-agent 2>/dev/null | grep -q '"state": *"starting"' || break
  sleep 1
done
echo "==> 1ldctl health netbox-agent"
1ldctl health netbox-agent
echo
echo "Try: 1ldctl status netbox-agent | 1ldctl health wikijs-integration | 1ldctl ops | 1ldctl events -f   (ONELD_SOCKET=$ONELD_SOCKET)"
echo "Stop everything: make sandbox-down"
