#!/usr/bin/env bash
# deps.sh — installs, from Debian's packages, whatever the build and the tests need and this
# machine lacks. Safe to run again: it installs nothing when everything is there.
set -euo pipefail
# scdoc: the man pages; man-db: `man -l` in their test; systemd: systemd-analyze for the unit's;
# dpkg-dev and file: dpkg-shlibdeps and the ELF check CPack's DEB generator runs (package.sh);
# libedit-dev: line editing in `elmctl chat`; jansson: every JSON elm reads or writes;
# libmicrohttpd: elm-httpd; curl: its tests; chromium: the headless browser that tests its chat
# page (test_httpd_chat); clang, libclang-rt-14-dev: libFuzzer and its sanitizer runtimes
# (scripts/fuzz.sh); python3: soak.sh computes the daemon's shared-memory tag
pkgs=(gcc make cmake pkg-config liburing-dev libzmq3-dev libcmocka-dev scdoc man-db systemd
      dpkg-dev file libedit-dev libjansson-dev libmicrohttpd-dev curl chromium clang
      libclang-rt-14-dev python3)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm run the third-party HTTP clients of test_httpd (tests/http/); another nodejs
# build (nodesource) that brings its own npm will do.
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
# other apt users on a shared machine: wait for the lock instead of failing
lock=(-o DPkg::Lock::Timeout=900)
echo "deps: apt-get update" >&2
$sudo apt-get "${lock[@]}" update -qq
echo "deps: apt-get install (a minute or two on a fresh machine)" >&2
$sudo apt-get "${lock[@]}" install -y -qq "${missing[@]}" >/dev/null
echo "deps: done" >&2
