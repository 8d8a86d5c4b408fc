#!/bin/sh
# Benchmark (issue 23 item 4): flashing cards whose write speed, not the CPU, is the bottleneck,
# as with SD cards. Same base, same devices, one run, RUNS rounds interleaved:
#   - `bmaptool copy` of lb1's image (made by `haseed image`, with its block map) to one card;
#   - `haseed flash` of lb1 to one card (it edits the card's boot partition in a copy of the base's
#     head, writes the mapped blocks and reads them back as it goes);
#   - `haseed flash` of lb1, lb2, master1 and master2 to four cards at once.
# Prints each time, the medians, the bytes each wrote, and the ratios the issue sets targets for:
# haseed writes no more bytes than bmaptool and is no slower on one card; four cards take at most
# 1.2x one card's time. Every haseed card is read back and compared over its mapped ranges by
# haseed itself (its exit status; the script checks it), and after the last round the script reads
# the four cards itself and compares each with `haseed image`'s image of its node over that image's
# block map (sha256 of the ranges, read with dd).
#
#   sudo builder/benches/flash-speed.sh [HASEED] [RUNS] [MBPS] [IMAGE_MIB] [DATA_MIB]
#   defaults: target/release/haseed, 3, 20, 1024, 400.
#
# The cards are loop devices over files on a tmpfs (see below). Their writes are throttled
# to MBPS MiB/s each with the blkio cgroup: cgroup v2's io.max on a group this script joins where
# the io controller is enabled (v2 charges writeback to the group that dirtied the pages), else
# cgroup v1's blkio.throttle.write_bps_device on the root group, so that the kernel's background
# writeback, which v1 charges to the root group, is throttled too: bmaptool copy sets the card's
# dirty-page share to 1% (bdi max_ratio, bmaptools/BmapCopy.py in Debian's bmap-tools 3.6-2), so
# the flusher threads write part of its data, and with the limit on a child group that part went
# unthrottled (bmaptool then beat the card's own speed). The base is the test suite's
# Raspberry Pi OS stand-in (tests/images/make-base.sh) of IMAGE_MIB with DATA_MIB of random files
# in its root file system, and its block map is made by `bmaptool create`, as pi-gen makes
# Raspberry Pi OS's. Needs root, bmaptool (Debian: bmap-tools), losetup, mkfs tools, mtools.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$here/../..
haseed=${1:-$root/target/release/haseed}
runs=${2:-3}
mbps=${3:-20}
image_mib=${4:-1024}
data_mib=${5:-400}
[ "$(id -u)" = 0 ] || { echo "flash-speed.sh needs root (loop devices, cgroups)" >&2; exit 1; }
[ -x "$haseed" ] || { echo "no haseed binary at $haseed (cargo build --release)" >&2; exit 1; }
command -v bmaptool > /dev/null || { echo "no bmaptool (apt-get install bmap-tools)" >&2; exit 1; }
site=$root/examples/pi-k8s/site.toml
tmp=$(mktemp -d /var/tmp/haseed-flash-bench.XXXXXX)
cg=
v1_rules=
loops=
cleanup() {
  # cgroup v1: the rules were set on the root group; a limit of 0 removes one.
  for l in $v1_rules; do
    echo "$l 0" > /sys/fs/cgroup/blkio/blkio.throttle.write_bps_device 2> /dev/null || true
  done
  for l in $loops; do losetup -d "$l" 2> /dev/null || true; done
  umount "$tmp/cards" 2> /dev/null || true
  if [ -n "$cg" ]; then
    # Back to the root group, then the group goes.
    if [ -f "$cg/../cgroup.procs" ]; then echo $$ > "$cg/../cgroup.procs" 2> /dev/null || true; fi
    rmdir "$cg" 2> /dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "base: ${image_mib} MiB with ${data_mib} MiB of data in its root file system"
mkdir "$tmp/rootfs" "$tmp/rootfs/etc" "$tmp/rootfs/data"
printf 'raspberrypi\n' > "$tmp/rootfs/etc/hostname"
i=0
while [ "$i" -lt $((data_mib / 20)) ]; do
  head -c $((20 << 20)) /dev/urandom > "$tmp/rootfs/data/blob$i"
  i=$((i + 1))
done
sh "$root/tests/images/make-base.sh" "$tmp/base.img" raspios-trixie "$image_mib" "$tmp/rootfs" > /dev/null
rm -rf "$tmp/rootfs"
bmaptool -q create -o "$tmp/base.img.bmap" "$tmp/base.img"
"$haseed" -q image "$site" --node lb1 --base "$tmp/base.img" -o "$tmp/lb1.img"

# The cards' backing files live in memory: a flush of a loop device is an fsync of its backing
# file, and on a disk that would add the host disk's write time to whichever tool flushes last
# (haseed flushes once, before its first MiB; bmaptool every 6 MiB), which no SD card has.
mkdir "$tmp/cards"
mount -t tmpfs -o size=$((4 * image_mib + 64))m haseed-flash-bench "$tmp/cards"
for n in 1 2 3 4; do
  truncate -s "${image_mib}M" "$tmp/cards/card$n.bin"
  l=$(losetup --find --show "$tmp/cards/card$n.bin")
  loops="$loops $l"
done
# shellcheck disable=SC2086 # one loop device per word
set -- $loops
bps=$((mbps << 20))
if grep -qw io /sys/fs/cgroup/cgroup.controllers 2> /dev/null; then
  cg=/sys/fs/cgroup/haseed-flash-bench
  mkdir "$cg"
  for l in "$@"; do echo "$(lsblk -dno MAJ:MIN "$l" | tr -d ' ') wbps=$bps" > "$cg/io.max"; done
  how="cgroup v2 io.max wbps=$bps per card"
elif [ -d /sys/fs/cgroup/blkio ]; then
  # On the root group, not a child: cgroup v1 charges the kernel's background writeback (the
  # flusher threads) to the root group, so a child's limit lets a buffered writer's pages that
  # the flusher writes out go unthrottled. A card has no such side door.
  for l in "$@"; do
    mm=$(lsblk -dno MAJ:MIN "$l" | tr -d ' ')
    echo "$mm $bps" > /sys/fs/cgroup/blkio/blkio.throttle.write_bps_device
    v1_rules="$v1_rules $mm"
  done
  how="cgroup v1 blkio.throttle.write_bps_device $bps per card, on the root group"
else
  echo "no blkio cgroup to throttle the cards with" >&2
  exit 1
fi
echo "cards: $* ($how)"
if [ -n "$cg" ]; then echo $$ > "$cg/cgroup.procs"; fi

# Seconds, to the hundredth, of running "$@".
timed() {
  start=$(date +%s.%N)
  "$@"
  end=$(date +%s.%N)
  echo "$start $end" | awk '{printf "%.2f\n", $2 - $1}'
}

median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

# --force: loop devices are not removable; its warnings go to a log, shown if flash fails.
flash() {
  "$haseed" -q flash "$site" --base "$tmp/base.img" --tmp-dir "$tmp" --force --ledger "$tmp/ledger" \
    "$@" 2> "$tmp/flash.log" || { cat "$tmp/flash.log" >&2; return 1; }
}

: > "$tmp/t.bmaptool"
: > "$tmp/t.one"
: > "$tmp/t.four"
r=1
while [ "$r" -le "$runs" ]; do
  sync
  tb=$(timed bmaptool -q copy "$tmp/lb1.img" "$1")
  echo "$tb" >> "$tmp/t.bmaptool"
  : > "$tmp/ledger"
  t1=$(timed flash --node "lb1=$1")
  echo "$t1" >> "$tmp/t.one"
  one_bytes=$(grep -o '"bytes_written":[0-9]*' "$tmp/ledger" | cut -d: -f2)
  : > "$tmp/ledger"
  t4=$(timed flash --node "lb1=$1" --node "lb2=$2" --node "master1=$3" --node "master2=$4")
  echo "$t4" >> "$tmp/t.four"
  verified=$(grep -c '"result":"verified"' "$tmp/ledger")
  [ "$verified" = 4 ] || { echo "round $r: $verified of 4 cards verified" >&2; exit 1; }
  echo "round $r: bmaptool $tb s, haseed one card $t1 s, four cards $t4 s"
  r=$((r + 1))
done

# The last round's cards against `haseed image`'s own image of each node, over that image's block
# map's ranges, read here from the cards (not haseed's own read-back).
ranges_sha256() { # FILE BMAP
  bs=$(sed -n 's:.*<BlockSize> *\([0-9]*\) *</BlockSize>.*:\1:p' "$2")
  sed -n 's:.*<Range[^>]*> *\([0-9-]*\) *</Range>.*:\1:p' "$2" | while IFS=- read -r a b; do
    dd if="$1" bs="$bs" skip="$a" count=$((${b:-$a} - a + 1)) status=none
  done | sha256sum | cut -d' ' -f1
}
n=1
for node in lb1 lb2 master1 master2; do
  rm -f "$tmp/check.img" "$tmp/check.img.bmap"
  "$haseed" -q image "$site" --node "$node" --base "$tmp/base.img" -o "$tmp/check.img"
  want=$(ranges_sha256 "$tmp/check.img" "$tmp/check.img.bmap")
  got=$(eval ranges_sha256 "\${$n}" "$tmp/check.img.bmap")
  [ "$want" = "$got" ] || { echo "card $n ($node) differs from haseed image's $node over its ranges" >&2; exit 1; }
  n=$((n + 1))
done
echo "the last round's four cards hold haseed image's lb1, lb2, master1, master2 over their block maps"

bm=$(median < "$tmp/t.bmaptool")
one=$(median < "$tmp/t.one")
four=$(median < "$tmp/t.four")
block=$(sed -n 's:.*<BlockSize> *\([0-9]*\) *</BlockSize>.*:\1:p' "$tmp/lb1.img.bmap")
mapped=$(sed -n 's:.*<MappedBlocksCount> *\([0-9]*\) *</MappedBlocksCount>.*:\1:p' "$tmp/lb1.img.bmap")
bm_bytes=$((block * mapped))
echo
echo "image: $((image_mib << 20)) bytes; bmaptool writes $bm_bytes, haseed $one_bytes (its block map's ranges)"
echo "medians of $runs: bmaptool copy $bm s; haseed flash, one card $one s; four cards $four s"
awk -v bm="$bm" -v one="$one" -v four="$four" -v bb="$bm_bytes" -v hb="$one_bytes" 'BEGIN {
  printf "haseed / bmaptool, one card: %.2f (time), %.4f (bytes)\n", one / bm, hb / bb
  printf "four cards / one card: %.2f\n", four / one
}'
