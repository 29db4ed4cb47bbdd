#!/usr/bin/env bash
# Smoke test: boot the sandbox template as an unprivileged LXC container with DHCP
# from a private dnsmasq, check what the sandbox relies on, then remove everything.
# This is the executable form of the recipe in LXC-NOTES.md.
#
# Usage (as root):  tests/sandbox/template/probe-lxc.sh
# Env: PVE_SANDBOX_MIRROR (template location, as build-template.sh), PROBE_KEEP=1 to
#      leave the container running for inspection (then clean up by re-running with
#      PROBE_CLEAN_ONLY=1), DNSMASQ_EXTRA=--no-ping to skip dnsmasq's 3 s ping check.
set -euo pipefail

MIRROR_DIR="${PVE_SANDBOX_MIRROR:-/var/cache/pve-sandbox/mirror}"
TPL="${MIRROR_DIR}/system/debian-12-standard_12.12-1_amd64.tar.zst"
P=/tmp/lxc-probe            # private lxcpath
BR=sbxprobe0
NET=10.213.9
VMID=140
MAC=BC:24:11:0A:01:40
A=(lxc-attach -P "$P" -n "$VMID" --clear-env --)

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
ok() { echo "OK   $*"; }
fail() { echo "FAIL $*"; FAILED=1; }
FAILED=0

cleanup() {
    lxc-stop -P "$P" -n "$VMID" --kill >/dev/null 2>&1 || true
    lxc-destroy -P "$P" -n "$VMID" >/dev/null 2>&1 || true
    if [[ -f "$P/dnsmasq.pid" ]]; then kill "$(cat "$P/dnsmasq.pid")" 2>/dev/null || true; fi
    ip link del "$BR" 2>/dev/null || true
    rm -rf --one-file-system "$P"
    # Empty parent cgroups LXC leaves behind (only if no other container uses them).
    for d in /sys/fs/cgroup/*/lxc/"$VMID"/ns /sys/fs/cgroup/*/lxc/"$VMID" /sys/fs/cgroup/*/lxc.monitor/"$VMID" \
             /sys/fs/cgroup/*/lxc /sys/fs/cgroup/*/lxc.monitor /sys/fs/cgroup/*/lxc.pivot; do
        [[ -d "$d" ]] && rmdir "$d" 2>/dev/null || true
    done
}
if [[ "${PROBE_CLEAN_ONLY:-0}" == 1 ]]; then cleanup; exit 0; fi
[[ "${PROBE_KEEP:-0}" == 1 ]] || trap cleanup EXIT
[[ -f "$TPL" ]] || { echo "template missing: $TPL (run build-template.sh)"; exit 1; }
cleanup

# 1. subordinate ids for root
grep -qx 'root:100000:65536' /etc/subuid || echo 'root:100000:65536' >> /etc/subuid
grep -qx 'root:100000:65536' /etc/subgid || echo 'root:100000:65536' >> /etc/subgid

# 2. bridge + dnsmasq
mkdir -p "$P/$VMID/rootfs"
ip link add "$BR" type bridge
ip addr add "$NET.1/24" dev "$BR"
ip link set "$BR" up
dnsmasq --conf-file=/dev/null --strict-order --bind-interfaces --interface="$BR" \
    --except-interface=lo --listen-address="$NET.1" --dhcp-range="$NET.100,$NET.200,12h" \
    --dhcp-leasefile="$P/dnsmasq.leases" --pid-file="$P/dnsmasq.pid" --no-resolv ${DNSMASQ_EXTRA:-}

# 3. extract, shifted by 100000 (tar runs as root of a user namespace mapped to 100000)
chown 100000:100000 "$P/$VMID/rootfs"
t=$(date +%s%N)
zstd -q -dc "$TPL" | lxc-usernsexec -m b:0:100000:65536 -- \
    tar xpf - --numeric-owner --sparse --xattrs --xattrs-include='user.*' \
        --xattrs-include='security.capability' --warning=no-file-ignored \
        --warning=no-xattr-write --anchored --exclude='./dev/*' -C "$P/$VMID/rootfs"
echo "TIME extract: $(ms "$t") ms"

# 4. what pct create writes into the rootfs (as the container's root, so ids stay shifted)
R="$P/$VMID/rootfs"
lxc-usernsexec -m b:0:100000:65536 -- sh -c "
    printf 'auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n' > '$R/etc/network/interfaces'
    echo probe$VMID > '$R/etc/hostname'
    printf '127.0.0.1\tlocalhost\n127.0.1.1\tprobe$VMID\n' > '$R/etc/hosts'
    echo 'nameserver $NET.1' > '$R/etc/resolv.conf'"

# 5. LXC config
cat > "$P/$VMID/config" <<EOF
lxc.arch = amd64
lxc.include = /usr/share/lxc/config/common.conf
lxc.include = /usr/share/lxc/config/userns.conf
# features: nesting=1
lxc.include = /usr/share/lxc/config/nesting.conf
lxc.apparmor.profile = unconfined
lxc.cap.drop = sys_rawio
lxc.mount.auto = proc:mixed sys:mixed cgroup:mixed
lxc.idmap = u 0 100000 65536
lxc.idmap = g 0 100000 65536
lxc.rootfs.path = dir:$P/$VMID/rootfs
lxc.uts.name = probe$VMID
lxc.cgroup.dir.monitor = lxc.monitor/$VMID
lxc.cgroup.dir.container = lxc/$VMID
lxc.cgroup.dir.container.inner = ns
lxc.cgroup.memory.limit_in_bytes = 536870912
lxc.net.0.type = veth
lxc.net.0.link = $BR
lxc.net.0.veth.pair = veth${VMID}i0
lxc.net.0.name = eth0
lxc.net.0.hwaddr = $MAC
lxc.net.0.flags = up
lxc.net.0.mtu = 1500
lxc.console.logfile = $P/$VMID/console.log
EOF

# 6. start; time to lease and to systemd running
t=$(date +%s%N)
lxc-start -P "$P" -n "$VMID" -l INFO -o "$P/$VMID/lxc.log"
echo "TIME lxc-start returned: $(ms "$t") ms"
PID=$(lxc-info -P "$P" -n "$VMID" -pH)
IP=""
for _ in $(seq 1 500); do
    IP=$(nsenter -t "$PID" -n ip -4 -o addr show eth0 2>/dev/null | awk '{print $4}' | cut -d/ -f1)
    [[ -n "$IP" ]] && break; sleep 0.02
done
echo "TIME lxc-start -> eth0 has DHCP address $IP: $(ms "$t") ms"
st=""
for _ in $(seq 1 600); do
    st=$("${A[@]}" systemctl is-system-running 2>/dev/null) || true
    [[ "$st" == running || "$st" == degraded ]] && break; sleep 0.05
done
echo "TIME lxc-start -> systemctl is-system-running=$st: $(ms "$t") ms"

# 7. checks
[[ "$("${A[@]}" ps -o comm= -p 1)" == systemd ]] && ok "systemd is PID 1" || fail "PID 1"
[[ "$st" == running ]] && ok "system running" || fail "system state $st: $("${A[@]}" systemctl --failed --no-legend --plain)"
grep -qi "$MAC.*$IP" "$P/dnsmasq.leases" && ok "dnsmasq lease $IP" || fail "lease: $(cat "$P/dnsmasq.leases")"
set +e
"${A[@]}" sh -c 'exit 42'; rc=$?
set -e
[[ $rc -eq 42 ]] && ok "lxc-attach exit code" || fail "attach rc=$rc"
[[ "$(echo ping-stdin | "${A[@]}" cat)" == ping-stdin ]] && ok "lxc-attach stdin" || fail "stdin"
"${A[@]}" logger -t sbxprobe hello-journal
jl=""
for _ in $(seq 1 50); do
    jl=$("${A[@]}" journalctl -b --no-pager -o cat -t sbxprobe 2>/dev/null) || true
    [[ "$jl" == *hello-journal* ]] && break; sleep 0.1
done
[[ "$jl" == *hello-journal* ]] && ok "journald (logger -> journalctl)" || fail "journald: $jl"
"${A[@]}" ping -c1 -W2 "$NET.1" >/dev/null && ok "ping host (file caps survive shift)" || fail "ping"

# HTTP server made from template tools only: systemd socket activation + bash.
"${A[@]}" sh -c 'cat > /usr/local/bin/http-hello && chmod 755 /usr/local/bin/http-hello' <<'EOF'
#!/bin/bash
read -r method path proto
while IFS= read -r h; do h=${h%$'\r'}; [ -z "$h" ] && break; done
body="hello from $(hostname) path=${path}"$'\n'
printf 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' "${#body}" "$body"
EOF
"${A[@]}" sh -c 'cat > /etc/systemd/system/http-hello.socket' <<'EOF'
[Socket]
ListenStream=80
Accept=yes
[Install]
WantedBy=sockets.target
EOF
"${A[@]}" sh -c 'cat > /etc/systemd/system/http-hello@.service' <<'EOF'
[Service]
ExecStart=/usr/local/bin/http-hello
StandardInput=socket
StandardOutput=socket
StandardError=journal
EOF
"${A[@]}" systemctl daemon-reload
"${A[@]}" systemctl enable --now -q http-hello.socket
if command -v curl >/dev/null; then
    body=$(curl -sS -m 5 "http://$IP/probe")
else
    exec 3<>"/dev/tcp/$IP/80"; printf 'GET /probe HTTP/1.0\r\n\r\n' >&3; body=$(cat <&3); exec 3<&-
fi
[[ "$body" == *"hello from probe$VMID path=/probe"* ]] && ok "HTTP from host to $IP:80" || fail "http: $body"

"${A[@]}" unshare -Upfrm --mount-proc true && ok "nested userns+pidns+proc (nesting)" || fail "nesting"

lxc-freeze -P "$P" -n "$VMID"
[[ "$(lxc-info -P "$P" -n "$VMID" -sH)" == FROZEN ]] && ok "freeze" || fail "freeze"
lxc-unfreeze -P "$P" -n "$VMID"
[[ "$(lxc-info -P "$P" -n "$VMID" -sH)" == RUNNING ]] && ok "unfreeze" || fail "unfreeze"

t=$(date +%s%N); lxc-stop -P "$P" -n "$VMID" -t 30
echo "TIME clean lxc-stop (shutdown): $(ms "$t") ms"
lxc-start -P "$P" -n "$VMID" -l INFO -o "$P/$VMID/lxc.log"
t=$(date +%s%N); lxc-stop -P "$P" -n "$VMID" --kill
echo "TIME lxc-stop --kill: $(ms "$t") ms"
[[ "$(lxc-info -P "$P" -n "$VMID" -sH)" == STOPPED ]] && ok "stopped" || fail "stop"

if [[ "${PROBE_KEEP:-0}" == 1 ]]; then
    lxc-start -P "$P" -n "$VMID"; echo "kept running; PROBE_CLEAN_ONLY=1 $0 to remove"; exit "$FAILED"
fi
lxc-destroy -P "$P" -n "$VMID"
[[ ! -e "$P/$VMID" ]] && ok "destroy removed $P/$VMID" || fail "destroy left $P/$VMID"
! ip link show "veth${VMID}i0" >/dev/null 2>&1 && ok "veth gone" || fail "veth left"
exit "$FAILED"
