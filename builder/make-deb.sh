#!/bin/sh
# Make haseed's Debian package from this checkout and print its path:
#
#   sh builder/make-deb.sh [OUT_DIR]        (default OUT_DIR: target/debian)
#
# Needs cargo-deb (`cargo install --locked cargo-deb`; .ci/install-deps --tests installs it) and
# dpkg-dev (dpkg-shlibdeps computes the Depends line). Steps:
#   1. cargo build --release (the binary cargo-deb packages);
#   2. the files the binary generates, under <target>/release/deb-assets/: a man page per
#      command (`haseed man`, gzipped), bash, zsh and fish completions (`haseed completions`), the site
#      file's JSON Schema (`haseed schema`);
#   3. cargo deb --no-build, with the assets builder/Cargo.toml's [package.metadata.deb] lists.
# CARGO_TARGET_DIR is honoured (tests/package/check.sh keeps one outside the clone); it and OUT_DIR may
# be relative to the caller's directory.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../target/debian}
# Relative paths mean the caller's directory, not builder/ (the script changes into it below).
case $out in /*) ;; *) out=$(pwd)/$out ;; esac
case ${CARGO_TARGET_DIR:-/} in
  /*) ;;
  *) CARGO_TARGET_DIR=$(pwd)/$CARGO_TARGET_DIR && export CARGO_TARGET_DIR ;;
esac

command -v cargo-deb >/dev/null || {
  echo "make-deb.sh: cargo-deb is missing: cargo install --locked cargo-deb (or .ci/install-deps --tests)" >&2
  exit 1
}
command -v dpkg-shlibdeps >/dev/null || {
  echo "make-deb.sh: dpkg-shlibdeps is missing: apt-get install dpkg-dev" >&2
  exit 1
}

cd "$here"
cargo build --release --locked -p haseed
target=${CARGO_TARGET_DIR:-$here/../target}
bin=$target/release/haseed
assets=$target/release/deb-assets
rm -rf "$assets"
mkdir -p "$assets/man"
"$bin" man -o "$assets/man" >/dev/null
# Compressed as Debian policy 12.1 wants (cargo-deb compresses man pages, but not files under the
# target directory, which it takes for build products); -n: no name or time, reproducible.
gzip -9n "$assets"/man/*.1
"$bin" completions bash >"$assets/haseed.bash"
"$bin" completions zsh >"$assets/_haseed"
"$bin" completions fish >"$assets/haseed.fish"
"$bin" schema >"$assets/site.schema.json"

mkdir -p "$out"
# cargo-deb prints the package's path (haseed_<version>-<revision>_<arch>.deb) on stdout.
cargo deb -p haseed --no-build --locked --output "$out"
