#!/usr/bin/env bash
# Builds target/debian/1ld_<version>_amd64.deb from the release binaries and
# the files in packaging/ and systemd/ (see packaging/README.md for why this is
# a plain dpkg-deb build and what goes where).
#
#   scripts/deb.sh                      build the binaries, then the package
#   scripts/deb.sh --no-build           package the binaries already built
#   scripts/deb.sh --version 0.1.0~t1   another package version (tests use a
#                                       lower one to exercise upgrades)
#   scripts/deb.sh --print-version      the version a default build gets
#
# The package version is the crate version (Cargo.toml [workspace.package]).
# Run on Debian 12 so the binaries need bookworm's glibc at most.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
target="${CARGO_TARGET_DIR:-$repo/target}"
out_dir="$repo/target/debian"

crate_version() {
  sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1
}

version="$(crate_version)"
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --version) version="$2"; shift 2 ;;
    --no-build) build=0; shift ;;
    --print-version) echo "$version"; exit 0 ;;
    *) echo "deb.sh: unknown argument '$1' (see the header of $0)" >&2; exit 2 ;;
  esac
done
[ -n "$version" ] || { echo "deb.sh: no version in Cargo.toml [workspace.package]" >&2; exit 1; }

if [ "$build" = 1 ]; then
  cargo build --release -p oneld --bins -p netbox-agent -p wikijs-integration
fi
rel="$target/release"
for b in 1ldd 1ldctl netbox-agent wikijs-integration; do
  [ -x "$rel/$b" ] || { echo "deb.sh: $rel/$b missing (run without --no-build)" >&2; exit 1; }
done
# The man pages build.rs wrote for this build (the newest out dir).
man_src="$(ls -td "$rel"/build/oneld-*/out/man 2>/dev/null | head -1)"
[ -n "$man_src" ] && [ -f "$man_src/1ldd.8" ] || { echo "deb.sh: no man pages under $rel/build (build.rs)" >&2; exit 1; }

# Reproducible timestamps: the last commit's date.
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
umask 022
pkg="1ld_${version}_amd64"
stage="$out_dir/$pkg"
rm -rf "$stage"
mkdir -p "$stage/DEBIAN"

strip_into() { # strip like dh_strip, into the package tree
  install -D -m 0755 "$1" "$2"
  strip --remove-section=.comment --remove-section=.note --strip-unneeded "$2"
}
strip_into "$rel/1ldd" "$stage/usr/sbin/1ldd"
strip_into "$rel/1ldctl" "$stage/usr/bin/1ldctl"
strip_into "$rel/netbox-agent" "$stage/usr/lib/1ld/agents/netbox-agent"
strip_into "$rel/wikijs-integration" "$stage/usr/lib/1ld/agents/wikijs-integration"

install -D -m 0644 systemd/1ld.service "$stage/lib/systemd/system/1ld.service"
install -D -m 0644 systemd/1ld.socket "$stage/lib/systemd/system/1ld.socket"

install -D -m 0644 packaging/1ld.toml "$stage/etc/1ld/1ld.toml"
install -D -m 0644 packaging/debian/apps.d-README "$stage/etc/1ld/apps.d/README"

mkdir -p "$stage/usr/share/man/man1" "$stage/usr/share/man/man8"
for f in "$man_src"/*.1; do gzip -9n <"$f" >"$stage/usr/share/man/man1/$(basename "$f").gz"; done
gzip -9n <"$man_src/1ldd.8" >"$stage/usr/share/man/man8/1ldd.8.gz"

# Completions from the binary being packaged.
ctl="$stage/usr/bin/1ldctl"
install -d "$stage/usr/share/bash-completion/completions" \
  "$stage/usr/share/zsh/vendor-completions" "$stage/usr/share/fish/vendor_completions.d"
"$ctl" completions bash >"$stage/usr/share/bash-completion/completions/1ldctl"
"$ctl" completions zsh >"$stage/usr/share/zsh/vendor-completions/_1ldctl"
"$ctl" completions fish >"$stage/usr/share/fish/vendor_completions.d/1ldctl.fish"

doc="$stage/usr/share/doc/1ld"
install -D -m 0644 README.md "$doc/README.md"
gzip -9n "$doc/README.md"
install -m 0644 packaging/debian/copyright "$doc/copyright"
install -D -m 0644 packaging/debian/lintian-overrides "$stage/usr/share/lintian/overrides/1ld"
changelog_date="$(date -R -u -d "@$SOURCE_DATE_EPOCH")"
sed -e "s/@VERSION@/$version/" -e "s/@DATE@/$changelog_date/" packaging/debian/changelog |
  gzip -9n >"$doc/changelog.gz"

# Depends: what dpkg-shlibdeps finds in the ELF files (${shlibs:Depends}).
shl="$(mktemp -d)"
trap 'rm -rf "$shl"' EXIT
mkdir -p "$shl/debian"
printf 'Source: 1ld\n\nPackage: 1ld\nArchitecture: amd64\n' >"$shl/debian/control"
shlibs="$(cd "$shl" && dpkg-shlibdeps -O "$stage/usr/sbin/1ldd" "$stage/usr/bin/1ldctl" \
  "$stage"/usr/lib/1ld/agents/* | sed -n 's/^shlibs:Depends=//p')"
[ -n "$shlibs" ] || { echo "deb.sh: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$stage/DEBIAN/"
printf '/etc/1ld/1ld.toml\n/etc/1ld/apps.d/README\n' >"$stage/DEBIAN/conffiles"
size="$(du -sk --apparent-size --exclude=DEBIAN "$stage" | cut -f1)"
sed -e "s/@VERSION@/$version/" -e "s/@INSTALLED_SIZE@/$size/" -e "s/@SHLIBS_DEPENDS@/$shlibs/" \
  packaging/debian/control.in >"$stage/DEBIAN/control"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
  xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$stage/DEBIAN/md5sums" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/control"
find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

dpkg-deb --root-owner-group -Zxz --build "$stage" "$out_dir/$pkg.deb" >/dev/null
rm -rf "$stage"
echo "$out_dir/$pkg.deb"
