#!/bin/sh
# Benchmark: `haseed plugin test` on 100 fixtures of the example site (issue 22: under 2 s with
# the plugin cached). Each fixture runs prefer-lb1 last in pi-k8s's chain and checks a plan
# field and a rendered file. Prints each run's wall time and haseed's own figure, then the
# median wall time.
#
#   builder/benches/plugin-test.sh [HASEED] [RUNS]     (defaults: target/release/haseed, 5)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
haseed=${1:-$root/target/release/haseed}
runs=${2:-5}
[ -x "$haseed" ] || { echo "no haseed binary at $haseed (cargo build --release)" >&2; exit 1; }
plugin=$(find "$root/target" -path '*wasm32-wasip2/release/prefer_lb1.wasm' | head -1)
[ -n "$plugin" ] || { echo "prefer_lb1.wasm not built (cargo build builds the plugins)" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
i=0
while [ $i -lt 100 ]; do
  i=$((i + 1))
  sed "s|\.\./\.\./\.\./examples|$root/examples|" "$root/plugins/prefer-lb1/fixtures/rise-and-fall.toml" \
    > "$dir/f$i.toml"
done
# Warm the compile cache (the figure is for a cached plugin).
"$haseed" --quiet plugin test "$plugin" "$dir" > /dev/null
times=""
r=0
while [ $r -lt "$runs" ]; do
  r=$((r + 1))
  start=$(date +%s%N)
  line=$("$haseed" --quiet plugin test "$plugin" "$dir" | tail -1)
  end=$(date +%s%N)
  ms=$(( (end - start) / 1000000 ))
  echo "run $r: ${ms} ms wall; haseed: ${line##*: }"
  times="$times $ms"
done
echo "median wall: $(echo "$times" | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') ms over $runs runs (100 fixtures)"
