#!/bin/sh
# vs-llama-bench.sh — elm against llama.cpp's llama-bench on the same GGUF files: pp and tg
# tokens/s per file and thread count, and their ratios, as a markdown table.
#
#   scripts/vs-llama-bench.sh [-b BUILD_DIR] [-l LLAMA_BENCH] [-r REPS] [-p PP] [-n TG]
#                             [-t THREADS] [-w] [SPEC...]
#
# SPEC is SHAPE:TYPE (a synthetic file of elm-bench, made and cached by it: bench_synth.c) or a
# GGUF path; default: tinyllama-1.1b with q4_0, q4_k_m, q8_0 and q6_k. LLAMA_BENCH defaults to
# $LLAMA_BENCH, else llama-bench on PATH; THREADS is a comma list (default 1,2); REPS (default
# 3) rounds, each running llama-bench and then elm-bench once per file and thread count, so a
# noisy neighbour hits both; a cell is the median of the rounds, a ratio (elm / llama.cpp) the
# median of the rounds' ratios. -w writes the table between the vs-llama markers of
# docs/benchmarks.md. elm's variant is the one it picks (ELM_KERNEL=avx2 forces AVX2: then give
# a llama-bench built without AVX-512 for a like-for-like table). llama.cpp stays outside the
# repository and out of CI: this script is for people, not for the test suite.
set -eu

cd "$(dirname "$0")/.."
build=build/release
llama=${LLAMA_BENCH:-llama-bench}
reps=3
pp=512
tg=128
threads=1,2
write=0
while getopts b:l:r:p:n:t:w opt; do
    case $opt in
    b) build=${OPTARG%/} ;;
    l) llama=$OPTARG ;;
    r) reps=$OPTARG ;;
    p) pp=$OPTARG ;;
    n) tg=$OPTARG ;;
    t) threads=$OPTARG ;;
    w) write=1 ;;
    *) sed -n '2,17p' "$0" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || set -- tinyllama-1.1b:q4_0 tinyllama-1.1b:q4_k_m tinyllama-1.1b:q8_0 \
    tinyllama-1.1b:q6_k
bench=$build/bench/elm-bench
[ -x "$bench" ] || { echo "vs-llama-bench.sh: $bench not built (scripts/build.sh)" >&2; exit 1; }
command -v "$llama" >/dev/null 2>&1 ||
    { echo "vs-llama-bench.sh: no llama-bench at '$llama' (-l PATH)" >&2; exit 1; }
cache=${ELM_BENCH_CACHE:-/tmp/elm-bench-cache}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The file behind a spec: a path as it is; SHAPE:TYPE made by elm-bench (a tiny run) if needed.
file_for() {
    case $1 in
    *:*)
        f="$cache/$(echo "$1" | tr ':' '-').gguf"
        if [ ! -f "$f" ]; then
            echo "vs-llama-bench.sh: making $f" >&2
            "$bench" --reps 1 model --synth "$1" --pp 8 --tg 1 --threads 1 >/dev/null
        fi
        echo "$f" ;;
    *) echo "$1" ;;
    esac
}

# Column NAME of a CSV whose header is line 1 and whose fields hold no commas (llama-bench
# quotes every field; elm-bench's fields are plain): prints the value of every data row.
csv_col() {
    awk -F, -v name="$1" '
        { gsub(/"/, "") }
        NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) c = i; next }
        c { print $c }' "$2"
}

# One round: appends "file threads pp_elm tg_elm pp_llama tg_llama" to $tmp/rounds.
round() {
    f=$1
    t=$2
    "$llama" -m "$f" -p "$pp" -n "$tg" -t "$t" -r 1 -o csv >"$tmp/l.csv" 2>"$tmp/l.err" ||
        { cat "$tmp/l.err" >&2; return 1; }
    # llama-bench: one row for the pp test (n_gen 0), one for tg (n_prompt 0)
    csv_col n_prompt "$tmp/l.csv" >"$tmp/np"
    csv_col avg_ts "$tmp/l.csv" >"$tmp/ts"
    lpp=$(paste -d' ' "$tmp/np" "$tmp/ts" | awk '$1 > 0 { print $2; exit }')
    ltg=$(paste -d' ' "$tmp/np" "$tmp/ts" | awk '$1 == 0 { print $2; exit }')
    "$bench" --csv --reps 1 model --model "$f" --pp "$pp" --tg "$tg" \
        --threads "$t" >"$tmp/e.csv" 2>"$tmp/e.err" || { cat "$tmp/e.err" >&2; return 1; }
    epp=$(csv_col 'pp t/s' "$tmp/e.csv" | head -n1)
    etg=$(csv_col 'tg t/s' "$tmp/e.csv" | head -n1)
    echo "$(basename "$f") $t $epp $etg $lpp $ltg" >>"$tmp/rounds"
    echo "vs-llama-bench.sh: $(basename "$f") t=$t elm pp $epp tg $etg, llama.cpp pp $lpp tg $ltg" >&2
}

load=$(cut -d' ' -f1 /proc/loadavg) # in the header: a table from a busy machine says so
files=""
for spec in "$@"; do
    files="$files $(file_for "$spec")"
done
: >"$tmp/rounds"
r=1
while [ "$r" -le "$reps" ]; do
    for f in $files; do
        for t in $(echo "$threads" | tr ',' ' '); do
            round "$f" "$t"
        done
    done
    r=$((r + 1))
done

commit=$(csv_col build_commit "$tmp/l.csv" | head -n1)
cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
{
    echo "vs llama.cpp $commit ($llama), $cpu, elm kernels ${ELM_KERNEL:-auto}; median of $reps" \
        "alternating rounds; ratio = elm / llama.cpp (median of the rounds' ratios);" \
        "load average $load at the start"
    echo "command: \`scripts/vs-llama-bench.sh -r $reps -p $pp -n $tg -t $threads $*\`"
    echo
    echo "| file | threads | elm pp$pp t/s | llama.cpp pp$pp t/s | pp ratio | elm tg$tg t/s | llama.cpp tg$tg t/s | tg ratio |"
    echo "|---|---|---|---|---|---|---|---|"
    # the median of a list (even: the lower middle, a value that was measured)
    awk '
        function med(s,   n, a, i, j, x) {
            n = split(s, a, " ")
            for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j > 0 && a[j] + 0 > x + 0; j--)
                a[j + 1] = a[j]; a[j + 1] = x }
            return a[int((n + 1) / 2)]
        }
        { k = $1 " " $2; if (!(k in seen)) { seen[k] = 1; order[++n] = k }
          epp[k] = epp[k] " " $3; etg[k] = etg[k] " " $4; lpp[k] = lpp[k] " " $5
          ltg[k] = ltg[k] " " $6
          rpp[k] = rpp[k] " " ($5 > 0 ? $3 / $5 : 0); rtg[k] = rtg[k] " " ($6 > 0 ? $4 / $6 : 0) }
        END { for (i = 1; i <= n; i++) { k = order[i]; split(k, p, " ")
            printf "| %s | %s | %.1f | %.1f | %.2f | %.1f | %.1f | %.2f |\n", p[1], p[2],
                med(epp[k]), med(lpp[k]), med(rpp[k]), med(etg[k]), med(ltg[k]), med(rtg[k]) } }
    ' "$tmp/rounds"
} >"$tmp/table"
cat "$tmp/table"

if [ "$write" = 1 ]; then
    doc=docs/benchmarks.md
    scripts/doc-section.sh "$doc" bench:vs-llama "$tmp/table"
    echo "vs-llama-bench.sh: wrote the table into $doc" >&2
fi
