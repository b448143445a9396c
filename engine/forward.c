/* forward.c — the batched forward pass of the decoders (llama, qwen2, phi3, gemma2), plus the
 * scratch buffers it uses. Attention over the paged KV cache, and the store into it, are
 * attention.c's.
 *
 * Read it top to bottom as the math of one layer:
 *   h = rmsnorm(x)
 *   x += [postnorm] Wo · attn(rope(Wq·h [+bq]), rope(Wk·h [+bk]), Wv·h [+bv])
 *   h = rmsnorm(x)
 *   x += [postnorm] Wdown · (act(Wgate·h) * Wup·h)
 * then logits = [softcap] Wout · rmsnorm(x) for the tokens that ask for them. act is SiLU, or
 * GELU for gemma2; the bracketed steps are gemma2's, as are the scaled embedding, the soft-capped
 * attention scores and the sliding window on even layers (phi3 has the window on every layer).
 *
 * Every operation that rounds goes through the kernel table (m->k: matmuls, norms, rotary
 * embedding, softmax, SiLU, attention over the cache), whose reference versions reproduce the
 * floats of the llama.cpp build the zoo references came from (docs/kernels.md). What is left
 * here rounds the same on every machine: the residual and bias additions, the attention scale
 * (a power of two for the usual head sizes) and the conversion to an F16 cache.
 *
 * Observing (elm_work_set_observer): an observer attached to the work area sees every matmul's
 * F32 input rows, which is how `elmctl imatrix` collects its statistics without the pass knowing.
 *
 * The per-token ops (norms, residual adds, SiLU, the activations' quantization) are in rows.c,
 * which runs a long pass's rows on the pool's threads; the rope and cache store is one here.
 *
 * Profiling (prof.h): with a struct elm_prof set on the work area, the clock is read between
 * operations (never inside a kernel or a parallel region) and the time since the previous read
 * is charged to the operation just finished.
 *
 * Batch invariance: every quantity of a token is computed from that token's own rows with the
 * same code path whatever else the batch holds (norms per row, matmul outputs via one vec_dot
 * per element, attention over the token's own sequence), so results are bit-identical alone or
 * batched. Keep it that way: no reductions across tokens, no batch-size-dependent tiling that
 * changes summation order.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/pool.h"
#include "elm/status.h"
#include "engine/attention.h"
#include "engine/kv.h"
#include "engine/kv_impl.h"
#include "engine/model.h"
#include "engine/ops.h"
#include "engine/prof.h"
#include "engine/rows.h"

/* ---- scratch ------------------------------------------------------------------------------- */

#define LOGIT_ROWS 16 /* output rows computed per output matmul (bounds the logits scratch) */

struct elm_work {
    int32_t n_batch;
    int32_t n_ctx_max;
    int n_threads;
    float *x;                     /* [n_batch][n_embd]  residual stream */
    float *xb;                    /* [n_batch][max(n_embd, qdim)] normed input / attention output */
    float *q;                     /* [n_batch][max(qdim, n_embd)] */
    float *k;                     /* [n_batch][kvdim] */
    float *v;                     /* [n_batch][kvdim] */
    float *hb;                    /* [n_batch][n_ff] gate, then silu(gate) * up */
    float *hb2;                   /* [n_batch][n_ff] up */
    struct elm_attn_scratch attn; /* attention.c's, per compute thread */
    float *rope;                  /* [n_batch][n_rot] cos/sin tables of the pass's positions */
    float *logits;                /* [LOGIT_ROWS][n_vocab] */
    void *aq;      /* activations quantized to a dot type: [n_batch][row bytes of widest row] */
    size_t aq_row; /* bytes per row in aq */
    struct elm_prof *prof;          /* borrowed; NULL: not profiling */
    struct elm_matmul_observer obs; /* obs.fn NULL: none */
    uint64_t t_mark;                /* clock at the end of the last profiled operation (ns) */
};

static float *falloc(size_t n)
{
    return malloc((n ? n : 1) * sizeof(float));
}

int elm_work_create(const struct elm_model *m, int32_t n_batch, int32_t n_ctx_max,
                    struct elm_work **out)
{
    if (n_batch <= 0 || n_ctx_max <= 0)
        return -EINVAL;
    const struct elm_hparams *hp = &m->hp;
    size_t nb = (size_t)n_batch, E = (size_t)hp->n_embd, hd = (size_t)hp->head_dim;
    size_t qdim = (size_t)hp->n_head * hd, kvdim = (size_t)hp->n_head_kv * hd;
    size_t wide = E > qdim ? E : qdim;
    if ((size_t)hp->n_ff > wide)
        wide = (size_t)hp->n_ff;
    struct elm_work *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->n_batch = n_batch;
    w->n_ctx_max = n_ctx_max;
    w->n_threads = m->n_threads;
    w->x = falloc(nb * E);
    w->xb = falloc(nb * wide);
    w->q = falloc(nb * (qdim > E ? qdim : E)); /* also the Wo and Wdown outputs */
    w->k = falloc(nb * kvdim);
    w->v = falloc(nb * kvdim);
    w->hb = falloc(nb * (size_t)hp->n_ff);
    w->hb2 = falloc(nb * (size_t)hp->n_ff);
    w->rope = falloc(nb * (size_t)hp->n_rot);
    w->logits = falloc((size_t)LOGIT_ROWS * (size_t)hp->n_vocab);
    /* The widest activation row in any dot type: Q8_K needs 292 bytes per 256 values, Q8_0 34
     * per 32, Q8_1 36 per 32; F32 activations are used in place and need no copy. */
    w->aq_row = (wide / 32 + 1) * 36 + 292;
    w->aq = malloc(nb * w->aq_row);
    if (!w->x || !w->xb || !w->q || !w->k || !w->v || !w->hb || !w->hb2 || !w->rope || !w->logits ||
        !w->aq || elm_attn_scratch_init(&w->attn, m, w->n_threads, n_ctx_max) < 0) {
        elm_work_destroy(&w);
        return -ENOMEM;
    }
    *out = w;
    return 0;
}

void elm_work_destroy(struct elm_work **pw)
{
    if (!pw || !*pw)
        return;
    struct elm_work *w = *pw;
    free(w->x);
    free(w->xb);
    free(w->q);
    free(w->k);
    free(w->v);
    free(w->hb);
    free(w->hb2);
    elm_attn_scratch_free(&w->attn);
    free(w->rope);
    free(w->logits);
    free(w->aq);
    free(w);
    *pw = NULL;
}

int32_t elm_work_n_batch(const struct elm_work *w)
{
    return w->n_batch;
}

/* ---- profiling ----------------------------------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void elm_work_set_prof(struct elm_work *w, struct elm_prof *p)
{
    w->prof = p;
}

void elm_work_set_observer(struct elm_work *w, const struct elm_matmul_observer *o)
{
    w->obs = o ? *o : (struct elm_matmul_observer){0};
}

/* Charges the time since the previous mark to op (and to layer's row when layer >= 0). */
static void mark(struct elm_work *w, enum elm_prof_op op, int layer)
{
    struct elm_prof *p = w->prof;
    if (!p)
        return;
    const uint64_t t = now_ns(), d = t - w->t_mark;
    w->t_mark = t;
    p->ns[op] += d;
    if (layer >= 0 && layer < p->n_layer && p->per_layer)
        p->per_layer[(size_t)layer * ELM_PROF_OP_COUNT + op] += d;
}

/* ---- matmul with activation quantization --------------------------------------------------- */

/* The activations of a matmul: n rows of ncols floats at src, and the last conversion of them
 * to a dot type (in w->aq), which the next matmul over the same rows reuses when its weights
 * take the same dot type (Q, K and V; gate and up). */
struct acts {
    const float *src;
    int64_t ncols;
    int n;
    enum elm_type dt; /* dot type now in w->aq; ELM_TYPE_F32 when nothing is */
};

static struct acts acts_of(const float *src, int64_t ncols, int n)
{
    return (struct acts){.src = src, .ncols = ncols, .n = n, .dt = ELM_TYPE_F32};
}

/* Makes the call r end with a's rows quantized for W into w->aq, unless W takes float
 * activations or w->aq holds them in its dot type already: the norm or SiLU before a matmul
 * quantizes its own rows, with no call of their own. */
static void quantize_with(struct elm_work *w, struct elm_rows *r, struct acts *a,
                          const struct elm_tensor *W)
{
    const enum elm_type dt = elm_type_get(W->type)->dot_type;
    r->dt = ELM_TYPE_F32;
    if (dt == ELM_TYPE_F32 || a->dt == dt)
        return;
    r->qsrc = a->src;
    r->qcols = a->ncols;
    r->qdst = w->aq;
    r->stride = elm_row_bytes(dt, a->ncols);
    r->dt = dt;
    a->dt = dt;
}

/* Quantized weights take activations quantized to their dot type (as ggml does: the reference
 * outputs depend on it); float weights take x itself. Returns the rows and their stride. */
static const void *acts_for(const struct elm_model *m, struct elm_work *w, struct acts *a,
                            const struct elm_tensor *W, size_t *stride)
{
    const enum elm_type dt = elm_type_get(W->type)->dot_type;
    if (dt == ELM_TYPE_F32) {
        *stride = (size_t)a->ncols * sizeof(float);
        return a->src;
    }
    *stride = elm_row_bytes(dt, a->ncols);
    struct elm_rows r = {.m = m};
    quantize_with(w, &r, a, W);
    if (r.dt != ELM_TYPE_F32)
        elm_rows_run(&r, a->n, w->n_threads);
    return w->aq;
}

/* y[t][r] = W[r] · x[t] for the activations' n tokens. The activations are quantized (or
 * reused) first and charged to QUANTIZE; the product to op. */
static void matmul(const struct elm_model *m, struct elm_work *w, const struct elm_tensor *W,
                   struct acts *a, float *y, enum elm_prof_op op, int layer, enum elm_mat_role role)
{
    if (w->obs.fn) /* the observer sees the F32 rows, before any activation quantization */
        w->obs.fn(w->obs.ctx, layer, role, a->src, a->ncols, a->n);
    size_t stride;
    const void *xq = acts_for(m, w, a, W, &stride);
    mark(w, ELM_PROF_QUANTIZE, layer);
    elm_matmul(m->k, W->type, W->layout, W->data, W->ne0, W->ne1, xq, stride, a->n, y, W->ne1);
    if (w->prof)
        w->prof->matmul_bytes += (uint64_t)elm_row_bytes(W->type, W->ne0) * (uint64_t)W->ne1;
    mark(w, op, layer);
}

static void add_bias(float *y, const float *b, int n, int dim)
{
    if (!b)
        return;
    for (int t = 0; t < n; t++)
        for (int i = 0; i < dim; i++)
            y[(size_t)t * dim + i] += b[i];
}

/* ---- the pass ------------------------------------------------------------------------------ */

static int check_batch(const struct elm_model *m, const struct elm_work *w,
                       const struct elm_batch_item *items, int n)
{
    const struct elm_hparams *hp = &m->hp;
    if (n <= 0 || n > w->n_batch || elm_model_is_embedding(m))
        return -EINVAL;
    for (int t = 0; t < n; t++) {
        const struct elm_batch_item *it = &items[t];
        if (!it->kv)
            return -EINVAL;
        const struct elm_kv_pool *p = it->kv->pool;
        if (p->n_layer != hp->n_layer || p->head_dim != hp->head_dim ||
            p->kv_dim != hp->n_head_kv * hp->head_dim)
            return -EINVAL;
        if (it->token < 0 || it->token >= hp->n_vocab)
            return ELM_ETOKEN;
        if (it->pos < 0 || it->pos >= elm_kv_capacity(it->kv) || it->pos >= w->n_ctx_max)
            return ELM_ECONTEXT;
    }
    return 0;
}

/* cs for a position with Llama 3's frequency factors: llama.cpp divides each pair's angle by
 * its factor before the linear scale; the rest is the kernels' rope_table. */
static void rope_table_ff(float *cs, const struct elm_hparams *hp, int32_t pos, const float *ff)
{
    const float theta_scale = powf(hp->rope_base, -2.0f / (float)hp->n_rot);
    float theta = (float)pos;
    for (int i = 0; i < hp->n_rot / 2; i++) {
        const float t = theta / ff[i];
        cs[2 * i] = cosf(t * hp->rope_scale);
        cs[2 * i + 1] = sinf(t * hp->rope_scale);
        theta *= theta_scale;
    }
}

/* The cos/sin table of each token's position, once a pass: every layer rotates by the same. */
static void rope_tables(const struct elm_model *m, struct elm_work *w,
                        const struct elm_batch_item *items, int n)
{
    const struct elm_hparams *hp = &m->hp;
    for (int t = 0; t < n; t++) {
        float *cs = w->rope + (size_t)t * (size_t)hp->n_rot;
        if (m->rope_freqs)
            rope_table_ff(cs, hp, items[t].pos, m->rope_freqs);
        else
            m->k->rope_table(cs, hp->n_rot, items[t].pos, hp->rope_base, hp->rope_scale);
    }
}

/* A layer's rope as a per-token op (rows.h): token t's query and key heads rotated by its
 * position's table, then its K and V stored in its cache. */
struct rope_rows {
    struct elm_work *w;
    const struct elm_batch_item *items;
    int layer;
};

static void rope_row(const struct elm_rows *r, int t)
{
    const struct rope_rows *c = r->ctx;
    const struct elm_kernels *k = r->m->k;
    const struct elm_hparams *hp = &r->m->hp;
    const struct elm_layer *l = &r->m->layers[c->layer];
    const int hd = hp->head_dim, qdim = l->n_head * hd, kvdim = l->n_head_kv * hd;
    const bool neox = hp->rope_mode == ELM_ROPE_NEOX;
    const float *cs = c->w->rope + (size_t)t * (size_t)hp->n_rot;
    float *q = c->w->q + (size_t)t * qdim, *kr = c->w->k + (size_t)t * kvdim;
    for (int h = 0; h < l->n_head; h++)
        k->rope(q + (size_t)h * hd, hp->n_rot, cs, neox);
    for (int h = 0; h < l->n_head_kv; h++)
        k->rope(kr + (size_t)h * hd, hp->n_rot, cs, neox);
    elm_kv_store(k, c->items[t].kv, c->layer, c->items[t].pos, kr, c->w->v + (size_t)t * kvdim,
                 kvdim);
}

static void layer_forward(const struct elm_model *m, struct elm_work *w, int li,
                          const struct elm_batch_item *items, int n)
{
    const struct elm_hparams *hp = &m->hp;
    const struct elm_layer *l = &m->layers[li];
    int E = hp->n_embd, hd = hp->head_dim, ff = l->n_ff;
    int qdim = l->n_head * hd, kvdim = l->n_head_kv * hd;
    const int nt = w->n_threads;

    /* the norm and, in the same call, one quantization of the normed rows that serves Q, K and
     * V when they share a dot type */
    struct acts a = acts_of(w->xb, E, n);
    struct elm_rows r = {
        .m = m, .fn = elm_row_norm, .x = w->x, .dst = w->xb, .g = l->attn_norm, .ncols = E};
    quantize_with(w, &r, &a, &l->wq);
    elm_rows_run(&r, n, nt);
    mark(w, ELM_PROF_NORM, li);
    matmul(m, w, &l->wq, &a, w->q, ELM_PROF_MAT_QKV, li, ELM_MAT_Q);
    matmul(m, w, &l->wk, &a, w->k, ELM_PROF_MAT_QKV, li, ELM_MAT_K);
    matmul(m, w, &l->wv, &a, w->v, ELM_PROF_MAT_QKV, li, ELM_MAT_V);
    add_bias(w->q, l->bq, n, qdim);
    add_bias(w->k, l->bk, n, kvdim);
    add_bias(w->v, l->bv, n, kvdim);
    mark(w, ELM_PROF_MAT_QKV, li);
    const struct rope_rows rc = {.w = w, .items = items, .layer = li};
    elm_rows_run(&(struct elm_rows){.m = m, .fn = rope_row, .ctx = &rc}, n, nt);
    mark(w, ELM_PROF_ROPE, li);
    /* All of the batch's K/V are stored before anyone attends, so a token sees the earlier
     * tokens of its own sequence that arrived in the same batch. */
    elm_attention(m, &w->attn, li, items, n, w->q, w->xb);
    mark(w, ELM_PROF_ATTENTION, li);
    a = acts_of(w->xb, qdim, n);
    matmul(m, w, &l->wo, &a, w->q, ELM_PROF_MAT_O, li, ELM_MAT_O); /* q is free now: reuse it */
    /* the residual add, the FFN's norm and its quantization (one for gate and up) in one call,
     * charged to NORM */
    a = acts_of(w->xb, E, n);
    r = (struct elm_rows){.m = m,
                          .fn = elm_row_residual,
                          .x = w->x,
                          .y = w->q,
                          .dst = w->xb,
                          .g = l->ffn_norm,
                          .g_post = l->attn_post_norm,
                          .ncols = E};
    quantize_with(w, &r, &a, &l->w_gate);
    elm_rows_run(&r, n, nt);
    mark(w, ELM_PROF_NORM, li);
    matmul(m, w, &l->w_gate, &a, w->hb, ELM_PROF_MAT_FFN, li, ELM_MAT_GATE);
    matmul(m, w, &l->w_up, &a, w->hb2, ELM_PROF_MAT_FFN, li, ELM_MAT_UP);
    a = acts_of(w->hb, ff, n); /* quantized in the activation's call, charged to SILU */
    r = (struct elm_rows){.m = m, .fn = elm_row_act, .x = w->hb, .y = w->hb2, .ncols = ff};
    quantize_with(w, &r, &a, &l->w_down);
    elm_rows_run(&r, n, nt);
    mark(w, ELM_PROF_SILU, li);
    matmul(m, w, &l->w_down, &a, w->q, ELM_PROF_MAT_FFN, li, ELM_MAT_DOWN);
    r = (struct elm_rows){.m = m,
                          .fn = elm_row_residual,
                          .x = w->x,
                          .y = w->q,
                          .g_post = l->ffn_post_norm,
                          .ncols = E};
    elm_rows_run(&r, n, nt);
    mark(w, ELM_PROF_RESIDUAL, li);
}

/* Final norm and output projection for the items that want logits, LOGIT_ROWS at a time. */
static void output_logits(const struct elm_model *m, struct elm_work *w,
                          const struct elm_batch_item *items, int n)
{
    int E = m->hp.n_embd, V = m->hp.n_vocab;
    int idx[LOGIT_ROWS], c = 0;
    for (int t = 0; t <= n; t++) {
        if (t < n && items[t].logits) {
            m->k->rmsnorm(w->xb + (size_t)c * E, w->x + (size_t)t * E, m->output_norm, E,
                          m->hp.eps);
            idx[c++] = t;
            mark(w, ELM_PROF_NORM, -1);
        }
        if (c == LOGIT_ROWS || (t == n && c > 0)) {
            struct acts a = acts_of(w->xb, E, c);
            matmul(m, w, &m->output, &a, w->logits, ELM_PROF_OUTPUT, -1, ELM_MAT_OUTPUT);
            if (m->hp.final_softcap > 0)
                elm_softcap(w->logits, (int64_t)c * V, m->hp.final_softcap);
            for (int i = 0; i < c; i++)
                memcpy(items[idx[i]].logits, w->logits + (size_t)i * V, (size_t)V * sizeof(float));
            mark(w, ELM_PROF_OUTPUT, -1);
            c = 0;
        }
    }
}

int elm_model_forward(const struct elm_model *m, struct elm_work *w,
                      const struct elm_batch_item *items, int n)
{
    int rc = check_batch(m, w, items, n);
    if (rc)
        return rc;
    if (w->prof) {
        w->t_mark = now_ns();
        w->prof->passes++;
        w->prof->tokens += (uint64_t)n;
    }
    int E = m->hp.n_embd;
    const struct elm_tensor *te = &m->tok_embd;
    for (int t = 0; t < n; t++)
        m->k->to_float[te->type]((const char *)te->data +
                                     (size_t)items[t].token * elm_row_bytes(te->type, E),
                                 w->x + (size_t)t * E, E);
    if (m->hp.embd_scale != 0.0f)
        for (size_t i = 0; i < (size_t)n * E; i++)
            w->x[i] *= m->hp.embd_scale;
    mark(w, ELM_PROF_EMBED, -1);
    rope_tables(m, w, items, n);
    mark(w, ELM_PROF_ROPE, -1);
    for (int li = 0; li < m->hp.n_layer; li++) {
        if (w->obs.hidden)
            w->obs.hidden(w->obs.ctx, li, w->x, E, n);
        layer_forward(m, w, li, items, n);
    }
    if (w->obs.hidden)
        w->obs.hidden(w->obs.ctx, m->hp.n_layer, w->x, E, n);
    output_logits(m, w, items, n);
    return 0;
}
