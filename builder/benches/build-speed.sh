#!/bin/sh
# Benchmark (issue 19 item 9): `haseed build` of a 10,000-node site against the plain Jinja2
# script a user could write instead (jinja/baseline.py: same site file, per-node user-data,
# meta-data, network-config, the LBs' keepalived.conf and haproxy.cfg, a tar.gz of the tree).
# Both run interleaved RUNS times into fresh directories; prints each time, the medians, the
# ratio, and how many bytes each wrote (so the work can be compared).
#
#   builder/benches/build-speed.sh [HASEED] [RUNS] [NODES]
#   defaults: target/release/haseed, 5, 10000. Needs python3 with jinja2 (Debian: python3-jinja2).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
haseed=${1:-$here/../../target/release/haseed}
runs=${2:-5}
nodes=${3:-10000}
[ -x "$haseed" ] || { echo "no haseed binary at $haseed (cargo build --release)" >&2; exit 1; }
python3 -c 'import jinja2' || { echo "python3 has no jinja2 (apt-get install python3-jinja2)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
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
