#!/usr/bin/env bash
# test.sh — the README's test command: installs what is missing, then builds and runs the whole
# suite twice, optimised and under AddressSanitizer + UndefinedBehaviorSanitizer.
# Extra arguments go to ctest (e.g. scripts/test.sh -L kernel).
# scripts/test.sh --arch arm64 [ctest args] runs only the ARM64 pass (scripts/test-arm64.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--arch" ]; then
  case "${2:-}" in
    arm64 | aarch64) shift 2; exec scripts/test-arm64.sh "$@" ;;
    x86_64 | amd64) shift 2 ;;
    *) echo "test.sh: unknown architecture '${2:-}' (x86_64|arm64)" >&2; exit 2 ;;
  esac
fi
scripts/deps.sh
export ELM_MODELS_DIR=${ELM_MODELS_DIR:-$(cd .. && pwd)/shared/models}
if [ ! -d "$ELM_MODELS_DIR" ]; then
  echo "test.sh: WARNING: $ELM_MODELS_DIR is missing: tests that need a model will skip" >&2
fi
# The official openai/ollama npm clients and playwright-core (the chat page's browser test) that
# test_httpd and test_httpd_chat drive, as pinned by tests/http/package-lock.json (those cases
# skip, saying so, when they are missing).
scripts/npm-clients.sh || echo "test.sh: WARNING: npm could not install tests/http's clients" >&2
# Tests run two at a time on small machines: compute threads sleep instead of spinning between
# parallel calls (tests/CMakeLists.txt sets ELM_WAIT=passive), so they do not starve each other.
# ASan: leaks are errors; UBSan: print stacks. The compute pool keeps its threads alive at exit
# by design, which LeakSanitizer does not report as a leak.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# CI shows only the end of the output, so every failed step is named again at the very end.
failed=()
fail() { failed+=("$1"); }
ctest_failed() { # the tests ctest recorded as failed in build/$1
  local log="build/$1/Testing/Temporary/LastTestsFailed.log"
  [ -f "$log" ] && tr '\n' ' ' <"$log"
}
for flavour in release asan; do
  echo "=== $flavour build" >&2
  scripts/build.sh "$flavour"
  if [ "$flavour" = release ]; then
    echo "=== layering (docs/architecture.md)" >&2
    scripts/check-layers.sh build/release || fail "layering"
  fi
  echo "=== $flavour tests" >&2
  (cd "build/$flavour" && ctest --output-on-failure -j2 "$@") ||
    fail "$flavour tests: $(ctest_failed "$flavour")"
done
# A full run (no ctest arguments) also fuzzes and soaks the daemon: each fuzz target for
# ELM_FUZZ_SECONDS (default 25; its stored corpus and every past crash replayed first), then 300
# soak requests. (The ThreadSanitizer job, scripts/tsan.sh, takes about six minutes on two cores:
# it runs before each release, docs/fuzzing.md.)
if [ $# -eq 0 ]; then
  echo "=== fuzz (scripts/fuzz.sh, ${ELM_FUZZ_SECONDS:-25} s per target)" >&2
  scripts/fuzz.sh all "${ELM_FUZZ_SECONDS:-25}" || fail "fuzz"
  echo "=== soak (scripts/soak.sh 300)" >&2
  scripts/soak.sh 300 || fail "soak"
fi
# The ARM64 pass: cross-built, run under qemu (scripts/test-arm64.sh installs its toolchain and
# says what it leaves out, and why).
echo "=== arm64 build and tests (qemu)" >&2
scripts/test-arm64.sh || fail "arm64 tests: $(ctest_failed arm64)"
# What a green run did not check: every skipped case, with its reason, per flavour.
for flavour in release asan; do
  scripts/skips.sh "build/$flavour/Testing/Temporary/LastTest.log" "$flavour" || true
done
if [ ${#failed[@]} -gt 0 ]; then
  printf '=== FAILED: %s\n' "${failed[@]}"
  exit 1
fi
echo "=== all passed"
