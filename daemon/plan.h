/* plan.h — which tokens of which sessions go into the next forward pass: the scheduling
 * decision alone, over plain numbers, so a test can call it without threads, rings or a model.
 *
 * The rule: every decoding session gets its one token first (a decode step is cheap and each
 * waits for it); then the prompts share what is left max-min fairly: each gets an equal share
 * (at most prefill_chunk, at most what it has left), the shares a short prompt leaves go to the
 * others, and the last few tokens that do not divide go round-robin from the session after
 * last step's first. So a long prompt delays the others by one chunk per step, never by its
 * whole length. With nothing decoding, prompts that all fit in ELMD_TOGETHER_PASSES passes
 * instead finish in the same pass (the ones with most left go first): their streams then
 * start together and are batched from the first token, instead of the first ones decoding
 * alone while the others' prompts are cut to the step budget (and, when a request arrives a
 * step late, it still catches up with the others' prompts). The first token of the shortest
 * waits at most that many passes longer; longer prompts are shared max-min as above, so a long
 * one does not hold a short one back for its whole length. The prompt tokens of one step are
 * capped twice: by the pass's batch, and, while some session decodes, by what keeps the pass
 * within step_ms at the measured cost of a pass (a fixed part, mostly streaming the weights
 * once, plus a part per token) — but never below what costs as much as the step's decoding
 * part (when that alone takes more than half of step_ms, a step with prompts at most doubles:
 * otherwise a client arriving while others decode would get a token or two a pass) and never
 * below one token, so prompts always progress. A prompt alone (nothing
 * decoding, no other prompt) is capped by the batch only: its first token costs one pass, not one
 * pass per chunk.
 */
#ifndef ELMD_PLAN_H
#define ELMD_PLAN_H

#include <stdbool.h>
#include <stdint.h>

/* One session as the planner sees it. */
struct elmd_plan_slot {
    bool ready;      /* runs a request that is not finished, and its event ring has room */
    int32_t to_eval; /* prompt tokens not yet evaluated; 0: decoding (one token a step) */
};

/* What a forward pass of n tokens costs, fixed_ns + n * tok_ns, fitted online (elmd_cost_learn)
 * by least squares over the passes so far, each older pass weighted ELMD_COST_DECAY less than
 * the next (about the last 20 passes count), so it follows the machine's load. While the
 * passes' token counts barely vary (all decode steps of the same sessions) the slope cannot be
 * told from the noise: the last slope is kept and the fixed part follows the mean. */
struct elmd_pass_cost {
    double w, sn, snn, st, snt; /* decayed sums: weight, n, n^2, ns, n*ns */
    double fixed_ns, tok_ns;    /* the fit; tok_ns 0: nothing measured yet */
};

#define ELMD_COST_DECAY 0.95

/* With nothing decoding, prompts that fit in this many passes finish together (see above). */
#define ELMD_TOGETHER_PASSES 4

/* Adds a pass of n tokens that took ns and refits. */
void elmd_cost_learn(struct elmd_pass_cost *c, int n, uint64_t ns);

struct elmd_plan_limits {
    int batch;         /* tokens one pass holds */
    int prefill_chunk; /* prompt tokens a session may evaluate per step */
    int step_ms;       /* prompt tokens per step fit this budget (0: no budget) */
    double fixed_ns;   /* measured cost of a pass: fixed part ... */
    double tok_ns;     /* ... and per token (0: unknown, no budget) */
};

/* Plans one step over slots[0..n): take[k] tokens of session k (0: none), and order[0..m) the
 * m sessions that take some, in the order their tokens go into the pass. *rr is the round-robin
 * start, advanced for the next step. Returns the total tokens (<= lim->batch). */
int elmd_plan(const struct elmd_plan_slot *slots, int n, const struct elmd_plan_limits *lim,
              int *rr, int *take, int *order, int *m);

/* Prompt tokens a step may take besides `decoding` decode tokens (see above). */
int elmd_prefill_allowance(const struct elmd_plan_limits *lim, int decoding);

/* ---- KV memory ------------------------------------------------------------------------------
 * Pages are taken as sequences grow. When a step's sequences lack more pages than are free,
 * requests are served in the order they were first admitted, oldest first; for one that does
 * not fit, pages are taken back from idle sessions (the history they keep), least recently used
 * first, then from the running request admitted MOST RECENTLY, which is preempted (its pages
 * freed, its request requeued to be recomputed) — possibly the one asking, which then waits.
 * So the oldest request always progresses (no request alone is larger than the pool: admission
 * refuses those), and the work thrown away is that of the youngest, which has done the least.
 */

/* One session as the memory planner sees it. */
struct elmd_mem_slot {
    bool running;   /* runs a request that holds or needs pages; false: idle (or none) */
    uint64_t order; /* running: when its request was first admitted; idle: when last used */
    int64_t held;   /* pages it holds */
    int64_t want;   /* pages its tokens of this step lack (0 unless running and planned) */
};

/* Decides whose pages are taken so that the wants of slots[0..n) fit free_pages (see above):
 * take[k] is set for each session to take them from (idle: reclaimed; running: preempted, and
 * it gets nothing this step). Every running slot left untaken gets its want. Returns how many
 * were taken. */
int elmd_plan_memory(const struct elmd_mem_slot *slots, int n, int64_t free_pages, bool *take);

#endif
