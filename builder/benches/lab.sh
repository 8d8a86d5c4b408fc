#!/bin/sh
# Failover benchmark (issue 10): the reference settings against the default
# policy, in the same `haseed lab` run of this script, same machine, same lab.
#
#   reference  the example site with `[default_policy] failover = false`: the
#              keepalived settings of the Pi reference write-up
#              (shared/reference/pi-k8s-active-standby-lb.md): VRRPv2, advert
#              1 s, priority 100, state BACKUP + nopreempt, one process check
#              (interval 1, rise 2, fall 3; `pgrep -x haproxy`, the policy's
#              stand-in for the write-up's `systemctl is-active haproxy`, which
#              needs systemd), no track_file, no drop-ins, no HTTP monitor.
#   default    the example site as it is: the default policy's event-driven
#              failover (failover.rs).
#
# Each runs every lab scenario TRIALS times (default 5); the script prints the
# median and max outage per scenario for both, a Markdown table, and the load.
# Needs root (network namespaces); not run in CI (minutes, timing-sensitive).
#
#   sudo sh builder/benches/lab.sh [TRIALS] [WORKDIR]
set -eu
trials=${1:-5}
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=${2:-/var/tmp/haseed-lab-bench}
mkdir -p "$work"
cd "$repo"
if [ "$(id -u)" != 0 ]; then
  echo "lab.sh needs root: haseed lab creates network namespaces" >&2
  exit 1
fi
command -v jq >/dev/null || { echo "lab.sh needs jq" >&2; exit 1; }
cargo build --release --locked -q
haseed=${CARGO_TARGET_DIR:-$repo/target}/release/haseed
export HASEED_CACHE_DIR="$work/cache"

cp examples/pi-k8s/site.toml "$work/default.toml"
{ cat examples/pi-k8s/site.toml; printf '\n[default_policy]\nfailover = false\n'; } >"$work/reference.toml"

echo "load before: $(uptime)"
for setting in reference default; do
  echo "running the lab: $setting settings, $trials trials per scenario"
  # A trial that misses the objective makes haseed exit 1: expected for the
  # reference; the JSON is what counts. Anything else (no JSON) stops here.
  "$haseed" lab "$work/$setting.toml" --trials "$trials" --json \
    --svg "$work/svg-$setting" >"$work/$setting.json" || true
  jq -e .summary "$work/$setting.json" >/dev/null || {
    echo "lab run for $setting printed no results" >&2
    exit 1
  }
  echo "load after $setting: $(uptime)"
done

# One row per scenario: median / max outage and trials that met the
# objective, reference then default.
echo
echo "| scenario | reference: outage median / max | met | default policy: outage median / max | met |"
echo "|---|---|---|---|---|"
jq -r -n --slurpfile r "$work/reference.json" --slurpfile d "$work/default.json" '
  def row($s): "\($s.median_outage_ms | round) / \($s.max_outage_ms | round) ms | \($s.passed)/\($s.trials)";
  ($r[0].summary | map({(.scenario): .}) | add) as $ref
  | $d[0].summary[]
  | "| \(.scenario) | \(row($ref[.scenario])) | \(row(.)) |"'
echo
echo "VIP held twice, max (reference / default):"
jq -r -n --slurpfile r "$work/reference.json" --slurpfile d "$work/default.json" '
  ($r[0].summary | map({(.scenario): .max_duplicate_vip_ms}) | add) as $ref
  | $d[0].summary[] | "  \(.scenario): \($ref[.scenario] | round) / \(.max_duplicate_vip_ms | round) ms"'
echo
echo "Why reference trials missed the objective (first of each scenario):"
jq -r '[.trials[] | select(.passed | not)] | group_by(.scenario)[] | "  \(.[0].scenario): \(.[0].why)"' "$work/reference.json"
echo "Why default trials missed the objective:"
jq -r '.trials[] | select(.passed | not) | "  \(.scenario) \(.trial): \(.why)"' "$work/default.json"
echo "JSON and SVG timelines: $work"
