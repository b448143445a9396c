/* prune.c — see prune.h. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errmsg.h"
#include "elm/status.h"
#include "engine/eval.h"
#include "engine/gguf.h"
#include "engine/gguf_writer.h"
#include "engine/model.h"
#include "engine/prune.h"

void elm_prune_influence_add(double *sum, const float *a, const float *b, int64_t n_embd, int n)
{
    for (int t = 0; t < n; t++) {
        const float *x = a + (size_t)t * (size_t)n_embd, *y = b + (size_t)t * (size_t)n_embd;
        double xy = 0, xx = 0, yy = 0;
        for (int64_t i = 0; i < n_embd; i++) {
            xy += (double)x[i] * y[i];
            xx += (double)x[i] * x[i];
            yy += (double)y[i] * y[i];
        }
        *sum += xx > 0 && yy > 0 ? 1.0 - xy / sqrt(xx * yy) : 0.0;
    }
}

struct influence {
    float *prev; /* [n_ctx][n_embd] the stream entering the current block */
    double *sum; /* [n_layer] */
    int64_t tokens;
};

static void on_hidden(void *ctx, int layer, const float *x, int64_t n_embd, int n)
{
    struct influence *in = ctx;
    if (layer > 0)
        elm_prune_influence_add(&in->sum[layer - 1], in->prev, x, n_embd, n);
    else
        in->tokens += n;
    memcpy(in->prev, x, (size_t)n * (size_t)n_embd * sizeof *x);
}

int elm_prune_measure(struct elm_eval *e, const struct elm_model *m, const int32_t *tokens,
                      int32_t n_chunk, double *influence, struct elm_ppl *ppl)
{
    const int32_t n_ctx = elm_eval_n_ctx(e), V = m->hp.n_vocab, L = m->hp.n_layer;
    const int32_t first = elm_eval_first(n_ctx);
    struct influence in = {.prev = malloc((size_t)n_ctx * (size_t)m->hp.n_embd * sizeof(float)),
                           .sum = influence};
    float *logits = malloc((size_t)(n_ctx - first) * (size_t)V * sizeof *logits);
    int rc = in.prev && logits ? 0 : -ENOMEM;
    for (int32_t l = 0; l < L; l++)
        influence[l] = 0;
    if (ppl)
        *ppl = (struct elm_ppl){0};
    const struct elm_matmul_observer obs = {.hidden = on_hidden, .ctx = &in};
    elm_eval_set_observer(e, &obs);
    for (int32_t i = 0; i < n_chunk && !rc; i++) {
        const int32_t *tk = tokens + (size_t)i * (size_t)n_ctx;
        rc = elm_eval_chunk(e, tk, first, logits);
        for (int32_t j = 0; ppl && !rc && j < elm_eval_n_scored(n_ctx); j++)
            elm_ppl_add(ppl, elm_eval_nll(logits + (size_t)j * V, V, tk[first + j + 1]));
    }
    elm_eval_set_observer(e, NULL);
    for (int32_t l = 0; l < L && in.tokens > 0; l++)
        influence[l] /= (double)in.tokens;
    free(in.prev);
    free(logits);
    return rc;
}

void elm_prune_pick(const double *influence, int32_t n_layer, int32_t n, bool *drop)
{
    for (int32_t k = 0; k < n; k++) {
        int32_t best = -1;
        for (int32_t l = 0; l < n_layer; l++)
            if (!drop[l] && (best < 0 || influence[l] < influence[best]))
                best = l;
        if (best >= 0)
            drop[best] = true;
    }
}

long elm_prune_block_of(const struct elm_gguf_str *name, size_t *rest)
{
    if (name->len < 6 || memcmp(name->ptr, "blk.", 4))
        return -1;
    long v = 0;
    size_t i = 4;
    while (i < name->len && name->ptr[i] >= '0' && name->ptr[i] <= '9' && v < 1000000)
        v = v * 10 + (name->ptr[i++] - '0');
    if (i == 4 || i >= name->len || name->ptr[i] != '.')
        return -1;
    *rest = i; /* the '.' after N */
    return v;
}

int elm_prune_layers(const char *in, const char *out, const bool *drop, int32_t n_layer,
                     struct elm_prune_stats *st, char *err, size_t errlen)
{
    struct elm_gguf *g = NULL;
    struct elm_gguf_writer *w = NULL;
    int32_t *renum = NULL;
    int rc = elm_gguf_open(in, &g, err, errlen);
    if (rc)
        return rc;
    struct elm_gguf_str arch;
    char key[256];
    uint32_t nl = 0;
    if (elm_gguf_get_str(g, "general.architecture", &arch) < 0 || arch.len > 200) {
        rc = elm_errf(err, errlen, ELM_EMODEL, "%s: no general.architecture", in);
        goto out;
    }
    snprintf(key, sizeof key, "%.*s.block_count", (int)arch.len, arch.ptr);
    if (elm_gguf_get_u32(g, key, &nl) < 0 || (int64_t)nl != n_layer) {
        rc = elm_errf(err, errlen, ELM_EMODEL, "%s: %s is not %d", in, key, n_layer);
        goto out;
    }
    if (!(renum = malloc((size_t)n_layer * sizeof *renum)) ||
        !(w = elm_gguf_writer_create((uint32_t)g->alignment))) {
        rc = -ENOMEM;
        goto out;
    }
    int32_t kept = 0;
    for (int32_t l = 0; l < n_layer; l++)
        renum[l] = drop[l] ? -1 : kept++;
    if (kept == 0) {
        rc = elm_errf(err, errlen, -EINVAL, "every block would be dropped");
        goto out;
    }
    for (uint64_t i = 0; i < g->n_kv && !rc; i++) {
        const struct elm_gguf_kv *kv = &g->kv[i];
        if (kv->type == ELM_GGUF_ARRAY && kv->arr_n == (uint64_t)n_layer &&
            kv->key.len > arch.len && !memcmp(kv->key.ptr, arch.ptr, arch.len)) {
            rc = elm_errf(err, errlen, ELM_EUNSUPPORTED,
                          "%s: per-layer metadata '%.*s' is not pruned yet", in, (int)kv->key.len,
                          kv->key.ptr);
            break;
        }
        if ((rc = elm_gguf_writer_copy_kv(w, kv)))
            elm_errf(err, errlen, rc, "%s", elm_gguf_writer_error(w));
    }
    if (!rc && (rc = elm_gguf_writer_set_u32(w, key, (uint32_t)kept)))
        elm_errf(err, errlen, rc, "%s", elm_gguf_writer_error(w));
    uint64_t params_in = 0, params_out = 0;
    for (uint64_t i = 0; i < g->n_tensors && !rc; i++) {
        const struct elm_gguf_tensor *t = &g->tensors[i];
        char name[512];
        size_t rest = 0;
        const long b = elm_prune_block_of(&t->name, &rest);
        params_in += t->n_elements;
        if (b >= n_layer) {
            rc = elm_errf(err, errlen, ELM_EMODEL, "%s: tensor '%.*s' past block_count", in,
                          (int)t->name.len, t->name.ptr);
            break;
        }
        if (b >= 0 && renum[b] < 0)
            continue;
        if (t->name.len >= sizeof name - 16) {
            rc = elm_errf(err, errlen, ELM_EFORMAT, "%s: tensor name too long", in);
            break;
        }
        if (b >= 0)
            snprintf(name, sizeof name, "blk.%d%.*s", renum[b], (int)(t->name.len - rest),
                     t->name.ptr + rest);
        else
            snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        params_out += t->n_elements;
        if ((rc = elm_gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne,
                                             elm_gguf_tensor_data(g, t))))
            elm_errf(err, errlen, rc, "%s", elm_gguf_writer_error(w));
    }
    if (!rc)
        rc = elm_gguf_writer_write(w, out, err, errlen);
    if (!rc && st) {
        FILE *f = fopen(out, "rb");
        long size = f && !fseek(f, 0, SEEK_END) ? ftell(f) : 0;
        if (f)
            fclose(f);
        *st = (struct elm_prune_stats){n_layer,    kept,    params_in,
                                       params_out, g->size, size > 0 ? (uint64_t)size : 0};
    }
out:
    elm_gguf_writer_destroy(&w);
    free(renum);
    elm_gguf_destroy(&g);
    return rc;
}
