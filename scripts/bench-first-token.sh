#!/bin/sh
# bench-first-token.sh — re-measures docs/benchmarks.md's first-token section: for tinyllama
# and small-110m shaped Q4_0 files (synthetic, bench_synth.c), warm and cold page cache, the
# loader against cat, a new client's first token via elmd against in-process, and where that
# time goes (the breakdown from ELM_TRACE marks), medians over 20 runs each.
#
#   scripts/bench-first-token.sh [-b BUILD_DIR]
#
# It is bench-docs.sh's first-token section (same idle wait, same markers).
exec "$(dirname "$0")/bench-docs.sh" "$@" first-token
