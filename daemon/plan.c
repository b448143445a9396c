/* plan.c — the scheduling decision of one step (plan.h). */
#include "daemon/plan.h"

int elmd_prefill_allowance(const struct elmd_plan_limits *lim, int decoding)
{
    int left = lim->batch - decoding;
    if (left <= 0)
        return 0;
    /* The budget keeps decoding streams flowing; with none, a long step delays nobody's tokens
     * (and cutting a lone prompt into passes of one token cost a whole pass each). */
    if (lim->step_ms <= 0 || lim->tok_ns <= 0 || decoding == 0)
        return left;
    const double decode_ns = lim->fixed_ns + decoding * lim->tok_ns;
    double fit = ((double)lim->step_ms * 1e6 - decode_ns) / lim->tok_ns;
    /* When the decoding tokens alone take more than half the budget (a large model, a slow or
     * busy machine) the budget held the prompts to a token or two a step: clients arriving
     * while others decoded waited a pass per prompt token (traced, 8 tinyllama clients read
     * 2 + 6 on a loaded machine: 47 passes of 2 decode rows and 1 prompt token before the 6
     * started, the round 1.65x as long). Their prompt tokens may always cost as much as the
     * step's decoding part: a step at most doubles, whatever the machine's speed. */
    if (fit < decode_ns / lim->tok_ns)
        fit = decode_ns / lim->tok_ns;
    return fit < 1 ? 1 : fit < left ? (int)fit : left;
}

void elmd_cost_learn(struct elmd_pass_cost *c, int n, uint64_t ns)
{
    const double d = ELMD_COST_DECAY, t = (double)ns;
    c->w = d * c->w + 1;
    c->sn = d * c->sn + n;
    c->snn = d * c->snn + (double)n * n;
    c->st = d * c->st + t;
    c->snt = d * c->snt + n * t;
    const double mn = c->sn / c->w, mt = c->st / c->w;
    const double var = c->snn / c->w - mn * mn, cov = c->snt / c->w - mn * mt;
    /* A spread of n under half a token: the passes are alike, the slope is noise (plan.h). */
    double slope = var > 0.25 ? cov / var : c->tok_ns;
    if (slope <= 0)
        slope = mt / mn; /* nothing learned (or noise said "free tokens"): all of it per token */
    double fixed = mt - slope * mn;
    if (fixed < 0) { /* a negative fixed part is noise too: the cost is all per token */
        fixed = 0;
        slope = mt / mn;
    }
    c->fixed_ns = fixed;
    c->tok_ns = slope;
}

/* Gives the prompts among slots[0..n) (ready, tokens to evaluate) up to `limit` tokens in all,
 * max-min fairly (plan.h), each at most `chunk`; take[] is 0 for the others on entry. Returns
 * the tokens given. */
static int share_prompts(const struct elmd_plan_slot *slots, int n, int rr, int limit, int chunk,
                         int *take)
{
    /* The level L: each prompt gets min(left, chunk, L); the largest L whose total fits. */
    int lo = 0, hi = chunk, given = 0;
    while (lo < hi) {
        int mid = lo + (hi - lo + 1) / 2;
        long need = 0;
        for (int k = 0; k < n; k++)
            if (slots[k].ready && slots[k].to_eval > 0)
                need += slots[k].to_eval < mid ? slots[k].to_eval : mid;
        if (need <= limit)
            lo = mid;
        else
            hi = mid - 1;
    }
    for (int k = 0; k < n; k++)
        if (slots[k].ready && slots[k].to_eval > 0) {
            take[k] = slots[k].to_eval < lo ? slots[k].to_eval : lo;
            given += take[k];
        }
    /* What does not divide: one more token each, round-robin, to prompts the level cut. */
    for (int j = 0; j < n && given < limit; j++) {
        int k = (rr + j) % n;
        if (slots[k].ready && take[k] < slots[k].to_eval && take[k] < chunk) {
            take[k]++;
            given++;
        }
    }
    return given;
}

/* With nothing decoding: gives the prompts up to `limit` tokens so that none finishes before
 * the others, each at most `chunk`: the level L is the smallest whose excess over it fits, each
 * prompt takes what it has above L (L 0: all finish in this pass). The few tokens the level
 * leaves unused stay so: spread, they would finish some prompts alone. Returns the tokens. */
static int finish_together(const struct elmd_plan_slot *slots, int n, int limit, int chunk,
                           int *take)
{
    int lo = 0, hi = 0, given = 0;
    for (int k = 0; k < n; k++)
        if (slots[k].ready && slots[k].to_eval > hi)
            hi = slots[k].to_eval;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        long need = 0;
        for (int k = 0; k < n; k++)
            if (slots[k].ready && slots[k].to_eval > mid) {
                int over = slots[k].to_eval - mid;
                need += over < chunk ? over : chunk;
            }
        if (need <= limit)
            hi = mid;
        else
            lo = mid + 1;
    }
    for (int k = 0; k < n; k++)
        if (slots[k].ready && slots[k].to_eval > lo) {
            int over = slots[k].to_eval - lo;
            take[k] = over < chunk ? over : chunk;
            given += take[k];
        }
    return given;
}

int elmd_plan(const struct elmd_plan_slot *slots, int n, const struct elmd_plan_limits *lim,
              int *rr, int *take, int *order, int *m)
{
    int used = 0;
    *m = 0;
    for (int k = 0; k < n; k++) {
        take[k] = 0;
        if (slots[k].ready && slots[k].to_eval == 0 && used < lim->batch) {
            take[k] = 1;
            order[(*m)++] = k;
            used++;
        }
    }
    const int limit = elmd_prefill_allowance(lim, used);
    /* prefill_chunk shares steps between prompts; a prompt alone, with nothing decoding, has
     * nobody to share with: it takes what the pass holds (first token in one pass). */
    int prompts = 0;
    for (int k = 0; k < n; k++)
        prompts += slots[k].ready && slots[k].to_eval > 0;
    const int chunk = prompts == 1 && used == 0 ? limit : lim->prefill_chunk;
    long left = 0;
    for (int k = 0; k < n; k++)
        left += slots[k].ready && slots[k].to_eval > 0 ? slots[k].to_eval : 0;
    int given = 0;
    if (prompts > 1 && used == 0 && left <= (long)ELMD_TOGETHER_PASSES * limit)
        given = finish_together(slots, n, limit, chunk, take);
    if (!given && prompts && limit > 0) /* (a batch smaller than the prompts: still progress) */
        given = share_prompts(slots, n, *rr, limit, chunk, take);
    used += given;
    for (int j = 0; j < n; j++) {
        int k = (*rr + j) % n;
        if (slots[k].to_eval > 0 && take[k] > 0)
            order[(*m)++] = k;
    }
    *rr = n ? (*rr + 1) % n : 0;
    return used;
}

/* ---- KV memory --------------------------------------------------------------------------- */

/* Whether slot a comes before slot b in request age (ties: by index, so the order is total). */
static bool older(const struct elmd_mem_slot *sl, int a, int b)
{
    return sl[a].order < sl[b].order || (sl[a].order == sl[b].order && a < b);
}

/* Whose pages go next for slot k: the least recently used idle session holding some, else the
 * most recently admitted running request (k itself at the latest: it is a candidate). */
static int victim(const struct elmd_mem_slot *sl, int n, const bool *take, int k)
{
    int v = -1;
    for (int j = 0; j < n; j++)
        if (!take[j] && !sl[j].running && sl[j].held > 0 && (v < 0 || older(sl, j, v)))
            v = j;
    if (v >= 0)
        return v;
    v = k;
    for (int j = 0; j < n; j++)
        if (!take[j] && sl[j].running && (sl[j].held > 0 || sl[j].want > 0) && older(sl, v, j))
            v = j;
    return v;
}

int elmd_plan_memory(const struct elmd_mem_slot *sl, int n, int64_t avail, bool *take)
{
    int n_taken = 0;
    for (int k = 0; k < n; k++)
        take[k] = false;
    /* Serve the running slots that want pages oldest first. A victim is always k or younger
     * than k, so a slot served earlier never loses what it was given. */
    for (int prev = -1;;) {
        int k = -1;
        for (int j = 0; j < n; j++)
            if (sl[j].running && sl[j].want > 0 && !take[j] && (prev < 0 || older(sl, prev, j)) &&
                (k < 0 || older(sl, j, k)))
                k = j;
        if (k < 0)
            return n_taken;
        prev = k;
        while (avail < sl[k].want) {
            int v = victim(sl, n, take, k);
            take[v] = true;
            n_taken++;
            avail += sl[v].held;
            if (v == k)
                break;
        }
        if (!take[k])
            avail -= sl[k].want;
    }
}
