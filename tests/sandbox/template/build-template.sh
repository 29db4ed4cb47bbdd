#!/usr/bin/env bash
# Build the sandbox stand-in for Proxmox's `debian-12-standard_12.12-1_amd64.tar.zst`
# and publish it, with an aplinfo index, into the local appliance mirror.
#
# Usage (as root):
#   tests/sandbox/template/build-template.sh [--force]
#
# Environment:
#   PVE_SANDBOX_MIRROR  appliance mirror dir   (default /var/cache/pve-sandbox/mirror)
#   DEBIAN_MIRROR       Debian archive URL     (default: first .../debian URI in the
#                       host's apt sources, else http://deb.debian.org/debian)
#
# Output:
#   $PVE_SANDBOX_MIRROR/system/debian-12-standard_12.12-1_amd64.tar.zst
#   $PVE_SANDBOX_MIRROR/system/debian-12-standard_12.12-1_amd64.tar.zst.build-info
#   $PVE_SANDBOX_MIRROR/aplinfo-pve-8.dat      (+ .gz, like download.proxmox.com/images)
#
# Cache: if the tarball exists, its sha512 matches the one recorded in build-info
# and the recipe (sha256 of this script) is unchanged, nothing is rebuilt.
#
# What is in the rootfs and why: see LXC-NOTES.md next to this script. In short it is
# debootstrap --variant=minbase plus the packages of Proxmox's debian-12-standard that
# the sandbox needs (systemd-sysv, ifupdown, isc-dhcp-client, ca-certificates,
# iproute2, iputils-ping, netbase, procps, less). The real template also ships
# postfix and openssh-server; they are left out on purpose (build time, no use in the
# sandbox). Nothing the real template lacks (curl, wget, python, busybox, ...) is added.
#
# The template has NO eth0 config: /etc/network/interfaces only holds `lo`, exactly
# like the real one. The sandbox's `pct create`/`pct set -net0` must write, as
# Proxmox's PVE::LXC::Setup::Debian does:
#     auto eth0
#     iface eth0 inet dhcp
# (plus /etc/hostname, /etc/hosts and /etc/resolv.conf, which are left empty here).
set -euo pipefail

PKG_NAME=debian-12-standard
PKG_VERSION=12.12-1
ARCH=amd64
SUITE=bookworm
TEMPLATE="${PKG_NAME}_${PKG_VERSION}_${ARCH}.tar.zst"
LOCATION="system/${TEMPLATE}"
INCLUDE_PKGS=(
    systemd-sysv      # systemd as /sbin/init
    ifupdown          # /etc/network/interfaces, networking.service (PVE's Debian setup writes it)
    isc-dhcp-client   # dhclient, used by ifupdown for `inet dhcp`
    ca-certificates
    iproute2          # ip
    iputils-ping      # ping
    netbase           # /etc/services, /etc/protocols
    procps            # ps, pgrep, free, sysctl
    less
)

MIRROR_DIR="${PVE_SANDBOX_MIRROR:-/var/cache/pve-sandbox/mirror}"
FORCE=0

log() { printf '%s build-template: %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$arg' (only --force is accepted)" ;;
    esac
done

[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap needs it)"

SCRIPT_PATH="$(readlink -f "$0")"
RECIPE_ID="$(sha256sum "$SCRIPT_PATH" | cut -d' ' -f1)"
OUT="${MIRROR_DIR}/${LOCATION}"
INFO="${OUT}.build-info"
APLINFO="${MIRROR_DIR}/aplinfo-pve-8.dat"

detect_debian_mirror() {
    if [[ -n "${DEBIAN_MIRROR:-}" ]]; then
        echo "${DEBIAN_MIRROR%/}"; return
    fi
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -r "$f" ]] || continue
        uri=$(awk 'tolower($1)=="uris:" { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' "$f")
        if [[ -n "$uri" ]]; then echo "${uri%/}"; return; fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r "$f" ]] || continue
        uri=$(awk '$1=="deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\/.*\/debian\/?$/) { print $i; exit } }' "$f")
        if [[ -n "$uri" ]]; then echo "${uri%/}"; return; fi
    done
    echo "http://deb.debian.org/debian"
}

# Read `key=value` from the build-info file.
info_get() { sed -n "s/^$1=//p" "$INFO" 2>/dev/null | head -n1; }

write_aplinfo() {
    local md5 sha512 tmp
    md5="$1"; sha512="$2"
    tmp="$(mktemp "${APLINFO}.tmp.XXXXXX")"
    # Same record layout as http://download.proxmox.com/images/aplinfo-pve-8.dat.
    # PVE::APLInfo requires Package, Type (lxc|openvz), OS, Version and Infopage;
    # Description must be the last field (it swallows the continuation lines).
    cat > "$tmp" <<EOF
Package: ${PKG_NAME}
Version: ${PKG_VERSION}
Type: lxc
OS: debian-12
Section: system
Maintainer: Proxmox Support Team <support@proxmox.com>
Architecture: ${ARCH}
Location: ${LOCATION}
md5sum: ${md5}
sha512sum: ${sha512}
Infopage: https://pve.proxmox.com/wiki/Linux_Container#pct_supported_distributions
Description: Debian 12 Bookworm (standard)
 A small Debian Bookworm system including all standard packages.
 (pve-sandbox build: debootstrap minbase, no postfix/openssh-server.)

EOF
    chmod 0644 "$tmp"
    gzip -9n -c "$tmp" > "${tmp}.gz"
    mv -f "${tmp}.gz" "${APLINFO}.gz"
    mv -f "$tmp" "$APLINFO"
}

mkdir -p "${MIRROR_DIR}/system"

# Serialize concurrent builds (parallel test runs) on the mirror.
exec 9>"${MIRROR_DIR}/.build.lock"
flock 9

# ---- cache check -----------------------------------------------------------------
if [[ $FORCE -eq 0 && -f "$OUT" && -f "$INFO" ]]; then
    rec_sha="$(info_get sha512)"
    rec_md5="$(info_get md5)"
    rec_recipe="$(info_get recipe)"
    if [[ "$rec_recipe" == "$RECIPE_ID" && -n "$rec_sha" ]]; then
        cur_sha="$(sha512sum "$OUT" | cut -d' ' -f1)"
        if [[ "$cur_sha" == "$rec_sha" ]]; then
            # Re-write the index if it is missing or stale; cheap and keeps them in sync.
            if ! grep -qx "sha512sum: ${rec_sha}" "$APLINFO" 2>/dev/null; then
                write_aplinfo "$rec_md5" "$rec_sha"
            fi
            echo "template up to date, skipping rebuild: ${OUT} (sha512 ${rec_sha:0:16}...)"
            exit 0
        fi
        log "recorded sha512 does not match ${OUT}; rebuilding"
    else
        log "build recipe changed; rebuilding"
    fi
fi

# ---- prerequisites ---------------------------------------------------------------
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v zstd >/dev/null || missing+=(zstd)
[[ -r /usr/share/keyrings/debian-archive-keyring.gpg ]] || missing+=(debian-archive-keyring)
if [[ ${#missing[@]} -gt 0 ]]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

DEB_MIRROR="$(detect_debian_mirror)"
START=$SECONDS

WORK="$(mktemp -d "${TMPDIR:-/var/tmp}/pve-sbx-template.XXXXXX")"
ROOTFS="${WORK}/rootfs"
cleanup() {
    # debootstrap may leave proc/sys mounted if it is interrupted.
    local m
    for m in $(awk -v r="$WORK" 'index($2, r) == 1 { print $2 }' /proc/self/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    rm -rf --one-file-system "$WORK"
    rm -f "${OUT}".tmp.* 2>/dev/null || true
}
trap cleanup EXIT

# ---- debootstrap -----------------------------------------------------------------
log "debootstrap ${SUITE} (minbase + ${INCLUDE_PKGS[*]}) from ${DEB_MIRROR}"
include_csv="$(IFS=,; echo "${INCLUDE_PKGS[*]}")"
if ! debootstrap --variant=minbase --arch="$ARCH" --components=main \
        --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
        --include="$include_csv" \
        "$SUITE" "$ROOTFS" "$DEB_MIRROR" > "${WORK}/debootstrap.log" 2>&1; then
    tail -n 30 "${WORK}/debootstrap.log" >&2
    [[ -f "${ROOTFS}/debootstrap/debootstrap.log" ]] && tail -n 30 "${ROOTFS}/debootstrap/debootstrap.log" >&2
    die "debootstrap failed"
fi
log "debootstrap done after $((SECONDS - START))s"

# ---- configure like Proxmox's template -------------------------------------------
R="$ROOTFS"

# apt sources as in the real template (classic sources.list, main contrib).
cat > "$R/etc/apt/sources.list" <<EOF
deb ${DEB_MIRROR} ${SUITE} main contrib

deb ${DEB_MIRROR} ${SUITE}-updates main contrib

# security updates
deb http://security.debian.org ${SUITE}-security main contrib
EOF

# Network: loopback only; pct writes eth0 (see header).
cat > "$R/etc/network/interfaces" <<'EOF'
auto lo
iface lo inet loopback

EOF

# Written by pct at create time.
: > "$R/etc/hostname"
: > "$R/etc/resolv.conf"
chmod 0644 "$R/etc/hostname" "$R/etc/resolv.conf"
cat > "$R/etc/hosts" <<'EOF'
127.0.0.1	localhost

# The following lines are desirable for IPv6 capable hosts
::1	localhost ip6-localhost ip6-loopback
ff02::1	ip6-allnodes
ff02::2	ip6-allrouters
EOF

# Empty machine-id: systemd generates one on first boot (Proxmox ships it empty too).
: > "$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id"

# Locale and timezone.
echo 'LANG=C.UTF-8' > "$R/etc/default/locale"
echo 'Etc/UTC' > "$R/etc/timezone"
ln -sf /usr/share/zoneinfo/Etc/UTC "$R/etc/localtime"

# Containers never have these: avoid failing units at boot. (systemd's own
# ConditionVirtualization/ConditionPathIsReadWrite covers the rest.)
for unit in sys-kernel-config.mount; do
    ln -sf /dev/null "$R/etc/systemd/system/${unit}"
done

# Clean up what debootstrap leaves behind.
chroot "$R" apt-get clean
rm -rf "$R"/var/lib/apt/lists/* "$R"/var/cache/apt/*.bin "$R"/var/cache/debconf/*-old \
       "$R"/var/lib/dpkg/*-old "$R"/var/log/bootstrap.log "$R"/debootstrap
mkdir -p "$R/var/lib/apt/lists/partial"
find "$R/var/log" -type f -exec truncate -s 0 {} +
rm -rf "$R"/tmp/* "$R"/var/tmp/* "$R"/root/.bash_history

# ---- pack ------------------------------------------------------------------------
log "packing ${TEMPLATE}"
TMP_OUT="$(mktemp "${OUT}.tmp.XXXXXX")"
# Entries as ./path like Proxmox's templates; numeric owners (pct extracts with
# --numeric-owner into an id-shifted rootfs); /dev contents excluded (pct skips them).
tar --create --numeric-owner --one-file-system --xattrs --xattrs-include='*' --sparse \
    --exclude='./dev/*' -C "$R" -f - . \
  | zstd -q -T0 -19 -o "$TMP_OUT" -f
chmod 0644 "$TMP_OUT"

MD5="$(md5sum "$TMP_OUT" | cut -d' ' -f1)"
SHA512="$(sha512sum "$TMP_OUT" | cut -d' ' -f1)"
SIZE="$(stat -c %s "$TMP_OUT")"
ROOTFS_KB="$(du -sk --one-file-system "$R" | cut -f1)"

mv -f "$TMP_OUT" "$OUT"
cat > "${INFO}.tmp" <<EOF
template=${TEMPLATE}
recipe=${RECIPE_ID}
md5=${MD5}
sha512=${SHA512}
size=${SIZE}
rootfs_kb=${ROOTFS_KB}
debian_mirror=${DEB_MIRROR}
packages=${include_csv}
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
EOF
mv -f "${INFO}.tmp" "$INFO"
write_aplinfo "$MD5" "$SHA512"

log "done in $((SECONDS - START))s: ${OUT} ($((SIZE / 1024 / 1024)) MiB compressed, $((ROOTFS_KB / 1024)) MiB unpacked)"
echo "$OUT"
