#!/usr/bin/env bash
# build.sh [release|asan|tsan] [TARGET...] — configures and builds one flavour into
# build/<flavour> (only TARGETs when given). tsan: ThreadSanitizer, for the daemon, client and
# integration tests (scripts/tsan.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=${1:-release}
case "$flavour" in
  release) opts=(-DCMAKE_BUILD_TYPE=Release) ;;
  asan) opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DELM_SANITIZE=ON) ;;
  tsan) opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DELM_TSAN=ON) ;;
  *) echo "build.sh: unknown flavour '$flavour' (release|asan|tsan)" >&2; exit 2 ;;
esac
cmake -S . -B "build/$flavour" "${opts[@]}" >/dev/null
shift || true
targets=()
[ $# -gt 0 ] && targets=(--target "$@")
cmake --build "build/$flavour" -j"$(nproc)" "${targets[@]}"
