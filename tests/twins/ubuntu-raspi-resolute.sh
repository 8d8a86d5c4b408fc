#!/bin/sh
# The ubuntu-raspi-resolute layout of make-twin.sh: Ubuntu Server 26.04 for
# Raspberry Pi, built on ubuntu-raspi-noble.sh. What changed from 24.04 is the
# A/B boot of 25.10 on (Ubuntu's "A/B boot on Ubuntu for Raspberry Pi",
# ubuntu-boards-documentation explanations/piboot-ab.rst): the boot assets and
# cmdline.txt live in current/ (new/ during a trial boot, old/ after), each
# with a `state` file, and config.txt points the firmware there with
# os_prefix. The partition root keeps config.txt and the cloud-init seed.
# README.md in this folder names the sources and what could not be found.
# shellcheck shell=sh disable=SC2034,SC2154 # layout_* are read by make-twin.sh, which sets $here

# shellcheck disable=SC1091 # the layout this one is built on
. "$here/ubuntu-raspi-noble.sh"
layout_inputs="$here/ubuntu-raspi-noble.sh"
layout_suite=resolute
layout_sources="deb $ubuntu_mirror resolute main universe
deb $ubuntu_mirror resolute-updates main universe"

# piboot-ab.rst: the command line lives in current/ and has panic=10, so a
# kernel that cannot boot falls back to the tried-and-good assets; config.txt
# points the normal boot at current/, a trial boot (tryboot) at new/.
ubuntu_os_prefix=current/
ubuntu_cmdline_extra=panic=10
