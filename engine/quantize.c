/* quantize.c — see quantize.h. Each tensor is converted row by row at write time (the writer's
 * fill callback), in parallel over rows, so memory holds one output tensor at a time. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/errmsg.h"
#include "elm/status.h"
#include "engine/gguf.h"
#include "engine/gguf_writer.h"
#include "engine/quantize.h"
#include "kernels/kernels.h"

enum mix { MIX_PLAIN, MIX_K_M };

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
    {"q5_k", ELM_TYPE_Q5_K, 17, MIX_K_M},
};

const char *elm_quantize_presets(void)
{
    return "f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q6_k q4_k_m (= q4_k) q5_k_m (= q5_k)";
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

/* The type a tensor gets, following the preset rules described in quantize.h. */
static enum elm_type choose_type(const struct preset *p, bool pure, const struct elm_gguf *g,
                                 const struct elm_gguf_tensor *t, int n_layer, bool has_output)
{
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)(t->name.len < 255 ? t->name.len : 255),
             t->name.ptr);
    size_t nl = strlen(name);
    if (t->n_dims < 2 || nl < 7 || strcmp(name + nl - 7, ".weight") != 0)
        return ELM_TYPE_F32;
    enum elm_type ty = p->base;
    bool is_float_preset = !elm_type_get(ty)->quantized;
    bool is_output = !strcmp(name, "output.weight") ||
                     (!has_output && !strcmp(name, "token_embd.weight"));
    if (!pure && !is_float_preset) {
        int layer = -1;
        sscanf(name, "blk.%d.", &layer);
        if (is_output && ty != ELM_TYPE_Q8_0)
            ty = t->ne[0] % 256 == 0 ? ELM_TYPE_Q6_K : ELM_TYPE_Q8_0;
        else if (p->mix == MIX_K_M && layer >= 0 &&
                 (strstr(name, ".attn_v.") || strstr(name, ".ffn_down.")) &&
                 use_more_bits(layer, n_layer))
            ty = ELM_TYPE_Q6_K;
    }
    (void)g;
    if (!fits(ty, t->ne[0])) {
        switch (ty) {
        case ELM_TYPE_Q4_K: ty = ELM_TYPE_Q5_0; break;
        case ELM_TYPE_Q5_K: ty = ELM_TYPE_Q5_1; break;
        case ELM_TYPE_Q6_K: ty = ELM_TYPE_Q8_0; break;
        case ELM_TYPE_Q2_K:
        case ELM_TYPE_Q3_K: ty = ELM_TYPE_Q4_0; break;
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
    int n_threads;
    int rc;
};

static void fill(void *ctx, void *dst, uint64_t n_bytes)
{
    struct job *j = ctx;
    size_t in_row = elm_row_bytes(j->in, j->ne0), out_row = elm_row_bytes(j->out, j->ne0);
    (void)n_bytes;
    if (j->in == j->out) {
        memcpy(dst, j->src, in_row * (size_t)j->rows);
        return;
    }
    int failed = 0;
#pragma omp parallel num_threads(j->n_threads) reduction(| : failed)
    {
        float *tmp = malloc((size_t)j->ne0 * sizeof *tmp);
        if (!tmp)
            failed = 1;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < j->rows; r++) {
            if (!tmp)
                continue;
            j->k->to_float[j->in]((const char *)j->src + (size_t)r * in_row, tmp, j->ne0);
            elm_quantize_row(j->out, tmp, (char *)dst + (size_t)r * out_row, j->ne0);
        }
        free(tmp);
    }
    if (failed)
        j->rc = -ENOMEM;
}

int elm_quantize_file(const char *in, const char *out, const char *preset, bool pure,
                      int n_threads, struct elm_quantize_stats *st, char *err, size_t errlen)
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
    struct elm_gguf *g;
    int rc = elm_gguf_open(in, &g, err, errlen);
    if (rc)
        return rc;
    struct elm_gguf_writer *w = elm_gguf_writer_create((uint32_t)g->alignment);
    struct job *jobs = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *jobs);
    struct elm_quantize_stats s = {0};
    if (!w || !jobs) {
        rc = elm_errf(err, errlen, -ENOMEM, "out of memory");
        goto out;
    }
    struct elm_gguf_str arch;
    uint32_t n_layer = 0;
    if (elm_gguf_get_str(g, "general.architecture", &arch) == 0) {
        char key[96];
        snprintf(key, sizeof key, "%.*s.block_count", (int)(arch.len < 64 ? arch.len : 64),
                 arch.ptr);
        elm_gguf_get_u32(g, key, &n_layer);
    }
    bool has_output = elm_gguf_find_tensor(g, "output.weight") != NULL;

    for (uint64_t i = 0; i < g->n_kv && !rc; i++)
        rc = elm_gguf_writer_copy_kv(w, &g->kv[i]);
    if (!rc)
        rc = elm_gguf_writer_set_u32(w, "general.file_type", p->file_type);
    if (!rc && elm_type_get(p->base)->quantized)
        rc = elm_gguf_writer_set_u32(w, "general.quantization_version", 2);
    if (rc) {
        rc = elm_errf(err, errlen, rc, "%s", elm_gguf_writer_error(w));
        goto out;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct elm_gguf_tensor *t = &g->tensors[i];
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
                          .out = choose_type(p, pure, g, t, (int)n_layer, has_output),
                          .ne0 = t->ne[0],
                          .rows = (int64_t)(t->n_elements / (uint64_t)t->ne[0]),
                          .n_threads = n_threads};
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
    free(jobs);
    elm_gguf_writer_destroy(&w);
    elm_gguf_destroy(&g);
    return rc;
}
