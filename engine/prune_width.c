/* prune_width.c — FFN-width and attention-head pruning (prune.h): a copy of a model with the
 * least important FFN channels or KV groups of each layer removed.
 *
 * A channel j of a layer's FFN is row j of ffn_gate and ffn_up and column j of ffn_down; a KV
 * group g is K/V head g with the n_head / n_head_kv query heads that read it (rows of attn_q,
 * attn_k, attn_v and their biases, columns of attn_output). Both are scored as Wanda does for a
 * weight column: sum_i |W[i][j]| x ||x_j||, with x the input of the matrix that consumes the
 * channel (ffn_down, attn_output) measured over calibration tokens by the pass observer, a
 * group's score being the sum of its columns'. Only F32/F16/BF16 tensors are cut: a quantized
 * row's blocks would have to be requantized, so quantized input is refused (prune, then
 * quantize). Widths go in the file as llama.cpp reads them (get_key_or_arr): one integer when
 * every layer has the same width, an INT32 array of block_count entries otherwise.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errmsg.h"
#include "elm/status.h"
#include "engine/gguf.h"
#include "engine/gguf_writer.h"
#include "engine/prune.h"

/* ---- activation statistics ----------------------------------------------------------------- */

int elm_prune_acts_create(const struct elm_model *m, struct elm_prune_acts **out)
{
    const struct elm_hparams *hp = &m->hp;
    struct elm_prune_acts *a = calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    a->n_layer = hp->n_layer;
    a->ffn = calloc((size_t)hp->n_layer, sizeof *a->ffn);
    a->attn = calloc((size_t)hp->n_layer, sizeof *a->attn);
    int rc = a->ffn && a->attn ? 0 : -ENOMEM;
    for (int32_t l = 0; l < hp->n_layer && !rc; l++) {
        const struct elm_layer *ly = &m->layers[l];
        a->ffn[l] = calloc((size_t)ly->n_ff, sizeof **a->ffn);
        a->attn[l] = calloc((size_t)ly->n_head * (size_t)hp->head_dim, sizeof **a->attn);
        if (!a->ffn[l] || !a->attn[l])
            rc = -ENOMEM;
    }
    if (rc)
        elm_prune_acts_destroy(&a);
    *out = a;
    return rc;
}

void elm_prune_acts_destroy(struct elm_prune_acts **pa)
{
    if (!pa || !*pa)
        return;
    struct elm_prune_acts *a = *pa;
    for (int32_t l = 0; l < a->n_layer; l++) {
        free(a->ffn ? a->ffn[l] : NULL);
        free(a->attn ? a->attn[l] : NULL);
    }
    free(a->ffn);
    free(a->attn);
    free(a);
    *pa = NULL;
}

static void acts_fn(void *ctx, int layer, enum elm_mat_role role, const float *x, int64_t ncols,
                    int n)
{
    struct elm_prune_acts *a = ctx;
    if (layer < 0 || layer >= a->n_layer || (role != ELM_MAT_DOWN && role != ELM_MAT_O))
        return;
    double *s = role == ELM_MAT_DOWN ? a->ffn[layer] : a->attn[layer];
    for (int t = 0; t < n; t++)
        for (int64_t j = 0; j < ncols; j++)
            s[j] += (double)x[(size_t)t * (size_t)ncols + (size_t)j] *
                    x[(size_t)t * (size_t)ncols + (size_t)j];
    if (role == ELM_MAT_DOWN && layer == 0)
        a->tokens += n;
}

struct elm_matmul_observer elm_prune_acts_observer(struct elm_prune_acts *a)
{
    return (struct elm_matmul_observer){.fn = acts_fn, .ctx = a};
}

/* ---- scores -------------------------------------------------------------------------------- */

static bool is_float(uint32_t type)
{
    return type == ELM_TYPE_F32 || type == ELM_TYPE_F16 || type == ELM_TYPE_BF16;
}

/* score[j] = sum over rows i of |W[i][j]| x sqrt(sq[j]) for W's ne0 columns. Only float files
 * are pruned (add_cut refuses the rest when it writes): a quantized W scores 0 unread, since the
 * model may hold it packed (elm_tensor.layout), with no rows to read. */
static int column_scores(const struct elm_model *m, const struct elm_tensor *W, const double *sq,
                         double *score)
{
    memset(score, 0, (size_t)W->ne0 * sizeof *score);
    if (!is_float(W->type))
        return 0;
    float *row = malloc((size_t)W->ne0 * sizeof *row);
    if (!row)
        return -ENOMEM;
    const size_t rb = elm_row_bytes(W->type, W->ne0);
    for (int64_t i = 0; i < W->ne1; i++) {
        m->k->to_float[W->type]((const char *)W->data + (size_t)i * rb, row, W->ne0);
        for (int64_t j = 0; j < W->ne0; j++)
            score[j] += fabsf(row[j]);
    }
    for (int64_t j = 0; j < W->ne0; j++)
        score[j] *= sqrt(sq[j]);
    free(row);
    return 0;
}

/* keep[0..n) = true for the n - n_drop highest scores (ties: the later index goes first). */
static void keep_best(const double *score, int32_t n, int32_t n_drop, bool *keep)
{
    for (int32_t j = 0; j < n; j++)
        keep[j] = true;
    for (int32_t d = 0; d < n_drop; d++) {
        int32_t worst = -1;
        for (int32_t j = 0; j < n; j++)
            if (keep[j] && (worst < 0 || score[j] < score[worst]))
                worst = j;
        keep[worst] = false;
    }
}

/* ---- writing ------------------------------------------------------------------------------- */

/* What one layer keeps: rows of the producing matrices, columns of the consuming one. */
struct cut {
    const bool *out_rows; /* [n] channels/rows kept, or NULL: the tensor is copied */
    const bool *kv_rows;  /* heads: K/V rows kept */
};

struct pruner {
    const struct elm_model *m;
    struct elm_gguf_writer *w;
    void **bufs; /* cut tensors' bytes, borrowed by the writer until it has written */
    int n_bufs;
    uint64_t params_out;
    char *err;
    size_t errlen;
};

/* Adds t with the rows (ne1) where rows[r] and the columns (ne0) where cols[c] (NULL: all). */
static int add_cut(struct pruner *p, const struct elm_gguf_tensor *t, const char *name,
                   const bool *rows, const bool *cols)
{
    const struct elm_gguf *g = p->m->gguf;
    if (!rows && !cols) {
        p->params_out += t->n_elements;
        int rc = elm_gguf_writer_add_tensor(p->w, name, t->type, t->n_dims, t->ne,
                                            elm_gguf_tensor_data(g, t));
        return rc ? elm_errf(p->err, p->errlen, rc, "%s", elm_gguf_writer_error(p->w)) : 0;
    }
    if (!is_float(t->type) || t->n_dims > 2)
        return elm_errf(p->err, p->errlen, ELM_EUNSUPPORTED,
                        "tensor '%s' is %s: only F32/F16/BF16 weights are pruned (prune the "
                        "unquantized file, then quantize)",
                        name, elm_type_get(t->type) ? elm_type_get(t->type)->name : "?");
    const size_t es = t->type == ELM_TYPE_F32 ? 4 : 2;
    const int64_t ne0 = t->ne[0], ne1 = t->n_dims > 1 ? t->ne[1] : 1;
    int64_t k0 = 0, k1 = 0;
    for (int64_t c = 0; c < ne0; c++)
        k0 += !cols || cols[c];
    for (int64_t r = 0; r < ne1; r++)
        k1 += !rows || rows[r];
    void **bufs = realloc(p->bufs, (size_t)(p->n_bufs + 1) * sizeof *bufs);
    char *dst = malloc((size_t)(k0 * k1) * es + 1);
    if (bufs)
        p->bufs = bufs;
    if (!bufs || !dst) {
        free(dst);
        return elm_errf(p->err, p->errlen, -ENOMEM, "out of memory");
    }
    p->bufs[p->n_bufs++] = dst;
    const char *src = elm_gguf_tensor_data(g, t);
    char *d = dst;
    for (int64_t r = 0; r < ne1; r++) {
        if (rows && !rows[r])
            continue;
        const char *s = src + (size_t)r * (size_t)ne0 * es;
        for (int64_t c = 0; c < ne0; c++)
            if (!cols || cols[c]) {
                memcpy(d, s + (size_t)c * es, es);
                d += es;
            }
    }
    int64_t ne[4] = {k0, t->n_dims > 1 ? k1 : 1, 1, 1};
    p->params_out += (uint64_t)(k0 * k1);
    int rc = elm_gguf_writer_add_tensor(p->w, name, t->type, t->n_dims, ne, dst);
    return rc ? elm_errf(p->err, p->errlen, rc, "%s", elm_gguf_writer_error(p->w)) : 0;
}

/* "<arch>.<suffix>" = v[0..n_layer): one u32 when all equal, else an INT32 array. */
static int set_dims(struct pruner *p, const char *suffix, const int32_t *v)
{
    const int32_t L = p->m->hp.n_layer;
    char key[128];
    snprintf(key, sizeof key, "%s.%s", elm_arch_name(p->m->hp.arch), suffix);
    bool same = true;
    for (int32_t l = 1; l < L; l++)
        same = same && v[l] == v[0];
    int rc = same ? elm_gguf_writer_set_u32(p->w, key, (uint32_t)v[0])
                  : elm_gguf_writer_set_arr(p->w, key, ELM_GGUF_I32, (uint64_t)L, v);
    return rc ? elm_errf(p->err, p->errlen, rc, "%s", elm_gguf_writer_error(p->w)) : 0;
}

static bool rest_is(const char *rest, size_t len, const char *s)
{
    return strlen(s) == len && !memcmp(rest, s, len);
}

/* Writes m's file to out with, per layer l, ffn[l] (FFN channels, NULL: all) and q[l]/kv[l]
 * (attention rows, NULL: all) kept; widths from nff/nh/nkv. */
static int write_pruned(const struct elm_model *m, const char *out, bool *const *ffn,
                        bool *const *q, bool *const *kv, const int32_t *nff, const int32_t *nh,
                        const int32_t *nkv, struct elm_prune_stats *st, char *err, size_t errlen)
{
    const struct elm_gguf *g = m->gguf;
    struct pruner p = {.m = m, .err = err, .errlen = errlen};
    int rc = 0;
    if (!(p.w = elm_gguf_writer_create((uint32_t)g->alignment)))
        return -ENOMEM;
    for (uint64_t i = 0; i < g->n_kv && !rc; i++)
        if ((rc = elm_gguf_writer_copy_kv(p.w, &g->kv[i])))
            elm_errf(err, errlen, rc, "%s", elm_gguf_writer_error(p.w));
    char key[128];
    const char *arch = elm_arch_name(m->hp.arch);
    if (!rc && ffn)
        rc = set_dims(&p, "feed_forward_length", nff);
    if (!rc && q && (rc = set_dims(&p, "attention.head_count", nh)) == 0 &&
        (rc = set_dims(&p, "attention.head_count_kv", nkv)) == 0) {
        /* the head size was n_embd / n_head by default: state it, it no longer follows */
        snprintf(key, sizeof key, "%s.attention.key_length", arch);
        if ((rc = elm_gguf_writer_set_u32(p.w, key, (uint32_t)m->hp.head_dim)) == 0) {
            snprintf(key, sizeof key, "%s.attention.value_length", arch);
            rc = elm_gguf_writer_set_u32(p.w, key, (uint32_t)m->hp.head_dim);
        }
        if (rc)
            elm_errf(err, errlen, rc, "%s", elm_gguf_writer_error(p.w));
    }
    uint64_t params_in = 0;
    for (uint64_t i = 0; i < g->n_tensors && !rc; i++) {
        const struct elm_gguf_tensor *t = &g->tensors[i];
        char name[256];
        size_t dot = 0;
        const long b = elm_prune_block_of(&t->name, &dot);
        const char *rest = t->name.ptr + dot + 1; /* used only when b >= 0 */
        params_in += t->n_elements;
        if (t->name.len >= sizeof name) {
            rc = elm_errf(err, errlen, ELM_EFORMAT, "tensor name too long");
            break;
        }
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        const bool *rows = NULL, *cols = NULL;
        if (b >= 0 && b < m->hp.n_layer) {
            const size_t rl = t->name.len - (size_t)(rest - t->name.ptr);
            if (rest_is(rest, rl, "ffn_gate.weight") || rest_is(rest, rl, "ffn_up.weight"))
                rows = ffn ? ffn[b] : NULL;
            else if (rest_is(rest, rl, "ffn_gate.bias") || rest_is(rest, rl, "ffn_up.bias") ||
                     rest_is(rest, rl, "ffn_down.weight"))
                cols = ffn ? ffn[b] : NULL;
            else if (rest_is(rest, rl, "attn_q.weight"))
                rows = q ? q[b] : NULL;
            else if (rest_is(rest, rl, "attn_k.weight") || rest_is(rest, rl, "attn_v.weight"))
                rows = kv ? kv[b] : NULL;
            else if (rest_is(rest, rl, "attn_q.bias") || rest_is(rest, rl, "attn_output.weight"))
                cols = q ? q[b] : NULL;
            else if (rest_is(rest, rl, "attn_k.bias") || rest_is(rest, rl, "attn_v.bias"))
                cols = kv ? kv[b] : NULL;
        }
        if (t->n_dims == 1 && rows) { /* a 1-D tensor has its channels in ne0 */
            cols = rows;
            rows = NULL;
        }
        rc = add_cut(&p, t, name, rows, cols);
    }
    if (!rc)
        rc = elm_gguf_writer_write(p.w, out, err, errlen);
    if (!rc && st) {
        FILE *f = fopen(out, "rb");
        long size = f && !fseek(f, 0, SEEK_END) ? ftell(f) : 0;
        if (f)
            fclose(f);
        *st = (struct elm_prune_stats){m->hp.n_layer, m->hp.n_layer, params_in,
                                       p.params_out,  g->size,       size > 0 ? (uint64_t)size : 0};
    }
    for (int i = 0; i < p.n_bufs; i++)
        free(p.bufs[i]);
    free(p.bufs);
    elm_gguf_writer_destroy(&p.w);
    return rc;
}

/* The architectures whose FFN and attention are separate gate/up/down and Q/K/V tensors. */
static int check_arch(const struct elm_model *m, const struct elm_prune_acts *a, char *err,
                      size_t errlen)
{
    const enum elm_arch ar = m->hp.arch;
    if (ar != ELM_ARCH_LLAMA && ar != ELM_ARCH_QWEN2 && ar != ELM_ARCH_GEMMA2)
        return elm_errf(err, errlen, ELM_EUNSUPPORTED,
                        "width pruning supports llama, qwen2 and gemma2 (not %s: fused or "
                        "encoder tensors)",
                        elm_arch_name(ar));
    if (!m->gguf || !a || a->n_layer != m->hp.n_layer || a->tokens <= 0)
        return elm_errf(err, errlen, -EINVAL, "no activation statistics for this model");
    return 0;
}

/* Per-layer widths as the model has them. */
static int widths(const struct elm_model *m, int32_t **nff, int32_t **nh, int32_t **nkv)
{
    const size_t L = (size_t)m->hp.n_layer;
    *nff = malloc(L * sizeof **nff);
    *nh = malloc(L * sizeof **nh);
    *nkv = malloc(L * sizeof **nkv);
    if (!*nff || !*nh || !*nkv)
        return -ENOMEM;
    for (size_t l = 0; l < L; l++) {
        (*nff)[l] = m->layers[l].n_ff;
        (*nh)[l] = m->layers[l].n_head;
        (*nkv)[l] = m->layers[l].n_head_kv;
    }
    return 0;
}

static void free_masks(bool **v, int32_t n)
{
    for (int32_t l = 0; v && l < n; l++)
        free(v[l]);
    free(v);
}

int elm_prune_ffn(const struct elm_model *m, const struct elm_prune_acts *a, double fraction,
                  const char *out, struct elm_prune_stats *st, char *err, size_t errlen)
{
    int rc = check_arch(m, a, err, errlen);
    if (rc)
        return rc;
    if (!(fraction >= 0.0 && fraction < 1.0))
        return elm_errf(err, errlen, -EINVAL, "FFN fraction %g is not in [0, 1)", fraction);
    const int32_t L = m->hp.n_layer;
    int32_t *nff = NULL, *nh = NULL, *nkv = NULL;
    bool **keep = calloc((size_t)L, sizeof *keep);
    double *score = malloc((size_t)m->hp.n_ff * sizeof *score);
    rc = widths(m, &nff, &nh, &nkv);
    if (!rc && (!keep || !score))
        rc = -ENOMEM;
    for (int32_t l = 0; l < L && !rc; l++) {
        const int32_t n = m->layers[l].n_ff;
        int32_t drop = (int32_t)floor(fraction * n + 0.5); /* at least one channel stays */
        if (drop >= n)
            drop = n - 1;
        if (!(keep[l] = malloc((size_t)n * sizeof **keep)) ||
            (rc = column_scores(m, &m->layers[l].w_down, a->ffn[l], score)))
            rc = rc ? rc : -ENOMEM;
        else
            keep_best(score, n, drop, keep[l]);
        nff[l] = n - drop;
    }
    if (rc == -ENOMEM)
        elm_errf(err, errlen, rc, "out of memory");
    if (!rc)
        rc = write_pruned(m, out, keep, NULL, NULL, nff, nh, nkv, st, err, errlen);
    free_masks(keep, L);
    free(score);
    free(nff);
    free(nh);
    free(nkv);
    return rc;
}

int elm_prune_heads(const struct elm_model *m, const struct elm_prune_acts *a, int32_t n_drop,
                    const char *out, struct elm_prune_stats *st, char *err, size_t errlen)
{
    int rc = check_arch(m, a, err, errlen);
    if (rc)
        return rc;
    const int32_t L = m->hp.n_layer, hd = m->hp.head_dim;
    for (int32_t l = 0; l < L; l++)
        if (n_drop < 0 || n_drop >= m->layers[l].n_head_kv)
            return elm_errf(err, errlen, -EINVAL,
                            "layer %d has %d KV groups: cannot drop %d and keep one", l,
                            m->layers[l].n_head_kv, n_drop);
    int32_t *nff = NULL, *nh = NULL, *nkv = NULL;
    bool **q = calloc((size_t)L, sizeof *q), **kv = calloc((size_t)L, sizeof *kv);
    double *score = malloc((size_t)m->hp.n_head * (size_t)hd * sizeof *score);
    double *gs = malloc((size_t)m->hp.n_head_kv * sizeof *gs);
    bool *gkeep = malloc((size_t)m->hp.n_head_kv * sizeof *gkeep);
    rc = widths(m, &nff, &nh, &nkv);
    if (!rc && (!q || !kv || !score || !gs || !gkeep))
        rc = -ENOMEM;
    for (int32_t l = 0; l < L && !rc; l++) {
        const struct elm_layer *ly = &m->layers[l];
        const int32_t G = ly->n_head_kv, per = ly->n_head / G;
        if (!(q[l] = malloc((size_t)ly->n_head * hd)) || !(kv[l] = malloc((size_t)G * hd))) {
            rc = -ENOMEM;
            break;
        }
        if ((rc = column_scores(m, &ly->wo, a->attn[l], score)))
            break;
        for (int32_t g = 0; g < G; g++) { /* query head h reads KV head h / per */
            gs[g] = 0;
            for (int64_t c = (int64_t)g * per * hd; c < (int64_t)(g + 1) * per * hd; c++)
                gs[g] += score[c];
        }
        keep_best(gs, G, n_drop, gkeep);
        for (int32_t h = 0; h < ly->n_head; h++)
            memset(q[l] + (size_t)h * hd, gkeep[h / per], (size_t)hd);
        for (int32_t g = 0; g < G; g++)
            memset(kv[l] + (size_t)g * hd, gkeep[g], (size_t)hd);
        nkv[l] = G - n_drop;
        nh[l] = nkv[l] * per;
    }
    if (rc == -ENOMEM)
        elm_errf(err, errlen, rc, "out of memory");
    if (!rc)
        rc = write_pruned(m, out, NULL, q, kv, nff, nh, nkv, st, err, errlen);
    free_masks(q, L);
    free_masks(kv, L);
    free(score);
    free(gs);
    free(gkeep);
    free(nff);
    free(nh);
    free(nkv);
    return rc;
}
