#!/usr/bin/env bash
# insn-model.sh — instructions per weight block of the decode matmul (one token), counted by
# executing the kernels under qemu's user-mode emulators: the arm64 build's variants under
# qemu-aarch64 (-cpu max), the x86 build's avx2 under qemu-x86_64 (-cpu max has AVX2/FMA/F16C
# since QEMU 7.2; AVX-512 it has not). No ARM board is needed and the counts are exact for the
# code as built (a model of work, not of time: it ignores latency, issue width and memory).
#
# Needs build/release and build/arm64 (scripts/test-arm64.sh). Prints, per type and variant,
# the instructions per block of 32 weights (legacy types) or 256 (K-quants) for rows of COLS.
# usage: scripts/insn-model.sh [COLS] [ROWS]
# INSN_TYPES and INSN_VARIANTS (space-separated) measure a subset, e.g. after changing one kernel
# (the whole table takes about half an hour, most of it qemu's logging).
set -euo pipefail
cd "$(dirname "$0")/.."
cols=${1:-2048}
rows=${2:-64}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
harness() { # $1 = compiler, $2 = build dir, $3 = output
  "$1" -O2 -pthread -I. scripts/insn-model.c "$2/kernels/libelm_kernels.a" \
    "$2/common/libelm_common.a" -lm -o "$3"
}
harness gcc build/release "$tmp/x86"
harness aarch64-linux-gnu-gcc build/arm64 "$tmp/arm"

# Executed guest instructions of one run: every translated block's size (in_asm) times the
# times it ran (exec, with chaining off so that every run is logged).
count() { # $1 = emulator, $2 = cpu, $3 = binary, $4... = args
  local emu=$1 cpu=$2 bin=$3
  shift 3
  QEMU_LD_PREFIX=/ "$emu" -cpu "$cpu" -d in_asm,exec,nochain -D "$tmp/log" \
    "$bin" "$@" 2>/dev/null
  awk '
    /^IN:/ { inb = 1; pc = ""; next }
    inb && /^0x[0-9a-f]+:/ {
      if (pc == "") { pc = substr($1, 1, length($1) - 1); sub(/^0x0+/, "0x", pc); n[pc] = 0 }
      n[pc]++; next
    }
    inb && /^$/ { inb = 0; next }
    /^Trace/ { split($0, f, "/"); p = "0x" f[2]; sub(/^0x0+/, "0x", p); runs[p]++ }
    END { for (p in runs) { q = p; total += runs[p] * n[q] } printf "%d\n", total }
  ' "$tmp/log"
}

printf '%-6s %-8s %12s\n' type variant "insn/block"
for t in ${INSN_TYPES:-q4_0 q8_0 q4_k q6_k}; do
  case $t in q?_k | iq4_xs) blk=256 ;; *) blk=32 ;; esac
  blocks=$((rows * cols / blk))
  for v in ${INSN_VARIANTS:-dotprod neon avx2}; do
    case $v in
      avx2) emu=qemu-x86_64-static bin=$tmp/x86 ;;
      *) emu=qemu-aarch64-static bin=$tmp/arm ;;
    esac
    one=$(ELM_KERNEL=$v count $emu max "$bin" $t $rows $cols 1)
    three=$(ELM_KERNEL=$v count $emu max "$bin" $t $rows $cols 3)
    awk -v t=$t -v v=$v -v a="$one" -v b="$three" -v n=$blocks \
      'BEGIN { printf "%-6s %-8s %12.1f\n", t, v, (b - a) / (2 * n) }'
  done
done
