#!/usr/bin/env bash
# Prefetches the .deb files of the optional nginx proxy ([apps] proxy_packages:
# nginx-common and nginx) into a package cache, as 1ldd would on first use:
# `apt-get download` on the host (apt checks each file against its signed
# index), every file checked with `dpkg-deb --info`, its SHA-256 recorded in
# SHA256SUMS (the format 1ldd reads). Idempotent: present, recorded files are
# only re-checked. Containers need no network: 1ldd pushes these files.
#
#   scripts/debs.sh [DIR]          DIR default: $DEBS_DIR or target/debs
#   scripts/debs.sh --compute      print what the Debian 12 template lacks for
#                                  nginx (apt-get -s against the template's
#                                  dpkg status), i.e. the package set above
#
# Environment: DEBS_DIR, PVE_SANDBOX_MIRROR (for --compute; default
# /var/cache/pve-sandbox/mirror), PROXY_PACKAGES (default "nginx-common nginx").
set -euo pipefail
TOP="$(cd "$(dirname "$0")/.." && pwd)"
PACKAGES=(${PROXY_PACKAGES:-nginx-common nginx})

if [ "${1:-}" = "--compute" ]; then
  MIRROR="${PVE_SANDBOX_MIRROR:-/var/cache/pve-sandbox/mirror}"
  tpl=$(ls -1 "$MIRROR"/system/debian-12-standard_*.tar.* 2>/dev/null | grep -v build-info | sort -V | tail -n1 || true)
  [ -n "$tpl" ] || { echo "debs: no debian-12-standard template in $MIRROR/system (make template)" >&2; exit 1; }
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  tar -xf "$tpl" -C "$tmp" ./var/lib/dpkg/status
  echo "debs: packages $tpl lacks for nginx:"
  apt-get -s -o Dir::State::status="$tmp/var/lib/dpkg/status" --no-install-recommends install nginx \
    | sed -n 's/^Inst \([^ ]*\) .*/  \1/p'
  exit 0
fi

DIR="${1:-${DEBS_DIR:-$TOP/target/debs}}"
mkdir -p "$DIR"
chmod 0700 "$DIR"
cd "$DIR"

have() { # package name -> a .deb of it is here
  local f
  for f in *.deb; do
    [ -f "$f" ] || continue
    [ "$(dpkg-deb --field "$f" Package 2>/dev/null)" = "$1" ] && return 0
  done
  return 1
}

missing=()
for p in "${PACKAGES[@]}"; do have "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if ! apt-cache policy "${missing[@]}" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    echo "debs: no apt candidate for ${missing[*]}; running apt-get update"
    apt-get update -q </dev/null
  fi
  echo "debs: apt-get download ${missing[*]} into $DIR"
  apt-get download -q -o APT::Sandbox::User=root "${missing[@]}" </dev/null
fi

# Check every file and record its digest (a recorded digest must still match).
touch SHA256SUMS
for f in *.deb; do
  [ -f "$f" ] || continue
  dpkg-deb --info "$f" >/dev/null || { echo "debs: $f is not a valid Debian package" >&2; exit 1; }
  sum=$(sha256sum "$f" | cut -d' ' -f1)
  recorded=$(awk -v f="$f" '$2 == f { print $1 }' SHA256SUMS)
  if [ -n "$recorded" ] && [ "$recorded" != "$sum" ]; then
    echo "debs: $f: SHA-256 $sum differs from $recorded in SHA256SUMS; remove it and run again" >&2
    exit 1
  fi
  [ -n "$recorded" ] || printf '%s  %s\n' "$sum" "$f" >> SHA256SUMS
done
for p in "${PACKAGES[@]}"; do have "$p" || { echo "debs: $p still missing in $DIR" >&2; exit 1; }; done
echo "debs: $DIR:"
sed 's/^/  /' SHA256SUMS
