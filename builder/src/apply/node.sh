# shellcheck shell=sh
# haseed's node side of `haseed diff` and `haseed apply` (POSIX sh, run as root through
# `ssh NODE sudo -n sh -s`). builder/src/apply/remote.rs sends these functions followed by
# calls to them, with file contents as base64 here-documents; nothing else is run on the node.
#
# Every line meant for haseed starts with "@haseed " (the rest of the output is the tools'
# own, shown when a step fails):
#   @haseed applied B64|-          the record of the last apply (/var/lib/haseed/applied.json)
#   @haseed interrupted PATHS      an apply was cut off mid-swap (its journal is still there)
#   @haseed file B64PATH SHA|- MODE OWNER
#   @haseed content B64PATH B64    the node's copy of a file that differs from the build
#   @haseed pkg NAME installed|missing
#   @haseed svc UNIT ACTIVE ENABLED
#   @haseed vip ADDRESS held|not
#   @haseed step NAME ok|failed MILLIS
#   @haseed out B64                the failing tool's output
#   @haseed rolled-back            the previous files are back and their daemons reloaded
#   @haseed done DIGEST
#
# The swap: each new file is written next to its target (same file system) as
# .haseed-new.NAME, validated there, and renamed into place. Before the first rename a
# journal lists every path and a copy of what it held; a failure after that (or Ctrl-C, or a
# lost connection: SIGHUP) puts every path back from the journal, so the node holds the old
# files or the new ones, never a mix. A journal found at the start of the next run (the
# process was killed outright) is rolled back first.
#
# HASEED_STATE_DIR stands in for /var/lib/haseed in haseed's own tests (sudo does not pass
# it on: on a node it is always /var/lib/haseed).

state=${HASEED_STATE_DIR:-/var/lib/haseed}
txn=$state/txn
swapped=''

ms() { date +%s%3N 2>/dev/null || echo 0; }
b64() { printf '%s' "$1" | base64 -w0; }
say() { echo "@haseed $*"; }

# step NAME CMD...: runs CMD, its output kept; reports ok or fails the apply with it.
step() {
  name=$1
  shift
  t0=$(ms)
  if "$@" >"$txn/out" 2>&1; then
    say step "$name" ok $(($(ms) - t0))
  else
    say step "$name" failed $(($(ms) - t0))
    say out "$(base64 -w0 <"$txn/out")"
    fail
  fi
}

fail() {
  if [ -n "$swapped" ]; then
    roll_back
  fi
  clean_staged
  swapped=''
  rm -rf "$txn"
  exit 1
}

# Puts every journalled path back as it was, then reloads what the apply reloaded.
roll_back() {
  [ -f "$txn/journal" ] || return 0
  i=0
  while IFS= read -r p; do
    i=$((i + 1))
    if [ -e "$txn/old/$i" ] || [ -L "$txn/old/$i" ]; then
      mv -f "$txn/old/$i" "$p"
    else
      rm -f "$p"
    fi
  done <"$txn/journal"
  sync
  rm -f "$txn/journal"
  swapped=''
  # What the apply reloaded or restarted runs with the old files again (kept in the txn
  # directory, so a run killed after a reload is undone whole by the next one's begin).
  if [ -f "$txn/undo" ]; then
    while IFS= read -r u; do
      case $u in
        daemon-reload) systemctl daemon-reload ;;
        *) systemctl reload-or-restart "$u" ;;
      esac
    done <"$txn/undo" >"$txn/out.undo" 2>&1 || true
  fi
  say rolled-back
}

clean_staged() {
  [ -f "$txn/staged" ] || return 0
  while IFS= read -r p; do
    rm -f "$(dirname "$p")/.haseed-new.$(basename "$p")"
  done <"$txn/staged"
}

# Ctrl-C on the build machine, or the connection lost (SIGHUP, or SIGPIPE on the next
# line written): whatever was swapped goes back.
interrupted() {
  trap '' PIPE
  trap - HUP INT TERM EXIT
  say step interrupted failed 0 2>/dev/null
  fail
}

# The script ended without finish (it stops at the first failure): nothing stays half-swapped.
on_exit() {
  [ -z "$swapped" ] || roll_back
  clean_staged 2>/dev/null
}

# begin: the lock (a second apply is refused), then an earlier run's journal rolled back.
begin() {
  mkdir -p "$state" || exit 1
  exec 9>>"$state/apply.lock"
  if ! flock -n 9; then
    say step lock failed 0
    say out "$(b64 "another haseed apply holds $state/apply.lock on this node: wait for it to finish (the lock goes with the process that holds it)")"
    exit 75
  fi
  if [ -f "$txn/journal" ]; then
    roll_back
    say recovered
  fi
  rm -rf "$txn"
  mkdir -p "$txn/old"
  : >"$txn/staged"
  trap interrupted HUP INT TERM PIPE
  trap on_exit EXIT
}

# free_space KIB: the staged copies and the journal need room in /etc and /var/lib/haseed.
free_space() {
  for d in /etc "$state"; do
    avail=$(df -Pk "$d" | awk 'NR == 2 {print $4}')
    if [ "${avail:-0}" -lt "$1" ]; then
      say step free-space failed 0
      say out "$(b64 "$d has ${avail:-0} KiB free; this apply needs $1 KiB: free some space on the node")"
      fail
    fi
  done
  say step free-space ok 0
}

# stage PATH MODE OWNER < BASE64: the new content next to its target.
stage() {
  mkdir -p "$(dirname "$1")" &&
    new="$(dirname "$1")/.haseed-new.$(basename "$1")" &&
    echo "$1" >>"$txn/staged" &&
    base64 -d >"$new" &&
    chown "$3" "$new" &&
    chmod "$2" "$new"
}

# validate PATH CMD...: CMD with {} replaced by the staged copy of PATH.
validate() {
  path=$1
  new="$(dirname "$1")/.haseed-new.$(basename "$1")"
  shift
  n=$#
  while [ "$n" -gt 0 ]; do
    w=$1
    shift
    [ "$w" = '{}' ] && w=$new
    set -- "$@" "$w"
    n=$((n - 1))
  done
  step "validate $path" "$@"
}

# swap PATH... (then -- REMOVED...): journal, copies of the old files, then the renames.
swap() {
  i=0
  : >"$txn/journal.new"
  for p in "$@"; do
    [ "$p" = -- ] && continue
    i=$((i + 1))
    echo "$p" >>"$txn/journal.new"
    if [ -e "$p" ]; then
      cp -a "$p" "$txn/old/$i" || return 1
    fi
  done
  sync
  mv -f "$txn/journal.new" "$txn/journal"
  swapped=yes
  removing=''
  for p in "$@"; do
    if [ "$p" = -- ]; then
      removing=yes
    elif [ -n "$removing" ]; then
      rm -f "$p" || return 1
    else
      mv -f "$(dirname "$p")/.haseed-new.$(basename "$p")" "$p" || return 1
    fi
  done
  sync
}

# act KIND UNIT: a systemctl action; remembered so that a roll-back undoes it. A reload of
# a unit that is not running starts it (reload-or-restart) rather than leave it down.
act() {
  case $1 in
    daemon-reload) echo daemon-reload >>"$txn/undo" && systemctl daemon-reload ;;
    reload)
      echo "$2" >>"$txn/undo" || return 1
      if [ "$2" = haproxy.service ]; then reload_haproxy; else systemctl reload-or-restart "$2"; fi
      ;;
    restart) echo "$2" >>"$txn/undo" && systemctl restart "$2" ;;
    start) echo "$2" >>"$txn/undo" && systemctl start "$2" ;;
    enable) systemctl enable --now "$2" ;;
    disable) systemctl disable --now "$2" ;;
  esac
}

# reload_haproxy: a reload in master-worker mode (Debian's unit: -Ws, reload = re-exec of the
# master) that fails (a port another program holds, say) leaves the old workers serving the
# old configuration while systemctl reports success. The reload took when the master (the
# unit's main PID) has a worker it did not have before.
reload_haproxy() {
  main=$(systemctl show -p MainPID --value haproxy.service)
  if [ "${main:-0}" = 0 ]; then
    systemctl restart haproxy.service
    return
  fi
  old=" $(pgrep -P "$main" | tr '\n' ' ')"
  systemctl reload haproxy.service || return 1
  n=0
  while [ $n -lt 50 ]; do
    for p in $(pgrep -P "$main"); do
      case $old in *" $p "*) ;; *) return 0 ;; esac
    done
    n=$((n + 1))
    sleep 0.2
  done
  echo "haproxy did not start a worker with the new configuration within 10 s (it keeps serving the old one); its log:"
  journalctl -u haproxy.service -n 15 --no-pager -o cat 2>&1
  return 1
}

# holds ADDRESS: the address is on an interface other than lo (haseed's keepalived drop-in keeps
# every VIP on lo as a /32 on every holder; the VRRP holder has it on its interface too).
holds() {
  ip -o addr show | awk '$2 != "lo"' | grep -q " $1/"
}

# hand_over ADDRESS...: stop keepalived (its priority-0 advert makes a peer take the VIPs
# at once, keepalived(8)) and wait until none of ADDRESS is held here.
hand_over() {
  echo keepalived.service >>"$txn/undo"
  systemctl stop keepalived.service || return 1
  n=0
  while [ $n -lt 50 ]; do
    held=''
    for a in "$@"; do
      holds "$a" && held=yes
    done
    [ -z "$held" ] && return 0
    n=$((n + 1))
    sleep 0.2
  done
  echo "the VIPs are still on this node 10 s after keepalived stopped"
  return 1
}

# healthy UNIT...: each unit active within 30 s.
healthy() {
  for u in "$@"; do
    n=0
    while [ "$(systemctl is-active "$u")" != active ]; do
      n=$((n + 1))
      if [ $n -ge 60 ]; then
        echo "$u is $(systemctl is-active "$u") 30 s after the change:"
        journalctl -u "$u" -n 20 --no-pager 2>&1
        return 1
      fi
      sleep 0.5
    done
  done
}

# finish DIGEST < BASE64: the new record, then the journal and the old copies go.
finish() {
  if ! { base64 -d >"$state/applied.json.new" && mv -f "$state/applied.json.new" "$state/applied.json"; }; then
    say step record failed 0
    fail
  fi
  sync
  swapped=''
  trap - HUP INT TERM PIPE EXIT
  rm -rf "$txn"
  say 'done' "$1"
}

# The read-only side (diff, and apply before it decides).
read_applied() {
  if [ -f "$state/applied.json" ]; then
    say applied "$(base64 -w0 <"$state/applied.json")"
  else
    say applied -
  fi
  if [ -f "$txn/journal" ]; then
    say interrupted "$(base64 -w0 <"$txn/journal")"
  fi
}

# file_state PATH SHA: its sha256, mode and owner; its content too when SHA differs.
file_state() {
  if [ -f "$1" ]; then
    sum=$(sha256sum "$1" | cut -d' ' -f1)
    say file "$(b64 "$1")" "$sum" "$(stat -c '%a %U:%G' "$1")"
    if [ "$sum" != "$2" ] && [ "$(stat -c %s "$1")" -le 1048576 ]; then
      say content "$(b64 "$1")" "$(base64 -w0 <"$1")"
    fi
  else
    say file "$(b64 "$1")" - 0 -
  fi
}

pkg_state() {
  for p in "$@"; do
    if dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      say pkg "$p" installed
    else
      say pkg "$p" missing
    fi
  done
}

svc_state() {
  for u in "$@"; do
    say svc "$u" "$(systemctl is-active "$u" 2>/dev/null || true)" "$(systemctl is-enabled "$u" 2>/dev/null || true)"
  done
}

vip_state() {
  for a in "$@"; do
    if holds "$a"; then say vip "$a" held; else say vip "$a" not; fi
  done
}
