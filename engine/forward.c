/* forward.c — the batched forward pass of the llama family, plus the KV cache and scratch
 * buffers it uses.
 *
 * Read it top to bottom as the math of one layer:
 *   x += Wo · attn(rope(Wq·rmsnorm(x) [+bq]), rope(Wk·rmsnorm(x) [+bk]), Wv·rmsnorm(x) [+bv])
 *   x += Wdown · (silu(Wgate·rmsnorm(x)) * Wup·rmsnorm(x))
 * then logits = Wout · rmsnorm(x) for the tokens that ask for them.
 *
 * Every operation that rounds goes through the kernel table (m->k: matmuls, norms, rotary
 * embedding, softmax, SiLU, attention over the cache), whose reference versions reproduce the
 * floats of the llama.cpp build the zoo references came from (docs/kernels.md). What is left
 * here rounds the same on every machine: the residual and bias additions, the attention scale
 * (a power of two for the usual head sizes) and the conversion to an F16 cache.
 *
 * Batch invariance: every quantity of a token is computed from that token's own rows with the
 * same code path whatever else the batch holds (norms per row, matmul outputs via one vec_dot
 * per element, attention over the token's own sequence), so results are bit-identical alone or
 * batched. Keep it that way: no reductions across tokens, no batch-size-dependent tiling that
 * changes summation order.
 */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "elm/status.h"
#include "kernels/fp16.h"
#include "model.h"

/* ---- KV cache ------------------------------------------------------------------------------ */

int elm_kv_create(const struct elm_model *m, int32_t n_ctx, enum elm_type type,
                  struct elm_kv **out)
{
    if (n_ctx <= 0 || (type != ELM_TYPE_F32 && type != ELM_TYPE_F16))
        return -EINVAL;
    struct elm_kv *kv = calloc(1, sizeof *kv);
    if (!kv)
        return -ENOMEM;
    kv->n_ctx = n_ctx;
    kv->type = type;
    kv->n_layer = m->hp.n_layer;
    kv->kv_dim = m->hp.n_head_kv * m->hp.head_dim;
    size_t esz = type == ELM_TYPE_F32 ? 4 : 2;
    size_t bytes = (size_t)kv->n_layer * (size_t)n_ctx * (size_t)kv->kv_dim * esz;
    kv->k = malloc(bytes);
    kv->v = malloc(bytes);
    if (!kv->k || !kv->v) {
        elm_kv_destroy(&kv);
        return -ENOMEM;
    }
    *out = kv;
    return 0;
}

void elm_kv_destroy(struct elm_kv **pkv)
{
    if (!pkv || !*pkv)
        return;
    free((*pkv)->k);
    free((*pkv)->v);
    free(*pkv);
    *pkv = NULL;
}

static size_t kv_index(const struct elm_kv *kv, int layer, int32_t pos)
{
    return ((size_t)layer * (size_t)kv->n_ctx + (size_t)pos) * (size_t)kv->kv_dim;
}

static void kv_store(struct elm_kv *kv, int layer, int32_t pos, const float *k, const float *v)
{
    size_t at = kv_index(kv, layer, pos);
    if (kv->type == ELM_TYPE_F32) {
        memcpy((float *)kv->k + at, k, (size_t)kv->kv_dim * sizeof(float));
        memcpy((float *)kv->v + at, v, (size_t)kv->kv_dim * sizeof(float));
        return;
    }
    uint16_t *kd = (uint16_t *)kv->k + at, *vd = (uint16_t *)kv->v + at;
    for (int i = 0; i < kv->kv_dim; i++) {
        kd[i] = elm_f32_to_fp16(k[i]);
        vd[i] = elm_f32_to_fp16(v[i]);
    }
}

/* ---- scratch ------------------------------------------------------------------------------- */

#define LOGIT_ROWS 16 /* output rows computed per output matmul (bounds the logits scratch) */

struct elm_work {
    int32_t n_batch;
    int32_t n_ctx_max;
    int n_threads;
    float *x;      /* [n_batch][n_embd]  residual stream */
    float *xb;     /* [n_batch][max(n_embd, qdim)] normed input / attention output */
    float *q;      /* [n_batch][qdim] */
    float *k;      /* [n_batch][kvdim] */
    float *v;      /* [n_batch][kvdim] */
    float *hb;     /* [n_batch][n_ff] gate, then silu(gate) * up */
    float *hb2;    /* [n_batch][n_ff] up */
    float *att;    /* [n_threads][n_ctx_max] attention scores per thread */
    uint16_t *qh;  /* [n_threads][head_dim] a query head converted for an F16 cache */
    float *rope;   /* [n_rot] cos/sin table of one position */
    float *logits; /* [LOGIT_ROWS][n_vocab] */
    void *aq;      /* activations quantized to a dot type: [n_batch][row bytes of widest row] */
    size_t aq_row; /* bytes per row in aq */
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
    size_t nb = (size_t)n_batch, E = (size_t)hp->n_embd;
    size_t qdim = (size_t)hp->n_head * hp->head_dim, kvdim = (size_t)hp->n_head_kv * hp->head_dim;
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
    w->q = falloc(nb * qdim);
    w->k = falloc(nb * kvdim);
    w->v = falloc(nb * kvdim);
    w->hb = falloc(nb * (size_t)hp->n_ff);
    w->hb2 = falloc(nb * (size_t)hp->n_ff);
    w->att = falloc((size_t)w->n_threads * (size_t)n_ctx_max);
    w->qh = malloc((size_t)w->n_threads * (size_t)hp->head_dim * sizeof *w->qh);
    w->rope = falloc((size_t)hp->n_rot);
    w->logits = falloc((size_t)LOGIT_ROWS * (size_t)hp->n_vocab);
    /* The widest activation row in any dot type: Q8_K needs 292 bytes per 256 values, Q8_0 34
     * per 32, Q8_1 36 per 32; F32 activations are used in place and need no copy. */
    w->aq_row = (wide / 32 + 1) * 36 + 292;
    w->aq = malloc(nb * w->aq_row);
    if (!w->x || !w->xb || !w->q || !w->k || !w->v || !w->hb || !w->hb2 || !w->att || !w->qh ||
        !w->rope || !w->logits || !w->aq) {
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
    free(w->qh);
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

/* ---- matmul with activation quantization --------------------------------------------------- */

/* y[t][r] = W[r] · x[t] for n tokens. Quantized weights take activations quantized to their
 * dot type (as ggml does: the reference outputs depend on it); float weights take x itself. */
static void matmul(const struct elm_model *m, struct elm_work *w, const struct elm_tensor *W,
                   const float *x, int n, float *y)
{
    const struct elm_type_info *ti = elm_type_get(W->type);
    enum elm_type dt = ti->dot_type;
    const void *xq = x;
    size_t stride = (size_t)W->ne0 * sizeof(float);
    if (dt != ELM_TYPE_F32) {
        stride = elm_row_bytes(dt, W->ne0);
        for (int t = 0; t < n; t++)
            m->k->from_float[dt](x + (size_t)t * W->ne0, (char *)w->aq + (size_t)t * stride,
                                 W->ne0);
        xq = w->aq;
    }
    elm_matmul(m->k, W->type, W->data, W->ne0, W->ne1, xq, stride, n, y, W->ne1);
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

/* out[hd] = softmax(q·K[0..pos] / sqrt(hd)) · V[0..pos] for one head of one token. qh is
 * scratch for the query in the cache's type. */
static void attend_head(const struct elm_kernels *k, const struct elm_hparams *hp,
                        const struct elm_kv *kv, int layer, int32_t pos, int kvh, const float *q,
                        float *att, uint16_t *qh, float *out)
{
    const int hd = hp->head_dim;
    const size_t esz = kv->type == ELM_TYPE_F32 ? sizeof(float) : sizeof(uint16_t);
    const char *kbase = (const char *)kv->k + (kv_index(kv, layer, 0) + (size_t)kvh * hd) * esz;
    const char *vbase = (const char *)kv->v + (kv_index(kv, layer, 0) + (size_t)kvh * hd) * esz;
    const size_t row = (size_t)kv->kv_dim * esz; /* bytes from one position to the next */
    const void *qc = q;
    if (kv->type == ELM_TYPE_F16) {
        k->from_float[ELM_TYPE_F16](q, qh, hd);
        qc = qh;
    }
    const float scale = 1.0f / sqrtf((float)hd);
    for (int32_t p = 0; p <= pos; p++) {
        k->kv_dot[kv->type](hd, &att[p], kbase + (size_t)p * row, qc);
        att[p] *= scale;
    }
    k->softmax(att, (int64_t)pos + 1);
    k->kv_mix[kv->type]((int64_t)pos + 1, hd, out, att, vbase, kv->kv_dim);
}

static void attention(const struct elm_model *m, struct elm_work *w, int layer,
                      const struct elm_batch_item *items, int n)
{
    const struct elm_hparams *hp = &m->hp;
    int hd = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    size_t qdim = (size_t)hp->n_head * hd;
    int jobs = n * hp->n_head;
#pragma omp parallel for num_threads(w->n_threads) schedule(static)
    for (int j = 0; j < jobs; j++) {
        int t = j / hp->n_head, h = j % hp->n_head, th = omp_get_thread_num();
        attend_head(m->k, hp, items[t].kv, layer, items[t].pos, h / group,
                    w->q + (size_t)t * qdim + (size_t)h * hd,
                    w->att + (size_t)th * (size_t)w->n_ctx_max, w->qh + (size_t)th * hd,
                    w->xb + (size_t)t * qdim + (size_t)h * hd);
    }
}

/* ---- the pass ------------------------------------------------------------------------------ */

static int check_batch(const struct elm_model *m, const struct elm_work *w,
                       const struct elm_batch_item *items, int n)
{
    if (n <= 0 || n > w->n_batch)
        return -EINVAL;
    for (int t = 0; t < n; t++) {
        const struct elm_batch_item *it = &items[t];
        if (!it->kv || it->kv->n_layer != m->hp.n_layer)
            return -EINVAL;
        if (it->token < 0 || it->token >= m->hp.n_vocab)
            return ELM_ETOKEN;
        if (it->pos < 0 || it->pos >= it->kv->n_ctx || it->pos >= w->n_ctx_max)
            return ELM_ECONTEXT;
    }
    return 0;
}

static void layer_forward(const struct elm_model *m, struct elm_work *w, int li,
                          const struct elm_batch_item *items, int n)
{
    const struct elm_hparams *hp = &m->hp;
    const struct elm_layer *l = &m->layers[li];
    const struct elm_kernels *k = m->k;
    int E = hp->n_embd, hd = hp->head_dim, ff = hp->n_ff;
    int qdim = hp->n_head * hd, kvdim = hp->n_head_kv * hd;
    const bool neox = hp->rope_mode == ELM_ROPE_NEOX;

    for (int t = 0; t < n; t++)
        k->rmsnorm(w->xb + (size_t)t * E, w->x + (size_t)t * E, l->attn_norm, E, hp->eps);
    matmul(m, w, &l->wq, w->xb, n, w->q);
    matmul(m, w, &l->wk, w->xb, n, w->k);
    matmul(m, w, &l->wv, w->xb, n, w->v);
    add_bias(w->q, l->bq, n, qdim);
    add_bias(w->k, l->bk, n, kvdim);
    add_bias(w->v, l->bv, n, kvdim);
    for (int t = 0; t < n; t++) {
        k->rope_table(w->rope, hp->n_rot, items[t].pos, hp->rope_base, hp->rope_scale);
        for (int h = 0; h < hp->n_head; h++)
            k->rope(w->q + (size_t)t * qdim + (size_t)h * hd, hp->n_rot, w->rope, neox);
        for (int h = 0; h < hp->n_head_kv; h++)
            k->rope(w->k + (size_t)t * kvdim + (size_t)h * hd, hp->n_rot, w->rope, neox);
        kv_store(items[t].kv, li, items[t].pos, w->k + (size_t)t * kvdim,
                 w->v + (size_t)t * kvdim);
    }
    /* All of the batch's K/V are stored before anyone attends, so a token sees the earlier
     * tokens of its own sequence that arrived in the same batch. */
    attention(m, w, li, items, n);
    matmul(m, w, &l->wo, w->xb, n, w->q); /* q is free now: reuse it for the projection */
    for (size_t i = 0; i < (size_t)n * E; i++)
        w->x[i] += w->q[i];

    for (int t = 0; t < n; t++)
        k->rmsnorm(w->xb + (size_t)t * E, w->x + (size_t)t * E, l->ffn_norm, E, hp->eps);
    matmul(m, w, &l->w_gate, w->xb, n, w->hb);
    matmul(m, w, &l->w_up, w->xb, n, w->hb2);
    for (int t = 0; t < n; t++)
        k->silu_mul(w->hb + (size_t)t * ff, w->hb2 + (size_t)t * ff, ff);
    matmul(m, w, &l->w_down, w->hb, n, w->q);
    for (size_t i = 0; i < (size_t)n * E; i++)
        w->x[i] += w->q[i];
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
        }
        if (c == LOGIT_ROWS || (t == n && c > 0)) {
            matmul(m, w, &m->output, w->xb, c, w->logits);
            for (int i = 0; i < c; i++)
                memcpy(items[idx[i]].logits, w->logits + (size_t)i * V, (size_t)V * sizeof(float));
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
    int E = m->hp.n_embd;
    const struct elm_tensor *te = &m->tok_embd;
    for (int t = 0; t < n; t++)
        m->k->to_float[te->type]((const char *)te->data +
                                     (size_t)items[t].token * elm_row_bytes(te->type, E),
                                 w->x + (size_t)t * E, E);
    for (int li = 0; li < m->hp.n_layer; li++)
        layer_forward(m, w, li, items, n);
    output_logits(m, w, items, n);
    return 0;
}
