#!/bin/sh
# Boots the example load balancer's card on one twin and prints its figures:
# builds the twin (cached, make-twin.sh), runs the real `haseed image` for lb1
# and boots it, judging it as CI judges the Trixie twin (tests/card.rs,
# the_example_lb_card_boots_on_the_trixie_twin_and_answers_ssh, with
# HASEED_TWIN_LAYOUT=LAYOUT).
#
#   sh tests/twins/run-twin.sh LAYOUT     (root; from anywhere in the clone)
#
# LAYOUT: raspios-trixie, raspios-trixie-2025-10, raspios-bookworm,
# ubuntu-raspi-noble, ubuntu-raspi-resolute. CI runs
# only raspios-trixie; this script runs the others, once each, for README.md.
# Prints: time to the first SSH login with `sudo -n true` (after qemu first
# started), time to the report (cloud-init done, or Bookworm's start-up after
# firstrun.sh), the number of boots, and the test's verdict. The test's whole
# output is kept in $TMPDIR/run-twin-LAYOUT.log; the card, the VM's console,
# report and login log stay in the directory it names (HASEED_TWIN_KEEP: delete
# it when done, the card is as big as the twin).
set -eu
[ $# -eq 1 ] || { sed -n '2,18p' "$0" >&2; exit 2; }
layout=$1
here=$(cd "$(dirname "$0")" && pwd)
[ -f "$here/$layout.sh" ] || { echo "run-twin.sh: unknown layout '$layout' (a file LAYOUT.sh in $here)" >&2; exit 2; }
log=${TMPDIR:-/tmp}/run-twin-$layout.log
started=$(date +%s)
status=0
(cd "$here/../.." && HASEED_TWIN_LAYOUT=$layout HASEED_TWIN_KEEP=1 cargo test --test card \
  the_example_lb_card_boots_on_the_trixie_twin_and_answers_ssh -- --exact --nocapture) >"$log" 2>&1 || status=$?
login=$(sed -n 's/.*login Some("ok \([0-9]*\)").*/\1/p; s/.*login "ok \([0-9]*\)".*/\1/p' "$log" | head -n1)
reported=$(sed -n 's/^reported \([0-9]*\) s after qemu first started (\([0-9]*\) boots).*/\1 \2/p' "$log" | head -n1)
uptime=$(sed -n 's/^cloud-init done (or its wait ended) \([0-9.]*\) s after the kernel started.*/\1/p' "$log" | head -n1)
echo "layout:                          $layout"
echo "first SSH login + sudo -n true:  ${login:-none} s after qemu started"
echo "report (first boot done):        ${reported% *} s after qemu first started, ${reported#* } boot(s); last kernel up ${uptime:-?} s"
echo "accelerator:                     $(sed -n "s/^lb1's card under \([a-z]*\):.*/\1/p" "$log" | head -n1)"
echo "whole run:                       $(( $(date +%s) - started )) s"
if [ "$status" -eq 0 ]; then
  echo "result:                          ok"
else
  echo "result:                          FAILED (exit $status); see $log"
  grep -A40 "did not come up as planned\|panicked" "$log" | head -n 60 >&2 || true
fi
exit "$status"
