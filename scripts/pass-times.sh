#!/usr/bin/env bash
# pass-times.sh — issue 18's batched-decode ratio from the matmuls alone: the CPU milliseconds of
# one tinyllama-1.1b pass's matmuls (scripts/pass-times.c: 22 layers + output, 1 thread, best of
# REPS) at 1 and 8 tokens per type, and 8-token / 1-token, as the table of docs/kernels-perf.md
# ("Batched decode"). Needs build/release (elm_kernels, elm_common); ELM_KERNEL picks the variant
# (default avx512). Uses ~3.5 GB of memory at Q8_0. usage: scripts/pass-times.sh [TYPES...]
set -euo pipefail
cd "$(dirname "$0")/.."
types=("$@")
[ ${#types[@]} -gt 0 ] || types=(q4_0 q4_k q6_k)
reps=${REPS:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gcc -O2 -pthread -I. scripts/pass-times.c build/release/kernels/libelm_kernels.a \
  build/release/common/libelm_common.a -lm -o "$tmp/pt"
echo "| type | 1 token ms | 8 tokens ms | ratio |"
echo "|---|--:|--:|--:|"
for t in "${types[@]}"; do
  one=$(ELM_KERNEL=${ELM_KERNEL:-avx512} "$tmp/pt" "$t" 1 "$reps")
  eight=$(ELM_KERNEL=${ELM_KERNEL:-avx512} "$tmp/pt" "$t" 8 "$reps")
  echo "| $t | $one | $eight | $(awk -v a="$one" -v b="$eight" 'BEGIN { printf "%.2f", b / a }') |"
done
