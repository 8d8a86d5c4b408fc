#!/bin/sh
# The pair under real systemd: a site's two load balancers boot their seeds
# side by side on one bridge, with two tiny backends and a client; then haproxy
# is SIGKILLed inside the VM that holds the VIP, and the client's outage is
# measured (TCP connect + request every 20 ms, 200 ms timeout).
#
#   sh tests/firstboot/pair.sh SITE [TRIALS] [WORK_DIR]      (root; HASEED=path/to/haseed)
#
# Reads everything from `haseed build SITE`: the two nodes with a keepalived.conf,
# their addresses and gateway (network-config), the VIP (keepalived.conf), the
# first public frontend port and the first two backend servers (haproxy.cfg).
# The client takes host .99 of the LBs' subnet. Both VMs boot with haseed.stay
# (the base's report unit then leaves them running); haproxy is killed through
# the qemu guest agent. Everything runs in network namespaces this script
# creates; they, the VMs and the backends are removed on exit, failure or Ctrl-C.
# Not run by CI (two emulated first boots take 10-20 minutes); its figures are in
# the README next to the lab's.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { sed -n '2,17p' "$0" >&2; exit 2; }
site=$1 trials=${2:-3} work=${3:-/var/tmp/haseed-pair}
haseed=${HASEED:-haseed}
[ "$(id -u)" -eq 0 ] || { echo "pair.sh: needs root (network namespaces, taps)" >&2; exit 1; }
py() { python3 "$here/pair.py" "$@"; }

base=$(sh "$here/make-base.sh")
mkdir -p "$work"
rm -rf "${work:?}"/*
# shellcheck disable=SC1091 # checked on its own
. "$here/qemu.sh"

"$haseed" build "$site" -o "$work/out" -q
lbs=''
for f in "$work"/out/*/files/etc/keepalived/keepalived.conf; do
  [ -f "$f" ] && lbs="$lbs $(basename "$(dirname "$(dirname "$(dirname "$(dirname "$f")")")")")"
done
lb1=$(echo "$lbs" | awk '{print $1}') lb2=$(echo "$lbs" | awk '{print $2}')
[ -n "$lb2" ] || { echo "pair.sh: $site needs two nodes with keepalived (found:$lbs)" >&2; exit 1; }
addr_of() { sed -n 's/.*addresses: \["\([0-9.]*\)\/[0-9]*".*/\1/p' "$work/out/$1/network-config" | head -n 1; }
prefix=$(sed -n 's/.*addresses: \["[0-9.]*\/\([0-9]*\)".*/\1/p' "$work/out/$lb1/network-config" | head -n 1)
gw=$(sed -n 's/.*via: "\([0-9.]*\)".*/\1/p' "$work/out/$lb1/network-config" | head -n 1)
vip=$(awk '/virtual_ipaddress/ {getline; print $1; exit}' "$work/out/$lb1/files/etc/keepalived/keepalived.conf" | cut -d/ -f1)
cfg=$work/out/$lb1/files/etc/haproxy/haproxy.cfg
port=$(awk '$1 == "bind" && $2 ~ /^\*:/ {sub(/^\*:/, "", $2); print $2; exit}' "$cfg")
backends=$(awk '$1 == "server" {print $3}' "$cfg" | head -n 2)
client=${gw%.*}.99
echo "pair.sh: $lb1 $(addr_of "$lb1"), $lb2 $(addr_of "$lb2"), VIP $vip:$port, backends $backends, client $client" >&2

pick_accel
# shellcheck disable=SC2154 # set by pick_accel
: "$accel"
tag=hsp$$
br=$tag-br
cleanup() {
  for n in $(ip netns list | awk -v t="$tag-" 'index($1, t) == 1 {print $1}'); do
    ip netns pids "$n" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$n" 2>/dev/null || true
  done
  rm -f "$work"/*/overlay.qcow2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$br"
ip -n "$br" link set lo up
ip -n "$br" link add br0 type bridge
ip -n "$br" addr add "$gw/$prefix" dev br0
ip -n "$br" link set br0 up
host() { # NAME ADDR: a namespace on the bridge through a veth
  ip netns add "$tag-$1"
  ip -n "$br" link add "v-$1" type veth peer name eth0 netns "$tag-$1"
  ip -n "$br" link set "v-$1" master br0 up
  ip -n "$tag-$1" link set lo up
  ip -n "$tag-$1" addr add "$2/$prefix" dev eth0
  ip -n "$tag-$1" link set eth0 up
}
i=0
for b in $backends; do
  i=$((i + 1))
  host "b$i" "${b%:*}"
  ip netns exec "$tag-b$i" python3 "$here/pair.py" backend "${b%:*}" "${b#*:}" &
done
host client "$client"

i=0
for n in $lb1 $lb2; do
  i=$((i + 1))
  mkdir -p "$work/$n"
  "$haseed" seed "$site" --node "$n" -o "$work/$n/seed.img" -q
  qemu-img create -q -f qcow2 -b "$base/root.img" -F raw "$work/$n/overlay.qcow2"
  ip -n "$br" tuntap add "tap$i" mode tap
  ip -n "$br" link set "tap$i" master br0 up
  netns=$br vm_append=haseed.stay vm "$accel" 3600 "$work/$n/console.log" "$work/$n/report.txt" \
    -drive "file=$work/$n/overlay.qcow2,if=virtio,format=qcow2" \
    -drive "file=$work/$n/seed.img,if=virtio,format=raw,readonly=on" \
    -netdev "tap,id=n0,ifname=tap$i,script=no,downscript=no" \
    -device "virtio-net-pci,netdev=n0,mac=52:54:00:4a:53:0$i" \
    -chardev "socket,path=$work/$n/qga.sock,server=on,wait=off,id=qga0" \
    -device virtio-serial -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0 \
    >"$work/$n/qemu.log" 2>&1 &
done
echo "pair.sh: booting $lb1 and $lb2 under $accel (consoles in $work/$lb1, $work/$lb2)" >&2
started=$(date +%s)
for n in $lb1 $lb2; do
  while ! grep -q HASEED-REPORT-END "$work/$n/report.txt" 2>/dev/null; do
    [ $(($(date +%s) - started)) -lt 3000 ] || { echo "pair.sh: $n did not finish first boot in 3000 s" >&2; exit 1; }
    sleep 5
  done
done
echo "pair.sh: both first boots done in $(($(date +%s) - started)) s" >&2

in_vm() { n=$1; shift; py qga "$work/$n/qga.sock" "$@"; }
holders() {
  for n in $lb1 $lb2; do
    if in_vm "$n" /usr/sbin/ip -4 -o addr show dev eth0 | grep -q " $vip/"; then printf '%s ' "$n"; fi
  done
}
sleep 5
h=$(holders)
echo "pair.sh: VIP $vip held by: $h" >&2
[ "$(echo "$h" | wc -w)" -eq 1 ] || { echo "pair.sh: the VIP must be on exactly one LB" >&2; exit 1; }

printf 'trial  from  to    outage_ms  failed/probes  haproxy back on the old holder\n'
t=1
while [ "$t" -le "$trials" ]; do
  from=$(holders)
  from=${from% }
  ip netns exec "$tag-client" python3 "$here/pair.py" probe "$vip" "$port" 12 "$work/probe$t.txt" &
  probe=$!
  sleep 3
  in_vm "$from" /usr/bin/pkill -KILL -x haproxy || true
  wait "$probe"
  sleep 3
  to=$(holders)
  back=$(in_vm "$from" /usr/bin/systemctl is-active haproxy || true)
  read -r outage failed probes <<EOT
$(py outage "$work/probe$t.txt")
EOT
  printf '%-6s %-5s %-5s %-10s %s/%-12s %s\n' "$t" "$from" "${to% }" "$outage" "$failed" "$probes" "$back"
  t=$((t + 1))
  sleep 5
done
