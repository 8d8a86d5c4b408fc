# shellcheck shell=sh disable=SC2154 # $base and $work come from the sourcing script
# Sourced by boot.sh, pair.sh and tests/twins/boot-image.sh (POSIX sh): finds
# qemu, picks KVM or TCG, runs a VM. Needs $base (make-base.sh's or
# make-twin.sh's directory) and $work. A caller may set before sourcing:
#   base_files  the files $base must hold (default: root.img vmlinuz initrd.img)
#   append      the kernel command line (default: the synthetic base's)
#
# HASEED_QEMU       qemu-system-x86_64 to use (default: /opt/haseed-qemu, then PATH)
# HASEED_QEMU_ACCEL kvm or tcg: skip the probe

for f in ${base_files:-root.img vmlinuz initrd.img}; do
  [ -f "$base/$f" ] || { echo "$0: $base/$f is missing (run make-base.sh or make-twin.sh)" >&2; exit 1; }
done
qemu=${HASEED_QEMU:-}
if [ -z "$qemu" ]; then
  if [ -x /opt/haseed-qemu/usr/bin/qemu-system-x86_64 ]; then
    qemu=/opt/haseed-qemu/usr/bin/qemu-system-x86_64
  else
    qemu=$(command -v qemu-system-x86_64) || { echo "$0: qemu-system-x86_64 not found (run .ci/install-deps)" >&2; exit 1; }
  fi
fi
# Firmware: the unpacked qemu's own data, then Debian's seabios and ipxe packages (ipxe's ROMs are
# in /usr/lib/ipxe/qemu on Debian 12, /usr/share/qemu on 13), those that exist.
firmware="-L $(dirname "$qemu")/../share/qemu"
for dir in /usr/share/seabios /usr/lib/ipxe/qemu /usr/share/qemu; do
  [ -d "$dir" ] && firmware="$firmware -L $dir"
done
append=${append:-root=/dev/vda rw console=ttyS0 net.ifnames=0 systemd.show_status=0}
netns=''

# vm ACCEL SECONDS CONSOLE REPORT QEMU-ARGS...: one VM booting the base's kernel,
# ttyS0 to CONSOLE, ttyS1 (the report) to REPORT, killed after SECONDS. Inside
# the network namespace $netns when it is set.
# shellcheck disable=SC2086 # $firmware is a list of -L options
vm() {
  vm_accel=$1 vm_secs=$2 vm_console=$3 vm_report=$4
  shift 4
  ${netns:+ip netns exec "$netns"} timeout -k 5 "$vm_secs" "$qemu" -machine q35 -accel "$vm_accel" \
    -m 1024 -smp 2 $firmware -display none -vga none -monitor none -no-reboot \
    -kernel "$base/vmlinuz" -initrd "$base/initrd.img" -append "$append${vm_append:+ $vm_append}" \
    -serial "file:$vm_console" -serial "file:$vm_report" "$@"
}

# Sets $accel: KVM when a probe boot without disks shows the kernel reaching
# init, else TCG (and says why).
pick_accel() {
  accel=${HASEED_QEMU_ACCEL:-}
  [ -z "$accel" ] || return 0
  accel=tcg
  if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
    vm kvm 20 "$work/probe-console.log" /dev/null -nic none >"$work/probe.log" 2>&1 || true
    if grep -q "Run /init" "$work/probe-console.log" 2>/dev/null && ! grep -q "KVM internal error" "$work/probe.log"; then
      accel=kvm
    else
      why=$(grep -m1 -E "KVM internal error|error|emulation failure" "$work/probe.log" || echo "the kernel did not start")
      echo "$0: KVM cannot run this guest kernel here ($why): falling back to TCG (software emulation, minutes)" >&2
    fi
  fi
  rm -f "$work/probe-console.log" "$work/probe.log"
}

# test_net NS GATEWAY_CIDR: a network namespace NS with a bridge br0 that holds
# GATEWAY_CIDR (the node's gateway) and a tap0 on it for the VM's NIC. The
# caller removes NS on every exit path.
test_net() {
  ip netns add "$1"
  ip -n "$1" link set lo up
  ip -n "$1" link add br0 type bridge
  ip -n "$1" addr add "$2" dev br0
  ip -n "$1" tuntap add tap0 mode tap
  ip -n "$1" link set tap0 master br0
  ip -n "$1" link set tap0 up
  ip -n "$1" link set br0 up
}

# panicked CONSOLE: the guest kernel died before the node could report. Seen under TCG with
# -smp 2, an emulator fault, not the node's: "Oops: int3" in sched_clock_cpu 2.6 s into boot,
# then "Kernel panic - not syncing: Fatal exception in interrupt", and the VM hangs. The
# scripts start such a VM again (at most twice) and say so.
panicked() {
  grep -q "Kernel panic - not syncing" "$1" 2>/dev/null
}

# kill_vms NS: every process in the namespace NS (the VM's qemu).
kill_vms() {
  ip netns pids "$1" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
}
