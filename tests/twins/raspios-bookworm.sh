#!/bin/sh
# The raspios-bookworm layout of make-twin.sh: Raspberry Pi OS Bookworm (pi-gen
# tag 2025-10-01-raspios-bookworm-arm64, commit
# 58b9a6bd1e3af179df52d4085dfe481d1c62e8fc; stage0-2 and export-image are the
# same at 2026-06-18-raspios-bookworm-arm64, d7a31c6a), on Debian bookworm.
#
# pi-gen's stages 1-2 and export-image are the Trixie ones but for the places
# `git diff 2025-10-01-raspios-bookworm-arm64 2025-10-01-raspios-trixie-arm64`
# shows, so this layout is raspios-trixie.sh with:
#   - stage1/01-sys-tweaks/00-run.sh: the first user `adduser
#     --disabled-password` (bash shell);
#   - no stage2/04-cloud-init (no cloud-init, no netplan): in its place the
#     Bookworm-only steps below (bookworm_stages);
#   - stage2/01-sys-tweaks/00-patches/07-resize-init.diff: cmdline.txt ends
#     `rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot` (no
#     `resize`);
#   - stage2/01-sys-tweaks/01-run.sh: `systemctl enable
#     regenerate_ssh_host_keys`, journald `Storage=volatile`.
# and raspberrypi-sys-mods (branch bookworm, 3af395f60cfc5061d72ea79f3d33bf0ccdac29a8),
# which is not in Debian, reproduced in our own words: the `init=` first-boot
# script, the initramfs fix-up of Raspberry Pi Imager's firstrun.sh, the host
# key unit and the first user's sudo rule.
# shellcheck shell=sh disable=SC2034,SC2154 # layout_* are read by make-twin.sh; $tree is set by layout_customize

# shellcheck disable=SC1091 # sourced from make-twin.sh, which sets $here
. "${here:?}/raspios-trixie.sh"
layout_inputs="$here/raspios-trixie.sh"

layout_suite=bookworm
# As raspios-trixie, without cloud-init and netplan.io; with busybox (the
# initramfs fix-up's sed and mount), fdisk (sys-mods' firstboot).
layout_packages="systemd,systemd-sysv,udev,dbus,kmod,linux-image-amd64,initramfs-tools,busybox,\
openssh-server,openssh-client,sudo,less,ca-certificates,curl,dosfstools,rsync,\
network-manager,iproute2,procps,e2fsprogs,adduser,passwd,netbase,whiptail,kbd,fdisk"
trixie_adduser=--disabled-password

# The Trixie layout's cloud-init step (stage2/04-cloud-init) is where
# Bookworm's own steps go: they run before the rename wizard and
# export-image's initramfs rebuild, as the stages do.
trixie_cloud_init() {
  bookworm_stages
}

bookworm_stages() {
  # --- stage1/00-boot-files + stage2 07-resize-init.diff: cmdline.txt.
  printf 'console=serial0,115200 console=tty1 root=PARTUUID=%s-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n' \
    "$diskid" >"$tree/boot/firmware/cmdline.txt"

  # --- stage2/01-sys-tweaks/01-run.sh: volatile journal; the host key unit
  # enabled (sys-mods ships it --no-enable: debian/rules).
  sed -i 's/^#\?Storage=.*/Storage=volatile/' "$tree/etc/systemd/journald.conf"
  sys=$tree/usr/lib/raspberrypi-sys-mods
  mkdir -p "$sys"
  # regenerate_ssh_host_keys + its unit (debian/...regenerate_ssh_host_keys.service).
  printf '#!/bin/sh -e\n# twin of raspberrypi-sys-mods: new host keys once, then off.\nrm -f /etc/ssh/ssh_host_*_key*\nssh-keygen -A >/dev/null\nsystemctl -q disable regenerate_ssh_host_keys\n' \
    >"$sys/regenerate_ssh_host_keys"
  twin_unit regenerate_ssh_host_keys.service <<'UNIT'
[Unit]
Description=Regenerate SSH host keys
Before=ssh.service
ConditionFileIsExecutable=/usr/bin/ssh-keygen
[Service]
Type=oneshot
ExecStart=/usr/lib/raspberrypi-sys-mods/regenerate_ssh_host_keys
[Install]
WantedBy=multi-user.target
UNIT
  chroot "$tree" systemctl enable regenerate_ssh_host_keys.service

  # --- sys-mods etc/sudoers.d/010_pi-nopasswd.
  printf '%s ALL=(ALL) NOPASSWD: ALL\n' "$layout_first_user" >"$tree/etc/sudoers.d/010_pi-nopasswd"
  chmod 0440 "$tree/etc/sudoers.d/010_pi-nopasswd"

  # --- sys-mods usr/lib/raspberrypi-sys-mods/get_fw_loc: the boot partition's
  # mount point, /boot or /boot/firmware by fstab. (sys-mods answers /boot on
  # a non-arm machine; the twin's amd64 stands in for the Pi's arm.)
  cat >"$sys/get_fw_loc" <<'SH'
#!/bin/sh
# twin of raspberrypi-sys-mods get_fw_loc (the arm branch).
[ -r /etc/default/raspberrypi-sys-mods ] && . /etc/default/raspberrypi-sys-mods
if [ -z "${FWLOC:-}" ]; then
  for FWLOC in /boot /boot/firmware NOT_FOUND; do
    if findmnt --fstab "$FWLOC" >/dev/null || findmnt "$FWLOC" >/dev/null; then
      break
    fi
  done
fi
echo "$FWLOC"
[ "$FWLOC" != NOT_FOUND ]
SH

  # --- sys-mods usr/lib/raspberrypi-sys-mods/firstboot, run as init= on the
  # first boot: takes its own word (and `quiet` when there is no `splash`) off
  # cmdline.txt, makes the host keys, fixes the disk id, reboots. Left out:
  # the progress dialogs (whiptail), custom.toml (needs python3-toml; haseed
  # writes none), and the disk id change when /dev/hwrng gives no 4 bytes
  # (qemu has no hardware RNG; sys-mods would then write an empty id into
  # fstab and cmdline.txt, seen in the twin's first run: "PARTUUID=-02").
  cat >"$sys/firstboot" <<'SH'
#!/bin/bash
# twin of raspberrypi-sys-mods firstboot (bookworm 3af395f); PID 1 on the first boot.
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sys /sys
mountpoint -q /run || mount -t tmpfs tmp /run
mkdir -p /run/systemd
mount / -o remount,ro
if ! FWLOC=$(/usr/lib/raspberrypi-sys-mods/get_fw_loc); then
  echo "firstboot: could not determine the firmware partition"
  poweroff -f
fi
mount "$FWLOC" -o rw
sed -i 's| init=/usr/lib/raspberrypi-sys-mods/firstboot||' "$FWLOC/cmdline.txt"
sed -i 's| sdhci\.debug_quirks2=4||' "$FWLOC/cmdline.txt"
grep -q splash "$FWLOC/cmdline.txt" || sed -i 's/ quiet//g' "$FWLOC/cmdline.txt"
mount "$FWLOC" -o remount,ro
sync
echo "firstboot: generating SSH keys"
mount / -o remount,rw
/usr/lib/raspberrypi-sys-mods/regenerate_ssh_host_keys
mount / -o remount,ro
root_dev=/dev/$(lsblk -no pkname "$(findmnt / -no source)")
boot_src=$(findmnt "$FWLOC" -no source)
boot_num=$(cat "/sys/block/$(lsblk -no pkname "$boot_src")/$(lsblk -no kname "$boot_src")/partition")
new=$(dd if=/dev/hwrng bs=4 count=1 status=none 2>/dev/null | od -An -tx4 | cut -c2-9)
if [ "$boot_num" = 1 ] && [ "${#new}" -eq 8 ]; then
  echo "firstboot: new disk id"
  old=$(fdisk -l "$root_dev" | sed -n 's/Disk identifier: 0x\([^ ]*\)/\1/p')
  mount -o remount,rw /
  mount -o remount,rw "$FWLOC"
  if printf 'x\ni\n0x%s\nr\nw\n' "$new" | fdisk "$root_dev" >/dev/null; then
    sed -i "s/$old/$new/g" /etc/fstab
    sed -i "s/$old/$new/" "$FWLOC/cmdline.txt"
    sync
  fi
  mount -o remount,ro /
fi
echo "firstboot: rebooting"
umount "$FWLOC"
mount / -o remount,ro
sync
reboot -f "$boot_num"
sleep 5
exit 0
SH
  chmod 0755 "$sys/regenerate_ssh_host_keys" "$sys/get_fw_loc" "$sys/firstboot"

  # --- sys-mods initramfs-tools/{hooks,scripts/local-bottom}/imager_fixup:
  # when the kernel command line starts Imager's /boot/firstrun.sh, mount the
  # boot partition (found through the root's fstab), point cmdline.txt's
  # /boot/ paths to /boot/firmware/, cut firstrun.sh at its first line that
  # removes firstrun.sh and end it with removing /boot/firmware/firstrun.sh
  # and every systemd.* word of cmdline.txt. The twin loads vfat in the
  # initramfs (Debian's kernel has it as a module; the mount names no type).
  mkdir -p "$tree/etc/initramfs-tools/hooks" "$tree/etc/initramfs-tools/scripts/local-bottom"
  printf 'vfat\nnls_cp437\nnls_ascii\nnls_utf8\n' >>"$tree/etc/initramfs-tools/modules"
  cat >"$tree/etc/initramfs-tools/hooks/imager_fixup" <<'SH'
#!/bin/sh
# twin of raspberrypi-sys-mods initramfs-tools/hooks/imager_fixup
set -e
[ "$1" = prereqs ] && exit 0
. /usr/share/initramfs-tools/hook-functions
copy_exec /usr/bin/findmnt /bin
exit 0
SH
  cat >"$tree/etc/initramfs-tools/scripts/local-bottom/imager_fixup" <<'SH'
#!/bin/sh
# twin of raspberrypi-sys-mods initramfs-tools/scripts/local-bottom/imager_fixup
set -e
[ "$1" = prereqs ] && exit 0
. /scripts/functions
grep -q 'systemd\.run=/boot/firstrun\.sh' /proc/cmdline || exit 0
dev=$(findmnt -n -o SOURCE -s -F "${rootmnt:-/root}/etc/fstab" /boot/firmware) || exit 0
log_begin_msg "Fixing firstrun.sh..."
mkdir -p /run/imager_fixup
mount -o rw "$(resolve_device "$dev")" /run/imager_fixup
sed -i 's|/boot/|/boot/firmware/|g' /run/imager_fixup/cmdline.txt
sed -n -i '/rm.*firstrun\.sh$/q;p' /run/imager_fixup/firstrun.sh
{
  echo 'rm -f /boot/firmware/firstrun.sh'
  echo "sed -i 's| systemd\\.[^ ]*||g' /boot/firmware/cmdline.txt"
  echo 'exit 0'
} >>/run/imager_fixup/firstrun.sh
umount /run/imager_fixup
rmdir /run/imager_fixup
log_end_msg
exit 0
SH
  chmod 0755 "$tree/etc/initramfs-tools/hooks/imager_fixup" "$tree/etc/initramfs-tools/scripts/local-bottom/imager_fixup"
}
