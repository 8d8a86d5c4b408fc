#!/bin/sh
# haseed first-boot report. Harness-owned: it is baked into the test base image
# (tests/firstboot/make-base.sh), never into a seed. It waits for cloud-init to
# finish, writes what the node became to the second serial port (ttyS1, which
# qemu writes to a file), then powers the VM off, unless the kernel command line
# says haseed.stay (tests/firstboot/pair.sh keeps its two VMs running) or the
# environment HASEED_REPORT_STAY is set (the twins of tests/twins, which the test
# logs in to afterwards). HASEED_REPORT_WAIT bounds the wait for cloud-init
# (seconds, default 1500).
#
# Every line is "<kind> <fields...>", between HASEED-REPORT-BEGIN and
# HASEED-REPORT-END; tests/firstboot.rs parses it.
out=/dev/ttyS1
dirs="/etc /usr/local /var/lib/haseed"

report() {
  echo "HASEED-REPORT-BEGIN"
  if command -v cloud-init >/dev/null 2>&1; then
    timeout "${HASEED_REPORT_WAIT:-1500}" cloud-init status --wait >/dev/null 2>&1
    echo "cloud-init-exit $?"
  else
    # No cloud-init (the Raspberry Pi OS Bookworm twin): first boot is over
    # when systemd's start-up is (haseed's first-boot unit is part of it).
    timeout "${HASEED_REPORT_WAIT:-1500}" systemctl is-system-running --wait >/dev/null 2>&1
    echo "boot-exit $?"
    echo "boot-cmdline $(cat /boot/firmware/cmdline.txt 2>&1)"
    echo "boot-files $(find /boot/firmware -maxdepth 1 -type f -printf '%f ' 2>&1)"
    echo "firstboot-unit $(systemctl is-enabled haseed-firstboot 2>&1) $(systemctl show -p Result --value haseed-firstboot 2>&1)"
    tail -n 20 /var/log/haseed-firstrun.log 2>&1 | sed 's/^/firstrun-log /'
  fi
  echo "uptime $(cut -d' ' -f1 /proc/uptime)"
  echo "hostname $(hostname)"
  echo "cloud-init-status-json-begin"
  cloud-init status --format json 2>&1
  echo "cloud-init-status-json-end"
  # keepalived was (re)started by the last runcmd: give VRRP time to settle
  # (a lone node becomes MASTER after its master-down timer; emulation is slow).
  if systemctl is-active --quiet keepalived; then
    n=0
    while [ $n -lt 60 ] && ! journalctl -u keepalived -o cat 2>/dev/null | grep -q "Entering MASTER STATE"; do
      sleep 1
      n=$((n + 1))
    done
    journalctl -u keepalived -o cat 2>/dev/null | grep -E "Entering|FAULT|track" | tail -n 10 | sed 's/^/vrrp /'
  fi
  # The distribution's units, then every unit haseed wrote, by its file name
  # (as the user-data enables it: haseed-haproxy-watch.service).
  units="haproxy keepalived ssh userconfig"
  for f in /etc/systemd/system/haseed-*.service /etc/systemd/system/haseed-*.socket; do
    case $f in
    */haseed-report.service | *@.service | "/etc/systemd/system/haseed-*.service" | "/etc/systemd/system/haseed-*.socket") ;;
    *) units="$units ${f##*/}" ;;
    esac
  done
  for unit in $units; do
    echo "service $unit $(systemctl is-enabled "$unit" 2>&1) $(systemctl is-active "$unit" 2>&1)"
    echo "dropins $unit $(systemctl show -p DropInPaths --value "$unit" 2>&1)"
  done
  dpkg-query -W -f='package ${Package} ${Version} ${db:Status-Status}\n' haproxy keepalived curl 2>&1
  echo "track-file $(cat /var/lib/haseed/haproxy-down 2>&1)"
  # Who configured each interface (NetworkManager on a Pi OS twin).
  nmcli -t -f DEVICE,STATE,CONNECTION device 2>/dev/null | sed 's/^/nm-device /'
  # shellcheck disable=SC2046 # one passwd line per login user
  getent passwd $(awk -F: '$3 >= 1000 && $3 < 60000 {print $1}' /etc/passwd) 2>/dev/null | awk -F: '{print "user", $1, $7}'
  ip -4 -o addr show | awk '{print "addr", $2, $4}'
  # shellcheck disable=SC2086 # $dirs is a list of paths
  find $dirs -xdev -type f -printf 'mode %m %u:%g %p\n' 2>/dev/null
  # shellcheck disable=SC2086
  find $dirs -xdev -type f -print0 2>/dev/null | xargs -0 sha256sum | awk '{print "sha256", $1, $2}'
  systemctl --failed --no-legend --plain 2>&1 | awk 'NF {print "failed-unit", $1}'
  # The cloud-init log lines that matter when something went wrong.
  grep -E ' (WARNING|ERROR|CRITICAL)|Traceback' /var/log/cloud-init.log 2>/dev/null | tail -n 40 | sed 's/^/log /'
  for unit in haproxy keepalived ssh; do
    if ! systemctl is-active --quiet "$unit"; then
      journalctl -u "$unit" -n 15 --no-pager -o cat 2>&1 | sed "s/^/journal $unit /"
    fi
  done
  echo "HASEED-REPORT-END"
}

report >"$out" 2>&1
sync
[ -n "${HASEED_REPORT_STAY:-}" ] || grep -qw haseed.stay /proc/cmdline || systemctl poweroff
