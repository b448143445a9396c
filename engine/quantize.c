/* quantize.c — see quantize.h. Each tensor is converted row by row at write time (the writer's
 * fill callback), in parallel over rows, so memory holds one output tensor at a time. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/errmsg.h"
#include "common/pool.h"
#include "elm/status.h"
#include "engine/gguf.h"
#include "engine/gguf_writer.h"
#include "engine/imatrix.h"
#include "engine/quantize.h"
#include "kernels/kernels.h"

/* llama.cpp's per-tensor rules differ by family of presets (llama_tensor_get_type). */
enum mix { MIX_PLAIN, MIX_K_M, MIX_Q3_K_M, MIX_Q2_K, MIX_IQ4 };

struct preset {
    const char *name;
    enum elm_type base;
    uint32_t file_type; /* llama.cpp's general.file_type value */
    enum mix mix;
};

static const struct preset presets[] = {
    {"f32", ELM_TYPE_F32, 0, MIX_PLAIN},      {"f16", ELM_TYPE_F16, 1, MIX_PLAIN},
    {"bf16", ELM_TYPE_BF16, 32, MIX_PLAIN},   {"q8_0", ELM_TYPE_Q8_0, 7, MIX_PLAIN},
    {"q4_0", ELM_TYPE_Q4_0, 2, MIX_PLAIN},    {"q4_1", ELM_TYPE_Q4_1, 3, MIX_PLAIN},
    {"q5_0", ELM_TYPE_Q5_0, 8, MIX_PLAIN},    {"q5_1", ELM_TYPE_Q5_1, 9, MIX_PLAIN},
    {"q6_k", ELM_TYPE_Q6_K, 18, MIX_PLAIN},   {"q4_k_m", ELM_TYPE_Q4_K, 15, MIX_K_M},
    {"q4_k", ELM_TYPE_Q4_K, 15, MIX_K_M},     {"q5_k_m", ELM_TYPE_Q5_K, 17, MIX_K_M},
    {"q5_k", ELM_TYPE_Q5_K, 17, MIX_K_M},     {"q3_k_m", ELM_TYPE_Q3_K, 12, MIX_Q3_K_M},
    {"q3_k", ELM_TYPE_Q3_K, 12, MIX_Q3_K_M},  {"q2_k", ELM_TYPE_Q2_K, 10, MIX_Q2_K},
    {"iq4_nl", ELM_TYPE_IQ4_NL, 25, MIX_IQ4}, {"iq4_xs", ELM_TYPE_IQ4_XS, 30, MIX_IQ4},
};

const char *elm_quantize_presets(void)
{
    return "f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q6_k q4_k_m (= q4_k) q5_k_m (= q5_k) "
           "q3_k_m (= q3_k) q2_k iq4_nl iq4_xs";
}

static const struct preset *find_preset(const char *name)
{
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++)
        if (!strcasecmp(name, presets[i].name))
            return &presets[i];
    return NULL;
}

bool elm_quantize_preset_known(const char *preset)
{
    return find_preset(preset) != NULL;
}

const char *elm_quantize_file_type_name(uint32_t file_type)
{
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++)
        if (presets[i].file_type == file_type)
            return presets[i].name;
    return NULL;
}

/* llama.cpp's "use more bits" layers: the first and last eighth, and every third in between. */
static bool use_more_bits(int i, int n)
{
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

static bool fits(enum elm_type t, int64_t ne0)
{
    return ne0 % elm_type_get(t)->block == 0;
}

/* What the type rules look at besides the tensor itself. */
struct model_info {
    int n_layer;
    int n_gqa; /* attention heads per KV head (1 when the file does not say) */
    bool has_output;
    bool has_imatrix;
};

/* The preset's choice for a tensor whose name contains one of llama.cpp's role names, before
 * the block-size fallback. */
static enum elm_type mix_type(const struct preset *p, const struct model_info *mi,
                              const char *name, int layer, enum elm_type ty)
{
    const int n = mi->n_layer;
    if (strstr(name, "attn_v.weight")) {
        if (p->mix == MIX_Q2_K)
            return mi->n_gqa >= 4 ? ELM_TYPE_Q4_K : ELM_TYPE_Q3_K;
        if (p->mix == MIX_Q3_K_M)
            return layer < 2 ? ELM_TYPE_Q5_K : ELM_TYPE_Q4_K;
        if (p->mix == MIX_IQ4 && mi->n_gqa >= 4)
            return ELM_TYPE_Q5_K;
        if (p->mix == MIX_K_M && use_more_bits(layer, n))
            return ELM_TYPE_Q6_K;
    } else if (strstr(name, "ffn_down")) {
        if (p->mix == MIX_Q2_K)
            return ELM_TYPE_Q3_K;
        if (p->mix == MIX_Q3_K_M)
            return layer < n / 16 ? ELM_TYPE_Q5_K : ELM_TYPE_Q4_K;
        if (p->mix == MIX_K_M && use_more_bits(layer, n))
            return ELM_TYPE_Q6_K;
        if (p->mix == MIX_IQ4 && !mi->has_imatrix && layer < n / 8)
            return ELM_TYPE_Q5_K;
        /* with an imatrix llama.cpp guards the first FFN-down layers of Q4_0/Q5_0 */
        if (mi->has_imatrix && layer < n / 8 && p->base == ELM_TYPE_Q4_0)
            return ELM_TYPE_Q4_1;
        if (mi->has_imatrix && layer < n / 8 && p->base == ELM_TYPE_Q5_0)
            return ELM_TYPE_Q5_1;
    } else if (strstr(name, "attn_output.weight")) {
        if (p->mix == MIX_Q2_K)
            return ELM_TYPE_Q3_K;
        if (p->mix == MIX_Q3_K_M)
            return ELM_TYPE_Q4_K;
    } else if (strstr(name, "attn_qkv.weight")) {
        if (p->mix == MIX_Q3_K_M)
            return ELM_TYPE_Q4_K;
        if (p->mix == MIX_K_M)
            return p->base == ELM_TYPE_Q4_K ? ELM_TYPE_Q5_K : ELM_TYPE_Q6_K;
    }
    return ty;
}

/* The type a tensor gets, following the preset rules described in quantize.h. */
static enum elm_type choose_type(const struct preset *p, bool pure, const struct model_info *mi,
                                 const struct elm_gguf_tensor *t)
{
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)(t->name.len < 255 ? t->name.len : 255),
             t->name.ptr);
    size_t nl = strlen(name);
    if (t->n_dims < 2 || nl < 7 || strcmp(name + nl - 7, ".weight") != 0)
        return ELM_TYPE_F32;
    /* the weights llama-quantize never quantizes: norms, MoE gates, BERT's position and token
     * type embeddings, Mamba's conv, RWKV's time-mix, T5's relative position bias */
    static const char *const keep[] = {"_norm.weight",          "ffn_gate_inp.weight",
                                       "ssm_conv1d.weight",     "time_mix_first.weight",
                                       "time_mix_w1.weight",    "time_mix_w2.weight",
                                       "time_mix_decay_w1.weight", "time_mix_decay_w2.weight",
                                       "time_mix_lerp_fused.weight", "attn_rel_b.weight"};
    for (size_t i = 0; i < sizeof keep / sizeof *keep; i++)
        if (strstr(name, keep[i]))
            return ELM_TYPE_F32;
    if (!strcmp(name, "position_embd.weight") || !strcmp(name, "token_types.weight"))
        return ELM_TYPE_F32;
    enum elm_type ty = p->base;
    bool is_float_preset = !elm_type_get(ty)->quantized;
    bool is_output = !strcmp(name, "output.weight") ||
                     (!mi->has_output && !strcmp(name, "token_embd.weight"));
    if (!pure && !is_float_preset) {
        int layer = -1;
        sscanf(name, "blk.%d.", &layer);
        if (is_output && ty != ELM_TYPE_Q8_0)
            ty = t->ne[0] % 256 == 0 ? ELM_TYPE_Q6_K : ELM_TYPE_Q8_0;
        else if (!is_output && layer >= 0)
            ty = mix_type(p, mi, name, layer, ty);
    }
    if (!fits(ty, t->ne[0])) {
        switch (ty) {
        case ELM_TYPE_Q4_K: ty = ELM_TYPE_Q5_0; break;
        case ELM_TYPE_Q5_K: ty = ELM_TYPE_Q5_1; break;
        case ELM_TYPE_Q6_K: ty = ELM_TYPE_Q8_0; break;
        case ELM_TYPE_Q2_K:
        case ELM_TYPE_Q3_K:
        case ELM_TYPE_IQ4_XS: ty = ELM_TYPE_IQ4_NL; break;
        default: break;
        }
    }
    return fits(ty, t->ne[0]) ? ty : ELM_TYPE_F32;
}

struct job {
    const struct elm_kernels *k;
    const void *src;
    enum elm_type in, out;
    int64_t ne0, rows;
    int64_t rows_per_slice; /* rows sharing one imatrix slice (ne1; a 3-D tensor has ne2) */
    float *imatrix;         /* owned: [ne0 * slices] importance weights, or NULL */
    int n_threads;
    int rc;
    void *dst;          /* fill(): the tensor's output bytes */
    atomic_bool failed; /* fill(): a thread had no memory */
};

/* Thread me of nth converts rows [rows*me/nth, rows*(me+1)/nth); a row's bytes do not depend on
 * the thread. */
static void fill_part(void *ctx, int me, int nth)
{
    struct job *j = ctx;
    size_t in_row = elm_row_bytes(j->in, j->ne0), out_row = elm_row_bytes(j->out, j->ne0);
    float *tmp = malloc((size_t)j->ne0 * sizeof *tmp);
    if (!tmp) {
        atomic_store(&j->failed, true);
        return;
    }
    for (int64_t r = j->rows * me / nth; r < j->rows * (me + 1) / nth; r++) {
        j->k->to_float[j->in]((const char *)j->src + (size_t)r * in_row, tmp, j->ne0);
        const float *qw =
            j->imatrix ? j->imatrix + (size_t)(r / j->rows_per_slice) * (size_t)j->ne0 : NULL;
        elm_quantize_row_imatrix(j->out, tmp, (char *)j->dst + (size_t)r * out_row, j->ne0, qw);
    }
    free(tmp);
}

static void fill(void *ctx, void *dst, uint64_t n_bytes)
{
    struct job *j = ctx;
    size_t in_row = elm_row_bytes(j->in, j->ne0);
    (void)n_bytes;
    if (j->in == j->out) {
        memcpy(dst, j->src, in_row * (size_t)j->rows);
        return;
    }
    j->dst = dst;
    atomic_init(&j->failed, false);
    elm_pool_run(j->n_threads, fill_part, j);
    if (atomic_load(&j->failed))
        j->rc = -ENOMEM;
}

int elm_quantize_file(const char *in, const char *out, const char *preset, bool pure,
                      int n_threads, struct elm_quantize_stats *st, char *err, size_t errlen)
{
    return elm_quantize_file_imatrix(in, out, preset, pure, NULL, n_threads, st, err, errlen);
}

/* The metadata llama-quantize adds with an importance matrix (its kv overrides, strings cut to
 * 127 bytes as there): where the matrix came from and how much text it saw. */
static int add_imatrix_kv(struct elm_gguf_writer *w, const char *path, const struct elm_imatrix *im)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    int rc = elm_gguf_writer_set_str(w, "quantize.imatrix.file", buf);
    if (!rc && im->dataset && im->dataset[0]) {
        snprintf(buf, sizeof buf, "%s", im->dataset);
        rc = elm_gguf_writer_set_str(w, "quantize.imatrix.dataset", buf);
    }
    if (!rc)
        rc = elm_gguf_writer_set_i32(w, "quantize.imatrix.entries_count", im->n_entries);
    if (!rc && im->last_call > 0)
        rc = elm_gguf_writer_set_i32(w, "quantize.imatrix.chunks_count", im->last_call);
    return rc;
}

/* The importance weights of tensor t (name), as llama-quantize looks them up: by exact name,
 * values / ncall, one slice of ne0 per expert. *out stays NULL when there is no entry, or when
 * token_embd's entry has the wrong size (llama.cpp ignores that one); any other size mismatch
 * or a non-finite value is an error. */
static int tensor_imatrix(const struct elm_imatrix *im, const char *name,
                          const struct elm_gguf_tensor *t, float **out, char *err, size_t errlen)
{
    *out = NULL;
    const struct elm_imatrix_entry *e = im ? elm_imatrix_find(im, name) : NULL;
    if (!e)
        return 0;
    const uint64_t want = t->ne[0] * (t->n_dims > 2 ? t->ne[2] : 1);
    if ((uint64_t)e->nval != want) {
        if (!strcmp(name, "token_embd.weight"))
            return 0;
        return elm_errf(err, errlen, ELM_EFORMAT,
                        "imatrix size %d is different from tensor size %llu for %s", e->nval,
                        (unsigned long long)want, name);
    }
    for (int32_t i = 0; i < e->nval; i++)
        if (!isfinite(e->values[i]))
            return elm_errf(err, errlen, ELM_EFORMAT, "imatrix entry %s has a non-finite value",
                            name);
    float *w = malloc((size_t)e->nval * sizeof *w);
    if (!w)
        return elm_errf(err, errlen, -ENOMEM, "out of memory");
    elm_imatrix_weights(e, w);
    *out = w;
    return 0;
}

/* Keys llama-quantize sets after copying the input's (its gguf_set_* removes a key and appends
 * it): skipped while copying, so that they end up last and in its order. */
static bool set_later(const struct elm_gguf_kv *kv, bool has_imatrix)
{
    static const char *const keys[] = {"general.quantization_version", "general.file_type",
                                       "split.no", "split.count", "split.tensors.count"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (kv->key.len == strlen(keys[i]) && !memcmp(kv->key.ptr, keys[i], kv->key.len))
            return true;
    static const char imat[] = "quantize.imatrix.";
    return has_imatrix && kv->key.len > sizeof imat - 1 &&
           !memcmp(kv->key.ptr, imat, sizeof imat - 1);
}

/* The order llama-quantize writes tensors in (its loader's weight_name_comparer): by block
 * number, tensors outside the blocks (-1) first, then by name. */
static int tensor_layer(const struct elm_gguf_tensor *t)
{
    char name[256];
    int layer = -1;
    snprintf(name, sizeof name, "%.*s", (int)(t->name.len < 255 ? t->name.len : 255),
             t->name.ptr);
    sscanf(name, "blk.%d.", &layer);
    return layer;
}

static int tensor_cmp(const void *pa, const void *pb)
{
    const struct elm_gguf_tensor *a = *(const struct elm_gguf_tensor *const *)pa;
    const struct elm_gguf_tensor *b = *(const struct elm_gguf_tensor *const *)pb;
    int la = tensor_layer(a), lb = tensor_layer(b);
    if (la != lb)
        return la < lb ? -1 : 1;
    size_t n = a->name.len < b->name.len ? a->name.len : b->name.len;
    int c = memcmp(a->name.ptr, b->name.ptr, n);
    return c ? c : (a->name.len > b->name.len) - (a->name.len < b->name.len);
}

int elm_quantize_file_imatrix(const char *in, const char *out, const char *preset, bool pure,
                              const char *imatrix_path, int n_threads,
                              struct elm_quantize_stats *st, char *err, size_t errlen)
{
    if (errlen)
        err[0] = 0;
    const struct preset *p = find_preset(preset);
    if (!p)
        return elm_errf(err, errlen, ELM_EUNSUPPORTED, "unknown type '%s' (one of: %s)", preset,
                    elm_quantize_presets());
    if (n_threads <= 0)
        n_threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    const struct elm_kernels *k = elm_kernels_get("ref");
    struct elm_imatrix *im = NULL;
    if (imatrix_path) {
        int rc = elm_imatrix_read(imatrix_path, &im, err, errlen);
        if (rc)
            return rc;
    }
    struct elm_gguf *g = NULL;
    struct elm_gguf_writer *w = NULL;
    struct job *jobs = NULL;
    const struct elm_gguf_tensor **order = NULL;
    int rc = elm_gguf_open(in, &g, err, errlen);
    if (rc)
        goto out;
    w = elm_gguf_writer_create((uint32_t)g->alignment);
    jobs = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *jobs);
    order = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *order);
    struct elm_quantize_stats s = {0};
    if (!w || !jobs || !order) {
        rc = elm_errf(err, errlen, -ENOMEM, "out of memory");
        goto out;
    }
    struct model_info mi = {.n_gqa = 1,
                            .has_output = elm_gguf_find_tensor(g, "output.weight") != NULL,
                            .has_imatrix = im != NULL && im->n_entries > 0};
    struct elm_gguf_str arch;
    if (elm_gguf_get_str(g, "general.architecture", &arch) == 0) {
        char key[96];
        uint32_t n_layer = 0, n_head = 0, n_head_kv = 0;
        int al = (int)(arch.len < 64 ? arch.len : 64);
        snprintf(key, sizeof key, "%.*s.block_count", al, arch.ptr);
        elm_gguf_get_u32(g, key, &n_layer);
        snprintf(key, sizeof key, "%.*s.attention.head_count", al, arch.ptr);
        elm_gguf_get_u32(g, key, &n_head);
        snprintf(key, sizeof key, "%.*s.attention.head_count_kv", al, arch.ptr);
        if (elm_gguf_get_u32(g, key, &n_head_kv) != 0)
            n_head_kv = n_head;
        mi.n_layer = (int)n_layer;
        if (n_head_kv > 0 && n_head >= n_head_kv)
            mi.n_gqa = (int)(n_head / n_head_kv);
    }

    for (uint64_t i = 0; i < g->n_kv && !rc; i++)
        if (!set_later(&g->kv[i], mi.has_imatrix))
            rc = elm_gguf_writer_copy_kv(w, &g->kv[i]);
    if (!rc)
        rc = elm_gguf_writer_set_u32(w, "general.quantization_version", 2);
    if (!rc)
        rc = elm_gguf_writer_set_u32(w, "general.file_type", p->file_type);
    if (!rc && mi.has_imatrix)
        rc = add_imatrix_kv(w, imatrix_path, im);
    if (rc) {
        rc = elm_errf(err, errlen, rc, "%s", elm_gguf_writer_error(w));
        goto out;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++)
        order[i] = &g->tensors[i];
    qsort(order, g->n_tensors, sizeof *order, tensor_cmp);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct elm_gguf_tensor *t = order[i];
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(t->name.len < 255 ? t->name.len : 255),
                 t->name.ptr);
        const struct elm_type_info *ti = elm_type_get(t->type);
        if (ti->quantized) {
            rc = elm_errf(err, errlen, ELM_EUNSUPPORTED,
                      "tensor '%s' is already %s: elm quantizes from F32, F16 or BF16", name,
                      ti->name);
            goto out;
        }
        struct job *j = &jobs[i];
        *j = (struct job){.k = k,
                          .src = elm_gguf_tensor_data(g, t),
                          .in = (enum elm_type)t->type,
                          .out = choose_type(p, pure, &mi, t),
                          .ne0 = t->ne[0],
                          .rows = (int64_t)(t->n_elements / (uint64_t)t->ne[0]),
                          .rows_per_slice = t->n_dims > 1 ? (int64_t)t->ne[1] : 1,
                          .n_threads = n_threads};
        if (mi.has_imatrix && elm_type_get(j->out)->quantized) {
            rc = tensor_imatrix(im, name, t, &j->imatrix, err, errlen);
            if (rc)
                goto out;
        }
        rc = elm_gguf_writer_add_tensor_fill(w, name, j->out, t->n_dims, t->ne, fill, j);
        if (rc) {
            rc = elm_errf(err, errlen, rc, "%s", elm_gguf_writer_error(w));
            goto out;
        }
        if (elm_type_get(j->out)->quantized)
            s.n_quantized++;
        else
            s.n_kept++;
        s.bytes_in += t->n_bytes;
        s.bytes_out += elm_row_bytes(j->out, j->ne0) * (uint64_t)j->rows;
    }
    rc = elm_gguf_writer_write(w, out, err, errlen);
    for (uint64_t i = 0; i < g->n_tensors && !rc; i++)
        if (jobs[i].rc) {
            rc = elm_errf(err, errlen, jobs[i].rc, "out of memory while quantizing");
            unlink(out);
        }
    if (!rc && st)
        *st = s;
out:
    if (jobs)
        for (uint64_t i = 0; i < g->n_tensors; i++)
            free(jobs[i].imatrix);
    free(jobs);
    free(order);
    elm_gguf_writer_destroy(&w);
    elm_gguf_destroy(&g);
    elm_imatrix_destroy(&im);
    return rc;
}
