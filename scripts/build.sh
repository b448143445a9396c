#!/usr/bin/env bash
# build.sh [release|asan] — configures and builds one flavour into build/<flavour>.
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=${1:-release}
case "$flavour" in
  release) opts=(-DCMAKE_BUILD_TYPE=Release) ;;
  asan) opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DELM_SANITIZE=ON) ;;
  *) echo "build.sh: unknown flavour '$flavour' (release|asan)" >&2; exit 2 ;;
esac
cmake -S . -B "build/$flavour" "${opts[@]}" >/dev/null
cmake --build "build/$flavour" -j"$(nproc)"
