#!/bin/sh
# The raspios-trixie-2025-10 layout of make-twin.sh: the first Raspberry Pi OS
# Trixie release (pi-gen tag 2025-10-01-raspios-trixie-arm64, commit
# 7dadcf1fc5ce1648ab09409ab978831690c9a955). It is the raspios-trixie layout
# (tag 2026-04-13) with the two places where pi-gen differed between the tags
# (`git diff 2025-10-01-raspios-trixie-arm64 2026-04-13-raspios-trixie-arm64`):
#
#   - stage1/01-sys-tweaks/00-run.sh: the first user is created with
#     `adduser --disabled-password` (a bash shell, no password); the nologin
#     shell came with 4b9cd15c ("Set FIRST_USER_NAME shell to nologin if no
#     password is set", 2026-02-16).
#   - stage2/04-cloud-init: no rpi-cloud-init-mods; pi-gen itself installs
#     files/99_raspberry-pi.cfg into /etc/cloud/cloud.cfg.d (NoCloud,
#     `seedfrom: file:///boot/firmware`, no host keys from cloud-init) and
#     files/00-network-manager-all.yaml into /lib/netplan (renderer
#     NetworkManager); the three placeholder installs are commented out, so
#     the boot partition has no user-data, meta-data or network-config (they
#     came back with cb05dfcc, "stage2: Re-add cloud-init files to bootfs
#     (#881)", 2025-11-24).
#
# Everything else (ssh disabled, the rename wizard, groups, net names, the
# disk) is the same at both tags and comes from raspios-trixie.sh.
# shellcheck shell=sh disable=SC2034,SC2154 # layout_* are read by make-twin.sh; $tree is set by layout_customize

# shellcheck disable=SC1091 # sourced from make-twin.sh, which sets $here
. "${here:?}/raspios-trixie.sh"
layout_inputs="$here/raspios-trixie.sh"

trixie_adduser=--disabled-password

trixie_cloud_init() {
  # --- stage2/04-cloud-init/01-run.sh @ 7dadcf1f: 99_raspberry-pi.cfg, in our
  # words with pi-gen's settings: NoCloud reads the seed from the mounted boot
  # partition (cloud-init's read_seeded appends the slash, 25.1.4
  # cloudinit/util.py, and needs meta-data and user-data there); the power
  # state reboot only for USB gadget mode; cloud-init neither deletes nor makes
  # host keys ("regenerate_ssh_host_keys.service will take care of it").
  mkdir -p "$tree/etc/cloud/cloud.cfg.d" "$tree/usr/lib/netplan"
  cat >"$tree/etc/cloud/cloud.cfg.d/99_raspberry-pi.cfg" <<'CFG'
# Twin of pi-gen's stage2/04-cloud-init/files/99_raspberry-pi.cfg @ 7dadcf1f:
# the NoCloud seed is read from the boot partition.
datasource_list: [ NoCloud, None ]
datasource:
  NoCloud:
    seedfrom: file:///boot/firmware
power_state:
  delay: now
  mode: reboot
  message: reboot for USB gadget mode
  condition: test -f /etc/modules-load.d/usb-gadget.conf
ssh_deletekeys: false
ssh_genkeytypes: []
CFG
  # The distro settings of cloud-init's raspberry-pi-os variant, as in the
  # raspios-trixie twin (the package's cloud.cfg has `name: pi`: pi-gen's
  # 01-run.sh edits it), without the twin's datasource reading.
  cat >"$tree/etc/cloud/cloud.cfg.d/50-twin-raspios.cfg" <<'CFG'
# haseed twin of Raspberry Pi OS Trixie 2025-10-01 (tests/twins/README.md):
# netplan -> NetworkManager and the default user pi, as cloud-init's
# raspberry-pi-os variant configures them.
system_info:
  default_user:
    name: pi
    lock_passwd: true
    groups: [adm, dialout, cdrom, audio, users, sudo, video, games, plugdev, input, gpio, spi, i2c, netdev, render]
    sudo: ["ALL=(ALL) NOPASSWD:ALL"]
    shell: /bin/bash
  network:
    renderers: ['netplan', 'network-manager']
    activators: ['netplan', 'network-manager']
CFG
  # files/00-network-manager-all.yaml, mode 600: netplan hands every device
  # to NetworkManager.
  printf 'network:\n  version: 2\n  renderer: NetworkManager\n' >"$tree/usr/lib/netplan/00-network-manager-all.yaml"
  chmod 600 "$tree/usr/lib/netplan/00-network-manager-all.yaml"
  # The twin's reading kept from raspios-trixie (README "Not found"): the seed
  # is read once /boot/firmware is mounted.
  mkdir -p "$tree/etc/systemd/system/cloud-init-local.service.d"
  printf '[Unit]\n# The seed is read from the boot partition (seedfrom file:///boot/firmware).\nRequiresMountsFor=/boot/firmware\n' \
    >"$tree/etc/systemd/system/cloud-init-local.service.d/twin-seed.conf"
  # regenerate_ssh_host_keys, which 99_raspberry-pi.cfg relies on: the unit
  # and script of raspberrypi-sys-mods (bookworm branch, 3af395f:
  # debian/raspberrypi-sys-mods.regenerate_ssh_host_keys.service,
  # usr/lib/raspberrypi-sys-mods/regenerate_ssh_host_keys), enabled (README
  # "Not found": who enables it on Trixie is not public).
  mkdir -p "$tree/usr/lib/raspberrypi-sys-mods"
  printf '#!/bin/sh -e\n# twin of raspberrypi-sys-mods: new host keys once, then off.\nrm -f /etc/ssh/ssh_host_*_key*\nssh-keygen -A >/dev/null\nsystemctl -q disable regenerate_ssh_host_keys\n' \
    >"$tree/usr/lib/raspberrypi-sys-mods/regenerate_ssh_host_keys"
  chmod 0755 "$tree/usr/lib/raspberrypi-sys-mods/regenerate_ssh_host_keys"
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
}
