#!/usr/bin/env bash
# `make demo` on a machine without Proxmox: the sandbox PVE node is up (the
# Makefile's `sandbox` target). Start 1ldd on it, ask the API what the node
# offers (GET /v1/host) and run an operation through it (template download);
# then create a Debian 12 container the way 1ld will, start it, wait for its
# DHCP lease and show it running.
#
# Deployments (`1ldctl deploy`, `1ldctl ls`) replace the pct part when they land.
set -euo pipefail
BIN="$(cd "$(dirname "$0")/.." && pwd)/target/sandbox/bin"
export PATH="$BIN:$PATH"
TEMPLATE=local:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst
NAME=demo-netbox-agent
SOCK=/run/1ld/1ld.sock
api() { curl -sS --unix-socket "$SOCK" "$@"; echo; }

bash "$(dirname "$0")/daemon-up.sh"
echo "==> curl --unix-socket $SOCK http://localhost/v1/host"
api http://localhost/v1/host
echo "==> POST /v1/templates (an operation: 202 + Location)"
op=$(curl -sS --unix-socket "$SOCK" -X POST -H 'Content-Type: application/json' \
  -d '{"storage":"local","template":"debian-12-standard_12.12-1_amd64.tar.zst"}' \
  http://localhost/v1/templates)
echo "$op"
id=$(echo "$op" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
echo "==> GET /v1/operations/$id/wait"
api "http://localhost/v1/operations/$id/wait?timeout=60"

vmid=$(pct list | awk -v n="$NAME" 'NR>1 && $NF==n {print $1}' | head -n1)
if [ -z "$vmid" ]; then
  vmid=$(pvesh get /cluster/nextid --vmid 140 2>/dev/null || pvesh get /cluster/nextid)
  echo "==> pct create $vmid ($NAME: 2 cores, 2048 MB, 8 GB, unprivileged, DHCP on vmbr0)"
  pct create "$vmid" "$TEMPLATE" --hostname "$NAME" --cores 2 --memory 2048 --swap 512 \
    --rootfs local-lvm:8 --net0 name=eth0,bridge=vmbr0,ip=dhcp,ip6=manual \
    --unprivileged 1 --features nesting=1 --tags 1ld,1ld-netbox-agent --onboot 1
fi
if ! pct status "$vmid" | grep -q running; then
  echo "==> pct start $vmid"
  pct start "$vmid"
fi
echo "==> waiting for a DHCP lease"
ip=""
for _ in $(seq 1 120); do
  ip=$(pct exec "$vmid" -- ip -4 -o addr show dev eth0 2>/dev/null | awk '{split($4, a, "/"); print a[1]}' | head -n1)
  [ -n "$ip" ] && break
  sleep 0.5
done
[ -n "$ip" ] || { echo "demo: container $vmid got no DHCP lease" >&2; exit 1; }
echo "==> $NAME (CT $vmid) is running at $ip"
pct exec "$vmid" -- systemctl is-system-running || true
echo
pct list
