#!/bin/sh
# shellcheck disable=SC2034 # base and base_files are read by the sourced qemu.sh
# Boot a card image written by `haseed image` under qemu, as a Pi would boot
# the card, and log in to it with the real OpenSSH client.
#
#   sh tests/twins/boot-image.sh TWIN_DIR CARD_IMG WORK_DIR GATEWAY_CIDR KEY USER ADDRESS [TIMEOUT_S]
#
# TWIN_DIR      made by make-twin.sh: vmlinuz and initrd.img stand in for the
#               Pi's firmware and kernel (qemu's direct kernel boot).
# CARD_IMG      the raw image `haseed image --base TWIN_DIR/twin.img.xz` wrote;
#               never written: the VM writes to a qcow2 overlay in WORK_DIR.
# WORK_DIR      gets console.log (ttyS0), report.txt (ttyS1, the twin's
#               haseed-report unit), qemu.log, accel, cmdline (the kernel command
#               line used), cmdline-file (the file it was read from), ssh.log
#               (every login attempt), known_hosts (the node's host key) and
#               ssh-result: "ok SECONDS" (first login
#               and `sudo -n true` succeeded, seconds after qemu started) or
#               "failed SECONDS"; after a login, ssh-state: systemd's view of
#               ssh.service, sshd.service and ssh.socket, getty@tty1, the
#               links systemd-networkd manages (networkd-link lines), the sshd
#               processes and the journal's reload and ssh lines.
# GATEWAY_CIDR  the address the test bridge takes (the node's gateway).
# KEY USER ADDRESS  `ssh -i KEY USER@ADDRESS sudo -n true`, from the namespace.
#
# The kernel command line is the image's own cmdline.txt (read with mtype from
# its FAT partition 1, where config.txt's os_prefix and cmdline= say, as the Pi
# firmware reads it) plus console=ttyS0 only. The
# NIC is a tap on a bridge inside a network namespace this script creates and
# removes on every exit path. Login is retried until it works or TIMEOUT_S
# (default 1500) passes; once the node has reported (cloud-init done, so a
# seed's runcmd has run: sshd is up by then or never will be), it gets 30 s more. The VM is killed at the end.
#
# HASEED_TWIN_BOOTS (default 1): how many times the VM may start. A first boot
# that reboots (Raspberry Pi OS Bookworm: raspberrypi-sys-mods' firstboot,
# then firstrun.sh) stops qemu (-no-reboot); while it has not reported, the VM
# is started again with the command line read anew from the disk's
# cmdline.txt, as the Pi firmware reads it at every boot. Earlier boots'
# consoles are kept as console.N.log.
set -eu
[ $# -ge 7 ] || { sed -n '2,38p' "$0" >&2; exit 2; }
base=$1 card=$2 work=$3 gateway=$4 key=$5 user=$6 address=$7 limit=${8:-1500}
[ "$(id -u)" -eq 0 ] || { echo "boot-image.sh: needs root (network namespace, tap)" >&2; exit 1; }
[ -f "$card" ] || { echo "boot-image.sh: no card image at $card" >&2; exit 1; }
for tool in ssh sfdisk mtype qemu-img ip; do
  command -v "$tool" >/dev/null || { echo "boot-image.sh: $tool is missing (run .ci/install-deps)" >&2; exit 1; }
done

# The firmware's part: the command line from the boot partition (MBR partition
# 1). config.txt names the file: `cmdline=` (default cmdline.txt), with
# `os_prefix` in front unless the name is absolute (Ubuntu 25.10 on:
# `[all] os_prefix=current/`). A normal boot reads lines before any section and
# under [all]; other sections ([pi4], [tryboot], ...) are another board's or a
# trial boot's and are skipped (the Raspberry Pi config.txt documentation,
# "Conditional filters" and "os_prefix").
# firmware_cmdline FAT: prints the command line; FAT is an mtools image spec.
firmware_cmdline() {
  prefix='' name=cmdline.txt
  conf=$(mtype -i "$1" ::config.txt 2>/dev/null | tr -d '\r') || conf=''
  applies=yes
  while IFS= read -r l; do
    case $l in
      '['*) case $l in '[all]'*) applies=yes ;; *) applies=no ;; esac ;;
      os_prefix=*) [ "$applies" = no ] || prefix=${l#os_prefix=} ;;
      cmdline=*) [ "$applies" = no ] || name=${l#cmdline=} ;;
    esac
  done <<CONF
$conf
CONF
  case $name in /*) file=${name#/} ;; *) file=$prefix$name ;; esac
  echo "$file" >"$work/cmdline-file"
  mtype -i "$1" "::$file" | tr -d '\r' | head -n1
}
start=$(sfdisk --dump "$card" | sed -n 's/^[^ ]*1 : start= *\([0-9]*\),.*/\1/p' | head -n1)
[ -n "$start" ] || { echo "boot-image.sh: $card has no partition 1" >&2; exit 1; }
mkdir -p "$work"
cmdline=$(firmware_cmdline "$card@@$((start * 512))")
[ -n "$cmdline" ] || { echo "boot-image.sh: $card has no $(cat "$work/cmdline-file") on partition 1" >&2; exit 1; }
append="$cmdline console=ttyS0"
base_files="vmlinuz initrd.img"
# shellcheck disable=SC1091 # checked on its own
. "$(dirname "$0")/../firstboot/qemu.sh"

for f in console.log report.txt qemu.log accel overlay.qcow2 ssh.log known_hosts ssh-result ssh-state \
  boots reported-at console.1.log console.2.log console.3.log console.4.log bootfs.raw \
  console.panic1.log console.panic2.log; do
  rm -f "${work:?}/$f"
done
printf '%s\n' "$append" >"$work/cmdline"
qemu-img create -q -f qcow2 -b "$(cd "$(dirname "$card")" && pwd)/$(basename "$card")" -F raw "$work/overlay.qcow2"

ns=haseed-card-$$
qpid=''
cleanup() {
  [ -z "$qpid" ] || kill "$qpid" 2>/dev/null || true
  ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -f "$work/overlay.qcow2" "$work/bootfs.raw"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pick_accel
# shellcheck disable=SC2154 # set by pick_accel
echo "$accel" >"$work/accel"
test_net "$ns" "$gateway"

echo "boot-image.sh: booting $card under $accel (limit ${limit}s); console: $work/console.log" >&2
began=$(date +%s)
elapsed() { echo $(( $(date +%s) - began )); }
reported() { grep -q HASEED-REPORT-END "$work/report.txt" 2>/dev/null; }
boots=0
max_boots=${HASEED_TWIN_BOOTS:-1}
start_vm() {
  boots=$((boots + 1))
  echo "$boots" >"$work/boots"
  netns=$ns vm "$accel" "$(( limit - $(elapsed) ))" "$work/console.log" "$work/report.txt" \
    -drive "file=$work/overlay.qcow2,if=virtio,format=qcow2" \
    -netdev tap,id=n0,ifname=tap0,script=no,downscript=no \
    -device virtio-net-pci,netdev=n0,mac=52:54:00:4a:53:01 >>"$work/qemu.log" 2>&1 &
  qpid=$!
}
# After a reboot: cmdline.txt as the VM left it on partition 1.
reread_cmdline() {
  size=$(sfdisk --dump "$card" | sed -n 's/^[^ ]*1 : start= *[0-9]*, size= *\([0-9]*\),.*/\1/p' | head -n1)
  qemu-img dd -f qcow2 -O raw bs=512 skip="$start" count="$size" if="$work/overlay.qcow2" of="$work/bootfs.raw"
  append="$(firmware_cmdline "$work/bootfs.raw") console=ttyS0"
  rm -f "$work/bootfs.raw"
  printf '%s\n' "$append" >>"$work/cmdline"
}
start_vm

result=failed
reported_at=''
panics=0
while [ "$(elapsed)" -lt "$limit" ]; do
  if ! reported && panicked "$work/console.log" && [ "$panics" -lt 2 ]; then
    panics=$((panics + 1))
    kill_vms "$ns"
    wait "$qpid" 2>/dev/null || true
    mv "$work/console.log" "$work/console.panic$panics.log"
    echo "boot-image.sh: the guest kernel panicked (console.panic$panics.log; an emulator fault under TCG): starting the VM again" >&2
    boots=$((boots - 1))
    start_vm
  fi
  if ! kill -0 "$qpid" 2>/dev/null; then
    # The guest rebooted or powered off (qemu runs with -no-reboot).
    if reported || [ "$boots" -ge "$max_boots" ]; then
      break
    fi
    mv "$work/console.log" "$work/console.$boots.log"
    echo "boot-image.sh: the VM rebooted ($boots of at most $max_boots boots); starting it again" >&2
    reread_cmdline
    start_vm
  fi
  if ip netns exec "$ns" ssh -i "$key" -o BatchMode=yes -o ConnectTimeout=5 \
    -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile="$work/known_hosts" \
    -o LogLevel=ERROR "$user@$address" sudo -n true >>"$work/ssh.log" 2>&1; then
    result=ok
    break
  fi
  echo "--- $(elapsed) s: no login yet" >>"$work/ssh.log"
  if reported; then
    [ -n "$reported_at" ] || reported_at=$(elapsed)
    [ $(( $(elapsed) - reported_at )) -lt 30 ] || break
  fi
  sleep 5
done
echo "$result $(elapsed)" >"$work/ssh-result"
echo "boot-image.sh: ssh $user@$address: $result after $(elapsed) s" >&2
# The report comes once cloud-init is done (or its bounded wait ran out).
while kill -0 "$qpid" 2>/dev/null && [ "$(elapsed)" -lt "$limit" ] && ! reported; do
  sleep 5
done
if ! reported; then
  echo "boot-image.sh: no report from the VM within ${limit}s" >&2
  exit 124
fi
# When the report was seen (seconds after qemu first started, to 5 s).
elapsed >"$work/reported-at"
# What systemd itself holds about sshd after first boot, next to the sshd
# processes: a unit that lost track of its running daemon shows here (names,
# state and main PID against the processes in its cgroup).
if [ "$result" = ok ]; then
  # shellcheck disable=SC2016 # expanded on the node
  ip netns exec "$ns" ssh -i "$key" -o BatchMode=yes -o ConnectTimeout=10 \
    -o UserKnownHostsFile="$work/known_hosts" -o LogLevel=ERROR "$user@$address" \
    'for u in ssh.service sshd.service ssh.socket; do
       echo "$u: $(systemctl show -p Names,ActiveState,SubState,MainPID,UnitFileState,TriggeredBy "$u" | tr "\n" " ")"
     done
     echo "getty@tty1: $(systemctl is-enabled getty@tty1.service 2>&1) $(systemctl is-active getty@tty1.service 2>&1)"
     networkctl --no-legend --no-pager list 2>/dev/null | sed "s/^ */networkd-link /"
     echo "sshd processes: $(pgrep -d " " -x sshd) (cgroups: $(for p in $(pgrep -x sshd); do cut -d: -f3 /proc/$p/cgroup; done | sort -u | tr "\n" " "))"
     sudo -n journalctl -b --no-pager -o short-monotonic 2>/dev/null | grep -E "Reload|ssh" | tail -n 30' \
    >"$work/ssh-state" 2>&1 || echo "boot-image.sh: reading the node's ssh state failed (see $work/ssh-state)" >&2
fi
