/* plan.c — the scheduling decision of one step (plan.h). */
#include "daemon/plan.h"

int elmd_prefill_allowance(const struct elmd_plan_limits *lim, int decoding)
{
    /* Many-token passes are compute-bound, so their cost grows with the tokens. */
    int left = lim->batch - decoding;
    /* The budget keeps decoding streams flowing; with none, a long step delays nobody's tokens
     * (and cutting a lone prompt into passes of one token cost a whole pass each). */
    if (lim->step_ms <= 0 || lim->ns_per_tok <= 0 || decoding == 0)
        return left;
    double fit = (double)lim->step_ms * 1e6 / lim->ns_per_tok - decoding;
    return fit < 1 ? 1 : fit < left ? (int)fit : left;
}

void elmd_learn_cost(double *ns_per_tok, int n, uint64_t ns)
{
    if (n < 8)
        return;
    double per = (double)ns / n;
    *ns_per_tok = *ns_per_tok > 0 ? 0.75 * *ns_per_tok + 0.25 * per : per;
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
    const int limit = used + elmd_prefill_allowance(lim, used);
    /* prefill_chunk shares steps between prompts; a prompt alone, with nothing decoding, has
     * nobody to share with: it takes what the pass holds (first token in one pass). */
    int prompts = 0;
    for (int k = 0; k < n; k++)
        prompts += slots[k].ready && slots[k].to_eval > 0;
    const int chunk = prompts == 1 && used == 0 ? limit : lim->prefill_chunk;
    for (int j = 0; j < n && used < limit; j++) {
        int k = (*rr + j) % n;
        if (slots[k].ready && slots[k].to_eval > 0) {
            int max = limit - used < chunk ? limit - used : chunk;
            take[k] = slots[k].to_eval < max ? slots[k].to_eval : max;
            order[(*m)++] = k;
            used += take[k];
        }
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
