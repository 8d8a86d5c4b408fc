#!/bin/sh
# shellcheck disable=SC2016 # the hooks are mmdebstrap's to expand ($1 = the tree)
# Build (once) the Debian trixie base that tests/firstboot boots under qemu, and
# print the directory that holds it: root.img (ext4, made with mkfs.ext4 -d, no
# mount on the host), vmlinuz and initrd.img (for qemu's direct kernel boot).
#
# The base is a cloud-init node as a Pi ships it, minus what the seed installs:
# systemd, a kernel, cloud-init with netplan (no ifupdown), NetworkManager (the
# renderer a raspios seed names, as on a Pi), sudo, ssh. haproxy, keepalived and curl are NOT
# installed: their .debs sit in an offline APT repository in the base
# (/opt/haseed-repo, indexed by dpkg-scanpackages, the only APT source), so the
# seed's `packages:` installs them at first boot the way a Pi does from its mirror.
#
# The cache lives outside the clone, keyed by this script and the harness files:
#   HASEED_FIRSTBOOT_CACHE (default /var/cache/haseed-firstboot)/<key>/
#
#   sh tests/firstboot/make-base.sh          (root; needs mmdebstrap, network once)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cache=${HASEED_FIRSTBOOT_CACHE:-/var/cache/haseed-firstboot}
mirror=${HASEED_DEBIAN_MIRROR:-http://deb.debian.org/debian}

packages="systemd,systemd-sysv,udev,dbus,kmod,linux-image-amd64,initramfs-tools,\
cloud-init,netplan.io,systemd-resolved,network-manager,iproute2,procps,sudo,openssh-server,\
e2fsprogs,ca-certificates,qemu-guest-agent,less"
seeded="haproxy keepalived curl"

key=$(cat "$0" "$here/offline-repo.sh" "$here/report.sh" "$here/haseed-report.service" | sha256sum | cut -c1-16)
dir=$cache/$key
if [ -f "$dir/ready" ]; then
  echo "$dir"
  exit 0
fi

for tool in mmdebstrap mkfs.ext4 dpkg-scanpackages; do
  command -v "$tool" >/dev/null || { echo "make-base.sh: $tool is missing (run .ci/install-deps)" >&2; exit 1; }
done
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
root=$tmp/root

echo "make-base.sh: building the trixie base in $dir (once; a few minutes)" >&2
# --customize-hook runs with the finished tree at $1:
#   1. the seeded packages' .debs (and what they need) in an offline repo, the
#      only APT source, with no lists, as on a node that has not yet run
#      apt-get update (offline-repo.sh, shared with tests/twins/make-twin.sh);
#   2. install the harness's report unit and the root file system's fstab.
mmdebstrap --mode=root --variant=apt --include="$packages" \
  --customize-hook="sh '$here/offline-repo.sh' \"\$1\" $seeded" \
  --customize-hook='printf "/dev/vda / ext4 defaults 0 1\n" > "$1/etc/fstab"' \
  --customize-hook="install -m 0755 '$here/report.sh' \"\$1/usr/local/sbin/haseed-report\"" \
  --customize-hook="install -m 0644 '$here/haseed-report.service' \"\$1/etc/systemd/system/haseed-report.service\"" \
  --customize-hook='mkdir -p "$1/etc/systemd/system/multi-user.target.wants" && ln -sf /etc/systemd/system/haseed-report.service "$1/etc/systemd/system/multi-user.target.wants/haseed-report.service"' \
  trixie "$root" "$mirror" >&2

cp "$root"/boot/vmlinuz-* "$tmp/vmlinuz"
cp "$root"/boot/initrd.img-* "$tmp/initrd.img"
mkfs.ext4 -q -F -L root -d "$root" "$tmp/root.img" 3G
rm -rf "$root"
ls "$tmp" >"$tmp/ready"
rm -rf "$dir"
mv "$tmp" "$dir"
# Bases built from older versions of these files are not used again.
for old in "$cache"/*/; do
  [ "${old%/}" = "$dir" ] || rm -rf "${old%/}"
done
trap - EXIT INT TERM
echo "$dir"
