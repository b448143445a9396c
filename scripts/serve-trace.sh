#!/usr/bin/env bash
# serve-trace.sh — where an `elm-bench serve` run's time goes, pass by pass, from elmd's trace
# marks (common/trace.h: d_fwd_start, d_fwd_end, and d_pass:DECODE_ROWS:PROMPT_TOKENS after
# each forward pass).
#
#   scripts/serve-trace.sh [TRACE_FILE] [-- ELM-BENCH SERVE ARGS...]
#
# With arguments after `--`, runs `elm-bench serve ARGS` with ELM_TRACE set (default args:
# --reps 3 serve --synth tinyllama-1.1b:q4_0 --clients 1,8) and then reads the trace; without,
# reads an existing TRACE_FILE. The trace is cut into rounds where a request arrives
# (d_req_read) after the engine went idle (d_woke): elm-bench's rounds run one after another;
# a round's client count is the number of requests read in it. For each round it prints:
#   - in how many engine steps its requests were read (1: every client had submitted before
#     the first pass; more: passes were issued while clients were still submitting);
#   - passes and their time by kind: decode-only passes with all N rows, decode-only passes with
#     fewer rows (ramp-up and tail), passes that carry prompt tokens;
#   - idle: time between a pass's end and the next pass's start inside the round's window (from
#     the first pass with a decode row to the last pass), i.e. the engine waiting for work;
#   - the losses against the ideal "every generated token in an N-row decode pass at this
#     round's median N-row pass time" (or, if no pass carried all N rows, the fullest pass's,
#     said so: the losses are then lower bounds): (a) fewer-row passes, (b) prompt passes beyond their
#     decode rows' share, (c) idle; and the kernel's own ratio, median N-row pass over median
#     1-row pass (from the 1-client rounds of the same trace).
# Times are wall-clock and therefore the machine's load; compare ratios within one trace.
set -euo pipefail
cd "$(dirname "$0")/.."
trace=${1:-/tmp/serve-trace.$$}
[ $# -gt 0 ] && shift
if [ "${1:-}" = "--" ]; then
    shift
    args=("$@")
    [ ${#args[@]} -gt 0 ] || args=(--reps 3 serve --synth tinyllama-1.1b:q4_0 --clients 1,8)
    rm -f "$trace"
    ELM_TRACE=$trace build/release/bench/elm-bench "${args[@]}"
fi
[ -r "$trace" ] || { echo "serve-trace.sh: no trace file $trace" >&2; exit 2; }

# Only elmd's engine marks; they all come from one process (the trace may hold clients' too).
grep -E ' (d_req_read|d_woke|d_fwd_start|d_fwd_end|d_pass:[0-9]+:[0-9]+) ' "$trace" | sort -k3,3n | awk '
function median(a, n,    i, j, t) {
    if (n == 0) return 0
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j+1] = a[j]; a[j+1] = t }
    return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
}
function flush(    i, N, nfull, tfull, nfew, tfew, npr, tpr, idle, w0, w1, t8, dec, gen, la, lb, lc, ideal, m) {
    if (np == 0) return
    N = 0
    for (i = 1; i <= np; i++) if (D[i] > N) N = D[i]
    if (N == 0) { np = 0; return }
    if (N < nreq) printf "round %d clients: no pass carried all %d decode rows, at most %d (losses below: lower bounds, against %d-row passes)\n", nreq, nreq, N, N
    nfull = tfull = nfew = tfew = npr = tpr = idle = gen = 0; w0 = -1; m = 0
    for (i = 1; i <= np; i++) {
        if (D[i] > 0 && w0 < 0) w0 = i
        if (w0 < 0) continue
        gen += D[i]
        if (i > w0) idle += S[i] - E[i-1]
        if (P[i] > 0) { npr++; tpr += E[i] - S[i]; continue }
        if (D[i] == N) { nfull++; tfull += E[i] - S[i]; full[++m] = E[i] - S[i] }
        else { nfew++; tfew += E[i] - S[i]; fewrows += D[i] }
    }
    t8 = median(full, m)
    if (N == 1) one[++n1] = t8; else { rnd++; rN[rnd] = N; rt[rnd] = t8 }
    # the ideal costs every generated token 1/N of a full pass
    la = 0; lb = 0
    for (i = w0; i <= np; i++) {
        if (P[i] > 0) lb += (E[i] - S[i]) - D[i] * t8 / N
        else if (D[i] < N) la += (E[i] - S[i]) - D[i] * t8 / N
    }
    ideal = gen * t8 / N
    total = E[np] - S[w0]
    printf "round %d clients, %d decoding at most (requests read in %d step%s): window %.0f ms, %d tokens generated (ideal %.0f ms at %.1f ms per %d-row pass)\n", \
        nreq, N, reqsteps, (reqsteps > 1 ? "s" : ""), total / 1e6, gen, ideal / 1e6, t8 / 1e6, N
    printf "  %d-row decode passes %d, %.0f ms | fewer-row decode passes %d, %.0f ms | prompt passes %d, %.0f ms | idle %.0f ms\n", \
        N, nfull, tfull / 1e6, nfew, tfew / 1e6, npr, tpr / 1e6, idle / 1e6
    if (total > 0)
        printf "  lost vs ideal: (a) fewer rows %.0f ms (%.0f%%) (b) prompts %.0f ms (%.0f%%) (c) idle %.0f ms (%.0f%%)\n", \
            la / 1e6, 100 * la / total, lb / 1e6, 100 * lb / total, idle / 1e6, 100 * idle / total
    np = 0
}
{
    ns = $3 + 0
    if ($2 == "d_req_read") {
        if (woke) { flush(); reqsteps = 0; nreq = 0; woke = 0 }
        if (last != "d_req_read") reqsteps++
        nreq++
    } else if ($2 == "d_woke") {
        woke = np > 0
    } else if ($2 == "d_fwd_start") {
        cur_s = ns
    } else if ($2 == "d_fwd_end") {
        cur_e = ns
    } else {
        split($2, f, ":")
        np++; S[np] = cur_s; E[np] = cur_e; D[np] = f[2] + 0; P[np] = f[3] + 0
    }
    if ($2 != "d_fwd_start" && $2 != "d_fwd_end") last = $2
}
END {
    woke = 0
    flush()
    t1 = median(one, n1)
    for (i = 1; i <= rnd; i++)
        if (t1 > 0 && rt[i] > 0)
            printf "(kernel) round %d: %d-row pass %.1f ms = %.2fx the median 1-row pass (%.1f ms): %d clients can reach at most %.2fx one client\n", \
                i, rN[i], rt[i] / 1e6, rt[i] / t1, t1 / 1e6, rN[i], rN[i] * t1 / rt[i]
}'
