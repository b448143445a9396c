#!/usr/bin/env bash
# deps-arm64.sh — installs what the arm64 cross build and its emulated tests need (Debian
# multiarch): the aarch64 cross compiler, qemu's user-mode emulator, and the arm64 builds of the
# libraries elm links. Safe to run again: it installs nothing when everything is there.
set -euo pipefail
pkgs=(gcc-aarch64-linux-gnu qemu-user-static libc6:arm64 libzmq3-dev:arm64 liburing-dev:arm64
      libcmocka-dev:arm64 libedit-dev:arm64 libjansson-dev:arm64
      libmicrohttpd-dev:arm64 scdoc)
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps-arm64: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# the :arm64 packages come from the same archive once dpkg knows the architecture
dpkg --print-foreign-architectures | grep -qx arm64 || $sudo dpkg --add-architecture arm64
# other apt users on a shared machine: wait for the lock instead of failing
lock=(-o DPkg::Lock::Timeout=900)
$sudo apt-get "${lock[@]}" update -qq
$sudo apt-get "${lock[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
