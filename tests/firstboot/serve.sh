#!/bin/sh
# Boot one node's first boot under qemu and keep it running for a test to work on it over
# SSH (tests/firstboot.rs, day 2: `haseed diff` and `haseed apply` into a node under real
# systemd).
#
#   sh tests/firstboot/serve.sh BASE_DIR SEED_IMG WORK_DIR GATEWAY_CIDR [TIMEOUT_S]
#
# As boot.sh (same base, seed disk, namespace with a bridge and a tap), but the VM boots with
# haseed.stay, so the base's report unit leaves it running once first boot is over. When the
# report is in, WORK_DIR/ready gets the namespace's name: the test runs its commands there
# (`ip netns exec NS ...`; the node's address is on the bridge). The VM, the namespace and the
# overlay are removed when WORK_DIR/stop appears, at TIMEOUT_S (default 1800), or on a signal.
set -eu
[ $# -ge 4 ] || { sed -n '2,13p' "$0" >&2; exit 2; }
base=$1 seed=$2 work=$3 gateway=$4 limit=${5:-1800}
[ "$(id -u)" -eq 0 ] || { echo "serve.sh: needs root (network namespace, tap)" >&2; exit 1; }
[ -f "$seed" ] || { echo "serve.sh: no seed disk at $seed" >&2; exit 1; }
# shellcheck disable=SC1091 # checked on its own
. "$(dirname "$0")/qemu.sh"

mkdir -p "$work"
for f in console.log report.txt qemu.log accel overlay.qcow2 ready stop console.panic1.log console.panic2.log; do
  rm -f "${work:?}/$f"
done
qemu-img create -q -f qcow2 -b "$(cd "$base" && pwd)/root.img" -F raw "$work/overlay.qcow2"

ns=haseed-fb2-$$
qpid=''
cleanup() {
  [ -z "$qpid" ] || kill "$qpid" 2>/dev/null || true
  ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -f "$work/overlay.qcow2" "$work/ready"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pick_accel
# shellcheck disable=SC2154 # set by pick_accel
echo "$accel" >"$work/accel"
test_net "$ns" "$gateway"

echo "serve.sh: booting under $accel (limit ${limit}s); console: $work/console.log" >&2
began=$(date +%s)
elapsed() { echo $(($(date +%s) - began)); }
start_vm() {
  netns=$ns vm_append=haseed.stay vm "$accel" "$((limit - $(elapsed)))" "$work/console.log" "$work/report.txt" \
    -drive "file=$work/overlay.qcow2,if=virtio,format=qcow2" \
    -drive "file=$seed,if=virtio,format=raw,readonly=on" \
    -netdev tap,id=n0,ifname=tap0,script=no,downscript=no \
    -device virtio-net-pci,netdev=n0,mac=52:54:00:4a:53:01 >>"$work/qemu.log" 2>&1 &
  qpid=$!
}
start_vm
panics=0
while ! grep -q HASEED-REPORT-END "$work/report.txt" 2>/dev/null; do
  if panicked "$work/console.log" && [ "$panics" -lt 2 ]; then
    panics=$((panics + 1))
    kill_vms "$ns"
    wait "$qpid" 2>/dev/null || true
    mv "$work/console.log" "$work/console.panic$panics.log"
    echo "serve.sh: the guest kernel panicked (console.panic$panics.log; an emulator fault under TCG): starting the VM again" >&2
    start_vm
  fi
  kill -0 "$qpid" 2>/dev/null || { echo "serve.sh: the VM stopped before its report:" >&2; tail -n 20 "$work/qemu.log" >&2; exit 1; }
  [ "$(elapsed)" -lt "$limit" ] || { echo "serve.sh: no report within ${limit}s" >&2; exit 124; }
  sleep 2
done
echo "serve.sh: first boot done after $(elapsed) s; serving in namespace $ns" >&2
echo "$ns" >"$work/ready"
while [ ! -e "$work/stop" ] && [ "$(elapsed)" -lt "$limit" ] && kill -0 "$qpid" 2>/dev/null; do
  sleep 1
done
