#!/bin/sh
# The install paths of issue 21 item 1, checked on clean roots (run as root; .ci/run calls it):
#
#   sh tests/package/check.sh
#
# 1. `cargo package -p haseed`: the crate packs with everything the binary embeds, and cargo
#    builds the packed crate on its own (the default policy compiled from the packed sources).
# 2. builder/make-deb.sh makes the .deb; for Debian 12 (bookworm) and 13 (trixie), a fresh
#    minbase tree (mmdebstrap, cached outside the clone) gets it with `dpkg -i` and must then:
#    run `haseed --version` (naming the commit and the contract); `haseed build` the packaged
#    example into the same tarball, byte for byte, as the binary built here makes from
#    examples/pi-k8s/site.toml; hold a man page per command, the bash, zsh and fish completions,
#    the JSON Schema and the base descriptions.
# 3. The check itself must fail on broken packages: the same .deb without one man page, and with
#    a binary that does not run, are each installed into a fresh tree and must be refused.
#
# Caches: HASEED_PACKAGE_CACHE (default /var/cache/haseed-package): the minbase tarballs, keyed by
# their mmdebstrap command (suite, mirror); a cargo target directory for the release build (cargo's own
# fingerprints decide what is rebuilt).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${HASEED_PACKAGE_CACHE:-/var/cache/haseed-package}
mirror=${HASEED_DEBIAN_MIRROR:-http://deb.debian.org/debian}

[ "$(id -u)" -eq 0 ] || { echo "check.sh: run as root (chroot, dpkg into a tree)" >&2; exit 1; }
for tool in cargo-deb mmdebstrap dpkg-deb dpkg-shlibdeps chroot unshare sha256sum; do
  command -v "$tool" >/dev/null || { echo "check.sh: $tool is missing (run .ci/install-deps --tests)" >&2; exit 1; }
done
mkdir -p "$cache"
work=$(mktemp -d)
cleanup() {
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT INT TERM

# in_tree TREE CMD...: CMD chrooted into TREE, in a PID namespace with its own /proc (mounted in
# a mount namespace of its own, so nothing stays mounted after it).
in_tree() { unshare --pid --fork --mount-proc="$1/proc" chroot "$@"; }
say() { printf '[package] %s\n' "$*" >&2; }
fail() { printf '[package] FAILED: %s\n' "$*" >&2; return 1; }

# --- 1. cargo package -------------------------------------------------------------------------
say "cargo package -p haseed (packs the crate, then builds the packed crate alone)"
(cd "$repo" && CARGO_TARGET_DIR=$cache/target cargo package -p haseed --locked --list >"$work/crate-files")
for f in assets/images/raspios-trixie.toml assets/wit/policy.wit assets/examples/pi-k8s/site.toml \
  assets/default-policy/manifest.toml assets/default-policy/workspace.toml \
  assets/default-policy/src/lib.rs assets/default-policy/src/haproxy-watch.sh build.rs; do
  grep -qx "$f" "$work/crate-files" || { fail "the packaged crate lacks $f"; exit 1; }
done
(cd "$repo" && CARGO_TARGET_DIR=$cache/target cargo package -p haseed --locked >&2)

# --- 2. the .deb ------------------------------------------------------------------------------
say "builder/make-deb.sh"
deb=$(CARGO_TARGET_DIR=$cache/target sh "$repo/builder/make-deb.sh" "$work/deb")
[ -f "$deb" ] || { fail "make-deb.sh printed '$deb', which is not a file"; exit 1; }
say "made $deb ($(wc -c <"$deb") bytes): $(dpkg-deb -f "$deb" Depends)"
host_bin=$cache/target/release/haseed
head=$(git -C "$repo" rev-parse --short=12 HEAD)
commands=$(find "$cache/target/release/deb-assets/man" -name "*.1.gz" | wc -l)

# What the checked-out tree's own release binary makes of the example: the reference.
SOURCE_DATE_EPOCH=0 "$host_bin" build "$repo/examples/pi-k8s/site.toml" -o "$work/host-out" >/dev/null
want=$(sha256sum <"$work/host-out/pi-k8s.tar.gz" | cut -d' ' -f1)

# minbase SUITE: a fresh tree's tarball, made once.
minbase() {
  key=$(echo "mmdebstrap --mode=root --variant=minbase $1 $mirror" | sha256sum | cut -c1-16)
  tarball=$cache/$1-minbase-$key.tar
  if [ ! -f "$tarball" ]; then
    say "mmdebstrap --variant=minbase $1 (once, cached in $cache)"
    # The name's .tar tells mmdebstrap to write a tarball.
    mmdebstrap --mode=root --variant=minbase "$1" "$cache/$1-minbase.part.tar" "$mirror" >&2
    mv "$cache/$1-minbase.part.tar" "$tarball"
    for old in "$cache/$1"-minbase-*.tar; do [ "$old" = "$tarball" ] || rm -f "$old"; done
  fi
  echo "$tarball"
}

# check_tree SUITE DEB: install DEB into a fresh SUITE tree and check what it holds and does.
check_tree() {
  tree=$(mktemp -d "$work/tree.XXXXXX")
  tar -C "$tree" -xf "$(minbase "$1")"
  cp "$2" "$tree/tmp/haseed.deb"
  r=0
  in_tree "$tree" dpkg -i /tmp/haseed.deb >&2 || r=$?
  [ "$r" -eq 0 ] || fail "$1: dpkg -i refused the package" || return 1
  version=$(in_tree "$tree" haseed --version) || fail "$1: haseed --version did not run" || return 1
  case $version in
    "haseed "*"(commit $head"*", plugin contract haseed:policy@"*) ;;
    *) fail "$1: haseed --version says '$version', not commit $head and the contract" || return 1 ;;
  esac
  in_tree "$tree" env SOURCE_DATE_EPOCH=0 haseed build /usr/share/doc/haseed/examples/pi-k8s/site.toml \
    -o /tmp/out >&2 || fail "$1: haseed build of the packaged example failed" || return 1
  got=$(sha256sum <"$tree/tmp/out/pi-k8s.tar.gz" | cut -d' ' -f1)
  [ "$got" = "$want" ] || fail "$1: the packaged haseed built $got, the tree's binary $want" || return 1
  pages=$(find "$tree/usr/share/man/man1" -name 'haseed*.1.gz' 2>/dev/null | wc -l)
  [ "$pages" -eq "$commands" ] || fail "$1: $pages man pages installed, $commands commands" || return 1
  for f in usr/share/bash-completion/completions/haseed usr/share/zsh/vendor-completions/_haseed \
    usr/share/fish/vendor_completions.d/haseed.fish usr/share/haseed/site.schema.json \
    usr/share/haseed/images/raspios-trixie.toml usr/share/haseed/images/ubuntu-raspi.toml; do
    [ -s "$tree/$f" ] || fail "$1: /$f is not installed" || return 1
  done
  say "$1: dpkg -i, $version, build identical ($got), $pages man pages, completions, schema, bases"
  rm -rf --one-file-system "$tree"
}

for suite in bookworm trixie; do
  check_tree "$suite" "$deb"
done

# --- 3. the check refuses broken packages ------------------------------------------------------
# mutant NAME EDIT: the .deb unpacked, EDIT run in it, packed again.
mutant() {
  dir=$work/mutant-$1
  dpkg-deb -R "$deb" "$dir"
  (cd "$dir" && eval "$2")
  dpkg-deb -b "$dir" "$work/$1.deb" >/dev/null
  echo "$work/$1.deb"
}
for m in "no-man-page:rm usr/share/man/man1/haseed-build.1.gz" \
  "dead-binary:printf '\\177ELF' > usr/bin/haseed"; do
  name=${m%%:*}
  if check_tree bookworm "$(mutant "$name" "${m#*:}")" 2>"$work/$name.log"; then
    cat "$work/$name.log" >&2
    echo "[package] FAILED: the check passed a broken package ($name)" >&2
    exit 1
  fi
  say "broken package $name refused: $(grep FAILED "$work/$name.log")"
  for t in "$work"/tree.*; do
    [ -d "$t" ] || continue
    rm -rf --one-file-system "$t"
  done
done
say "ok"
