/* rows.h — the per-token ops of a forward pass (forward.c): RMS norms, the residual adds, the
 * FFN's activation, and the quantization of a matmul's input rows. Each works on one token's
 * row at a time, and a pass of many tokens spreads its rows over the pool's threads, a whole
 * row per job computed by the same code as alone, so the bits depend neither on the thread
 * count nor on what else the batch holds. Nothing outside engine/forward.c includes it.
 */
#ifndef ELM_ROWS_H
#define ELM_ROWS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/model.h"

/* Rows of a pass from which its per-token ops spread over the pool while its threads spin, and
 * while they sleep (rows.c says why these); below it they run on the calling thread. */
#define ELM_ROWS_SPREAD_MIN_SPIN 8
#define ELM_ROWS_SPREAD_MIN      128

struct elm_rows;
typedef void (*elm_row_fn)(const struct elm_rows *r, int t);

/* One call over n rows: fn (when not NULL) on each row t, then, unless dt is ELM_TYPE_F32,
 * row t of qsrc (qcols floats a row) quantized to dt into qdst (stride bytes a row), so that the
 * next matmul finds its activations ready without another parallel call. Only the fields an op
 * names are read. */
struct elm_rows {
    const struct elm_model *m;
    elm_row_fn fn;
    const void *ctx;     /* the caller's own ops (forward.c's rope) */
    float *x;            /* the rows an op reads (the norms) or updates: [t * ncols] */
    float *y;            /* the rows it adds or multiplies by: [t * ncols] */
    float *dst;          /* a norm's output rows: [t * ncols] */
    const float *g;      /* the norm's weight (NULL: no norm) */
    const float *g_post; /* elm_row_residual: gemma2's post-norm of y, or NULL */
    int64_t ncols;
    const float *qsrc;
    void *qdst;
    size_t stride;
    int64_t qcols;
    enum elm_type dt;
};

/* Runs r over rows 0..n-1 on up to n_threads threads (engine/rows.c says when it spreads). */
void elm_rows_run(const struct elm_rows *r, int n, int n_threads);

/* dst[t] = rmsnorm(x[t]) * g */
void elm_row_norm(const struct elm_rows *r, int t);

/* x[t] += y[t] (gemma2: y[t] RMS-normed by g_post first, in place), then with g,
 * dst[t] = rmsnorm(x[t]) * g for the next sublayer. */
void elm_row_residual(const struct elm_rows *r, int t);

/* x[t] = act(x[t]) * y[t]: SiLU, GELU for gemma2. */
void elm_row_act(const struct elm_rows *r, int t);

#endif
