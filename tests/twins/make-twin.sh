#!/bin/sh
# shellcheck disable=SC2016,SC2154 # hooks are mmdebstrap's to expand ($1 = the tree); layout_* come from LAYOUT.sh
# Build (once) a twin of a Raspberry Pi card: the distribution's disk layout and
# first-boot state, reproduced from its image build's sources (README.md), on
# Debian's packages with Debian's amd64 kernel standing in for the Pi's firmware
# and kernel. Prints the directory that holds it:
#   twin.img.xz             the card image, the --base of `haseed image`
#   vmlinuz, initrd.img     for qemu's direct kernel boot (the Pi firmware's job)
#   layout                  the layout's name
#
#   sh tests/twins/make-twin.sh LAYOUT [OUT_DIR]     (root; mmdebstrap, network once)
#
# LAYOUT: raspios-trixie, ubuntu-raspi-noble, ... (LAYOUT.sh in this folder
# says what the layout is).
# OUT_DIR: also hard-link (or copy) the three files there.
#
# No mount on the host: the root file system is made with mkfs.ext4 -d, the FAT
# boot partition with mkfs.vfat --offset and filled with mcopy. The cache lives
# outside the clone, keyed by a hash of these scripts and the harness files:
#   HASEED_TWIN_CACHE (default /var/cache/haseed-twins)/<layout>-<key>/
set -eu
here=$(cd "$(dirname "$0")" && pwd)
fb=$here/../firstboot
[ $# -ge 1 ] || { sed -n '2,20p' "$0" >&2; exit 2; }
layout=$1
out=${2:-}
[ -f "$here/$layout.sh" ] || { echo "make-twin.sh: unknown layout '$layout' (each layout is a file LAYOUT.sh in $here)" >&2; exit 2; }
cache=${HASEED_TWIN_CACHE:-/var/cache/haseed-twins}
mirror=${HASEED_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Installed at first boot from the offline repository, by the seed's `packages:`.
seeded="haproxy keepalived curl"
# The MBR disk identifier: pi-gen's is random per image; the twin's is fixed.
diskid=7a5e3d01

# shellcheck disable=SC1090 # the layout, checked on its own
. "$here/$layout.sh"

# What a layout may set besides the required layout_* variables:
#   layout_inputs        other files it reads (a layout built on another);
#   layout_sources       APT source lines instead of "$mirror" (another archive);
#   layout_prepare DIR   a function run before mmdebstrap, with a scratch
#                        directory (e.g. to fetch and check the archive's keyring);
#   layout_keyring       the keyring mmdebstrap checks the archive with;
#   layout_ext4_features mkfs.ext4 -O (default pi-gen's ^huge_file,^64bit).
# layout_inputs: other files a layout reads (a layout built on another).
# shellcheck disable=SC2086 # a list of paths
key=$(cat "$0" "$here/$layout.sh" ${layout_inputs:-} "$fb/offline-repo.sh" "$fb/report.sh" "$fb/haseed-report.service" \
  "$here/twin-report.conf" | sha256sum | cut -c1-16)
dir=$cache/$layout-$key

publish() {
  if [ -n "$out" ]; then
    mkdir -p "$out"
    for f in twin.img.xz vmlinuz initrd.img layout; do
      ln -f "$dir/$f" "$out/$f" 2>/dev/null || cp "$dir/$f" "$out/$f"
    done
  fi
  echo "$dir"
}
if [ -f "$dir/ready" ]; then
  publish
  exit 0
fi

for tool in mmdebstrap mkfs.ext4 mkfs.vfat mcopy sfdisk dpkg-scanpackages xz; do
  command -v "$tool" >/dev/null || { echo "make-twin.sh: $tool is missing (run .ci/install-deps)" >&2; exit 1; }
done
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
root=$tmp/root
started=$(date +%s)

echo "make-twin.sh: building the $layout twin in $dir (once; several minutes)" >&2
# Customize hooks, with the finished tree at $1:
#   1. the offline repository of the seeded packages (shared with make-base.sh);
#   2. the layout's first-boot state (LAYOUT.sh);
#   3. the harness's own report unit (never part of a seed), kept running
#      after its report so the test can log in over SSH.
# The archive: Debian's mirror, or the layout's own source lines.
sources=$mirror
if [ -n "${layout_sources:-}" ]; then
  sources=$tmp/sources.list
  printf '%s\n' "$layout_sources" >"$sources"
fi
if command -v layout_prepare >/dev/null 2>&1; then
  mkdir "$tmp/prepare"
  layout_prepare "$tmp/prepare"
fi
mmdebstrap --mode=root --variant=apt --include="$layout_packages" \
  ${layout_keyring:+--keyring="$layout_keyring"} \
  --customize-hook="sh '$fb/offline-repo.sh' \"\$1\" $seeded" \
  --customize-hook="here='$here' && . '$here/$layout.sh' && layout_customize \"\$1\" $diskid" \
  --customize-hook="install -m 0755 '$fb/report.sh' \"\$1/usr/local/sbin/haseed-report\"" \
  --customize-hook="install -m 0644 '$fb/haseed-report.service' \"\$1/etc/systemd/system/haseed-report.service\"" \
  --customize-hook="mkdir -p \"\$1/etc/systemd/system/haseed-report.service.d\" && install -m 0644 '$here/twin-report.conf' \"\$1/etc/systemd/system/haseed-report.service.d/twin.conf\"" \
  --customize-hook='chroot "$1" systemctl enable haseed-report.service' \
  "$layout_suite" "$root" "$sources" >&2

rm -rf "$tmp/prepare" "$tmp/sources.list"
cp "$root"/boot/vmlinuz-* "$tmp/vmlinuz"
cp "$root"/boot/initrd.img-* "$tmp/initrd.img"

# The disk, as pi-gen's export-image/prerun.sh lays it out: MBR, partition 1
# FAT32 at the alignment (8 MiB) of boot size, partition 2 ext4 after it, sized
# as the tree + 20% + 200 MiB, rounded up to the alignment.
align=$((layout_align_mib * 1024 * 1024))
boot_start=$align
boot_size=$(( (layout_boot_mib * 1024 * 1024 + align - 1) / align * align ))
root_start=$((boot_start + boot_size))
tree_bytes=$(du -x --apparent-size -s --block-size=1 --exclude=./boot/firmware "$root" | cut -f1)
root_size=$(( (tree_bytes + tree_bytes / 5 + 200 * 1024 * 1024 + align - 1) / align * align ))
img=$tmp/twin.img
truncate -s $((root_start + root_size)) "$img"
sfdisk --quiet "$img" <<SFDISK
label: dos
label-id: 0x$diskid
start=$((boot_start / 512)), size=$((boot_size / 512)), type=c
start=$((root_start / 512)), size=$((root_size / 512)), type=83
SFDISK
# pi-gen: mkdosfs -n bootfs -F 32 -s 1; the volume id is fixed here.
mkfs.vfat -F 32 -s 1 -n "$layout_boot_label" -i "${diskid}" --invariant \
  --offset $((boot_start / 512)) "$img" $((boot_size / 1024)) >/dev/null 2>&1
(cd "$root/boot/firmware" && mcopy -s -m -i "$img@@$boot_start" ./* ::)
rm -rf "${root:?}/boot/firmware/"*
# pi-gen: mkfs.ext4 -L rootfs -O ^huge_file (and ^64bit when known); a layout
# may say otherwise (layout_ext4_features).
mkfs.ext4 -q -F -L "$layout_root_label" -O "${layout_ext4_features:-^huge_file,^64bit}" -E "offset=$root_start" \
  -d "$root" "$img" "$((root_size / 1024))k"
rm -rf "$root"
xz -T0 -3 "$img"
echo "$layout" >"$tmp/layout"
ls "$tmp" >"$tmp/ready"
rm -rf "$dir"
mv "$tmp" "$dir"
# Twins built from older versions of these files are not used again.
# (Only this layout's: raspios-trixie-* also matches raspios-trixie-2025-10-*.)
for old in "$cache/$layout"-*/; do
  [ "$(cat "${old}layout" 2>/dev/null)" = "$layout" ] || continue
  [ "${old%/}" = "$dir" ] || rm -rf "${old%/}"
done
trap - EXIT INT TERM
echo "make-twin.sh: built in $(( $(date +%s) - started )) s" >&2
publish
