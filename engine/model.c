/* model.c — building a llama-family model from a parsed GGUF file: hyperparameters from the
 * architecture's keys, every tensor looked up by name and its shape and type checked, so that
 * the forward pass (forward.c) can index weights without further checks.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/errmsg.h"
#include "elm/status.h"
#include "kernels/fp16.h"
#include "model.h"

/* Upper bounds that keep every size product far from overflow and reject absurd headers. */
#define MAX_DIM   (1 << 20)
#define MAX_LAYER 1024

/* Reads "<arch>.<suffix>" as u32; absent → def (or error when def < 0). */
static int arch_u32(const struct elm_gguf *g, const char *arch, const char *suffix, int64_t def,
                    int32_t *out, char *err, size_t errlen)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    uint32_t v;
    int rc = elm_gguf_get_u32(g, key, &v);
    if (rc == -ENOENT) {
        if (def < 0)
            return elm_errf(err, errlen, ELM_EMODEL, "missing hyperparameter '%s'", key);
        *out = (int32_t)def;
        return 0;
    }
    if (rc < 0 || v > MAX_DIM)
        return elm_errf(err, errlen, ELM_EMODEL, "hyperparameter '%s' is invalid", key);
    *out = (int32_t)v;
    return 0;
}

static int arch_f32(const struct elm_gguf *g, const char *arch, const char *suffix, float def,
                    float *out, char *err, size_t errlen)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = elm_gguf_get_f32(g, key, out);
    if (rc == -ENOENT) {
        *out = def;
        return 0;
    }
    if (rc < 0 || !isfinite(*out))
        return elm_errf(err, errlen, ELM_EMODEL, "hyperparameter '%s' is invalid", key);
    return 0;
}

static int read_hparams(const struct elm_gguf *g, struct elm_hparams *hp, char *err,
                        size_t errlen)
{
    struct elm_gguf_str a;
    if (elm_gguf_get_str(g, "general.architecture", &a) < 0)
        return elm_errf(err, errlen, ELM_EMODEL, "missing 'general.architecture'");
    char arch[32];
    if (elm_gguf_str_eq(a, "llama")) {
        hp->arch = ELM_ARCH_LLAMA;
        hp->rope_mode = ELM_ROPE_NORM;
    } else if (elm_gguf_str_eq(a, "qwen2")) {
        hp->arch = ELM_ARCH_QWEN2;
        hp->rope_mode = ELM_ROPE_NEOX;
    } else {
        return elm_errf(err, errlen, ELM_EUNSUPPORTED,
                    "architecture '%.*s' is not supported (llama, qwen2)",
                    (int)(a.len > 32 ? 32 : a.len), a.ptr);
    }
    snprintf(arch, sizeof arch, "%.*s", (int)a.len, a.ptr);

    int rc;
    if ((rc = arch_u32(g, arch, "embedding_length", -1, &hp->n_embd, err, errlen)) ||
        (rc = arch_u32(g, arch, "block_count", -1, &hp->n_layer, err, errlen)) ||
        (rc = arch_u32(g, arch, "feed_forward_length", -1, &hp->n_ff, err, errlen)) ||
        (rc = arch_u32(g, arch, "attention.head_count", -1, &hp->n_head, err, errlen)) ||
        (rc = arch_u32(g, arch, "context_length", 2048, &hp->n_ctx_train, err, errlen)))
        return rc;
    if ((rc = arch_u32(g, arch, "attention.head_count_kv", hp->n_head, &hp->n_head_kv, err,
                       errlen)))
        return rc;
    if (hp->n_embd <= 0 || hp->n_head <= 0 || hp->n_head_kv <= 0 || hp->n_layer <= 0 ||
        hp->n_ff <= 0 || hp->n_layer > MAX_LAYER || hp->n_embd % hp->n_head != 0 ||
        hp->n_head % hp->n_head_kv != 0)
        return elm_errf(err, errlen, ELM_EMODEL,
                    "inconsistent hyperparameters: n_embd %d, n_head %d, n_head_kv %d, "
                    "n_layer %d, n_ff %d",
                    hp->n_embd, hp->n_head, hp->n_head_kv, hp->n_layer, hp->n_ff);
    hp->head_dim = hp->n_embd / hp->n_head;
    if ((rc = arch_u32(g, arch, "rope.dimension_count", hp->head_dim, &hp->n_rot, err, errlen)))
        return rc;
    if (hp->n_rot <= 0 || hp->n_rot > hp->head_dim || hp->n_rot % 2)
        return elm_errf(err, errlen, ELM_EMODEL, "rope.dimension_count %d does not fit head size %d",
                    hp->n_rot, hp->head_dim);
    if ((rc = arch_f32(g, arch, "attention.layer_norm_rms_epsilon", 1e-5f, &hp->eps, err,
                       errlen)) ||
        (rc = arch_f32(g, arch, "rope.freq_base", 10000.0f, &hp->rope_base, err, errlen)))
        return rc;
    if (!(hp->eps > 0) || !(hp->rope_base > 0))
        return elm_errf(err, errlen, ELM_EMODEL, "rms epsilon and rope.freq_base must be positive");

    /* Linear RoPE scaling: positions are multiplied by 1/factor. Newer files say
     * rope.scaling.type = "linear" + rope.scaling.factor, older ones rope.scale_linear. */
    float factor = 1.0f;
    char key[128];
    struct elm_gguf_str st;
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    bool has_type = elm_gguf_get_str(g, key, &st) == 0;
    if (has_type && !elm_gguf_str_eq(st, "linear") && !elm_gguf_str_eq(st, "none"))
        return elm_errf(err, errlen, ELM_EUNSUPPORTED, "rope scaling '%.*s' is not supported",
                    (int)(st.len > 32 ? 32 : st.len), st.ptr);
    if (!has_type || elm_gguf_str_eq(st, "linear")) {
        if ((rc = arch_f32(g, arch, "rope.scaling.factor", 0.0f, &factor, err, errlen)))
            return rc;
        if (factor == 0.0f && (rc = arch_f32(g, arch, "rope.scale_linear", 1.0f, &factor, err,
                                             errlen)))
            return rc;
    }
    if (factor <= 0.0f)
        factor = 1.0f;
    hp->rope_scale = 1.0f / factor;
    return 0;
}

/* ---- tensors ------------------------------------------------------------------------------- */

struct loader {
    struct elm_model *m;
    const struct elm_gguf *g;
    const uint8_t *data; /* start of the data section */
    char *err;
    size_t errlen;
};

static const struct elm_gguf_tensor *find(struct loader *L, const char *name, bool required,
                                          int *rc)
{
    const struct elm_gguf_tensor *t = elm_gguf_find_tensor(L->g, name);
    if (!t && required)
        *rc = elm_errf(L->err, L->errlen, ELM_EMODEL, "missing tensor '%s'", name);
    return t;
}

/* A 2-D weight [rows][cols] of any type elm can multiply. */
static int get_matrix(struct loader *L, const char *name, int64_t cols, int64_t rows,
                      bool required, struct elm_tensor *out)
{
    int rc = 0;
    const struct elm_gguf_tensor *t = find(L, name, required, &rc);
    if (!t)
        return rc;
    const struct elm_type_info *ti = elm_type_get(t->type);
    if (!ti || !ti->is_weight)
        return elm_errf(L->err, L->errlen, ELM_EUNSUPPORTED, "tensor '%s' has unsupported type %u",
                    name, t->type);
    bool shape_ok = t->ne[0] == cols && t->ne[1] == rows && t->ne[2] == 1 && t->ne[3] == 1;
    if (!shape_ok)
        return elm_errf(L->err, L->errlen, ELM_EMODEL,
                    "tensor '%s' has shape [%lld, %lld], expected [%lld, %lld]", name,
                    (long long)t->ne[0], (long long)t->ne[1], (long long)cols, (long long)rows);
    out->type = (enum elm_type)t->type;
    out->ne0 = cols;
    out->ne1 = rows;
    out->data = L->data + t->offset;
    L->m->weight_bytes += t->n_bytes;
    return 0;
}

/* A 1-D vector used as F32 (norm weights, biases); other float types are converted once. */
static int get_vector(struct loader *L, const char *name, int64_t n, bool required,
                      const float **out)
{
    int rc = 0;
    const struct elm_gguf_tensor *t = find(L, name, required, &rc);
    if (!t)
        return rc;
    if (t->n_elements != (uint64_t)n || t->ne[0] != n)
        return elm_errf(L->err, L->errlen, ELM_EMODEL, "tensor '%s' has %llu elements, expected %lld",
                    name, (unsigned long long)t->n_elements, (long long)n);
    const void *src = L->data + t->offset;
    L->m->weight_bytes += t->n_bytes;
    if (t->type == ELM_TYPE_F32) {
        *out = src;
        return 0;
    }
    const struct elm_type_info *ti = elm_type_get(t->type);
    if (!ti || !ti->is_weight || n % ti->block)
        return elm_errf(L->err, L->errlen, ELM_EUNSUPPORTED, "tensor '%s' has unsupported type %u",
                    name, t->type);
    float *f = malloc((size_t)n * sizeof *f);
    void **owned = realloc(L->m->owned, (size_t)(L->m->n_owned + 1) * sizeof *owned);
    if (!f || !owned) {
        free(f);
        if (owned)
            L->m->owned = owned;
        return elm_errf(L->err, L->errlen, -ENOMEM, "out of memory");
    }
    L->m->owned = owned;
    owned[L->m->n_owned++] = f;
    L->m->k->to_float[t->type](src, f, n);
    *out = f;
    return 0;
}

static int load_tensors(struct loader *L)
{
    struct elm_model *m = L->m;
    const struct elm_hparams *hp = &m->hp;
    int64_t E = hp->n_embd, hd = hp->head_dim;
    int64_t qdim = hp->n_head * hd, kvdim = hp->n_head_kv * hd;
    int rc;

    if ((rc = get_matrix(L, "token_embd.weight", E, hp->n_vocab, true, &m->tok_embd)) ||
        (rc = get_vector(L, "output_norm.weight", E, true, &m->output_norm)) ||
        (rc = get_matrix(L, "output.weight", E, hp->n_vocab, false, &m->output)))
        return rc;
    if (!m->output.data)
        m->output = m->tok_embd; /* tied embeddings (qwen2, and some llama files) */

    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers)
        return elm_errf(L->err, L->errlen, -ENOMEM, "out of memory");
    for (int i = 0; i < hp->n_layer; i++) {
        struct elm_layer *l = &m->layers[i];
        char n[96];
        bool bias = hp->arch == ELM_ARCH_QWEN2;
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", i, s), n)
        if ((rc = get_vector(L, NAME("attn_norm.weight"), E, true, &l->attn_norm)) ||
            (rc = get_matrix(L, NAME("attn_q.weight"), E, qdim, true, &l->wq)) ||
            (rc = get_matrix(L, NAME("attn_k.weight"), E, kvdim, true, &l->wk)) ||
            (rc = get_matrix(L, NAME("attn_v.weight"), E, kvdim, true, &l->wv)) ||
            (rc = get_matrix(L, NAME("attn_output.weight"), qdim, E, true, &l->wo)) ||
            (rc = get_vector(L, NAME("attn_q.bias"), qdim, bias, &l->bq)) ||
            (rc = get_vector(L, NAME("attn_k.bias"), kvdim, bias, &l->bk)) ||
            (rc = get_vector(L, NAME("attn_v.bias"), kvdim, bias, &l->bv)) ||
            (rc = get_vector(L, NAME("ffn_norm.weight"), E, true, &l->ffn_norm)) ||
            (rc = get_matrix(L, NAME("ffn_gate.weight"), E, hp->n_ff, true, &l->w_gate)) ||
            (rc = get_matrix(L, NAME("ffn_up.weight"), E, hp->n_ff, true, &l->w_up)) ||
            (rc = get_matrix(L, NAME("ffn_down.weight"), hp->n_ff, E, true, &l->w_down)))
            return rc;
#undef NAME
    }
    return 0;
}

int elm_model_create(struct elm_gguf *g, const void *data, const struct elm_model_params *p,
                     struct elm_model **out, char *err, size_t errlen)
{
    if (errlen)
        err[0] = 0;
    struct elm_model *m = calloc(1, sizeof *m);
    if (!m)
        return elm_errf(err, errlen, -ENOMEM, "out of memory");
    int rc;
    m->k = elm_kernels_active();
    if (p && p->kernel) {
        m->k = elm_kernels_get(p->kernel);
        if (!m->k) {
            rc = elm_errf(err, errlen, ELM_EUNSUPPORTED, "kernel variant '%s' is not available",
                      p->kernel);
            goto fail_model;
        }
    }
    m->n_threads = p && p->n_threads > 0 ? p->n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (m->n_threads < 1)
        m->n_threads = 1;

    if ((rc = read_hparams(g, &m->hp, err, errlen)))
        goto fail_model;
    if ((rc = elm_vocab_load(g, &m->vocab, err, errlen)))
        goto fail_model;
    int32_t nv = elm_vocab_size(m->vocab);
    char key[96];
    snprintf(key, sizeof key, "%s.vocab_size", m->hp.arch == ELM_ARCH_QWEN2 ? "qwen2" : "llama");
    uint32_t v;
    m->hp.n_vocab = elm_gguf_get_u32(g, key, &v) == 0 ? (int32_t)v : nv;
    if (m->hp.n_vocab != nv) {
        rc = elm_errf(err, errlen, ELM_EMODEL, "'%s' is %d but the tokenizer has %d tokens", key,
                  m->hp.n_vocab, nv);
        goto fail_vocab;
    }

    struct loader L = {.m = m,
                       .g = g,
                       .data = data ? data : g->base + g->data_offset,
                       .err = err,
                       .errlen = errlen};
    if ((rc = load_tensors(&L)))
        goto fail_tensors;
    m->gguf = g;
    *out = m;
    return 0;

fail_tensors:
    for (int i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    free(m->layers);
fail_vocab:
    elm_vocab_destroy(&m->vocab);
fail_model:
    free(m);
    return rc;
}

int elm_model_load(const char *path, const struct elm_model_params *p, struct elm_model **out,
                   char *err, size_t errlen)
{
    struct elm_gguf *g;
    int rc = elm_gguf_open(path, &g, err, errlen);
    if (rc)
        return rc;
    rc = elm_model_create(g, NULL, p, out, err, errlen);
    if (rc)
        elm_gguf_destroy(&g);
    return rc;
}

int32_t elm_model_ctx_default(const struct elm_model *m, int32_t configured)
{
    if (configured > 0)
        return configured;
    int32_t train = m->hp.n_ctx_train;
    return train > 0 && train < ELM_CTX_DEFAULT_MAX ? train : ELM_CTX_DEFAULT_MAX;
}

/* p moved from the file's data section to the same offset of data; other pointers (the F32
 * copies of converted vectors, NULL for absent tensors) stay. */
static const void *rebase(const struct elm_gguf *g, const void *data, const void *p)
{
    const uint8_t *from = g->base + g->data_offset, *q = p;
    if (!q || q < from || q >= from + g->data_size)
        return p;
    return (const uint8_t *)data + (q - from);
}

void elm_model_rebase(struct elm_model *m, const void *data)
{
    const struct elm_gguf *g = m->gguf;
#define MOVE(x) ((x) = rebase(g, data, (x)))
    MOVE(m->tok_embd.data);
    MOVE(m->output_norm);
    MOVE(m->output.data);
    for (int i = 0; i < m->hp.n_layer; i++) {
        struct elm_layer *l = &m->layers[i];
        MOVE(l->attn_norm);
        MOVE(l->wq.data);
        MOVE(l->wk.data);
        MOVE(l->wv.data);
        MOVE(l->wo.data);
        MOVE(l->bq);
        MOVE(l->bk);
        MOVE(l->bv);
        MOVE(l->ffn_norm);
        MOVE(l->w_gate.data);
        MOVE(l->w_up.data);
        MOVE(l->w_down.data);
    }
#undef MOVE
}

void elm_model_destroy(struct elm_model **pm)
{
    if (!pm || !*pm)
        return;
    struct elm_model *m = *pm;
    for (int i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    elm_vocab_destroy(&m->vocab);
    elm_gguf_destroy(&m->gguf);
    free(m);
    *pm = NULL;
}
