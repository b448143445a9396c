#!/usr/bin/env bash
# deps.sh — installs, from Debian's packages, whatever the build and the tests need and this
# machine lacks. Safe to run again: it installs nothing when everything is there.
set -euo pipefail
pkgs=(gcc make cmake pkg-config liburing-dev libzmq3-dev libcmocka-dev libjansson-dev
      libmicrohttpd-dev curl)
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
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${missing[@]}" >/dev/null
