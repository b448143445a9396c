/* model.c — building a model from a parsed GGUF file: hyperparameters from the architecture's
 * keys (with llama.cpp's defaults where a key is optional), every tensor looked up by name and
 * its shape and type checked, so that the forward passes (forward.c, arch_bert.c) can index
 * weights without further checks.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/errmsg.h"
#include "elm/status.h"
#include "engine/model.h"
#include "kernels/fp16.h"

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

/* A per-layer width "<arch>.<suffix>": one integer for every layer, or an INT32/UINT32 array of
 * n_layer entries (llama.cpp's get_key_or_arr; pruned files, engine/prune.h). *out is layer
 * il's value, or with il < 0 the largest; absent → def (or error when def < 0). Every entry is
 * checked against MAX_DIM; 0 entries are left to the caller to refuse. */
static int arch_dim(const struct elm_gguf *g, const char *arch, const char *suffix,
                    int32_t n_layer, int32_t il, int64_t def, int32_t *out, char *err,
                    size_t errlen)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    const struct elm_gguf_kv *kv = elm_gguf_find(g, key);
    if (!kv || kv->type != ELM_GGUF_ARRAY)
        return arch_u32(g, arch, suffix, def, out, err, errlen);
    if ((kv->arr_type != ELM_GGUF_I32 && kv->arr_type != ELM_GGUF_U32) ||
        kv->arr_n != (uint64_t)n_layer || n_layer <= 0)
        return elm_errf(err, errlen, ELM_EMODEL,
                        "'%s' is not an int32 array of block_count (%d) entries", key, n_layer);
    int64_t best = -1;
    for (int32_t i = 0; i < n_layer; i++) {
        uint32_t u;
        memcpy(&u, kv->raw + 4 * (size_t)i, 4); /* GGUF is little-endian, as elm's hosts are */
        const int64_t v = kv->arr_type == ELM_GGUF_I32 ? (int64_t)(int32_t)u : (int64_t)u;
        if (v < 0 || v > MAX_DIM)
            return elm_errf(err, errlen, ELM_EMODEL, "'%s'[%d] = %lld is invalid", key, i,
                            (long long)v);
        if (i == il || (il < 0 && v > best))
            best = v;
    }
    *out = (int32_t)best;
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

static const char *const arch_names[] = {
    [ELM_ARCH_LLAMA] = "llama",   [ELM_ARCH_QWEN2] = "qwen2", [ELM_ARCH_PHI3] = "phi3",
    [ELM_ARCH_GEMMA2] = "gemma2", [ELM_ARCH_BERT] = "bert",
};

const char *elm_arch_name(enum elm_arch a)
{
    return (unsigned)a < sizeof arch_names / sizeof *arch_names ? arch_names[a] : "?";
}

static int read_arch(const struct elm_gguf *g, struct elm_hparams *hp, char *err, size_t errlen)
{
    struct elm_gguf_str a;
    if (elm_gguf_get_str(g, "general.architecture", &a) < 0)
        return elm_errf(err, errlen, ELM_EMODEL, "missing 'general.architecture'");
    for (size_t i = 0; i < sizeof arch_names / sizeof *arch_names; i++)
        if (elm_gguf_str_eq(a, arch_names[i])) {
            hp->arch = (enum elm_arch)i;
            hp->rope_mode = i == ELM_ARCH_LLAMA ? ELM_ROPE_NORM : ELM_ROPE_NEOX;
            return 0;
        }
    return elm_errf(err, errlen, ELM_EUNSUPPORTED,
                    "architecture '%.*s' is not supported (llama, qwen2, phi3, gemma2, bert)",
                    (int)(a.len > 32 ? 32 : a.len), a.ptr);
}

/* Linear RoPE scaling: positions are multiplied by 1/factor. Newer files say
 * rope.scaling.type = "linear" + rope.scaling.factor, older ones rope.scale_linear. Llama 3's
 * scaling needs no key: the rope_freqs tensor carries it. */
static int read_rope_scale(const struct elm_gguf *g, const char *arch, struct elm_hparams *hp,
                           char *err, size_t errlen)
{
    float factor = 1.0f;
    char key[128];
    struct elm_gguf_str st;
    int rc;
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    bool has_type = elm_gguf_get_str(g, key, &st) == 0;
    if (has_type && !elm_gguf_str_eq(st, "linear") && !elm_gguf_str_eq(st, "none"))
        return elm_errf(err, errlen, ELM_EUNSUPPORTED, "rope scaling '%.*s' is not supported",
                        (int)(st.len > 32 ? 32 : st.len), st.ptr);
    if (!has_type || elm_gguf_str_eq(st, "linear")) {
        if ((rc = arch_f32(g, arch, "rope.scaling.factor", 0.0f, &factor, err, errlen)))
            return rc;
        if (factor == 0.0f &&
            (rc = arch_f32(g, arch, "rope.scale_linear", 1.0f, &factor, err, errlen)))
            return rc;
    }
    if (factor <= 0.0f)
        factor = 1.0f;
    hp->rope_scale = 1.0f / factor;
    return 0;
}

/* gemma2: the values llama.cpp uses (build b4748) when the keys are absent, and its query
 * scale, which it picks from the layer count (Gemma-2 2B/9B scale by 1/sqrt(head_dim), 27B by
 * 1/sqrt(n_embd / n_head)); the window covers the even layers only. */
static int read_gemma2(const struct elm_gguf *g, struct elm_hparams *hp, char *err, size_t errlen)
{
    int rc;
    if ((rc = arch_u32(g, "gemma2", "attention.sliding_window", 4096, &hp->n_swa, err, errlen)) ||
        (rc = arch_f32(g, "gemma2", "attn_logit_softcapping", 50.0f, &hp->attn_softcap, err,
                       errlen)) ||
        (rc = arch_f32(g, "gemma2", "final_logit_softcapping", 30.0f, &hp->final_softcap, err,
                       errlen)))
        return rc;
    if (hp->attn_softcap < 0 || hp->final_softcap < 0)
        return elm_errf(err, errlen, ELM_EMODEL, "gemma2 soft-capping values must be >= 0");
    hp->swa_even_only = true;
    hp->embd_scale = sqrtf((float)hp->n_embd);
    if (hp->n_layer == 46)
        hp->q_scale = 1.0f / sqrtf((float)(hp->n_embd / hp->n_head));
    return 0;
}

/* bert: LayerNorm epsilon, bidirectional attention and the pooling of the token states. */
static int read_bert(const struct elm_gguf *g, struct elm_hparams *hp, char *err, size_t errlen)
{
    int rc;
    int32_t pool;
    bool causal = false;
    if ((rc = arch_f32(g, "bert", "attention.layer_norm_epsilon", 1e-12f, &hp->eps, err, errlen)) ||
        (rc = arch_u32(g, "bert", "pooling_type", ELM_POOL_MEAN, &pool, err, errlen)))
        return rc;
    if (elm_gguf_get_bool(g, "bert.attention.causal", &causal) == 0 && causal)
        return elm_errf(err, errlen, ELM_EUNSUPPORTED, "causal bert is not supported");
    if (pool != ELM_POOL_MEAN && pool != ELM_POOL_CLS)
        return elm_errf(err, errlen, ELM_EUNSUPPORTED,
                        "bert.pooling_type %d is not supported (1 mean, 2 cls)", pool);
    hp->pooling = (enum elm_pooling)pool;
    hp->n_head_kv = hp->n_head;
    return 0;
}

static int read_hparams(const struct elm_gguf *g, struct elm_hparams *hp, char *err, size_t errlen)
{
    int rc;
    if ((rc = read_arch(g, hp, err, errlen)))
        return rc;
    const char *arch = elm_arch_name(hp->arch);

    if ((rc = arch_u32(g, arch, "embedding_length", -1, &hp->n_embd, err, errlen)) ||
        (rc = arch_u32(g, arch, "block_count", -1, &hp->n_layer, err, errlen)) ||
        (rc = arch_u32(g, arch, "context_length", 2048, &hp->n_ctx_train, err, errlen)))
        return rc;
    if (hp->n_layer <= 0 || hp->n_layer > MAX_LAYER)
        return elm_errf(err, errlen, ELM_EMODEL, "block_count %d is not supported", hp->n_layer);
    /* per-layer widths (pruned files): hp holds the widest layer's, each layer its own */
    int32_t n_head0 = 0;
    for (int32_t il = -1; il < hp->n_layer; il++) {
        int32_t ff, nh, nkv;
        if ((rc = arch_dim(g, arch, "feed_forward_length", hp->n_layer, il, -1, &ff, err,
                           errlen)) ||
            (rc = arch_dim(g, arch, "attention.head_count", hp->n_layer, il, -1, &nh, err,
                           errlen)) ||
            (rc = arch_dim(g, arch, "attention.head_count_kv", hp->n_layer, il, nh, &nkv, err,
                           errlen)))
            return rc;
        if (il < 0) {
            hp->n_ff = ff, hp->n_head = nh, hp->n_head_kv = nkv;
        } else if (ff <= 0 || nh <= 0 || nkv <= 0 || nh % nkv != 0) {
            return elm_errf(err, errlen, ELM_EMODEL,
                            "layer %d: n_head %d, n_head_kv %d, n_ff %d are inconsistent", il,
                            nh, nkv, ff);
        }
        if (il == 0)
            n_head0 = nh;
    }
    if (hp->n_embd <= 0 || n_head0 <= 0)
        return elm_errf(err, errlen, ELM_EMODEL,
                    "inconsistent hyperparameters: n_embd %d, n_head %d, n_head_kv %d, "
                    "n_layer %d, n_ff %d",
                    hp->n_embd, hp->n_head, hp->n_head_kv, hp->n_layer, hp->n_ff);
    /* Q/K heads may be wider than n_embd / n_head (gemma2 says so in key_length); with
     * per-layer head counts the default is from layer 0, as llama.cpp takes it */
    int32_t vlen;
    if ((rc = arch_u32(g, arch, "attention.key_length", hp->n_embd / n_head0, &hp->head_dim, err,
                       errlen)) ||
        (rc = arch_u32(g, arch, "attention.value_length", hp->head_dim, &vlen, err, errlen)))
        return rc;
    if (hp->head_dim <= 0 || hp->head_dim % 2 || vlen != hp->head_dim ||
        (int64_t)hp->head_dim * hp->n_head > MAX_DIM)
        return elm_errf(err, errlen, ELM_EMODEL, "head size %d (value %d) is not supported",
                        hp->head_dim, vlen);
    if ((rc = arch_u32(g, arch, "rope.dimension_count", hp->head_dim, &hp->n_rot, err, errlen)))
        return rc;
    if (hp->n_rot <= 0 || hp->n_rot > hp->head_dim || hp->n_rot % 2)
        return elm_errf(err, errlen, ELM_EMODEL, "rope.dimension_count %d does not fit head size %d",
                    hp->n_rot, hp->head_dim);
    if ((rc = arch_f32(g, arch, "attention.layer_norm_rms_epsilon", 1e-5f, &hp->eps, err,
                       errlen)) ||
        (rc = arch_f32(g, arch, "rope.freq_base", 10000.0f, &hp->rope_base, err, errlen)))
        return rc;
    hp->q_scale = 1.0f / sqrtf((float)hp->head_dim);
    if (hp->arch == ELM_ARCH_PHI3 &&
        (rc = arch_u32(g, arch, "attention.sliding_window", 0, &hp->n_swa, err, errlen)))
        return rc;
    if (hp->arch == ELM_ARCH_GEMMA2 && (rc = read_gemma2(g, hp, err, errlen)))
        return rc;
    if (hp->arch == ELM_ARCH_BERT && (rc = read_bert(g, hp, err, errlen)))
        return rc;
    if (!(hp->eps > 0) || !(hp->rope_base > 0))
        return elm_errf(err, errlen, ELM_EMODEL,
                        "norm epsilon and rope.freq_base must be positive");
    return read_rope_scale(g, arch, hp, err, errlen);
}

/* ---- tensors ------------------------------------------------------------------------------- */

struct loader {
    struct elm_model *m;
    const struct elm_gguf *g;
    const uint8_t *data;      /* start of the data section */
    const uint64_t *offsets;  /* NULL: tensor i at data + its file offset; else data + offsets[i] */
    bool *used;               /* dry run (elm_model_used_tensors): mark, read no weight byte */
    char *err;
    size_t errlen;
};

static const struct elm_gguf_tensor *find(struct loader *L, const char *name, bool required,
                                          int *rc)
{
    const struct elm_gguf_tensor *t = elm_gguf_find_tensor(L->g, name);
    if (!t && required)
        *rc = elm_errf(L->err, L->errlen, ELM_EMODEL, "missing tensor '%s'", name);
    if (t && L->used)
        L->used[t - L->g->tensors] = true;
    return t;
}

/* Where tensor t's bytes are: the file's layout, or the loader's packed copy. */
static const uint8_t *tensor_bytes(const struct loader *L, const struct elm_gguf_tensor *t)
{
    return L->data + (L->offsets ? L->offsets[t - L->g->tensors] : t->offset);
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
    out->data = tensor_bytes(L, t);
    L->m->weight_bytes += t->n_bytes;
    return 0;
}

/* Adds p to what the model frees; false (and p freed) when out of memory. */
static bool own(struct elm_model *m, void *p)
{
    void **owned = realloc(m->owned, (size_t)(m->n_owned + 1) * sizeof *owned);
    if (!owned) {
        free(p);
        return false;
    }
    m->owned = owned;
    owned[m->n_owned++] = p;
    return true;
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
    const void *src = tensor_bytes(L, t);
    L->m->weight_bytes += t->n_bytes;
    const struct elm_type_info *ti = elm_type_get(t->type);
    if (t->type != ELM_TYPE_F32 && (!ti || !ti->is_weight || n % ti->block))
        return elm_errf(L->err, L->errlen, ELM_EUNSUPPORTED, "tensor '%s' has unsupported type %u",
                    name, t->type);
    if (t->type == ELM_TYPE_F32 || L->used) { /* a dry run converts nothing */
        *out = src;
        return 0;
    }
    float *f = malloc((size_t)n * sizeof *f);
    if (!f || !own(L->m, f))
        return elm_errf(L->err, L->errlen, -ENOMEM, "out of memory");
    L->m->k->to_float[t->type](src, f, n);
    *out = f;
    return 0;
}

/* Rows [row0, row0 + rows) of a matrix, as a matrix of its own (phi3's fused tensors). */
static struct elm_tensor rows_of(const struct elm_tensor *t, int64_t row0, int64_t rows)
{
    return (struct elm_tensor){.type = t->type,
                               .ne0 = t->ne0,
                               .ne1 = rows,
                               .data = (const char *)t->data +
                                       (size_t)row0 * elm_row_bytes(t->type, t->ne0)};
}

/* The attention projections of decoder layer i: separate Q, K, V, or phi3's fused QKV. */
static int load_attn(struct loader *L, int i, struct elm_layer *l)
{
    const struct elm_hparams *hp = &L->m->hp;
    int64_t E = hp->n_embd, qdim = (int64_t)l->n_head * hp->head_dim;
    int64_t kvdim = (int64_t)l->n_head_kv * hp->head_dim;
    bool bias = hp->arch == ELM_ARCH_QWEN2;
    char n[96];
    int rc;
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", i, s), n)
    if (hp->arch == ELM_ARCH_PHI3) {
        struct elm_tensor qkv;
        if ((rc = get_matrix(L, NAME("attn_qkv.weight"), E, qdim + 2 * kvdim, true, &qkv)))
            return rc;
        l->wq = rows_of(&qkv, 0, qdim);
        l->wk = rows_of(&qkv, qdim, kvdim);
        l->wv = rows_of(&qkv, qdim + kvdim, kvdim);
    } else if ((rc = get_matrix(L, NAME("attn_q.weight"), E, qdim, true, &l->wq)) ||
               (rc = get_matrix(L, NAME("attn_k.weight"), E, kvdim, true, &l->wk)) ||
               (rc = get_matrix(L, NAME("attn_v.weight"), E, kvdim, true, &l->wv))) {
        return rc;
    }
    if ((rc = get_matrix(L, NAME("attn_output.weight"), qdim, E, true, &l->wo)) ||
        (rc = get_vector(L, NAME("attn_q.bias"), qdim, bias, &l->bq)) ||
        (rc = get_vector(L, NAME("attn_k.bias"), kvdim, bias, &l->bk)) ||
        (rc = get_vector(L, NAME("attn_v.bias"), kvdim, bias, &l->bv)))
        return rc;
#undef NAME
    return 0;
}

/* The feed-forward of decoder layer i: gate, up, down, or phi3's fused gate|up. */
static int load_ffn(struct loader *L, int i, struct elm_layer *l)
{
    const struct elm_hparams *hp = &L->m->hp;
    int64_t E = hp->n_embd, ff = l->n_ff;
    char n[96];
    int rc;
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", i, s), n)
    if (hp->arch == ELM_ARCH_PHI3) {
        struct elm_tensor gu;
        if ((rc = get_matrix(L, NAME("ffn_up.weight"), E, 2 * ff, true, &gu)))
            return rc;
        l->w_gate = rows_of(&gu, 0, ff);
        l->w_up = rows_of(&gu, ff, ff);
    } else if ((rc = get_matrix(L, NAME("ffn_gate.weight"), E, ff, true, &l->w_gate)) ||
               (rc = get_matrix(L, NAME("ffn_up.weight"), E, ff, true, &l->w_up))) {
        return rc;
    }
    rc = get_matrix(L, NAME("ffn_down.weight"), ff, E, true, &l->w_down);
#undef NAME
    return rc;
}

static int load_decoder_layer(struct loader *L, int i, struct elm_layer *l)
{
    const struct elm_hparams *hp = &L->m->hp;
    int64_t E = hp->n_embd;
    bool post = hp->arch == ELM_ARCH_GEMMA2;
    char n[96];
    int rc;
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", i, s), n)
    if ((rc = get_vector(L, NAME("attn_norm.weight"), E, true, &l->attn_norm)) ||
        (rc = load_attn(L, i, l)) ||
        (rc = get_vector(L, NAME("post_attention_norm.weight"), E, post, &l->attn_post_norm)) ||
        (rc = get_vector(L, NAME("ffn_norm.weight"), E, true, &l->ffn_norm)) ||
        (rc = load_ffn(L, i, l)) ||
        (rc = get_vector(L, NAME("post_ffw_norm.weight"), E, post, &l->ffn_post_norm)))
        return rc;
#undef NAME
    return 0;
}

static int load_bert_layer(struct loader *L, int i, struct elm_layer *l)
{
    const struct elm_hparams *hp = &L->m->hp;
    int64_t E = hp->n_embd, ff = hp->n_ff, qdim = (int64_t)hp->n_head * hp->head_dim;
    char n[96];
    int rc;
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", i, s), n)
    if ((rc = get_matrix(L, NAME("attn_q.weight"), E, qdim, true, &l->wq)) ||
        (rc = get_vector(L, NAME("attn_q.bias"), qdim, true, &l->bq)) ||
        (rc = get_matrix(L, NAME("attn_k.weight"), E, qdim, true, &l->wk)) ||
        (rc = get_vector(L, NAME("attn_k.bias"), qdim, true, &l->bk)) ||
        (rc = get_matrix(L, NAME("attn_v.weight"), E, qdim, true, &l->wv)) ||
        (rc = get_vector(L, NAME("attn_v.bias"), qdim, true, &l->bv)) ||
        (rc = get_matrix(L, NAME("attn_output.weight"), qdim, E, true, &l->wo)) ||
        (rc = get_vector(L, NAME("attn_output.bias"), E, true, &l->bo)) ||
        (rc = get_vector(L, NAME("attn_output_norm.weight"), E, true, &l->attn_out_norm)) ||
        (rc = get_vector(L, NAME("attn_output_norm.bias"), E, true, &l->attn_out_norm_b)) ||
        (rc = get_matrix(L, NAME("ffn_up.weight"), E, ff, true, &l->w_up)) ||
        (rc = get_vector(L, NAME("ffn_up.bias"), ff, true, &l->b_up)) ||
        (rc = get_matrix(L, NAME("ffn_down.weight"), ff, E, true, &l->w_down)) ||
        (rc = get_vector(L, NAME("ffn_down.bias"), E, true, &l->b_down)) ||
        (rc = get_vector(L, NAME("layer_output_norm.weight"), E, true, &l->out_norm)) ||
        (rc = get_vector(L, NAME("layer_output_norm.bias"), E, true, &l->out_norm_b)))
        return rc;
#undef NAME
    return 0;
}

/* bert's embeddings: token, token type and learned position, then a LayerNorm. */
static int load_bert_embd(struct loader *L)
{
    struct elm_model *m = L->m;
    int64_t E = m->hp.n_embd;
    uint32_t n_types = 2;
    int rc;
    elm_gguf_get_u32(L->g, "tokenizer.ggml.token_type_count", &n_types);
    if (n_types < 1 || n_types > 64)
        return elm_errf(L->err, L->errlen, ELM_EMODEL, "token_type_count %u is invalid", n_types);
    if ((rc = get_matrix(L, "token_types.weight", E, n_types, true, &m->tok_types)) ||
        (rc = get_matrix(L, "position_embd.weight", E, m->hp.n_ctx_train, true, &m->pos_embd)) ||
        (rc = get_vector(L, "token_embd_norm.weight", E, true, &m->tok_norm)) ||
        (rc = get_vector(L, "token_embd_norm.bias", E, true, &m->tok_norm_b)))
        return rc;
    return 0;
}

static int load_tensors(struct loader *L)
{
    struct elm_model *m = L->m;
    const struct elm_hparams *hp = &m->hp;
    const bool bert = hp->arch == ELM_ARCH_BERT;
    int64_t E = hp->n_embd;
    int rc;

    if ((rc = get_matrix(L, "token_embd.weight", E, hp->n_vocab, true, &m->tok_embd)))
        return rc;
    if (bert) {
        if ((rc = load_bert_embd(L)))
            return rc;
    } else if ((rc = get_vector(L, "output_norm.weight", E, true, &m->output_norm)) ||
               (rc = get_matrix(L, "output.weight", E, hp->n_vocab, false, &m->output)) ||
               (rc = get_vector(L, "rope_freqs.weight", hp->n_rot / 2, false, &m->rope_freqs))) {
        return rc;
    }
    /* Phi-3 128k files scale RoPE per dimension with these (LongRoPE); elm does not yet */
    if (elm_gguf_find_tensor(L->g, "rope_factors_long.weight"))
        return elm_errf(L->err, L->errlen, ELM_EUNSUPPORTED,
                        "LongRoPE (rope_factors_long/short, Phi-3 128k) is not supported");
    if (!bert && !m->output.data)
        m->output = m->tok_embd; /* tied embeddings (qwen2, gemma2, Llama 3.2) */

    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers)
        return elm_errf(L->err, L->errlen, -ENOMEM, "out of memory");
    const char *arch = elm_arch_name(hp->arch);
    for (int i = 0; i < hp->n_layer; i++) {
        struct elm_layer *l = &m->layers[i];
        /* read_hparams checked every layer's widths; the tensors must match them */
        if ((rc = arch_dim(L->g, arch, "feed_forward_length", hp->n_layer, i, -1, &l->n_ff,
                           L->err, L->errlen)) ||
            (rc = arch_dim(L->g, arch, "attention.head_count", hp->n_layer, i, -1, &l->n_head,
                           L->err, L->errlen)) ||
            (rc = arch_dim(L->g, arch, "attention.head_count_kv", hp->n_layer, i, l->n_head,
                           &l->n_head_kv, L->err, L->errlen)))
            return rc;
        if (bert) /* read_bert: no grouped heads */
            l->n_head_kv = l->n_head;
        rc = bert ? load_bert_layer(L, i, &m->layers[i]) : load_decoder_layer(L, i, &m->layers[i]);
        if (rc)
            return rc;
    }
    return 0;
}

/* The tokenizer, or (vocab_optional) none when elm cannot read it yet; n_vocab from the
 * tokenizer, checked against <arch>.vocab_size, or from token_embd without one. */
static int load_vocab(struct elm_model *m, const struct elm_gguf *g,
                      const struct elm_model_params *p, char *err, size_t errlen)
{
    int rc = elm_vocab_load(g, &m->vocab, err, errlen);
    if (rc == ELM_EUNSUPPORTED && p && p->vocab_optional) {
        m->vocab = NULL;
        const struct elm_gguf_tensor *t = elm_gguf_find_tensor(g, "token_embd.weight");
        if (!t || t->n_dims != 2 || t->ne[1] <= 0 || t->ne[1] > MAX_DIM)
            return rc; /* the message stays the tokenizer's */
        m->hp.n_vocab = (int32_t)t->ne[1];
        if (errlen)
            err[0] = 0;
        return 0;
    }
    if (rc)
        return rc;
    int32_t nv = elm_vocab_size(m->vocab);
    char key[96];
    snprintf(key, sizeof key, "%s.vocab_size", elm_arch_name(m->hp.arch));
    uint32_t v;
    m->hp.n_vocab = elm_gguf_get_u32(g, key, &v) == 0 ? (int32_t)v : nv;
    if (m->hp.n_vocab != nv) {
        rc = elm_errf(err, errlen, ELM_EMODEL, "'%s' is %d but the tokenizer has %d tokens", key,
                      m->hp.n_vocab, nv);
        elm_vocab_destroy(&m->vocab);
        return rc;
    }
    return 0;
}

/* Gives the pages wholly inside [p, p + n) of g's file mapping back to the page cache: after a
 * copy packed from them they are read again only by the pruner and the quantizer, which fault
 * them in again, the same bytes (the mapping is private and read-only). Without it the process
 * held the file's pages beside the copy, twice the weights. Nothing for a model over a buffer
 * (elm_gguf_parse), whose pages are its caller's. */
static void drop_source(const struct elm_gguf *g, const void *p, size_t n)
{
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t lo = ((uintptr_t)p + page - 1) & ~(page - 1),
                    hi = ((uintptr_t)p + n) & ~(page - 1);
    if (g->map && hi > lo)
        (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* Every matmul operand of m rewritten in the layout m's kernels multiply fastest; not the
 * embeddings, which are read by row, nor the output when it is the embedding. In place when
 * in_place (the loader's copy); else into one region of m's own (g's mapping is read-only, and
 * its bytes are what the pruner and the quantizer copy), on transparent huge pages as elmd's
 * copy is: the avx512 8-token pass of tinyllama q4_0 took 15 % less than over a malloc'ed copy
 * per matrix, and elmctl --local started in 0.27 s against 0.45 (docs/kernels-perf.md, s24). */
static int pack_operands(struct elm_model *m, struct elm_gguf *g, bool in_place, char *err,
                         size_t errlen)
{
    enum { PER_LAYER = 7 };
    const size_t cap = (size_t)m->hp.n_layer * PER_LAYER + 1;
    struct elm_tensor **ops = malloc(cap * sizeof *ops);
    size_t *bytes = malloc(cap * sizeof *bytes);
    int rc = ops && bytes ? 0 : -ENOMEM, n = 0;
    if (!rc && m->output.data != m->tok_embd.data)
        ops[n++] = &m->output;
    for (int32_t l = 0; l < m->hp.n_layer && !rc; l++) {
        struct elm_layer *ly = &m->layers[l];
        struct elm_tensor *lops[] = {&ly->wq,     &ly->wk,   &ly->wv,    &ly->wo,
                                     &ly->w_gate, &ly->w_up, &ly->w_down};
        _Static_assert(sizeof lops / sizeof *lops == PER_LAYER, "PER_LAYER counts them");
        for (int i = 0; i < PER_LAYER; i++)
            ops[n++] = lops[i];
    }
    /* bytes[i]: ops[i] packed, 0 when it stays as it is (no data, a layout of rows, or data a
     * view before it packs: a second pass would scramble it); the copy puts each on a cache
     * line, as the kernels' loads assume */
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const struct elm_tensor *T = ops[i];
        bytes[i] = T->data && elm_matmul_layout(m->k, T->type) != ELM_LAYOUT_ROWS
                       ? elm_row_bytes(T->type, T->ne0) * (size_t)T->ne1
                       : 0;
        for (int k = 0; k < i && bytes[i]; k++)
            if (bytes[k] && ops[k]->data == T->data)
                bytes[i] = 0;
        total += (bytes[i] + 63) & ~(size_t)63;
    }
    if (!rc && total && !in_place)
        rc = elm_region_map(&m->packed, total, ELM_HUGE_THP, NULL, 0);
    uint8_t *next = m->packed.base;
    for (int i = 0; i < n && !rc; i++) {
        struct elm_tensor *T = ops[i];
        if (!bytes[i])
            continue;
        const void *src = T->data;
        void *dst = in_place ? (void *)src : next;
        const enum elm_layout layout = elm_matmul_layout(m->k, T->type);
        if ((rc = elm_pack_weights(layout, T->type, dst, src, T->ne0, T->ne1)))
            break;
        if (!in_place)
            drop_source(g, src, bytes[i]);
        next += (bytes[i] + 63) & ~(size_t)63;
        T->data = dst;
        T->layout = layout;
    }
    free(ops);
    free(bytes);
    return rc ? elm_errf(err, errlen, rc, "packing the weights: %s", strerror(-rc)) : 0;
}

int elm_model_create(struct elm_gguf *g, void *data, const struct elm_model_params *p,
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
    if (p && p->order != ELM_ORDER_AVX512) {
        if (p->order != ELM_ORDER_AVX2) {
            rc = elm_errf(err, errlen, -EINVAL, "unknown summation order %d", (int)p->order);
            goto fail_model;
        }
        elm_kernels_with_order(&m->k_order, m->k, p->order);
        m->k = &m->k_order;
    }
    m->n_threads = p && p->n_threads > 0 ? p->n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (m->n_threads < 1)
        m->n_threads = 1;

    if ((rc = read_hparams(g, &m->hp, err, errlen)))
        goto fail_model;
    if ((rc = load_vocab(m, g, p, err, errlen)))
        goto fail_model;

    struct loader L = {.m = m,
                       .g = g,
                       .data = data ? data : g->base + g->data_offset,
                       .offsets = data && p ? p->tensor_offsets : NULL,
                       .err = err,
                       .errlen = errlen};
    if ((rc = load_tensors(&L)) || (rc = pack_operands(m, g, data != NULL, err, errlen)))
        goto fail_tensors;
    m->gguf = g;
    *out = m;
    return 0;

fail_tensors:
    for (int i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    elm_region_unmap(&m->packed);
    free(m->layers);
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

int elm_model_check(const struct elm_gguf *g, char *err, size_t errlen)
{
    struct elm_hparams hp;
    if (errlen)
        err[0] = 0;
    return read_hparams(g, &hp, err, errlen);
}

int elm_model_used_tensors(const struct elm_gguf *g, bool *used, char *err, size_t errlen)
{
    if (errlen)
        err[0] = 0;
    struct elm_model *m = calloc(1, sizeof *m);
    if (!m)
        return elm_errf(err, errlen, -ENOMEM, "out of memory");
    int rc = read_hparams(g, &m->hp, err, errlen);
    /* The tokenizer is built later, on the copy; its size is checked against token_embd then.
     * Here the embedding's own row count stands in for it. */
    const struct elm_gguf_tensor *te = elm_gguf_find_tensor(g, "token_embd.weight");
    if (rc == 0 && (!te || te->ne[1] <= 0 || te->ne[1] > MAX_DIM))
        rc = elm_errf(err, errlen, ELM_EMODEL, "missing or malformed tensor 'token_embd.weight'");
    if (rc == 0) {
        m->hp.n_vocab = (int32_t)te->ne[1];
        memset(used, 0, (size_t)g->n_tensors * sizeof *used);
        struct loader L = {.m = m,
                           .g = g,
                           .data = g->base + g->data_offset,
                           .used = used,
                           .err = err,
                           .errlen = errlen};
        rc = load_tensors(&L);
    }
    free(m->layers);
    free(m);
    return rc;
}

void elm_model_destroy(struct elm_model **pm)
{
    if (!pm || !*pm)
        return;
    struct elm_model *m = *pm;
    for (int i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    elm_region_unmap(&m->packed);
    free(m->layers);
    elm_vocab_destroy(&m->vocab);
    elm_gguf_destroy(&m->gguf);
    free(m);
    *pm = NULL;
}
