#!/usr/bin/env bash
# tile-times.sh — best-of-40 microseconds of one elm_matmul (1 thread, ELM_KERNEL, default
# avx512) per type at 256 x 2048 and 2048 x 2048, 1, 8 and 64 tokens, as the table rows of
# docs/kernels-perf.md ("AVX-512 Q8_0, Q5_0, ..."). Wall-clock: run it on a quiet machine.
# Needs build/release (elm_kernels, elm_common). usage: scripts/tile-times.sh [TYPES...]
set -euo pipefail
cd "$(dirname "$0")/.."
types=("$@")
[ ${#types[@]} -gt 0 ] || types=(q8_0 q4_k q6_k q5_0 q4_1 q5_k q3_k q2_k q5_1)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gcc -O2 -fopenmp -pthread -I. scripts/tile-times.c build/release/kernels/libelm_kernels.a \
  build/release/common/libelm_common.a -lm -o "$tmp/tt"
echo "| type | rows x cols | 1 token | 8 tokens | 64 tokens |"
echo "|---|---|--:|--:|--:|"
for t in "${types[@]}"; do
  for shape in "256 2048" "2048 2048"; do
    row="| $t | ${shape/ / x } |"
    for nt in 1 8 64; do
      row="$row $(ELM_KERNEL=${ELM_KERNEL:-avx512} "$tmp/tt" "$t" $shape $nt) |"
    done
    echo "$row"
  done
done
