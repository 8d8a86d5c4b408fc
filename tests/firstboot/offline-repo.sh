#!/bin/sh
# Shared by tests/firstboot/make-base.sh and tests/twins/make-twin.sh (run as an
# mmdebstrap customize hook, on the build host, with the finished tree):
#
#   sh offline-repo.sh TREE PACKAGE...
#
# Downloads PACKAGE... and what they need (inside TREE, with its own APT) into
# an offline repository at TREE/opt/haseed-repo, indexes it with
# dpkg-scanpackages, and makes it TREE's only APT source, with no package lists
# yet: a node that has not run `apt-get update`. So a seed's `packages:`
# installs them on first boot the way a Pi does from its mirror, without any
# network.
set -eu
tree=$1
shift
chroot "$tree" apt-get install --download-only --yes "$@"
mkdir -p "$tree/opt/haseed-repo"
mv "$tree"/var/cache/apt/archives/*.deb "$tree/opt/haseed-repo/"
(cd "$tree/opt/haseed-repo" && dpkg-scanpackages --multiversion . /dev/null >Packages 2>/dev/null)
rm -f "$tree/etc/apt/sources.list" "$tree"/etc/apt/sources.list.d/*
echo "deb [trusted=yes] file:/opt/haseed-repo ./" >"$tree/etc/apt/sources.list.d/haseed-offline.list"
rm -rf "$tree"/var/lib/apt/lists/*
