#!/bin/sh
# bench-wait.sh — measures how the compute threads' wait policy (common/pool.h: ELM_WAIT =
# passive, active, auto) does on an idle machine and on one with two busy loops on the cores,
# and writes the table between <!-- bench:wait begin --> and <!-- bench:wait end --> in
# docs/benchmarks.md.
#
#   scripts/bench-wait.sh [-b BUILD_DIR]
#
# For each model shape (small-110m and tinyllama-1.1b, Q4_0, synthesised by elm-bench) and each
# load: decode tokens/s in-process (`elm-bench model`, tg tokens) and aggregate tokens/s through
# elmd with 1 and 8 clients (`elm-bench serve`, predict tokens each) under each policy. passive
# and active are the pool forced to one behaviour (what OMP_WAIT_POLICY=passive and =active did
# with OpenMP); auto is the default. The targets (issue 15): idle, auto within 5 % of active (the
# best spinning figure); busy, auto within 10 % of passive.
# Lengths are per shape, so that a cell lasts seconds: auto turns busy on a sample over the line
# and stays so for a second or more until a probe, and in a run shorter than that one such sample
# decides the cell (small-110m's 8 x 32 served tokens took 0.4 s). small-110m: tg 512, 256 tokens
# per client (idle: 2.2 s of tg, 1 client 1 s, 8 clients 3.5 s; busy about 3x that);
# tinyllama-1.1b: tg 64, 128 tokens per client (2.6 s of tg; 1 client ~5 s, 8 clients ~13 s idle;
# with 32 a client the idle cells, ~1 and ~4 s, missed where 128 met). WAIT_TG and
# WAIT_PREDICT set one length for every shape.
# The policies alternate: WAIT_REPS (default 3) rounds, each running every policy once, so a
# neighbour's load hits all three alike. A cell is the median over the rounds; auto / target is
# the median of the rounds' own ratios (docs/benchmarks.md's rule for comparisons).
# - model: one elm-bench process a round runs the policies in turn (`model --wait`: the target
#   first, then auto, then the other), WAIT_MODEL_REPS (default 2) repetitions each after one
#   warm-up; the round's ratio is the median of its repetitions' own (elm-bench's "tg / first
#   wait's"). Processes of their own differed by more than the 5 % judged: a process draws its
#   own placement of threads on the cores.
# - serve: one elm-bench serve run per policy (its order rotating from round to round) against
#   the shape's resident elmd, with no warm-up of its own (a running daemon is as warm as its
#   users keep it; serve_start warms it once), so the time goes into rounds.
# Busy rounds skip active by default (WAIT_BUSY_ACTIVE=1 runs it): no target compares with it,
# it is the 3x-slower case auto exists to avoid, and it alone would take most of the time
# (8 clients of small-110m at 62 t/s). A whole run took about 9 min a round on a quiet
# machine before the serve warm-ups went (55 min at WAIT_REPS=6), about 5 min since (39 min at
# WAIT_REPS=8, 2026-12-03).
# WAIT_SHAPES, WAIT_LOADS (idle busy), WAIT_BENCHES (model serve) and WAIT_POLICIES (passive
# active auto) narrow what is measured (a first look: WAIT_SHAPES=small-110m; the busy serve
# cells alone: WAIT_LOADS=busy WAIT_BENCHES=serve WAIT_POLICIES="passive auto"); a narrowed run
# prints its table and leaves docs/benchmarks.md as it was. Run it on a quiet
# machine: the "idle" rows assume nothing else runs (the note under the table gives
# /proc/loadavg). On a loaded machine `active` is very slow and its serve runs may fail.
set -eu

cd "$(dirname "$0")/.."
build=build/release
if [ "${1:-}" = "-b" ]; then
    [ $# -ge 2 ] || { echo "bench-wait.sh: -b needs a directory" >&2; exit 2; }
    build=${2%/}
fi
bench=$build/bench/elm-bench
doc=docs/benchmarks.md
[ -x "$bench" ] || { echo "bench-wait.sh: $bench not built (scripts/build.sh)" >&2; exit 1; }
grep -q '^<!-- bench:wait begin -->$' "$doc" || { echo "bench-wait.sh: no marker in $doc" >&2; exit 1; }
reps=${WAIT_REPS:-3}
busy_active=${WAIT_BUSY_ACTIVE:-0}
all_shapes="small-110m tinyllama-1.1b" all_loads="idle busy" all_benches="model serve"
all_policies="passive active auto"
shapes=${WAIT_SHAPES:-$all_shapes}
loads=${WAIT_LOADS:-$all_loads}
benches=${WAIT_BENCHES:-$all_benches}
policies=${WAIT_POLICIES:-$all_policies}
whole=no
[ "$shapes $loads $benches $policies" = "$all_shapes $all_loads $all_benches $all_policies" ] && whole=yes

tmp=$(mktemp -d)
busy_pids=""
run="" # the running elmd's runtime directory (serve_start)
stop_busy() {
    for p in $busy_pids; do kill "$p" 2>/dev/null || true; done
    for p in $busy_pids; do wait "$p" 2>/dev/null || true; done
    busy_pids=""
}
trap 'stop_busy; serve_stop; rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM

# Results go to $tmp/r as lines "shape load bench policy round t/s over samples probes free
# spinsleeps [ratio]" (ratio: model rows, to the target in the same process): over and samples
# are the pool's samples of the machine in that run and those over
# the busy line (elm-bench's "threads' waiting" column, common/pool.h; every policy samples), so
# the table can say how often auto found the machine busy, and how often passive's sleeping
# threads waited over the line all the same (their own wake-ups: why auto does not trust sleeping
# samples), how many probes auto ran and how many found free cores (elmd's STATS carries them
# for serve), and how often a spinning thread spun its whole budget in vain and slept (where
# auto, spinning 1 ms, and active, 0.2 s, differ on a machine auto finds free).
: >"$tmp/r"
# prints the row's t/s (column $1) and the counts of its waiting column ($2)
row() {
    awk -F, -v c="$1" -v w="$2" -v pre="$3" '$1 == t {
        split($w, a, /[ \/]/); pr = $w; sub(/.*probes /, "", pr); split(pr, b, /[ (]+/)
        sp = $w; sub(/.*sleeps \(/, "", sp); sub(/ after.*/, "", sp)
        print pre ($1 == "serve" ? " serve-" $3 : " model"), $c, a[2], a[3], b[1] + 0, b[2] + 0, sp + 0 }' t="$4"
}
lengths() { # $1 shape: sets tg, predict and ctx (a session's context: the prompt and predict)
    case "$1" in
    small-110m) tg=512 predict=256 ;;
    *) tg=64 predict=128 ;;
    esac
    tg=${WAIT_TG:-$tg}
    predict=${WAIT_PREDICT:-$predict}
    ctx=$((predict + 64 > 256 ? predict + 64 : 256))
}
target() { # $1 load: the policy auto is judged against
    [ "$1" = idle ] && echo active || echo passive
}
measure_model() { # $1 shape, $2 load, $3 round; the policies in $order, the target first
    case " $benches " in *" model "*) ;; *) return ;; esac
    waits=$(target "$2")
    for p in auto $order; do
        case " $order " in *" $p "*) ;; *) continue ;; esac
        case ",$waits," in *",$p,"*) ;; *) waits="$waits,$p" ;; esac
    done
    # the model table: tg t/s is the 12th column, the threads' waiting the 15th, the policy
    # the 19th and tg against the first policy's the 20th
    if "$bench" --csv --reps "${WAIT_MODEL_REPS:-2}" model --synth "$1:q4_0" --pp 16 \
        --tg "$tg" --wait "$waits" >"$tmp/out" 2>"$tmp/err"; then
        awk -F, '$1 == "model" { print $19, $20 }' "$tmp/out" >"$tmp/ratio"
        row 12 15 "$1 $2" model <"$tmp/out" | paste -d' ' - "$tmp/ratio" |
            awk -v r="$3" '{ print $1, $2, $3, $10, r, $4, $5, $6, $7, $8, $9, $11 }' >>"$tmp/r"
    else
        for p in $(echo "$waits" | tr , ' '); do failed "$1 $2 model $p $3"; done
    fi
}
measure_serve() { # $1 shape, $2 load, $3 policy, $4 round
    case " $benches " in *" serve "*) ;; *) return ;; esac
    # the serve table: clients in the 3rd column, aggregate t/s in the 6th, elmd's threads'
    # waiting in the 16th. The policy is switched in the running elmd (serve_start says why).
    # A run can fail (spinning threads on a busy machine can starve a client past its stall
    # timeout): the table then shows "failed" for it.
    serve_policy "$3"
    if "$bench" --csv --reps 1 serve --runtime-dir "$run" --clients 1,8 \
        --n-predict "$predict" --ctx "$ctx" >"$tmp/out" 2>"$tmp/err"; then
        row 6 16 "$1 $2" serve <"$tmp/out" | awk -v p="$3" -v r="$4" '{ print $1, $2, $3, p, r, $4, $5, $6, $7, $8, $9 }' >>"$tmp/r"
    else
        failed "$1 $2 serve-1 $3 $4"
        failed "$1 $2 serve-8 $3 $4"
    fi
}
# The serve cells of one shape and load share one elmd, and each run switches its policy by the
# config file and SIGHUP (docs/daemon.md). A run that starts its own elmd draws its own placement
# of threads on the cores: on the 2-core VM, busy small-110m 1-client runs of one commit fell near
# 55 or near 85 t/s whatever the policy (docs/benchmarks.md, "Waiting"), and six rounds of such
# draws decided a cell. In one process the policies share one history; a resident elmd is also
# what users run. auto's start (its probation) is then in the first auto run only.
serve_start() { # $1 shape
    case " $benches " in *" serve "*) ;; *) return 0 ;; esac
    model=${ELM_BENCH_CACHE:-/tmp/elm-bench-cache}/$1-q4_0.gguf
    [ -r "$model" ] || "$bench" --reps 1 model --synth "$1:q4_0" --pp 1 --tg 1 >/dev/null
    run=$tmp/run-$1-$load
    serve_conf passive
    "$build/daemon/elmd" --config "$tmp/elmd.conf" --model "$model" --runtime-dir "$run" \
        >/dev/null || { echo "bench-wait.sh: elmd did not start on $model" >&2; exit 1; }
    # its warm-up (the measured runs have none): every session's pages and the batched passes
    "$bench" --csv --reps 1 serve --runtime-dir "$run" --clients 8 --n-predict 16 \
        --ctx "$ctx" >/dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
}
serve_conf() { # $1 policy
    printf 'max_sessions = 8\nctx = %d\nwait = %s\n' "$ctx" "$1" >"$tmp/elmd.conf"
}
serve_policy() { # $1 policy: elmd rereads its config (a second is ample for the control loop)
    serve_conf "$1"
    kill -HUP "$(cat "$run/elmd.pid")"
    sleep 1
}
serve_stop() {
    [ -n "$run" ] && [ -e "$run/elmd.pid" ] || return 0
    "$build/cli/elmctl" --runtime-dir "$run" stop >/dev/null 2>&1 || true
    run=""
}

failed() { # $1 "shape load bench policy round"
    echo "bench-wait.sh: $1 failed:" >&2
    cat "$tmp/err" >&2
    echo "$1 failed" >>"$tmp/r"
}

load_before=$(cut -d' ' -f1-4 /proc/loadavg)
for load in $loads; do
    if [ "$load" = busy ]; then
        # two busy loops, one per core of the 2-core machine this targets
        for _ in 1 2; do
            sh -c 'while :; do :; done' &
            busy_pids="$busy_pids $!"
        done
    fi
    for shape in $shapes; do
        lengths "$shape"
        serve_start "$shape"
        order=$policies
        if [ "$load" = busy ] && [ "$busy_active" = 0 ]; then
            order=$(echo " $order " | sed 's/ active / /; s/^ *//; s/ *$//')
        fi
        round=1
        while [ "$round" -le "$reps" ]; do
            echo "bench-wait.sh: $shape, $load, round $round, model" >&2
            measure_model "$shape" "$load" "$round"
            for policy in $order; do
                echo "bench-wait.sh: $shape, $load, round $round, serve $policy" >&2
                measure_serve "$shape" "$load" "$policy" "$round"
            done
            # the next round starts with the policy after this round's first
            order="$(echo "$order" | cut -d' ' -f2-) $(echo "$order" | cut -d' ' -f1)"
            round=$((round + 1))
        done
        serve_stop
    done
    stop_busy
done

# One row per shape, load and bench: the three policies' medians, then the median of the
# rounds' ratios of auto to its target ("failed" when no round has both figures).
awk '
    function f(x, key) { return x != "" ? sprintf("%.1f", x) : key in tried ? "failed" : "-" }
    function median(list,    a, n, i, j, t) {
        n = split(list, a, " ")
        if (n == 0) return ""
        for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    {
        key = $1 " " $2 " " $3
        if (!(key in seen)) { seen[key] = 1; order[n++] = key }
        tried[key " " $4] = 1
        if ($6 != "failed") { vals[key " " $4] = vals[key " " $4] " " $6; v[key " " $4 " " $5] = $6 }
        if ($12 != "") paired[key " " $4 " " $5] = $12
        if ($8 != "") { over[key " " $4] += $7; samples[key " " $4] += $8; probes[key " " $4] += $9; free[key " " $4] += $10; spins[key " " $4] += $11 }
        if ($5 + 0 > rounds) rounds = $5 + 0
    }
    END {
        print "| shape | load | bench | passive t/s | active t/s | auto t/s | auto / target | target | rounds: auto / target | samples over: passive | auto | auto probes (free) | sleeps after a spin: auto (target) |"
        print "|---|---|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|"
        for (i = 0; i < n; i++) {
            split(order[i], k, " ")
            if (k[2] == "idle") { ref = "active"; want = 0.95 } else { ref = "passive"; want = 0.90 }
            ratios = ""; shown = ""
            for (r = 1; r <= rounds; r++) {
                a = v[order[i] " auto " r]; t = v[order[i] " " ref " " r]
                q = (order[i] " auto " r) in paired ? paired[order[i] " auto " r] : t + 0 > 0 ? a / t : ""
                if (a != "" && t != "" && q != "") { ratios = ratios " " q; shown = shown (shown == "" ? "" : ", ") sprintf("%.2f", q) }
            }
            rm = median(ratios)
            rs = rm != "" ? sprintf("%.2f %s", rm, rm >= want ? "met" : "missed") : \
                (order[i] " auto") in tried && (order[i] " " ref) in tried ? "failed" : "-"
            b = k[3]; sub(/^serve-/, "serve, ", b); if (b == "model") b = "model (tg)"; else b = b (b == "serve, 1" ? " client" : " clients")
            printf "| %s | %s | %s | %s | %s | %s | %s | >= %.2f of %s | %s | %d of %d | %d of %d | %s | %d (%d) |\n", k[1], k[2], b,
                f(median(vals[order[i] " passive"]), order[i] " passive"),
                f(median(vals[order[i] " active"]), order[i] " active"),
                f(median(vals[order[i] " auto"]), order[i] " auto"), rs, want, ref, shown, over[order[i] " passive"],
                samples[order[i] " passive"], over[order[i] " auto"], samples[order[i] " auto"],
                sprintf("%d (%d)", probes[order[i] " auto"], free[order[i] " auto"]),
                spins[order[i] " auto"], spins[order[i] " " ref]
        }
    }' "$tmp/r" >"$tmp/table"
{
    cat "$tmp/table"
    echo
    lens="" # the lengths measured, as lengths() chose them
    for shape in $shapes; do
        lengths "$shape"
        lens="$lens${lens:+, }$shape $tg and $predict"
    done
    echo "Measured $(date -u +%Y-%m-%d) by \`scripts/bench-wait.sh\` (WAIT_REPS=$reps rounds; model tg and" \
        "serve tokens per client: $lens; busy rounds without active unless WAIT_BUSY_ACTIVE=1)," \
        "/proc/loadavg before: $load_before, after: $(cut -d' ' -f1-4 /proc/loadavg)."
    # a load average above the CPUs means other work ran: say so, the figures are not idle ones
    echo "$load_before" | awk -v n="$(nproc)" '$1 > n {
        print "The machine was loaded (load average above its " n " CPUs): these figures are not"
        print "idle ones; rerun on a quiet machine." }'
} >"$tmp/out"
if [ "$whole" = yes ]; then
    scripts/doc-section.sh "$doc" bench:wait "$tmp/out"
else
    echo "bench-wait.sh: a narrowed run (shapes $shapes; loads $loads; benches $benches;" \
        "policies $policies): $doc left as it was" >&2
fi
cat "$tmp/out"
