#!/usr/bin/env bash
# fuzz.sh TARGET [SECONDS] — builds the libFuzzer targets of fuzz/ (clang, ASan + UBSan, in
# build/fuzz) and fuzzes one of them for SECONDS (default 60), after replaying its stored corpus
# (fuzz/corpus/TARGET) and every past crash input (fuzz/crashes/TARGET). TARGET "all" runs every
# target in turn; "list" prints them. The inputs a run finds are kept in build/fuzz/work/TARGET
# (the next run starts from them); a crash is written to build/fuzz/artifacts/TARGET/ and fails
# the script: once fixed, commit that input under fuzz/crashes/TARGET/ so every run replays it.
# Environment: ELM_FUZZ_JOBS (parallel fuzzing processes, default 1), ELM_MODELS_DIR.
# docs/fuzzing.md has the long run.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-}
seconds=${2:-60}
build=build/fuzz
if [ -z "$target" ]; then
  echo "usage: scripts/fuzz.sh TARGET|all|list [SECONDS]" >&2
  exit 2
fi
targets=$(sed -n 's/^set(ELM_FUZZ_TARGETS \([^$]*\))$/\1/p' fuzz/CMakeLists.txt)
if [ "$target" = list ]; then
  echo "$targets"
  exit 0
fi
if [ "$target" != all ] && ! grep -qw -- "$target" <<<"$targets"; then
  echo "fuzz.sh: unknown target '$target' (one of: $targets)" >&2
  exit 2
fi
[ "$target" = all ] && run=($targets) || run=("$target")

CC=clang cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DELM_SANITIZE=ON -DELM_FUZZ=ON \
  -DELM_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target elm_fuzz_seeds "${run[@]/#/fuzz_}" >/dev/null
rm -rf "$build/seeds"
"$build/fuzz/elm_fuzz_seeds" "$build/seeds"

# Leaks are bugs here too; UBSan stops at the first report (the build makes it fatal).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# -timeout: an input that takes this long is a hang (the targets do milliseconds of work);
# -rss_limit_mb: one that needs this much memory is a bug (no input is larger than 1 MB).
opts=(-timeout=20 -rss_limit_mb=2048 -print_final_stats=1)
status=0
for t in "${run[@]}"; do
  bin=$build/fuzz/fuzz_$t
  stored=fuzz/corpus/$t
  seeds=$build/seeds/$t
  mkdir -p "$build/work/$t" "$build/artifacts/$t"
  dirs=()  # git keeps no empty folder: a target may have only generated seeds
  [ -d "$stored" ] && dirs+=("$stored")
  [ -d "$seeds" ] && dirs+=("$seeds")
  echo "=== fuzz $t: replay $(ls "${dirs[@]}" | grep -vc ':$\|^$') stored and generated inputs" >&2
  "$bin" "${opts[@]}" -runs=0 "${dirs[@]}" >"$build/$t.replay.log" 2>&1 || {
    tail -40 "$build/$t.replay.log" >&2; echo "fuzz.sh: $t fails on its corpus" >&2; status=1; continue; }
  crashes=(fuzz/crashes/$t/*)
  if [ -e "${crashes[0]}" ]; then
    echo "=== fuzz $t: replay ${#crashes[@]} past crash inputs" >&2
    "$bin" "${opts[@]}" "${crashes[@]}" >"$build/$t.crashes.log" 2>&1 || {
      tail -40 "$build/$t.crashes.log" >&2; echo "fuzz.sh: $t: a past crash is back" >&2; status=1; continue; }
  fi
  echo "=== fuzz $t: ${seconds}s" >&2
  dict=()
  [ -f "fuzz/dict/$t.dict" ] && dict=(-dict="fuzz/dict/$t.dict")
  # several processes (-fork) share the work corpus; one runs in this process
  par=()
  [ "${ELM_FUZZ_JOBS:-1}" -gt 1 ] && par=(-fork="$ELM_FUZZ_JOBS")
  if "$bin" "${opts[@]}" "${dict[@]}" "${par[@]}" -max_total_time="$seconds" \
      -artifact_prefix="$build/artifacts/$t/" \
      "$build/work/$t" "${dirs[@]}" >"$build/$t.log" 2>&1; then
    # the last status line: executions, coverage (cov: edges, ft: features), corpus size
    grep -E '^#[0-9]+' "$build/$t.log" | tail -1 | sed "s/^/fuzz $t: /" >&2
    grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "$build/$t.log" | sed "s/^/fuzz $t: /" >&2
  else
    tail -60 "$build/$t.log" >&2
    echo "fuzz.sh: $t found a failure: $(ls "$build/artifacts/$t" | head -3)" >&2
    status=1
  fi
done
exit $status
