/* forward.c — the batched forward pass of the llama family, plus the KV cache and scratch
 * buffers it uses.
 *
 * Read it top to bottom as the math of one layer:
 *   x += Wo · attn(rope(Wq·rmsnorm(x) [+bq]), rope(Wk·rmsnorm(x) [+bk]), Wv·rmsnorm(x) [+bv])
 *   x += Wdown · (silu(Wgate·rmsnorm(x)) * Wup·rmsnorm(x))
 * then logits = Wout · rmsnorm(x) for the tokens that ask for them.
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
    w->logits = falloc((size_t)LOGIT_ROWS * (size_t)hp->n_vocab);
    /* The widest activation row in any dot type: Q8_K needs 292 bytes per 256 values, Q8_0 34
     * per 32, Q8_1 36 per 32; F32 activations are used in place and need no copy. */
    w->aq_row = (wide / 32 + 1) * 36 + 292;
    w->aq = malloc(nb * w->aq_row);
    if (!w->x || !w->xb || !w->q || !w->k || !w->v || !w->hb || !w->hb2 || !w->att ||
        !w->logits || !w->aq) {
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
    free(w->logits);
    free(w->aq);
    free(w);
    *pw = NULL;
}

int32_t elm_work_n_batch(const struct elm_work *w)
{
    return w->n_batch;
}

/* ---- elementwise operations ---------------------------------------------------------------- */

/* y = x / sqrt(mean(x^2) + eps) * g. The sum of squares is accumulated in double, as ggml does,
 * so long rows lose no precision. */
static void rmsnorm(float *y, const float *x, const float *g, int n, float eps)
{
    double ss = 0.0;
    for (int i = 0; i < n; i++)
        ss += (double)(x[i] * x[i]);
    float scale = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = 0; i < n; i++)
        y[i] = x[i] * scale * g[i];
}

/* Rotates the first n_rot dims of one head vector by position pos. The angle of pair i is
 * pos * scale * base^(-2i/n_rot), built by repeated multiplication as ggml does. */
static void rope(float *x, int n_rot, int32_t pos, float base, float scale,
                 enum elm_rope_mode mode)
{
    float theta_scale = powf(base, -2.0f / (float)n_rot);
    float theta = (float)pos;
    int half = n_rot / 2;
    for (int i = 0; i < half; i++) {
        float c = cosf(theta * scale), s = sinf(theta * scale);
        int a = mode == ELM_ROPE_NORM ? 2 * i : i;
        int b = mode == ELM_ROPE_NORM ? 2 * i + 1 : i + half;
        float x0 = x[a], x1 = x[b];
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
        theta *= theta_scale;
    }
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

static float kv_dot(const struct elm_kv *kv, size_t at, const float *q, int n)
{
    float s = 0.0f;
    if (kv->type == ELM_TYPE_F32) {
        const float *k = (const float *)kv->k + at;
        for (int i = 0; i < n; i++)
            s += q[i] * k[i];
    } else {
        const uint16_t *k = (const uint16_t *)kv->k + at;
        for (int i = 0; i < n; i++)
            s += q[i] * elm_fp16_to_f32(k[i]);
    }
    return s;
}

static void kv_axpy(const struct elm_kv *kv, size_t at, float a, float *out, int n)
{
    if (kv->type == ELM_TYPE_F32) {
        const float *v = (const float *)kv->v + at;
        for (int i = 0; i < n; i++)
            out[i] += a * v[i];
    } else {
        const uint16_t *v = (const uint16_t *)kv->v + at;
        for (int i = 0; i < n; i++)
            out[i] += a * elm_fp16_to_f32(v[i]);
    }
}

/* out[hd] = softmax(q·K[0..pos] / sqrt(hd)) · V[0..pos] for one head of one token. */
static void attend_head(const struct elm_hparams *hp, const struct elm_kv *kv, int layer,
                        int32_t pos, int kvh, const float *q, float *att, float *out)
{
    int hd = hp->head_dim;
    float scale = 1.0f / sqrtf((float)hd);
    float mx = -INFINITY;
    for (int32_t p = 0; p <= pos; p++) {
        att[p] = kv_dot(kv, kv_index(kv, layer, p) + (size_t)kvh * hd, q, hd) * scale;
        if (att[p] > mx)
            mx = att[p];
    }
    double sum = 0.0;
    for (int32_t p = 0; p <= pos; p++) {
        att[p] = expf(att[p] - mx);
        sum += att[p];
    }
    float inv = (float)(1.0 / sum);
    memset(out, 0, (size_t)hd * sizeof *out);
    for (int32_t p = 0; p <= pos; p++)
        kv_axpy(kv, kv_index(kv, layer, p) + (size_t)kvh * hd, att[p] * inv, out, hd);
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
        int t = j / hp->n_head, h = j % hp->n_head;
        float *att = w->att + (size_t)omp_get_thread_num() * (size_t)w->n_ctx_max;
        attend_head(hp, items[t].kv, layer, items[t].pos, h / group,
                    w->q + (size_t)t * qdim + (size_t)h * hd, att,
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
    int E = hp->n_embd, hd = hp->head_dim, ff = hp->n_ff;
    int qdim = hp->n_head * hd, kvdim = hp->n_head_kv * hd;

    for (int t = 0; t < n; t++)
        rmsnorm(w->xb + (size_t)t * E, w->x + (size_t)t * E, l->attn_norm, E, hp->eps);
    matmul(m, w, &l->wq, w->xb, n, w->q);
    matmul(m, w, &l->wk, w->xb, n, w->k);
    matmul(m, w, &l->wv, w->xb, n, w->v);
    add_bias(w->q, l->bq, n, qdim);
    add_bias(w->k, l->bk, n, kvdim);
    add_bias(w->v, l->bv, n, kvdim);
    for (int t = 0; t < n; t++) {
        for (int h = 0; h < hp->n_head; h++)
            rope(w->q + (size_t)t * qdim + (size_t)h * hd, hp->n_rot, items[t].pos,
                 hp->rope_base, hp->rope_scale, hp->rope_mode);
        for (int h = 0; h < hp->n_head_kv; h++)
            rope(w->k + (size_t)t * kvdim + (size_t)h * hd, hp->n_rot, items[t].pos,
                 hp->rope_base, hp->rope_scale, hp->rope_mode);
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
        rmsnorm(w->xb + (size_t)t * E, w->x + (size_t)t * E, l->ffn_norm, E, hp->eps);
    matmul(m, w, &l->w_gate, w->xb, n, w->hb);
    matmul(m, w, &l->w_up, w->xb, n, w->hb2);
    for (size_t i = 0; i < (size_t)n * ff; i++) {
        float g = w->hb[i];
        w->hb[i] = g / (1.0f + expf(-g)) * w->hb2[i];
    }
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
            rmsnorm(w->xb + (size_t)c * E, w->x + (size_t)t * E, m->output_norm, E, m->hp.eps);
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
