#!/usr/bin/env bash
# soak.sh [N] — N requests (default 10,000) from 4 concurrent elmctl clients against a real elmd
# serving stories260K: mixed prompt and reply lengths, sampled and greedy, with clients that
# cancel (SIGINT) or are killed (SIGKILL) mid-stream. Every greedy reply must equal the same
# generation run in-process (`elmctl generate --local`). Every 1,000 requests (N/3 for a short
# run), once the clients are gone and elmd holds no session, it prints elmd's RSS, descriptor
# count, threads and session memory (region descriptors elmd still holds, and its mappings of
# session memory or of anything in /dev/shm, where nothing of elm's should ever be),
# and fails if any of them grew from the first sample (RSS: by more than 10% or 8 MiB), if elmd
# died, or if a request failed. Environment: ELM_SOAK_CLIENTS (4), ELM_SOAK_EVERY (1000),
# ELM_BUILD_DIR (build/release; elmd and elmctl are built if missing), ELM_MODELS_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
total=${1:-10000}
clients=${ELM_SOAK_CLIENTS:-4}
every=${ELM_SOAK_EVERY:-1000}
[ $((total / 3)) -lt "$every" ] && every=$(((total + 2) / 3))
build=${ELM_BUILD_DIR:-build/release}
models=${ELM_MODELS_DIR:-$(cd .. && pwd)/shared/models}
model=$models/stories260K.gguf
if [ ! -f "$model" ]; then
  echo "soak: SKIP: $model is missing" >&2
  exit 0
fi
[ -f "$build/CMakeCache.txt" ] || cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target elmd elmctl >/dev/null
ctl=$build/cli/elmctl
rd=$(mktemp -d /tmp/elm-soak-XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && sleep 0.5 && kill -9 "$pid" 2>/dev/null
  rm -rf "$rd"
}
trap cleanup EXIT
ELMD=$build/daemon/elmd "$ctl" start --runtime-dir "$rd" --model "$model" >/dev/null
pid=$(cat "$rd/elmd.pid")
export ELM_RUNTIME_DIR=$rd
# session memory is a sealed memfd (docs/daemon.md): "memfd:elm-session" in maps and fd links
session_mem='memfd:elm-session|/dev/shm/'

story="Once upon a time, there was a little girl named Lily. She loved to play outside."
prompts=("Once upon a time" "$story" "$story $story" "$story $story $story $story" "")
exact_prompt="Lily and Ben went to the park."
want=$("$ctl" generate --local "$model" --temp 0 -n 24 "$exact_prompt")
fails=$rd/failures
: >"$fails"

one() { # one request, kind chosen by its number
  local j=$1 p=${prompts[$((j % 5))]} n
  n=$((1 + (j * 7) % 97))
  case $((j % 10)) in
    7 | 8) # a client that goes away mid-stream: cancelled (SIGINT) or killed (SIGKILL)
      "$ctl" generate -n 400 --seed "$j" "$p" >/dev/null 2>&1 &
      local c=$!
      sleep "0.0$((j % 7))"
      kill "-$([ $((j % 10)) = 7 ] && echo INT || echo KILL)" "$c" 2>/dev/null || true
      wait "$c" 2>/dev/null || true ;;
    6) # greedy: must be exactly the in-process generation
      local got
      got=$("$ctl" generate --temp 0 -n 24 "$exact_prompt" 2>&1) || got="exit $?: $got"
      [ "$got" = "$want" ] || echo "request $j: greedy reply differs: '$got'" >>"$fails" ;;
    *)
      "$ctl" generate -n "$n" --seed "$j" --stop "$([ $((j % 3)) = 0 ] && echo . || echo zzz)" \
        "$p" >/dev/null 2>"$rd/err.$j" || echo "request $j: $(head -c 300 "$rd/err.$j")" >>"$fails"
      rm -f "$rd/err.$j" ;;
  esac
}

worker() { # requests from, from + clients, ... below to
  for ((j = $1; j < $2; j += clients)); do one "$j"; done
}

declare -A base
sample() { # waits until no session is left (killed clients are noticed late), then prints
  local k rss fds thr shm maps
  for k in $(seq 100); do
    maps=$(grep -cE "$session_mem" "/proc/$pid/maps" || true)
    [ "$maps" = 0 ] && break
    sleep 0.2
  done
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  thr=$(awk '/^Threads/ {print $2}' "/proc/$pid/status")
  fds=$(ls "/proc/$pid/fd" | wc -l)
  shm=$(find "/proc/$pid/fd" -lname '*memfd:elm-session*' 2>/dev/null | wc -l)
  printf 'soak: %6d requests  rss %6d kB  fds %3d  threads %2d  region fds %d  region maps %d\n' \
    "$1" "$rss" "$fds" "$thr" "$shm" "$maps" >&2
  if [ -z "${base[rss]:-}" ]; then
    base=([rss]=$rss [fds]=$fds [thr]=$thr [shm]=$shm [maps]=$maps)
    return 0
  fi
  local slack=$((base[rss] / 10 > 8192 ? base[rss] / 10 : 8192)) bad=0
  [ "$rss" -le $((base[rss] + slack)) ] || { echo "soak: RSS grew from ${base[rss]} kB" >&2; bad=1; }
  [ "$fds" -le "${base[fds]}" ] || { echo "soak: descriptors grew from ${base[fds]}" >&2; bad=1; }
  [ "$thr" -le "${base[thr]}" ] || { echo "soak: threads grew from ${base[thr]}" >&2; bad=1; }
  [ "$shm" -le "${base[shm]}" ] || { echo "soak: session memory descriptors left behind" >&2; bad=1; }
  [ "$maps" -le "${base[maps]}" ] || { echo "soak: shared-memory mappings left behind" >&2; bad=1; }
  return $bad
}

status=0
done_n=0
t0=$(date +%s)
while [ "$done_n" -lt "$total" ]; do
  end=$((done_n + every < total ? done_n + every : total))
  for ((w = 0; w < clients; w++)); do worker $((done_n + w)) "$end" & done
  wait
  done_n=$end
  kill -0 "$pid" 2>/dev/null || { echo "soak: elmd died" >&2; exit 1; }
  sample "$done_n" || status=1
done
if [ -s "$fails" ]; then
  echo "soak: $(wc -l <"$fails") failed requests, the first:" >&2
  head -5 "$fails" >&2
  status=1
fi
echo "soak: $total requests, $clients clients, $(($(date +%s) - t0)) s: $([ $status = 0 ] && echo ok || echo FAILED)" >&2
exit $status
