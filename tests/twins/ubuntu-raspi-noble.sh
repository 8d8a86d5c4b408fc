#!/bin/sh
# The ubuntu-raspi-noble layout of make-twin.sh: Ubuntu Server 24.04 for
# Raspberry Pi (the preinstalled arm64+raspi image), its disk and first-boot
# state reproduced in our own words from the sources that build it: livecd-rootfs
# hands raspi images to ubuntu-image (`ubuntu-image classic`), which lays the
# disk out from the pi-gadget's gadget.yaml and cleans the root; cloud-init
# makes the first user at first boot. README.md in this folder names each file
# and commit, and where the twin had to choose (the stricter reading).
#
# Sourced by make-twin.sh, which then calls:
#   layout_prepare DIR              (fetches and checks Ubuntu's archive keyring)
#   layout_customize TREE DISKID    (an mmdebstrap customize hook)
# and reads the variables below.
# shellcheck shell=sh disable=SC2034 # the layout_* variables are read by make-twin.sh

# Ubuntu's own packages, from Ubuntu's archive (amd64: the Pi's arm64 packages
# are the same sources built for another machine): ubuntu-minimal (the base
# every Ubuntu image has: locales, lsb-release, netplan, ...) and the server
# seed's parts a first boot touches; linux-image-virtual stands in for
# linux-raspi. (A first twin without ubuntu-minimal failed cloud-init's locale
# module: no `locales` to install offline, no lsb_release.)
layout_suite=noble
ubuntu_mirror=${HASEED_UBUNTU_MIRROR:-http://archive.ubuntu.com/ubuntu}
# ubuntu-image's deb822 sources: the release and its updates pocket.
layout_sources="deb $ubuntu_mirror noble main universe
deb $ubuntu_mirror noble-updates main universe"
layout_packages="ubuntu-minimal,systemd,systemd-sysv,systemd-resolved,udev,dbus,kmod,linux-image-virtual,initramfs-tools,\
openssh-server,openssh-client,sudo,less,ca-certificates,curl,dosfstools,e2fsprogs,\
netplan.io,cloud-init,iproute2,procps,adduser,passwd,netbase,ubuntu-keyring"
# pi-gadget gadget.yaml.in: MBR, partition 1 vfat `system-boot`, 512M, type 0C,
# at snapd's first-partition offset (1 MiB); ubuntu-image appends the ext4
# `writable` partition straight after it.
layout_boot_label=system-boot
layout_boot_mib=512
layout_align_mib=1
layout_root_label=writable
layout_ext4_features=has_journal
# No first user in the image: cloud-init creates `ubuntu` at first boot.
layout_first_user=ubuntu

# Ubuntu's archive key, from the ubuntu-keyring package of noble (main), checked
# against the hash its Packages index gives (pinned here: the trust anchor).
ubuntu_keyring_deb=pool/main/u/ubuntu-keyring/ubuntu-keyring_2023.11.28.1_all.deb
ubuntu_keyring_sha256=36de43b15853ccae0028e9a767613770c704833f82586f28eb262f0311adb8a8
layout_prepare() {
  curl -fsS --max-time 120 -o "$1/ubuntu-keyring.deb" "$ubuntu_mirror/$ubuntu_keyring_deb"
  echo "$ubuntu_keyring_sha256  $1/ubuntu-keyring.deb" | sha256sum -c --quiet - || {
    echo "ubuntu-raspi-noble.sh: ubuntu-keyring.deb does not have the pinned sha256" >&2
    exit 1
  }
  dpkg-deb -x "$1/ubuntu-keyring.deb" "$1/keyring"
  layout_keyring=$1/keyring/usr/share/keyrings/ubuntu-archive-keyring.gpg
}

# The boot partition's files of the noble server configs (pi-gadget
# configs/noble-arm64-server/), the ones a first boot reads. A later release
# sets what changed: ubuntu_os_prefix (the folder config.txt's os_prefix names,
# which then holds cmdline.txt and a `state` file) and ubuntu_cmdline_extra
# (words before `rootwait`).
ubuntu_os_prefix=
ubuntu_cmdline_extra=
ubuntu_boot_files() {
  fw=$1/boot/firmware
  mkdir -p "$fw/$ubuntu_os_prefix"
  # cmdline.txt: root by label, no `quiet splash` (removed in pi-gadget 5d45b91b).
  printf 'console=serial0,115200 multipath=off dwc_otg.lpm_enable=0 console=tty1 root=LABEL=writable rootfstype=ext4 %srootwait fixrtc\n' \
    "${ubuntu_cmdline_extra:+$ubuntu_cmdline_extra }" >"$fw/${ubuntu_os_prefix}cmdline.txt"
  # config.txt: the firmware's (no Pi firmware reads it here); its boot keys,
  # and with A/B boot the normal boot's folder and the trial boot's (new/).
  {
    printf '[all]\narm_64bit=1\nkernel=vmlinuz\ncmdline=cmdline.txt\ninitramfs initrd.img followkernel\n'
    if [ -n "$ubuntu_os_prefix" ]; then
      printf 'os_prefix=%s\n\n[tryboot]\nos_prefix=new/\n' "$ubuntu_os_prefix"
    fi
    printf '\n[pi4]\nmax_framebuffers=2\narm_boost=1\n\n[all]\ndtparam=audio=on\nenable_uart=1\n'
  } >"$fw/config.txt"
  [ -z "$ubuntu_os_prefix" ] || echo good >"$fw/${ubuntu_os_prefix}state"
  ubuntu_seed_files "$fw"
}

# The NoCloud seed as shipped (pi-gadget configs/noble-arm64-server/): the
# default user's password `ubuntu`, expired at first login; no password over
# SSH; eth0 by DHCP, optional.
ubuntu_seed_files() {
  fw=$1
  printf '#cloud-config\n\n# Placeholder of the stock image (cloud-init user-data). The default user\n# gets the password "ubuntu", to be changed at first login.\nchpasswd:\n  expire: true\n  users:\n  - name: ubuntu\n    password: ubuntu\n    type: text\n\nssh_pwauth: false\n' \
    >"$fw/user-data"
  printf 'dsmode: local\ninstance_id: cloud-image\n' >"$fw/meta-data"
  printf '# Placeholder of the stock image (netplan v2).\nnetwork:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n      optional: true\n' \
    >"$fw/network-config"
}

layout_customize() {
  tree=$1
  ubuntu_boot_files "$tree"

  # ubuntu-image customizeFstab: the root and the boot partition by label.
  printf 'LABEL=writable\t/\text4\tdefaults\t0\t1\nLABEL=system-boot\t/boot/firmware\tvfat\tdefaults\t0\t1\n' \
    >"$tree/etc/fstab"
  echo ubuntu >"$tree/etc/hostname"

  # How the image points NoCloud at the boot partition is not in the sources
  # we could read for the ubuntu-image path (README.md): the twin takes
  # livecd-rootfs' own raspi customisation (999-ubuntu-image-customization):
  # NoCloud from the file system labelled system-boot, cloud-init-local after
  # the /boot/firmware mount, cloud-config before the gettys.
  mkdir -p "$tree/etc/cloud/cloud.cfg.d" \
    "$tree/etc/systemd/system/cloud-init-local.service.d" \
    "$tree/etc/systemd/system/cloud-config.service.d"
  printf '# configure cloud-init for NoCloud\ndatasource_list: [ NoCloud, None ]\ndatasource:\n  NoCloud:\n    fs_label: system-boot\n' \
    >"$tree/etc/cloud/cloud.cfg.d/99-fake_cloud.cfg"
  printf '[Unit]\nRequiresMountsFor=/boot/firmware\n' \
    >"$tree/etc/systemd/system/cloud-init-local.service.d/mount-seed.conf"
  printf '[Unit]\nBefore=getty.target\n' \
    >"$tree/etc/systemd/system/cloud-config.service.d/getty-wait.conf"

  # Where the twin differs on purpose: the Pi's onboard NIC is eth0 (the
  # stock network-config names it); qemu's virtio NIC would get a PCI path
  # name. A link file gives it the Pi's name (also in the initramfs).
  mkdir -p "$tree/etc/systemd/network"
  printf '# haseed twin: the Pi onboard NIC is eth0; qemu virtio NIC stands in for it.\n[Match]\nDriver=virtio_net\n[Link]\nName=eth0\n' \
    >"$tree/etc/systemd/network/10-twin-eth0.link"

  # ubuntu-image cleanRootfs: machine-id emptied (a first boot), D-Bus's
  # removed, host keys removed (cloud-init makes them), persistent net rules
  # emptied.
  chroot "$tree" update-initramfs -u -k all
  : >"$tree/etc/machine-id"
  rm -f "$tree/var/lib/dbus/machine-id" "$tree"/etc/ssh/ssh_host_*_key "$tree"/etc/ssh/ssh_host_*_key.pub
  find "$tree/etc/udev/rules.d" -name '*persistent-net.rules' -exec cp /dev/null {} \; 2>/dev/null || true
  find "$tree/var/log/" -type f -exec cp /dev/null {} \;
}
