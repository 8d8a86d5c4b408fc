#!/bin/sh
# Builds a disk image that mimics a Raspberry Pi base image, with Debian's own
# tools (no mount, no root): an MBR with a FAT32 boot partition (cmdline.txt,
# config.txt and, for cloud-init releases, the NoCloud placeholders) and an
# ext4 root partition.
#
#   make-base.sh OUT.img LAYOUT [IMAGE_MIB] [ROOT_DIR]
#
# LAYOUT: raspios-trixie | raspios-trixie-2025-10 | raspios-bookworm | ubuntu-raspi
#         | ubuntu-raspi-ab (25.10 on: the boot assets and cmdline.txt in current/,
#           config.txt `[all] os_prefix=current/`, `[tryboot] os_prefix=new/`)
# IMAGE_MIB: total size (default 128); the boot partition is 64 MiB at 4 MiB,
# the root partition takes the rest. ROOT_DIR: what the root file system holds
# (default: a small tree).
#
# What tells a Raspberry Pi OS release on its boot partition (pi-gen, each
# release's tag; images/raspios-*.toml): the seed placeholders (Trixie from
# 2025-11-24), cmdline.txt's `resize` (Trixie) or
# `init=/usr/lib/raspberrypi-sys-mods/firstboot` (Bookworm), and issue.txt
# ("Raspberry Pi reference DATE", then "Generated using pi-gen, REPO, COMMIT,
# STAGE"). To make a base that is none of them:
#   MAKE_BASE_MARK    the cmdline.txt word instead of the layout's ("none": none)
#   MAKE_BASE_ISSUE   issue.txt's "DATE COMMIT" instead of the layout's ("none": no issue.txt)
set -eu
ab=no
out=$1
layout=$2
mib=${3:-128}
rootdir=${4:-}

# The dates and pi-gen commits are those of the release tags.
case $layout in
  raspios-trixie)         label=bootfs; placeholders=yes; mark=resize
                          issue="2026-04-13 b80caf532a22578ab8b2cfaa2d0368080b509a31" ;;
  raspios-trixie-2025-10) label=bootfs; placeholders=no; mark=resize
                          issue="2025-10-01 7dadcf1fc5ce1648ab09409ab978831690c9a955" ;;
  raspios-bookworm)       label=bootfs; placeholders=no; mark=init=/usr/lib/raspberrypi-sys-mods/firstboot
                          issue="2025-10-01 58b9a6bd1e3af179df52d4085dfe481d1c62e8fc" ;;
  ubuntu-raspi)           label=system-boot; placeholders=yes; mark=none; issue=none ;;
  ubuntu-raspi-ab)        label=system-boot; placeholders=yes; mark=none; issue=none; ab=yes ;;
  *) echo "make-base.sh: unknown layout $layout" >&2; exit 2 ;;
esac
mark=${MAKE_BASE_MARK:-$mark}
issue=${MAKE_BASE_ISSUE:-$issue}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

boot_start=8192          # sectors: 4 MiB
boot_sectors=131072      # 64 MiB
root_start=$((boot_start + boot_sectors))
rm -f "$out"
truncate -s "${mib}M" "$out"
sfdisk --quiet "$out" <<SFDISK
label: dos
label-id: 0x5452dd2b
start=$boot_start, size=$boot_sectors, type=c
start=$root_start, type=83
SFDISK

# Lower-case labels, as Raspberry Pi OS and Ubuntu have them (mkfs.vfat warns).
mkfs.vfat -F 32 -s 1 -n "$label" -i 5452DD2B --invariant \
  --offset "$boot_start" "$out" $((boot_sectors / 2)) >/dev/null 2>&1

words=quiet
[ "$mark" = none ] || words="quiet $mark"
printf 'console=serial0,115200 console=tty1 root=PARTUUID=5452dd2b-02 rootfstype=ext4 fsck.repair=yes rootwait %s\n' "$words" >"$work/cmdline.txt"
boot="$out@@$((boot_start * 512))"
if [ "$ab" = yes ]; then
  # Ubuntu's A/B boot: flash-kernel-piboot puts the assets in current/, with
  # a state file; the root has config.txt and the seed, no cmdline.txt.
  printf '[all]\narm_64bit=1\nkernel=vmlinuz\nos_prefix=current/\n\n[tryboot]\nos_prefix=new/\n' >"$work/config.txt"
  printf 'not a kernel\n' >"$work/vmlinuz"
  printf 'good\n' >"$work/state"
  mmd -i "$boot" ::current
  mcopy -i "$boot" "$work/cmdline.txt" "$work/vmlinuz" "$work/state" ::current/
  mcopy -i "$boot" "$work/config.txt" ::
else
  printf '[all]\narm_64bit=1\ndtparam=audio=on\n' >"$work/config.txt"
  printf 'not a kernel\n' >"$work/kernel8.img"
  mcopy -i "$boot" "$work/cmdline.txt" "$work/config.txt" "$work/kernel8.img" ::
fi
if [ "$issue" != none ]; then
  printf 'Raspberry Pi reference %s\nGenerated using pi-gen, https://github.com/RPi-Distro/pi-gen, %s, stage2\n' \
    "${issue% *}" "${issue#* }" >"$work/issue.txt"
  mcopy -i "$out@@$((boot_start * 512))" "$work/issue.txt" ::
fi
if [ "$placeholders" = yes ]; then
  printf '#cloud-config\n# placeholder of the stock image\n' >"$work/user-data"
  printf 'instance_id: rpios-image\n' >"$work/meta-data"
  printf 'network:\n  version: 2\n' >"$work/network-config"
  mcopy -i "$out@@$((boot_start * 512))" "$work/user-data" "$work/meta-data" "$work/network-config" ::
fi

if [ -z "$rootdir" ]; then
  rootdir=$work/root
  mkdir -p "$rootdir/etc" "$rootdir/boot/firmware"
  printf 'raspberrypi\n' >"$rootdir/etc/hostname"
fi
root_bytes=$(( (mib * 1024 * 1024) - root_start * 512 ))
mkfs.ext4 -q -F -L rootfs -U 5d3a1c2e-0000-4000-8000-000000000001 -E "offset=$((root_start * 512))" \
  -d "$rootdir" "$out" "$((root_bytes / 1024))k"
