/* plan.c — the scheduling decision of one step (plan.h). */
#include "daemon/plan.h"

int elmd_prefill_allowance(const struct elmd_plan_limits *lim, int decoding)
{
    /* Many-token passes are compute-bound, so their cost grows with the tokens. */
    int left = lim->batch - decoding;
    if (lim->step_ms <= 0 || lim->ns_per_tok <= 0)
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
    for (int j = 0; j < n && used < limit; j++) {
        int k = (*rr + j) % n;
        if (slots[k].ready && slots[k].to_eval > 0) {
            int max = limit - used < lim->prefill_chunk ? limit - used : lim->prefill_chunk;
            take[k] = slots[k].to_eval < max ? slots[k].to_eval : max;
            order[(*m)++] = k;
            used += take[k];
        }
    }
    *rr = n ? (*rr + 1) % n : 0;
    return used;
}
