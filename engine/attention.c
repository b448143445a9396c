/* attention.c — a layer's attention over the paged KV cache and the store of K and V into it
 * (attention.h says how the cache is walked). The cache's layout is kv_impl.h's.
 *
 * Every operation that rounds goes through the kernel table (kv_dot(s), kv_mix, softmax, the
 * cache type's conversion), so the bits are the reference's; the scale (a power of two for the
 * usual head sizes) and gemma2's soft cap are the same on every machine.
 */
#include "engine/attention.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/pool.h"
#include "engine/kv_impl.h"
#include "engine/ops.h"

#define MIX_LANES 16 /* partial sums per attention output (kernels.h kv_mix) */

/* ---- the cache's rows ---------------------------------------------------------------------- */

/* Where layer `layer` of position pos keeps KV head 0's K row (kv_impl.h: head h's is
 * h * ELM_KV_PAGE * head_bytes further, the V rows ELM_KV_PAGE * row_bytes further). The caller
 * has checked that pos is backed by a page. */
static unsigned char *kv_row(const struct elm_kv *kv, int layer, int32_t pos)
{
    const struct elm_kv_pool *p = kv->pool;
    return elm_kv_page(p, kv->table[pos / ELM_KV_PAGE]) + (size_t)layer * p->layer_bytes +
           (size_t)(pos % ELM_KV_PAGE) * p->head_bytes;
}

void elm_kv_store(const struct elm_kernels *k, struct elm_kv *kv, int layer, int32_t pos,
                  const float *kr, const float *vr, int n)
{
    const struct elm_kv_pool *p = kv->pool;
    const int hd = p->head_dim;
    const size_t hstep = (size_t)ELM_KV_PAGE * p->head_bytes; /* one head's rows to the next's */
    unsigned char *kd = kv_row(kv, layer, pos), *vd = kd + (size_t)ELM_KV_PAGE * p->row_bytes;
    for (int h = 0; h < n / hd; h++) {
        const float *kh = kr + (size_t)h * hd, *vh = vr + (size_t)h * hd;
        unsigned char *kc = kd + h * hstep, *vc = vd + h * hstep;
        switch (p->type) {
        case ELM_TYPE_F32:
            memcpy(kc, kh, (size_t)hd * sizeof(float));
            memcpy(vc, vh, (size_t)hd * sizeof(float));
            break;
        default: /* F16 and Q8_0: the table's conversion (F16C on x86, the bits of
                  * elm_f32_to_fp16, test_simd; the scalar loop was most of the rope op's
                  * instructions, docs/kernels-perf.md); Q8_0 as llama.cpp copies into a q8_0
                  * cache, with the activation quantizer: head_dim is a multiple of 32, so the
                  * blocks of a row are the blocks of its heads */
            k->from_float[p->type](kh, kc, hd);
            k->from_float[p->type](vh, vc, hd);
            break;
        }
    }
}

/* ---- scratch ------------------------------------------------------------------------------- */

int elm_attn_scratch_init(struct elm_attn_scratch *s, const struct elm_model *m, int n_threads,
                          int32_t n_ctx_max)
{
    const struct elm_hparams *hp = &m->hp;
    const size_t nt = (size_t)n_threads, hd = (size_t)hp->head_dim;
    *s = (struct elm_attn_scratch){.n_threads = n_threads, .group = 1, .n_ctx_max = n_ctx_max};
    for (int32_t i = 0; i < hp->n_layer; i++) {
        const struct elm_layer *l = &m->layers[i];
        if (l->n_head_kv > 0 && l->n_head / l->n_head_kv > s->group)
            s->group = l->n_head / l->n_head_kv;
    }
    const size_t group = (size_t)s->group;
    s->att = malloc(nt * group * (size_t)n_ctx_max * sizeof *s->att);
    s->lanes = malloc(nt * group * MIX_LANES * hd * sizeof *s->lanes);
    s->n_pages = (size_t)elm_kv_pages_for(n_ctx_max);
    s->vpages = malloc(nt * s->n_pages * sizeof *s->vpages);
    s->qc_row = hd * sizeof(float);
    s->qc = malloc(nt * group * s->qc_row);
    if (!s->att || !s->lanes || !s->vpages || !s->qc) {
        elm_attn_scratch_free(s);
        return -ENOMEM;
    }
    return 0;
}

void elm_attn_scratch_free(struct elm_attn_scratch *s)
{
    free(s->att);
    free(s->lanes);
    free(s->vpages);
    free(s->qc);
    *s = (struct elm_attn_scratch){0};
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

/* A thread's share of struct elm_attn_scratch, for attend_group. */
struct job_scratch {
    float *att;          /* [g][att_stride] one row of weights per query head */
    size_t att_stride;   /* n_ctx_max */
    float *lanes;        /* [g][MIX_LANES][hd] */
    char *qc;            /* [g][qc_stride] the query heads in the cache's type */
    size_t qc_stride;    /* bytes */
    const void **vpages; /* the V pages the sums run over */
};

/* Asks for the cache lines of [p, p + bytes) ahead of their use: into L1 (near) or into L2. A
 * head's rows of a page (kv_impl.h) are one run of bytes, but the pages lie anywhere in the
 * pool, so the hardware's prefetchers stop at every page: decode attention over a long context
 * waited on memory at each page's first rows. */
static void prefetch_rows(const unsigned char *p, size_t bytes, bool near)
{
    for (size_t o = 0; o < bytes; o += 64) {
        if (near)
            __builtin_prefetch(p + o, 0, 3);
        else
            __builtin_prefetch(p + o, 0, 2);
    }
}

/* att_j[base..n) = softmax(q_j·K[lo..n) / sqrt(hd)) for the g query heads j of one KV head
 * (rows s->att + j * att_stride; q holds them hd apart), with the positions of the first page
 * before lo at -inf (weight 0). koff locates the KV head's K rows in a page. The scores of a
 * page come from one kv_dots_group for all the heads when the table has it (each K row
 * converted once), else from kv_dots or kv_dot per head; the bits are the same. */
static void group_weights(const struct elm_kernels *k, const struct elm_hparams *hp,
                          const struct elm_kv *kv, const struct span *sp, size_t koff, int g,
                          const float *q, const struct job_scratch *s)
{
    const struct elm_kv_pool *pl = kv->pool;
    const enum elm_type type = pl->type;
    const int hd = hp->head_dim;
    const size_t row = pl->head_bytes; /* bytes from one position to the next */
    const char *qv = (const char *)q;
    size_t qs = (size_t)hd * sizeof *q;
    if (type != ELM_TYPE_F32) {
        for (int j = 0; j < g; j++)
            k->from_float[type](q + (size_t)j * hd, s->qc + j * s->qc_stride, hd);
        qv = s->qc;
        qs = s->qc_stride;
    }
    const int32_t lo = sp->lo, n = sp->n;
    /* a head's K rows of a page, and from them to its V rows */
    const size_t span = (size_t)ELM_KV_PAGE * row, to_v = (size_t)ELM_KV_PAGE * pl->row_bytes;
    prefetch_rows(elm_kv_page(pl, kv->table[sp->pg0]) + koff, span, true);
    for (int32_t pg = sp->pg0; pg < sp->n_pages; pg++) {
        const unsigned char *kb = elm_kv_page(pl, kv->table[pg]) + koff;
        /* the next page's K while this one's scores are made, and this page's V into L2 for
         * the weighted sum after the softmax */
        if (pg + 1 < sp->n_pages)
            prefetch_rows(elm_kv_page(pl, kv->table[pg + 1]) + koff, span, true);
        prefetch_rows(kb + to_v, span, false);
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
    /* The scale in a local, and runs of 8 that gcc -O2 turns into vector multiplies (the same
     * products): a loop reading hp->q_scale for every score (att might alias it) stayed scalar,
     * half of attn_part's own time in a 2048-token prefill. */
    const float q_scale = hp->q_scale;
    for (int j = 0; j < g; j++) {
        float *att = s->att + j * s->att_stride;
        for (int32_t p = sp->base; p < lo; p++)
            att[p] = -INFINITY;
        int32_t p = lo;
        for (; p + 8 <= n; p += 8)
            for (int i = 0; i < 8; i++)
                att[p + i] *= q_scale;
        for (; p < n; p++)
            att[p] *= q_scale;
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
                         const float *q, const struct job_scratch *s, float *out)
{
    const struct span sp = span_of(hp, layer, pos);
    const struct elm_kv_pool *pl = kv->pool;
    const enum elm_type type = pl->type;
    const int hd = hp->head_dim;
    const size_t row = pl->head_bytes, hl = (size_t)MIX_LANES * (size_t)hd;
    const size_t koff = (size_t)layer * pl->layer_bytes + (size_t)kvh * ELM_KV_PAGE * row;
    const size_t voff = koff + (size_t)ELM_KV_PAGE * pl->row_bytes;
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
    const struct elm_attn_scratch *s;
    const struct elm_batch_item *items;
    const float *q;
    float *out;
    int layer, jobs;
    atomic_int next; /* the next job not yet taken */
};

/* Each thread takes jobs (one KV head's group of query heads of one token) one at a time until
 * none are left, with its own scratch (th < s->n_threads); a head's result does not depend on
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
    const struct elm_attn_scratch *as = a->s;
    const int hd = hp->head_dim, nkv = l->n_head_kv, group = l->n_head / nkv;
    const int n = a->jobs / nkv;
    const size_t qdim = (size_t)l->n_head * hd, tw = (size_t)th * (size_t)as->group;
    const struct job_scratch s = {
        .att = as->att + tw * (size_t)as->n_ctx_max,
        .att_stride = (size_t)as->n_ctx_max,
        .lanes = as->lanes + tw * MIX_LANES * (size_t)hd,
        .qc = (char *)as->qc + tw * as->qc_row,
        .qc_stride = as->qc_row,
        .vpages = as->vpages + (size_t)th * as->n_pages,
    };
    for (int j; (j = atomic_fetch_add_explicit(&a->next, 1, memory_order_relaxed)) < a->jobs;) {
        const int t = n - 1 - j / nkv, kvh = j % nkv;
        const size_t off = (size_t)t * qdim + (size_t)kvh * group * hd;
        attend_group(a->m->k, hp, a->items[t].kv, a->layer, a->items[t].pos, kvh, group, a->q + off,
                     &s, a->out + off);
    }
}

void elm_attention(const struct elm_model *m, const struct elm_attn_scratch *s, int layer,
                   const struct elm_batch_item *items, int n, const float *q, float *out)
{
    struct attn a = {.m = m,
                     .s = s,
                     .items = items,
                     .q = q,
                     .out = out,
                     .layer = layer,
                     .jobs = n * m->layers[layer].n_head_kv};
    atomic_init(&a.next, 0);
    elm_pool_run(a.jobs < s->n_threads ? a.jobs : s->n_threads, attn_part, &a);
}
