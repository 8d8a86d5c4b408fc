#!/bin/sh
# Boot one node's first boot under qemu and collect its report.
#
#   sh tests/firstboot/boot.sh BASE_DIR SEED_IMG WORK_DIR GATEWAY_CIDR [TIMEOUT_S]
#
# BASE_DIR      made by make-base.sh (root.img, vmlinuz, initrd.img); never written:
#               the VM writes to a qcow2 overlay in WORK_DIR.
# SEED_IMG      the node's NoCloud cidata disk, made by `haseed seed`.
# WORK_DIR      gets console.log (ttyS0), report.txt (ttyS1, written by the base's
#               haseed-report unit), qemu.log and accel (kvm or tcg).
# GATEWAY_CIDR  the address the test bridge takes (the node's gateway), e.g. 192.168.3.1/24.
#
# The VM's NIC is a tap on a bridge inside a network namespace this script
# creates and removes (on exit, failure or Ctrl-C); no traffic leaves it.
# KVM is used when a short probe boot shows it can run the guest kernel;
# otherwise TCG, and the script says so. qemu is killed at TIMEOUT_S (default 1500).
# Environment: see qemu.sh (HASEED_QEMU, HASEED_QEMU_ACCEL).
set -eu
[ $# -ge 4 ] || { sed -n '2,18p' "$0" >&2; exit 2; }
base=$1 seed=$2 work=$3 gateway=$4 limit=${5:-1500}
[ "$(id -u)" -eq 0 ] || { echo "boot.sh: needs root (network namespace, tap)" >&2; exit 1; }
[ -f "$seed" ] || { echo "boot.sh: no seed disk at $seed" >&2; exit 1; }
# shellcheck disable=SC1091 # checked on its own
. "$(dirname "$0")/qemu.sh"

mkdir -p "$work"
rm -f "$work/console.log" "$work/report.txt" "$work/qemu.log" "$work/accel" "$work/overlay.qcow2" \
  "$work/console.panic1.log" "$work/console.panic2.log"
qemu-img create -q -f qcow2 -b "$(cd "$base" && pwd)/root.img" -F raw "$work/overlay.qcow2"

ns=haseed-fb-$$
cleanup() {
  ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -f "$work/overlay.qcow2"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pick_accel
# shellcheck disable=SC2154 # set by pick_accel
echo "$accel" >"$work/accel"

test_net "$ns" "$gateway"

echo "boot.sh: booting under $accel (limit ${limit}s); console: $work/console.log" >&2
began=$(date +%s)
panics=0
while :; do
  rc=0
  netns=$ns vm "$accel" "$((limit - ($(date +%s) - began)))" "$work/console.log" "$work/report.txt" \
    -drive "file=$work/overlay.qcow2,if=virtio,format=qcow2" \
    -drive "file=$seed,if=virtio,format=raw,readonly=on" \
    -netdev tap,id=n0,ifname=tap0,script=no,downscript=no \
    -device virtio-net-pci,netdev=n0,mac=52:54:00:4a:53:01 >>"$work/qemu.log" 2>&1 &
  qpid=$!
  # A panicked guest hangs until the time limit: watch its console while it runs.
  while kill -0 "$qpid" 2>/dev/null && ! panicked "$work/console.log"; do
    sleep 2
  done
  if panicked "$work/console.log" && ! grep -q HASEED-REPORT-END "$work/report.txt" 2>/dev/null \
    && [ "$panics" -lt 2 ]; then
    panics=$((panics + 1))
    kill_vms "$ns"
    wait "$qpid" 2>/dev/null || true
    mv "$work/console.log" "$work/console.panic$panics.log"
    echo "boot.sh: the guest kernel panicked (console.panic$panics.log; an emulator fault under TCG): starting the VM again" >&2
    continue
  fi
  wait "$qpid" || rc=$?
  break
done
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  echo "boot.sh: the VM did not power off within ${limit}s" >&2
  exit 124
fi
[ "$rc" -eq 0 ] || { echo "boot.sh: qemu exited $rc:" >&2; cat "$work/qemu.log" >&2; exit "$rc"; }
