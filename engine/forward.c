/* forward.c — the batched forward pass of the decoders (llama, qwen2, phi3, gemma2), plus the
 * scratch buffers it uses and the reads and writes of the paged KV cache (kv_impl.h).
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
 * The sliding window is a mask, as in llama.cpp: a query at position i sees keys j with
 * i - n_swa < j <= i. Every position stays in the cache; the scores and the weighted sum start at
 * the page of the window's first position, with the positions before it in that page masked,
 * which gives the bits of a sum over the whole cache with those weights 0.
 *
 * Every operation that rounds goes through the kernel table (m->k: matmuls, norms, rotary
 * embedding, softmax, SiLU, attention over the cache), whose reference versions reproduce the
 * floats of the llama.cpp build the zoo references came from (docs/kernels.md). What is left
 * here rounds the same on every machine: the residual and bias additions, the attention scale
 * (a power of two for the usual head sizes) and the conversion to an F16 cache.
 *
 * Attention walks a sequence's cache page by page (ELM_KV_PAGE positions each): the scores
 * position by position, then the weighted sum of V over the pages into 16 lanes per output
 * that only the final fold combines (kernels.h kv_mix), so a paged cache gives the bits of a
 * contiguous one. The query heads that share a KV head (GQA) are one job, so the weighted sum
 * reads and converts each V row once for all of them (kv_mix_group).
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
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/pool.h"
#include "elm/status.h"
#include "engine/kv.h"
#include "engine/kv_impl.h"
#include "engine/model.h"
#include "engine/ops.h"
#include "engine/prof.h"
#include "engine/rows.h"
#include "kernels/fp16.h"

/* ---- KV cache ------------------------------------------------------------------------------ */

/* Where layer `layer` of position pos keeps its K row (V is ELM_KV_PAGE rows further). The
 * caller has checked that pos is backed by a page. */
static unsigned char *kv_row(const struct elm_kv *kv, int layer, int32_t pos)
{
    const struct elm_kv_pool *p = kv->pool;
    return elm_kv_page(p, kv->table[pos / ELM_KV_PAGE]) + (size_t)layer * p->layer_bytes +
           (size_t)(pos % ELM_KV_PAGE) * p->row_bytes;
}

/* Stores the layer's n K and V values (its n_head_kv heads; a pruned layer may fill only the
 * front of the pool's kv_dim-wide rows, which its attention alone reads). */
static void kv_store(const struct elm_kernels *k, struct elm_kv *kv, int layer, int32_t pos,
                     const float *kr, const float *vr, int n)
{
    const struct elm_kv_pool *p = kv->pool;
    unsigned char *kd = kv_row(kv, layer, pos), *vd = kd + (size_t)ELM_KV_PAGE * p->row_bytes;
    switch (p->type) {
    case ELM_TYPE_F32:
        memcpy(kd, kr, (size_t)n * sizeof(float));
        memcpy(vd, vr, (size_t)n * sizeof(float));
        break;
    case ELM_TYPE_F16:
        for (int i = 0; i < n; i++) {
            ((uint16_t *)kd)[i] = elm_f32_to_fp16(kr[i]);
            ((uint16_t *)vd)[i] = elm_f32_to_fp16(vr[i]);
        }
        break;
    default: /* Q8_0: as llama.cpp copies into a q8_0 cache, with the activation quantizer;
              * head_dim is a multiple of 32, so the blocks of a row are the blocks of its heads */
        k->from_float[p->type](kr, kd, n);
        k->from_float[p->type](vr, vd, n);
        break;
    }
}

/* ---- scratch ------------------------------------------------------------------------------- */

#define LOGIT_ROWS 16 /* output rows computed per output matmul (bounds the logits scratch) */
#define MIX_LANES  16 /* partial sums per attention output (kernels.h kv_mix) */

struct elm_work {
    int32_t n_batch;
    int32_t n_ctx_max;
    int n_threads;
    float *x;     /* [n_batch][n_embd]  residual stream */
    float *xb;    /* [n_batch][max(n_embd, qdim)] normed input / attention output */
    float *q;     /* [n_batch][max(qdim, n_embd)] */
    float *k;     /* [n_batch][kvdim] */
    float *v;     /* [n_batch][kvdim] */
    float *hb;    /* [n_batch][n_ff] gate, then silu(gate) * up */
    float *hb2;   /* [n_batch][n_ff] up */
    int group;    /* the most query heads sharing a KV head in any layer */
    float *att;   /* [n_threads][group][n_ctx_max] attention weights per thread and head */
    float *lanes; /* [n_threads][group][MIX_LANES][head_dim] partial sums of the weighted V */
    const void **vpages; /* [n_threads][n_pages] a sequence's V pages of one KV head */
    size_t n_pages;      /* elm_kv_pages_for(n_ctx_max) */
    void *qc;            /* [n_threads][group][qc_row] query heads in the cache type (F16, Q8_0) */
    size_t qc_row; /* bytes per thread in qc: head_dim floats, more than any cache type needs */
    float *rope;   /* [n_batch][n_rot] cos/sin tables of the pass's positions */
    float *logits; /* [LOGIT_ROWS][n_vocab] */
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
    size_t nt = (size_t)w->n_threads;
    w->x = falloc(nb * E);
    w->xb = falloc(nb * wide);
    w->q = falloc(nb * (qdim > E ? qdim : E)); /* also the Wo and Wdown outputs */
    w->k = falloc(nb * kvdim);
    w->v = falloc(nb * kvdim);
    w->hb = falloc(nb * (size_t)hp->n_ff);
    w->hb2 = falloc(nb * (size_t)hp->n_ff);
    w->group = 1;
    for (int32_t i = 0; i < hp->n_layer; i++) {
        const struct elm_layer *l = &m->layers[i];
        if (l->n_head_kv > 0 && l->n_head / l->n_head_kv > w->group)
            w->group = l->n_head / l->n_head_kv;
    }
    const size_t group = (size_t)w->group;
    w->att = falloc(nt * group * (size_t)n_ctx_max);
    w->lanes = falloc(nt * group * MIX_LANES * hd);
    w->n_pages = (size_t)elm_kv_pages_for(n_ctx_max);
    w->vpages = malloc(nt * w->n_pages * sizeof *w->vpages);
    w->qc_row = hd * sizeof(float);
    w->qc = malloc(nt * group * w->qc_row);
    w->rope = falloc(nb * (size_t)hp->n_rot);
    w->logits = falloc((size_t)LOGIT_ROWS * (size_t)hp->n_vocab);
    /* The widest activation row in any dot type: Q8_K needs 292 bytes per 256 values, Q8_0 34
     * per 32, Q8_1 36 per 32; F32 activations are used in place and need no copy. */
    w->aq_row = (wide / 32 + 1) * 36 + 292;
    w->aq = malloc(nb * w->aq_row);
    if (!w->x || !w->xb || !w->q || !w->k || !w->v || !w->hb || !w->hb2 || !w->att || !w->lanes ||
        !w->vpages || !w->qc || !w->rope || !w->logits || !w->aq) {
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
    free(w->att);
    free(w->lanes);
    free(w->vpages);
    free(w->qc);
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
    elm_matmul(m->k, W->type, W->data, W->ne0, W->ne1, xq, stride, a->n, y, W->ne1);
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

/* ---- attention ----------------------------------------------------------------------------- */

/* Where one token's sums run: from the page holding its first visible position lo (the sliding
 * window) to its own position n - 1. */
struct span {
    int32_t lo, pg0, base, n, n_pages;
};

static struct span span_of(const struct elm_hparams *hp, int layer, int32_t pos)
{
    const bool swa = hp->n_swa > 0 && (!hp->swa_even_only || layer % 2 == 0);
    struct span sp = {.lo = swa && pos - hp->n_swa + 1 > 0 ? pos - hp->n_swa + 1 : 0, .n = pos + 1};
    sp.pg0 = sp.lo / ELM_KV_PAGE;
    sp.base = sp.pg0 * ELM_KV_PAGE;
    sp.n_pages = (int32_t)elm_kv_pages_for(sp.n);
    return sp;
}

/* A thread's scratch for attend_group (struct elm_work's att, lanes, qc, vpages rows). */
struct attn_scratch {
    float *att;          /* [g][att_stride] one row of weights per query head */
    size_t att_stride;   /* n_ctx_max */
    float *lanes;        /* [g][MIX_LANES][hd] */
    char *qc;            /* [g][qc_stride] the query heads in the cache's type */
    size_t qc_stride;    /* bytes */
    const void **vpages; /* the V pages the sums run over */
};

/* att_j[base..n) = softmax(q_j·K[lo..n) / sqrt(hd)) for the g query heads j of one KV head
 * (rows s->att + j * att_stride; q holds them hd apart), with the positions of the first page
 * before lo at -inf (weight 0). koff locates the KV head's K rows in a page. The scores of a
 * page come from one kv_dots_group for all the heads when the table has it (each K row
 * converted once), else from kv_dots or kv_dot per head; the bits are the same. */
static void group_weights(const struct elm_kernels *k, const struct elm_hparams *hp,
                          const struct elm_kv *kv, const struct span *sp, size_t koff, int g,
                          const float *q, const struct attn_scratch *s)
{
    const struct elm_kv_pool *pl = kv->pool;
    const enum elm_type type = pl->type;
    const int hd = hp->head_dim;
    const size_t row = pl->row_bytes; /* bytes from one position to the next */
    const char *qv = (const char *)q;
    size_t qs = (size_t)hd * sizeof *q;
    if (type != ELM_TYPE_F32) {
        for (int j = 0; j < g; j++)
            k->from_float[type](q + (size_t)j * hd, s->qc + j * s->qc_stride, hd);
        qv = s->qc;
        qs = s->qc_stride;
    }
    const int32_t lo = sp->lo, n = sp->n;
    for (int32_t pg = sp->pg0; pg < sp->n_pages; pg++) {
        const unsigned char *kb = elm_kv_page(pl, kv->table[pg]) + koff;
        const int32_t p0 = pg * ELM_KV_PAGE, run = n - p0 < ELM_KV_PAGE ? n - p0 : ELM_KV_PAGE;
        const int32_t i0 = p0 < lo ? lo - p0 : 0;
        kb += (size_t)i0 * row;
        if (g > 1 && k->kv_dots_group[type]) {
            k->kv_dots_group[type](g, hd, run - i0, s->att + p0 + i0, (int64_t)s->att_stride, kb,
                                   (int64_t)row, qv, (int64_t)qs);
            continue;
        }
        for (int j = 0; j < g; j++) {
            float *att = s->att + j * s->att_stride + p0;
            if (k->kv_dots[type])
                k->kv_dots[type](hd, run - i0, att + i0, kb, (int64_t)row, qv + j * qs);
            else
                for (int32_t i = i0; i < run; i++)
                    k->kv_dot[type](hd, att + i, kb + (size_t)(i - i0) * row, qv + j * qs);
        }
    }
    for (int j = 0; j < g; j++) {
        float *att = s->att + j * s->att_stride;
        for (int32_t p = sp->base; p < lo; p++)
            att[p] = -INFINITY;
        for (int32_t p = lo; p < n; p++)
            att[p] *= hp->q_scale;
        if (hp->attn_softcap > 0)
            elm_softcap(att + lo, n - lo, hp->attn_softcap);
        /* the softmax sums in blocks from the start of its row: a page start keeps the blocks
         * of a row that starts at position 0 */
        k->softmax(att + sp->base, n - sp->base);
    }
}

/* out_j = softmax(q_j·K[0..pos] / sqrt(hd)) · V[0..pos] for the g query heads j of KV head kvh
 * of one token (q and out hold them hd apart), over the pages of its cache. The heads share
 * K and V: each head's weights first, then one kv_mix_group over the V pages for all of them
 * (which converts each V row once), else kv_mix per head and page; the bits are the same. */
static void attend_group(const struct elm_kernels *k, const struct elm_hparams *hp,
                         const struct elm_kv *kv, int layer, int32_t pos, int kvh, int g,
                         const float *q, const struct attn_scratch *s, float *out)
{
    const struct span sp = span_of(hp, layer, pos);
    const struct elm_kv_pool *pl = kv->pool;
    const enum elm_type type = pl->type;
    const int hd = hp->head_dim;
    const size_t row = pl->row_bytes, hl = (size_t)MIX_LANES * (size_t)hd;
    const size_t koff = (size_t)layer * pl->layer_bytes + (size_t)kvh * pl->head_bytes;
    const size_t voff = koff + (size_t)ELM_KV_PAGE * row;
    group_weights(k, hp, kv, &sp, koff, g, q, s);
    memset(s->lanes, 0, (size_t)g * hl * sizeof *s->lanes);
    if (k->kv_mix_group[type]) {
        for (int32_t pg = sp.pg0; pg < sp.n_pages; pg++)
            s->vpages[pg - sp.pg0] = elm_kv_page(pl, kv->table[pg]) + voff;
        k->kv_mix_group[type](g, sp.n - sp.base, hd, s->lanes, s->att + sp.base,
                              (int64_t)s->att_stride, s->vpages, ELM_KV_PAGE, (int64_t)row);
    } else {
        for (int j = 0; j < g; j++)
            for (int32_t pg = sp.pg0; pg < sp.n_pages; pg++) {
                const int32_t p0 = pg * ELM_KV_PAGE;
                const int32_t run = sp.n - p0 < ELM_KV_PAGE ? sp.n - p0 : ELM_KV_PAGE;
                k->kv_mix[type](run, hd, s->lanes + j * hl, s->att + j * s->att_stride + p0,
                                elm_kv_page(pl, kv->table[pg]) + voff, (int64_t)row);
            }
    }
    for (int j = 0; j < g; j++)
        k->kv_fold(hd, s->lanes + j * hl, out + (size_t)j * hd);
}

/* One layer's attention, as the pool's threads see it. */
struct attn {
    const struct elm_model *m;
    struct elm_work *w;
    const struct elm_batch_item *items;
    int layer, jobs;
    atomic_int next; /* the next job not yet taken */
};

/* Each thread takes jobs (one KV head's group of query heads of one token) one at a time until
 * none are left, with its own scratch (th < w->n_threads); a head's result does not depend on
 * which thread computes it. A job costs in proportion to its token's position, so a static
 * split of a prefill chunk gave the thread with the late tokens three times the work of the
 * other (and a thread descheduled by another program held up the whole region); taking jobs
 * last token first also leaves the cheap ones to even out the end. */
static void attn_part(void *ctx, int th, int nth)
{
    (void)nth;
    struct attn *a = ctx;
    const struct elm_hparams *hp = &a->m->hp;
    const struct elm_layer *l = &a->m->layers[a->layer];
    struct elm_work *w = a->w;
    const int hd = hp->head_dim, nkv = l->n_head_kv, group = l->n_head / nkv;
    const int n = a->jobs / nkv;
    const size_t qdim = (size_t)l->n_head * hd, tw = (size_t)th * (size_t)w->group;
    const struct attn_scratch s = {
        .att = w->att + tw * (size_t)w->n_ctx_max,
        .att_stride = (size_t)w->n_ctx_max,
        .lanes = w->lanes + tw * MIX_LANES * (size_t)hd,
        .qc = (char *)w->qc + tw * w->qc_row,
        .qc_stride = w->qc_row,
        .vpages = w->vpages + (size_t)th * w->n_pages,
    };
    for (int j; (j = atomic_fetch_add_explicit(&a->next, 1, memory_order_relaxed)) < a->jobs;) {
        const int t = n - 1 - j / nkv, kvh = j % nkv;
        const size_t off = (size_t)t * qdim + (size_t)kvh * group * hd;
        attend_group(a->m->k, hp, a->items[t].kv, a->layer, a->items[t].pos, kvh, group, w->q + off,
                     &s, w->xb + off);
    }
}

static void attention(const struct elm_model *m, struct elm_work *w, int layer,
                      const struct elm_batch_item *items, int n)
{
    struct attn a = {
        .m = m, .w = w, .items = items, .layer = layer, .jobs = n * m->layers[layer].n_head_kv};
    atomic_init(&a.next, 0);
    elm_pool_run(a.jobs < w->n_threads ? a.jobs : w->n_threads, attn_part, &a);
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
    kv_store(k, c->items[t].kv, c->layer, c->items[t].pos, kr, c->w->v + (size_t)t * kvdim, kvdim);
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
    attention(m, w, li, items, n);
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
