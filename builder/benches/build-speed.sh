#!/bin/sh
# Benchmark (issue 19 item 9): `haseed build` of a 10,000-node site against the plain Jinja2
# script a user could write instead (jinja/baseline.py: same site file, per-node user-data,
# meta-data, network-config, the LBs' keepalived.conf and haproxy.cfg, a tar.gz of the tree).
# Both run interleaved RUNS times into fresh directories; prints each time, the medians, the
# ratio, and how many bytes each wrote (so the work can be compared).
#
#   builder/benches/build-speed.sh [HASEED] [RUNS] [NODES]
#   defaults: target/release/haseed, 5, 10000. Needs python3 with jinja2 (Debian: python3-jinja2).
#
# Where the trees go matters as much as the tools: as root, the script makes a file system for
# the run (ext4 as Debian's mkfs.ext4 makes it, with its journal, on a loop device over a
# file in the temporary directory) so both tools write to the same fresh disk. Without it the
# runs go to the temporary directory's own file system, and the figures are that file
# system's: ext4 without a journal, for one, skips every inode freed in the last 5 s (305 s
# while its inode table block is unwritten) when it allocates a new one (recently_deleted()
# and find_inode_bit() in fs/ext4/ialloc.c, torvalds/linux a02633e9b13d), so each run
# after the previous run's trees were removed was slower than the last (haseed 27 to 59 s
# for 5 runs on this build machine's root file system, the Jinja2 script 10 to 15 s).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
haseed=${1:-$here/../../target/release/haseed}
runs=${2:-5}
nodes=${3:-10000}
[ -x "$haseed" ] || { echo "no haseed binary at $haseed (cargo build --release)" >&2; exit 1; }
python3 -c 'import jinja2' || { echo "python3 has no jinja2 (apt-get install python3-jinja2)" >&2; exit 1; }
tmp=$(mktemp -d)
work=$tmp
cleanup() {
  if [ "$work" != "$tmp" ]; then umount "$work" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
if [ "$(id -u)" = 0 ] && command -v mkfs.ext4 > /dev/null && command -v losetup > /dev/null; then
  # 2 builds of each tool at most on it at once (the warm one and a run's), ~1.3 GB and
  # 280,000 inodes for haseed's, so 8 GiB and 2M inodes. Tables zeroed now, not by the
  # kernel's lazy init thread during the runs.
  truncate -s 8G "$tmp/disk.img"
  mkfs.ext4 -q -F -N 2000000 -E lazy_itable_init=0,lazy_journal_init=0 "$tmp/disk.img"
  mkdir "$tmp/mnt"
  mount -o loop "$tmp/disk.img" "$tmp/mnt"
  work=$tmp/mnt
  echo "trees on a fresh journaled ext4 (loop device over $tmp/disk.img)"
else
  echo "not root (or no mkfs.ext4/losetup): trees in $tmp, on $(df -T "$tmp" | awk 'NR == 2 {print $2}'); the figures are that file system's" >&2
fi
python3 - "$nodes" > "$work/site.toml" <<'PY'
import sys
n = int(sys.argv[1])
print('[site]\nname = "scale"\n\n[defaults]\nplatform = "ubuntu"\ninterface = "eth0"\nuser = "ops"')
print('ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchKey ops@example"]\n')
print('[[network]]\nname = "lan"\ncidr = "10.0.0.0/16"\ngateway = "10.0.0.1"\ndns = ["10.0.0.1"]\n')
print('[[vip]]\nname = "api"\naddress = "10.0.0.10"\nnetwork = "lan"\n')
print('[[service]]\nname = "kube-apiserver"\nvip = "api"\nport = 6443\nbackend_role = "master"\n')
for i in range(n):
    name, role = (f"lb{i+1}", "lb") if i < 2 else (f"master{i-1}", "master") if i < 5 else (f"worker{i-4}", "worker")
    a = 256 + i
    print(f'[[node]]\nname = "{name}"\nroles = ["{role}"]\naddress = "10.0.{a // 256}.{a % 256}"\n')
PY
ms() { echo $(( ($2 - $1) / 1000000 )); }
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
"$haseed" --quiet build "$work/site.toml" -o "$work/warm" > /dev/null   # compile cache warm
h_all=""; j_all=""
r=0
while [ $r -lt "$runs" ]; do
  r=$((r + 1))
  rm -rf "$work/h" "$work/j"
  # Neither run pays for the previous runs' writeback (the trees are ~160,000
  # files and directories each: unsynced, each run was slower than the last).
  sync
  t0=$(date +%s%N); "$haseed" --quiet build "$work/site.toml" -o "$work/h" > /dev/null; t1=$(date +%s%N)
  python3 "$here/jinja/baseline.py" "$work/site.toml" "$work/j"; t2=$(date +%s%N)
  h=$(ms "$t0" "$t1"); j=$(ms "$t1" "$t2")
  echo "run $r: haseed build ${h} ms, jinja2 script ${j} ms"
  h_all="$h_all $h"; j_all="$j_all $j"
done
hm=$(echo "$h_all" | median); jm=$(echo "$j_all" | median)
echo "bytes written: haseed $(du -sb "$work/h" | cut -f1), jinja2 $(du -sb "$work/j" | cut -f1)"
echo "median: haseed build ${hm} ms, jinja2 script ${jm} ms, ratio $(awk "BEGIN {printf \"%.2f\", $hm / $jm}") ($nodes nodes, $runs runs, $(nproc) cores)"
