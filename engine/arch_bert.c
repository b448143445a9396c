/* arch_bert.c — the bert encoder as an embedding model (model.h elm_model_embed).
 *
 * Per token at position p of its sequence: x = LN(tok_embd[id] + token_types[0] + pos_embd[p]);
 * per layer, with bidirectional attention inside the sequence:
 *   x = LN(x + Wo · attn(Wq·x + bq, Wk·x + bk, Wv·x + bv) + bo)
 *   x = LN(x + Wdown · gelu(Wup·x + bup) + bdown)
 * then the sequence's states are pooled (mean over every token, [CLS] and [SEP] included, or the
 * [CLS] state) and divided by their L2 norm, as llama-server's /embedding does.
 *
 * All tokens of all sequences go through each matmul together; attention runs per sequence.
 * A token's rows are computed by the same code whatever else the pass holds (matmuls are one
 * vec_dot per output), so a sequence's embedding is the same alone or with others. The attention
 * uses the KV-cache kernels over contiguous rows (F32 K and V, as llama.cpp keeps them here).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "elm/status.h"
#include "engine/model.h"
#include "engine/ops.h"

#define MIX_LANES 16 /* partial sums per attention output (kernels.h kv_mix) */

struct bert_buf {
    float *x;             /* [T][E] residual stream */
    float *t;             /* [T][max(E, qdim, n_ff)] projection outputs */
    float *q, *k, *v, *o; /* [T][qdim]; o: attention output */
    float *att;           /* [L_max] scores of one query */
    float *lanes;         /* [MIX_LANES][head_dim] */
    void *aq;             /* activations in a dot type: [T][aq_row] */
    size_t aq_row;
};

bool elm_model_is_embedding(const struct elm_model *m)
{
    return m->hp.arch == ELM_ARCH_BERT;
}

/* y[t][r] = W[r] · x[t] for n rows of x, the activations first quantized to W's dot type. */
static void bmatmul(const struct elm_model *m, struct bert_buf *b, const struct elm_tensor *W,
                    const float *x, int n, float *y, const float *bias)
{
    const enum elm_type dt = elm_type_get(W->type)->dot_type;
    const void *xq = x;
    size_t stride = (size_t)W->ne0 * sizeof(float);
    if (dt != ELM_TYPE_F32) {
        stride = elm_row_bytes(dt, W->ne0);
        for (int t = 0; t < n; t++)
            m->k->from_float[dt](x + (size_t)t * W->ne0, (char *)b->aq + (size_t)t * stride,
                                 W->ne0);
        xq = b->aq;
    }
    elm_matmul(m->k, W->type, W->layout, W->data, W->ne0, W->ne1, xq, stride, n, y, W->ne1);
    if (bias)
        for (int t = 0; t < n; t++)
            for (int64_t i = 0; i < W->ne1; i++)
                y[(size_t)t * W->ne1 + i] += bias[i];
}

static void row_of(const struct elm_model *m, const struct elm_tensor *T, int64_t r, float *out)
{
    m->k->to_float[T->type]((const char *)T->data + (size_t)r * elm_row_bytes(T->type, T->ne0), out,
                            T->ne0);
}

static void embed_tokens(const struct elm_model *m, struct bert_buf *b, const int32_t *const *ids,
                         const int32_t *n_ids, int n_seq)
{
    const int E = m->hp.n_embd;
    float *type0 = b->t, *pos = b->t + E;
    row_of(m, &m->tok_types, 0, type0);
    size_t t = 0;
    for (int s = 0; s < n_seq; s++)
        for (int32_t p = 0; p < n_ids[s]; p++, t++) {
            float *x = b->x + t * E;
            row_of(m, &m->tok_embd, ids[s][p], x);
            row_of(m, &m->pos_embd, p, pos);
            for (int i = 0; i < E; i++)
                x[i] = (x[i] + type0[i]) + pos[i];
            elm_layernorm(x, x, m->tok_norm, m->tok_norm_b, E, m->hp.eps);
        }
}

/* o = softmax(q·K * scale) · V per head, each query over every token of its own sequence. */
static void attention(const struct elm_model *m, struct bert_buf *b, const int32_t *n_ids,
                      int n_seq)
{
    const struct elm_hparams *hp = &m->hp;
    const struct elm_kernels *k = m->k;
    const int hd = hp->head_dim;
    const size_t qdim = (size_t)hp->n_head * hd;
    size_t t0 = 0;
    for (int s = 0; s < n_seq; t0 += (size_t)n_ids[s], s++) {
        const int32_t L = n_ids[s];
        for (int32_t i = 0; i < L; i++)
            for (int h = 0; h < hp->n_head; h++) {
                const size_t off = (size_t)h * hd;
                const float *q = b->q + (t0 + (size_t)i) * qdim + off;
                for (int32_t j = 0; j < L; j++) {
                    k->kv_dot[ELM_TYPE_F32](hd, &b->att[j], b->k + (t0 + (size_t)j) * qdim + off,
                                            q);
                    b->att[j] *= hp->q_scale;
                }
                k->softmax(b->att, L);
                memset(b->lanes, 0, (size_t)MIX_LANES * (size_t)hd * sizeof *b->lanes);
                k->kv_mix[ELM_TYPE_F32](L, hd, b->lanes, b->att, b->v + t0 * qdim + off,
                                        (int64_t)(qdim * sizeof(float)));
                k->kv_fold(hd, b->lanes, b->o + (t0 + (size_t)i) * qdim + off);
            }
    }
}

static void layer(const struct elm_model *m, struct bert_buf *b, const struct elm_layer *l,
                  const int32_t *n_ids, int n_seq, int T)
{
    const int E = m->hp.n_embd, ff = m->hp.n_ff;
    bmatmul(m, b, &l->wq, b->x, T, b->q, l->bq);
    bmatmul(m, b, &l->wk, b->x, T, b->k, l->bk);
    bmatmul(m, b, &l->wv, b->x, T, b->v, l->bv);
    attention(m, b, n_ids, n_seq);
    bmatmul(m, b, &l->wo, b->o, T, b->t, l->bo);
    for (size_t i = 0; i < (size_t)T * E; i++)
        b->x[i] = b->t[i] + b->x[i];
    for (int t = 0; t < T; t++)
        elm_layernorm(b->x + (size_t)t * E, b->x + (size_t)t * E, l->attn_out_norm,
                      l->attn_out_norm_b, E, m->hp.eps);
    bmatmul(m, b, &l->w_up, b->x, T, b->t, l->b_up);
    elm_gelu_mul(b->t, NULL, (int64_t)T * ff);
    bmatmul(m, b, &l->w_down, b->t, T, b->o, l->b_down); /* o is free: E <= qdim */
    for (size_t i = 0; i < (size_t)T * E; i++)
        b->x[i] = b->o[i] + b->x[i];
    for (int t = 0; t < T; t++)
        elm_layernorm(b->x + (size_t)t * E, b->x + (size_t)t * E, l->out_norm, l->out_norm_b, E,
                      m->hp.eps);
}

/* out = the pooled state of L token rows at x, divided by its L2 norm (summed in double). */
static void pool(const struct elm_model *m, const float *x, int32_t L, float *out)
{
    const int E = m->hp.n_embd;
    if (m->hp.pooling == ELM_POOL_CLS) {
        memcpy(out, x, (size_t)E * sizeof *out);
    } else {
        const float inv = 1.0f / (float)L;
        for (int i = 0; i < E; i++) {
            float acc = 0.0f;
            for (int32_t t = 0; t < L; t++)
                acc += x[(size_t)t * E + i] * inv;
            out[i] = acc;
        }
    }
    double sum = 0.0;
    for (int i = 0; i < E; i++)
        sum += (double)out[i] * (double)out[i];
    const float norm = sum > 0.0 ? (float)(1.0 / sqrt(sum)) : 0.0f;
    for (int i = 0; i < E; i++)
        out[i] *= norm;
}

static void buf_free(struct bert_buf *b)
{
    free(b->x);
    free(b->t);
    free(b->q);
    free(b->k);
    free(b->v);
    free(b->o);
    free(b->att);
    free(b->lanes);
    free(b->aq);
}

static int buf_alloc(const struct elm_model *m, struct bert_buf *b, size_t T, size_t L_max)
{
    const struct elm_hparams *hp = &m->hp;
    size_t E = (size_t)hp->n_embd, qdim = (size_t)hp->n_head * (size_t)hp->head_dim;
    size_t wide = E > qdim ? E : qdim;
    if ((size_t)hp->n_ff > wide)
        wide = (size_t)hp->n_ff;
    qdim = qdim > E ? qdim : E;
    b->x = malloc(T * E * sizeof(float));
    b->t = malloc(T * wide * sizeof(float) + 2 * E * sizeof(float));
    b->q = malloc(T * qdim * sizeof(float));
    b->k = malloc(T * qdim * sizeof(float));
    b->v = malloc(T * qdim * sizeof(float));
    b->o = malloc(T * qdim * sizeof(float));
    b->att = malloc(L_max * sizeof(float));
    b->lanes = malloc((size_t)MIX_LANES * (size_t)hp->head_dim * sizeof(float));
    /* the widest dot-type row: Q8_K 292 bytes per 256 values, Q8_0/Q8_1 at most 36 per 32 */
    b->aq_row = (wide / 32 + 1) * 36 + 292;
    b->aq = malloc(T * b->aq_row);
    if (!b->x || !b->t || !b->q || !b->k || !b->v || !b->o || !b->att || !b->lanes || !b->aq) {
        buf_free(b);
        return -ENOMEM;
    }
    return 0;
}

int elm_model_embed(const struct elm_model *m, const int32_t *const *ids, const int32_t *n_ids,
                    int n_seq, float *out)
{
    if (!elm_model_is_embedding(m) || n_seq <= 0 || !ids || !n_ids || !out)
        return -EINVAL;
    size_t T = 0, L_max = 0;
    for (int s = 0; s < n_seq; s++) {
        if (n_ids[s] <= 0 || !ids[s])
            return -EINVAL;
        if (n_ids[s] > m->hp.n_ctx_train)
            return ELM_ECONTEXT;
        for (int32_t p = 0; p < n_ids[s]; p++)
            if (ids[s][p] < 0 || ids[s][p] >= m->hp.n_vocab)
                return ELM_ETOKEN;
        T += (size_t)n_ids[s];
        L_max = (size_t)n_ids[s] > L_max ? (size_t)n_ids[s] : L_max;
    }
    struct bert_buf b = {0};
    if (buf_alloc(m, &b, T, L_max))
        return -ENOMEM;
    embed_tokens(m, &b, ids, n_ids, n_seq);
    for (int li = 0; li < m->hp.n_layer; li++)
        layer(m, &b, &m->layers[li], n_ids, n_seq, (int)T);
    size_t t0 = 0;
    for (int s = 0; s < n_seq; t0 += (size_t)n_ids[s], s++)
        pool(m, b.x + t0 * (size_t)m->hp.n_embd, n_ids[s], out + (size_t)s * m->hp.n_embd);
    buf_free(&b);
    return 0;
}
