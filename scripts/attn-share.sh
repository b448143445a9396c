#!/bin/sh
# attn-share.sh — attention's share of a prefill pass, by `perf record` samples per symbol.
#
# For each prompt length N and kernel variant it runs one prefill chunk of N tokens from position
# 0 (`elm-bench profile --chunk N`, 2 threads) under `perf record` and sums the samples of the
# attention symbols (the head loop, kv_dot, kv_mix, kv_fold, softmax) against all samples of the
# process. Samples are shares of CPU time, so a loaded machine changes them less than wall clock.
# Prints a markdown table for docs/kernels-perf.md.
#
# usage: scripts/attn-share.sh [BUILD_DIR] (default build/release)
#   env: LENGTHS ("512 2048"), VARIANTS ("avx512 avx2"), SYNTH (tinyllama-1.1b:q4_0), THREADS (2)
set -eu
B=${1:-build/release}/bench/elm-bench
LENGTHS=${LENGTHS:-512 2048}
VARIANTS=${VARIANTS:-avx512 avx2}
SYNTH=${SYNTH:-tinyllama-1.1b:q4_0}
THREADS=${THREADS:-2}
command -v perf >/dev/null || { echo "attn-share.sh: needs perf (linux-perf)" >&2; exit 2; }
tmp=$(mktemp -d /tmp/attn-share.XXXXXX)
trap 'rm -rf "$tmp"' EXIT INT TERM

# the symbols of attention over the cache (attention.c's job loop and the kernels it calls)
ATTN='attn_part|attend_|kv_dot|kv_mix|kv_fold|_softmax$|softcap'

echo "| prefill tokens | kernels | attention % | of which kv_dot % | kv_mix % | softmax % | head loop % | top other symbol |"
echo "|--:|---|--:|--:|--:|--:|--:|---|"
for n in $LENGTHS; do
    for v in $VARIANTS; do
        ELM_KERNEL=$v perf record -q -F 499 -o "$tmp/p.data" -- \
            "$B" --reps 1 --threads "$THREADS" profile --synth "$SYNTH" --pos 1 --chunk "$n" \
            --steps 1 >/dev/null 2>&1
        perf report -q --stdio --no-children --sort symbol -i "$tmp/p.data" 2>/dev/null |
            awk -v n="$n" -v v="$v" -v re="$ATTN" '
            { p = $1; sub(/%/, "", p); sym = $3 }
            sym ~ re { a += p; if (sym ~ /kv_dot/) d += p; else if (sym ~ /kv_mix|kv_fold/) m += p;
                       else if (sym ~ /softmax|softcap/) s += p; else h += p; next }
            !top { top = sym " " p "%" }
            END { printf "| %d | %s | %.1f | %.1f | %.1f | %.1f | %.1f | %s |\n",
                  n, v, a, d, m, s, h, top }'
    done
done
