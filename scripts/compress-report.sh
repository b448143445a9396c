#!/bin/sh
# compress-report.sh — re-measures docs/compression.md's compression tables on this machine and
# writes each between its markers (<!-- compress:NAME begin --> ... <!-- compress:NAME end -->,
# as scripts/bench-docs.sh does for docs/benchmarks.md), with the exact commands:
#
#   stories260K  elm-bench compress on stories260K.gguf and the TinyStories sample, plus
#                docs/compression-stories260K.svg
#   zoo-llama    the same on zoo/zoo-llama.gguf and WikiText-2 (evalref's 20 chunks of 256),
#                plus docs/compression-zoo-llama.svg
#   imatrix      stories260K in Q4_0, Q4_1, Q5_0 and IQ4_NL with and without an importance
#                matrix from the first 10 lines of the TinyStories sample, KLD on the other 9
#
#   scripts/compress-report.sh [-b BUILD_DIR] [SECTION...]
#
# BUILD_DIR defaults to build/release; ELM_MODELS_DIR to ../shared/models; SECTIONs default to
# all three. ELM_BENCH_ARGS adds global elm-bench options (e.g. "--reps 7"). The KLD columns
# are exact on any machine; the speed columns are only as quiet as the machine: run it idle.
# elmctl runs with one thread (any count gives the same bits; one does not fight other work
# for the cores). A section whose command fails keeps its old table.
set -eu

cd "$(dirname "$0")/.."
build=build/release
if [ "${1:-}" = "-b" ]; then
    [ $# -ge 2 ] || { echo "compress-report.sh: -b needs a directory" >&2; exit 2; }
    build=${2%/}
    shift 2
fi
models=${ELM_MODELS_DIR:-../shared/models}
bench=$build/bench/elm-bench
elmctl=$build/cli/elmctl
doc=docs/compression.md
for p in "$bench" "$elmctl"; do
    [ -x "$p" ] || { echo "compress-report.sh: $p not built (scripts/build.sh)" >&2; exit 1; }
done
[ $# -gt 0 ] || set -- stories260K zoo-llama imatrix

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Puts file $2 between section $1's markers; everything else stays as it is.
insert() {
    scripts/doc-section.sh "$doc" "compress:$1" "$2"
}

# imatrix: every command is echoed into the section, then the table from their JSON. Run in a
# subshell: a failing command exits it, and the section keeps its old table.
imatrix() {
    st=$models/stories260K.gguf
    text=$models/corpus/tinystories-sample-30k.txt
    head -n 10 "$text" >"$tmp/calib.txt"
    tail -n +11 "$text" >"$tmp/eval.txt"
    run() { echo "$*" >>"$tmp/cmds"; "$@" || { echo "compress-report.sh: failed: $*" >&2; exit 1; }; }
    : >"$tmp/cmds"
    run "$elmctl" imatrix "$st" "$tmp/calib.txt" --ctx 128 --threads 1 -o "$tmp/st.imatrix" --json >/dev/null
    run "$elmctl" perplexity "$st" "$tmp/eval.txt" --ctx 128 --threads 1 --save-logits "$tmp/base.kld" \
        --json >"$tmp/base.json"
    for t in q4_0 q4_1 q5_0 iq4_nl; do
        for m in no imat; do
            q=$tmp/st-$t-$m.gguf
            if [ $m = imat ]; then
                run "$elmctl" quantize --threads 1 --imatrix "$tmp/st.imatrix" --json "$st" "$q" $t >"$q.q"
            else
                run "$elmctl" quantize --threads 1 --json "$st" "$q" $t >"$q.q"
            fi
            run "$elmctl" perplexity "$q" --kl-divergence "$tmp/base.kld" --ctx 128 --threads 1 \
                --json >"$q.kld"
        done
    done
    python3 - "$tmp" <<'EOF' >"$tmp/table" || exit 1
import json, os, sys
d = sys.argv[1]
print("| type | file bytes (without / with) | mean KLD without | with | change | "
      "same top % without | with | PPL without | with |")
print("|---|---|--:|--:|--:|--:|--:|--:|--:|")
for t in ("q4_0", "q4_1", "q5_0", "iq4_nl"):
    s = {m: json.load(open(f"{d}/st-{t}-{m}.gguf.kld"))["stats"] for m in ("no", "imat")}
    b = {m: os.path.getsize(f"{d}/st-{t}-{m}.gguf") for m in ("no", "imat")}
    k = {m: s[m]["kld_mean"] for m in s}
    print(f"| {t} | {b['no']:,} / {b['imat']:,} | {k['no'][0]:.6f} ± {k['no'][1]:.6f} | "
          f"{k['imat'][0]:.6f} ± {k['imat'][1]:.6f} | {100 * (k['imat'][0] / k['no'][0] - 1):+.1f} % | "
          f"{s['no']['same_top_p_pct'][0]:.2f} | {s['imat']['same_top_p_pct'][0]:.2f} | "
          f"{s['no']['ppl_q'][0]:.4f} | {s['imat']['ppl_q'][0]:.4f} |")
base = json.load(open(f"{d}/base.json"))
print(f"\nF32 on the evaluation lines: PPL {base['ppl']:.4f}, {base['n_chunk']} chunks of "
      f"{base['n_ctx']}, {base['n_scored']} scored tokens.")
EOF
    [ -s "$tmp/table" ] || exit 1
    {
        echo '```sh'
        echo "head -n 10 corpus/tinystories-sample-30k.txt > calib.txt   # calibration"
        echo "tail -n +11 corpus/tinystories-sample-30k.txt > eval.txt   # evaluation"
        sed -e "s|$tmp/||g" -e "s|$build/cli/||" -e "s|$models/||g" "$tmp/cmds"
        echo '```'
        echo
        cat "$tmp/table"
    } >"$tmp/section"
}

fails=0
for section in "$@"; do
    case $section in
    stories260K)
        cmd="--plot docs/compression-stories260K.svg compress $models/stories260K.gguf $models/corpus/tinystories-sample-30k.txt --ctx 128" ;;
    zoo-llama)
        cmd="--plot docs/compression-zoo-llama.svg compress $models/zoo/zoo-llama.gguf $models/corpus/wiki.test.raw --ctx 256 --chunks 20" ;;
    imatrix) cmd= ;;
    *) echo "compress-report.sh: unknown section '$section'" >&2; exit 2 ;;
    esac
    echo "compress-report.sh: $section" >&2
    if [ -n "$cmd" ]; then
        # shellcheck disable=SC2086  # the commands are word lists on purpose
        ELM_WAIT=passive "$bench" ${ELM_BENCH_ARGS:-} $cmd >"$tmp/section" || {
            echo "compress-report.sh: '$section' failed; its table is unchanged" >&2
            fails=$((fails + 1))
            continue
        }
    elif ! (imatrix); then
        echo "compress-report.sh: '$section' failed; its table is unchanged" >&2
        fails=$((fails + 1))
        continue
    fi
    insert "$section" "$tmp/section"
done
exit $((fails > 0))
