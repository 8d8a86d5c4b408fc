#!/bin/sh
# The README's set-up on a fresh Debian tree, then the main job (issue 21 item 2). Run once per
# release, by hand (it downloads and builds for about 15 minutes per suite); the README records
# the figures:
#
#   sudo sh tests/package/fresh-debian.sh bookworm [--tests]     (Debian 12)
#   sudo sh tests/package/fresh-debian.sh trixie [--tests]       (Debian 13)
#
# 1. A fresh tree: mmdebstrap --variant=minbase SUITE (less than any stock install has) with
#    ca-certificates, the one package a stock install adds that the set-up needs (crates.io over
#    HTTPS), and the committed checkout (git archive HEAD) at /root/haseed.
# 2. Rust, the README's prerequisite: this machine cannot download a toolchain (static.rust-lang.org
#    is out of its reach), so the host's rustup home is mounted read-only at /root/.rustup and its
#    proxies copied to /root/.cargo/bin, as `curl https://sh.rustup.rs | sh` would leave them. The
#    cargo registry starts empty: crates come from crates.io.
# 3. In the tree, as the README says: `.ci/install-deps` (apt from the Debian mirror), then
#    `cargo run --release -- build examples/pi-k8s/site.toml -o out/`; each step timed; the result
#    must hold every node's user-data and the site's tarball. With --tests, then the README's test
#    set-up: `apt-get install npm` (the README's second prerequisite) and `.ci/install-deps --tests`
#    (the tests themselves are CI's job: they need this machine's network namespaces and qemu).
set -eu
suite=${1:?usage: fresh-debian.sh bookworm|trixie [--tests]}
tests=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
mirror=${HASEED_DEBIAN_MIRROR:-http://deb.debian.org/debian}
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_bin=${CARGO_HOME:-$HOME/.cargo}/bin

[ "$(id -u)" -eq 0 ] || { echo "fresh-debian.sh: run as root" >&2; exit 1; }
for tool in mmdebstrap git chroot unshare; do
  command -v "$tool" >/dev/null || { echo "fresh-debian.sh: $tool is missing" >&2; exit 1; }
done
[ -d "$rustup_home/toolchains" ] || { echo "fresh-debian.sh: no rustup home at $rustup_home" >&2; exit 1; }

tree=$(mktemp -d "/var/tmp/haseed-fresh-$suite.XXXXXX")
mounts=""
cleanup() {
  for m in $mounts; do umount -l "$m" 2>/dev/null || true; done
  # Never delete through a mount that is still there (the host's /dev, its rustup home).
  if grep -F " $tree/" /proc/mounts >/dev/null; then
    echo "fresh-debian.sh: $tree still has mounts; left in place" >&2
  else
    rm -rf --one-file-system "$tree"
  fi
}
trap cleanup EXIT INT TERM
mnt_bind() { mkdir -p "$tree$2"; mount --bind "$1" "$tree$2"; mounts="$tree$2 $mounts"; }
clock() { date +%s; }
elapsed() { echo "$(($(clock) - $1)) s"; }

t=$(clock)
mmdebstrap --mode=root --variant=minbase --include=ca-certificates "$suite" "$tree" "$mirror" >&2
echo "[fresh] $suite minbase tree: $(elapsed "$t")"
mkdir -p "$tree/root/haseed"
git -C "$repo" archive HEAD | tar -C "$tree/root/haseed" -x
cp /etc/resolv.conf "$tree/etc/resolv.conf"
# This machine reaches crates.io, PyPI and npm through an intercepting proxy whose CA the host
# trusts (/usr/local/share/ca-certificates): the tree trusts it too. A machine on an open network
# has none, and this copies nothing.
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  cp /usr/local/share/ca-certificates/*.crt "$tree/usr/local/share/ca-certificates/"
  chroot "$tree" update-ca-certificates >&2
fi
mnt_bind /dev /dev
mnt_bind /sys /sys
mnt_bind "$rustup_home" /root/.rustup
mount -o remount,bind,ro "$tree/root/.rustup"
mkdir -p "$tree/root/.cargo/bin"
cp "$cargo_bin/rustup" "$tree/root/.cargo/bin/rustup"
for p in cargo rustc rustdoc; do ln -s rustup "$tree/root/.cargo/bin/$p"; done

# In a PID namespace with its own /proc: what the set-up stops or starts (haproxy, keepalived)
# sees only the tree's processes, never the host's.
in_tree() {
  unshare --pid --fork --mount-proc="$tree/proc" chroot "$tree" env -i HOME=/root PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    TERM=dumb LANG=C.UTF-8 sh -c "cd /root/haseed && $1"
}

echo "[fresh] $suite: $(grep '^PRETTY_NAME=' "$tree/etc/os-release")"
t=$(clock)
in_tree ".ci/install-deps" >&2
echo "[fresh] $suite .ci/install-deps: $(elapsed "$t")"
t=$(clock)
in_tree "cargo run --release -- build examples/pi-k8s/site.toml -o out/" >&2
echo "[fresh] $suite cargo run --release -- build: $(elapsed "$t")"
for f in out/pi-k8s.tar.gz out/lb1/user-data out/lb2/user-data out/master1/user-data; do
  [ -s "$tree/root/haseed/$f" ] || { echo "[fresh] FAILED: $suite: $f is missing" >&2; exit 1; }
done
echo "[fresh] $suite: ok, out/ holds $(find "$tree/root/haseed/out" -type f | wc -l) files"
if [ "$tests" = --tests ]; then
  t=$(clock)
  in_tree "apt-get install -y --no-install-recommends npm && .ci/install-deps --tests" >&2
  echo "[fresh] $suite apt-get install npm && .ci/install-deps --tests: $(elapsed "$t")"
fi
