/* rows.c — the per-token ops of a forward pass, spread over the pool's threads (rows.h).
 *
 * When to spread: a parallel call ends when every thread has returned, so it costs at least the
 * wake-up of a worker: ~20 us when workers sleep (ELM_WAIT=passive, or auto on a busy machine),
 * ~1-2 us when they spin, and a scheduling delay of 1-3 ms when other programs hold the cores.
 * One op of one tinyllama row costs ~4-5 us (less on a narrower model). While the workers
 * sleep, a pass spreads only when it has so many rows (ELM_ROWS_SPREAD_MIN) that even a wake-up
 * is a few percent of the call: 128 rows of tinyllama are ~0.6 ms of one op, of small-110m
 * ~0.2 ms; on a machine whose cores are taken the scheduling delay outweighs the split at every
 * size measured (16-256 rows; docs/kernels-perf.md), as it delays the matmuls' calls too. While
 * they spin (the pool's own judgement, elm_pool_spins), from ELM_ROWS_SPREAD_MIN_SPIN rows: an
 * 8-token pass of tinyllama Q4_0 (batched decode of 8 clients) then ran faster in every one of
 * 9 alternated rounds on a Zen 5 VM (AVX-512 by 0.4-2.8 ms of ~23, AVX2 by 0.3-2 ms of ~34),
 * its five ops a layer no longer leaving a core idle; small-110m's did not move, and 2- and
 * 4-token passes were not faster spread, so they stay on the caller.
 */
#include "engine/rows.h"

#include <stdatomic.h>

#include "common/pool.h"
#include "engine/ops.h"

struct job {
    const struct elm_rows *r;
    int n;
    atomic_int next; /* the next row not yet taken */
};

static void row(const struct elm_rows *r, int t)
{
    if (r->fn)
        r->fn(r, t);
    if (r->dt != ELM_TYPE_F32)
        r->m->k->from_float[r->dt](r->qsrc + (size_t)t * (size_t)r->qcols,
                                   (char *)r->qdst + (size_t)t * r->stride, r->qcols);
}

/* Each thread takes rows one at a time until none are left: which thread computes a row does
 * not change its bits. */
static void part(void *ctx, int th, int nth)
{
    (void)th, (void)nth;
    struct job *j = ctx;
    for (int t; (t = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < j->n;)
        row(j->r, t);
}

void elm_rows_run(const struct elm_rows *r, int n, int n_threads)
{
    if (n < (elm_pool_spins() ? ELM_ROWS_SPREAD_MIN_SPIN : ELM_ROWS_SPREAD_MIN) || n_threads < 2) {
        for (int t = 0; t < n; t++)
            row(r, t);
        return;
    }
    struct job j = {.r = r, .n = n};
    atomic_init(&j.next, 0);
    elm_pool_run(n < n_threads ? n : n_threads, part, &j);
}

void elm_row_norm(const struct elm_rows *r, int t)
{
    const size_t o = (size_t)t * (size_t)r->ncols;
    r->m->k->rmsnorm(r->dst + o, r->x + o, r->g, r->ncols, r->m->hp.eps);
}

void elm_row_residual(const struct elm_rows *r, int t)
{
    const size_t o = (size_t)t * (size_t)r->ncols;
    float *x = r->x + o, *y = r->y + o;
    if (r->g_post)
        r->m->k->rmsnorm(y, y, r->g_post, r->ncols, r->m->hp.eps);
    for (int64_t i = 0; i < r->ncols; i++)
        x[i] += y[i];
    if (r->g)
        elm_row_norm(r, t);
}

void elm_row_act(const struct elm_rows *r, int t)
{
    const size_t o = (size_t)t * (size_t)r->ncols;
    if (r->m->hp.arch == ELM_ARCH_GEMMA2)
        elm_gelu_mul(r->x + o, r->y + o, r->ncols);
    else
        r->m->k->silu_mul(r->x + o, r->y + o, r->ncols);
}
