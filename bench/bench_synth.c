/* bench_synth.c — synthetic GGUF models of named shapes with random weights, so that benchmark
 * figures at realistic sizes can be reproduced anywhere without downloads.
 *
 * A spec is SHAPE:PRESET, e.g. "tinyllama-1.1b:q4_0" or "small-110m:q4_k_m". The weights are
 * drawn from N(0, 0.02) (norms 1), written as F32 rows and quantized with elm's own quantizer
 * presets, so the type mix is what `elmctl quantize` would write. Files are cached under
 * $ELM_BENCH_CACHE (default /tmp/elm-bench-cache) by spec, because quantizing a 1.1B model
 * takes a while and the weights are the same every time (fixed seed).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/bench.h"
#include "engine/gguf_writer.h"
#include "engine/quantize.h"
#include "kernels/kernels.h"

struct shape {
    const char *name;
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab;
};

static const struct shape shapes[] = {
    {"tinyllama-1.1b", 2048, 22, 32, 4, 5632, 32000},
    {"small-110m", 768, 12, 12, 12, 2048, 32000},
    {"tiny-5m", 256, 4, 4, 4, 768, 32000}, /* for --quick runs in the test suite */
};

const char *bench_synth_shapes(void)
{
    return "tinyllama-1.1b small-110m tiny-5m";
}

struct fill_ctx {
    uint64_t seed;
    float std;   /* 0: all ones (norm weights) */
    int64_t n;   /* elements */
};

/* Normal deviates by Box-Muller over a 64-bit LCG: fast and reproducible. */
static void fill_f32(void *ctx, void *dst, uint64_t n_bytes)
{
    struct fill_ctx *c = ctx;
    float *f = dst;
    (void)n_bytes;
    if (c->std == 0) {
        for (int64_t i = 0; i < c->n; i++)
            f[i] = 1.0f;
        return;
    }
    uint64_t s = c->seed * 0x9e3779b97f4a7c15ull + 1;
    for (int64_t i = 0; i + 1 < c->n + 1; i += 2) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double u1 = ((s >> 11) + 1) * (1.0 / 9007199254740993.0);
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        double u2 = (s >> 11) * (1.0 / 9007199254740992.0);
        double r = sqrt(-2 * log(u1)) * c->std;
        f[i] = (float)(r * cos(2 * M_PI * u2));
        if (i + 1 < c->n)
            f[i + 1] = (float)(r * sin(2 * M_PI * u2));
    }
}

static int add_tensor(struct elm_gguf_writer *w, struct fill_ctx *ctxs, int *nc, const char *name,
                      int64_t ne0, int64_t ne1, float std)
{
    struct fill_ctx *c = &ctxs[*nc];
    *c = (struct fill_ctx){.seed = (uint64_t)*nc + 1, .std = std, .n = ne0 * ne1};
    (*nc)++;
    int64_t ne[2] = {ne0, ne1};
    return elm_gguf_writer_add_tensor_fill(w, name, ELM_TYPE_F32, ne1 > 1 ? 2 : 1, ne, fill_f32,
                                           c);
}

static int set_vocab(struct elm_gguf_writer *w, int n_vocab)
{
    char **toks = calloc((size_t)n_vocab, sizeof *toks);
    float *scores = malloc((size_t)n_vocab * sizeof *scores);
    int32_t *types = malloc((size_t)n_vocab * sizeof *types);
    int rc = -ENOMEM;
    if (!toks || !scores || !types)
        goto out;
    for (int i = 0; i < n_vocab; i++) {
        char buf[32];
        if (i == 0)
            snprintf(buf, sizeof buf, "<unk>");
        else if (i == 1)
            snprintf(buf, sizeof buf, "<s>");
        else if (i == 2)
            snprintf(buf, sizeof buf, "</s>");
        else if (i < 259)
            snprintf(buf, sizeof buf, "<0x%02X>", i - 3);
        else
            snprintf(buf, sizeof buf, "\xe2\x96\x81t%d", i); /* "▁t<i>": unique pieces */
        toks[i] = strdup(buf);
        if (!toks[i])
            goto out;
        scores[i] = -(float)i;
        types[i] = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1;
    }
    if ((rc = elm_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama")) ||
        (rc = elm_gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", (const char *const *)toks,
                                          (uint64_t)n_vocab)) ||
        (rc = elm_gguf_writer_set_arr(w, "tokenizer.ggml.scores", 6, (uint64_t)n_vocab,
                                      scores)) ||
        (rc = elm_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", 5, (uint64_t)n_vocab,
                                      types)) ||
        (rc = elm_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1)) ||
        (rc = elm_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2)) ||
        (rc = elm_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0)))
        goto out;
out:
    for (int i = 0; toks && i < n_vocab; i++)
        free(toks[i]);
    free(toks);
    free(scores);
    free(types);
    return rc;
}

/* Writes the F32 model of shape s to path. */
static int write_f32(const struct shape *s, const char *path, char *err, size_t errlen)
{
    struct elm_gguf_writer *w = elm_gguf_writer_create(32);
    int n_ctx = 3 + 9 * s->n_layer;
    struct fill_ctx *ctxs = calloc((size_t)n_ctx, sizeof *ctxs);
    int rc = -ENOMEM, nc = 0;
    if (!w || !ctxs)
        goto out;
    if ((rc = elm_gguf_writer_set_str(w, "general.architecture", "llama")) ||
        (rc = elm_gguf_writer_set_str(w, "general.name", s->name)) ||
        (rc = elm_gguf_writer_set_u32(w, "llama.context_length", 4096)) ||
        (rc = elm_gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)s->n_embd)) ||
        (rc = elm_gguf_writer_set_u32(w, "llama.block_count", (uint32_t)s->n_layer)) ||
        (rc = elm_gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)s->n_ff)) ||
        (rc = elm_gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)s->n_head)) ||
        (rc = elm_gguf_writer_set_u32(w, "llama.attention.head_count_kv",
                                      (uint32_t)s->n_head_kv)) ||
        (rc = elm_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f)) ||
        (rc = set_vocab(w, s->n_vocab)))
        goto out;
    int64_t E = s->n_embd, hd = s->n_embd / s->n_head, kv = hd * s->n_head_kv;
    if ((rc = add_tensor(w, ctxs, &nc, "token_embd.weight", E, s->n_vocab, 0.02f)) ||
        (rc = add_tensor(w, ctxs, &nc, "output_norm.weight", E, 1, 0)) ||
        (rc = add_tensor(w, ctxs, &nc, "output.weight", E, s->n_vocab, 0.02f)))
        goto out;
    for (int l = 0; l < s->n_layer && !rc; l++) {
        char n[9][64];
        const char *names[9] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"};
        int64_t dims[9][2] = {{E, 1}, {E, E}, {E, kv}, {E, kv}, {E, E},
                              {E, 1}, {E, s->n_ff}, {E, s->n_ff}, {s->n_ff, E}};
        for (int i = 0; i < 9 && !rc; i++) {
            snprintf(n[i], sizeof n[i], "blk.%d.%s.weight", l, names[i]);
            rc = add_tensor(w, ctxs, &nc, n[i], dims[i][0], dims[i][1],
                            dims[i][1] == 1 ? 0 : 0.02f);
        }
    }
    if (!rc)
        rc = elm_gguf_writer_write(w, path, err, errlen);
    else
        snprintf(err, errlen, "%s", elm_gguf_writer_error(w));
out:
    elm_gguf_writer_destroy(&w);
    free(ctxs);
    return rc;
}

int bench_synth(const char *spec, char *path, size_t pathlen, char *err, size_t errlen)
{
    char shape[64], preset[32];
    const char *colon = strchr(spec, ':');
    if (!colon || colon - spec >= (long)sizeof shape || strlen(colon + 1) >= sizeof preset) {
        snprintf(err, errlen, "synthetic model spec '%s' is not SHAPE:TYPE (shapes: %s)", spec,
                 bench_synth_shapes());
        return -EINVAL;
    }
    snprintf(shape, sizeof shape, "%.*s", (int)(colon - spec), spec);
    snprintf(preset, sizeof preset, "%s", colon + 1);
    const struct shape *s = NULL;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        if (!strcmp(shape, shapes[i].name))
            s = &shapes[i];
    if (!s) {
        snprintf(err, errlen, "unknown shape '%s' (one of: %s)", shape, bench_synth_shapes());
        return -EINVAL;
    }
    const char *dir = getenv("ELM_BENCH_CACHE");
    if (!dir || !*dir)
        dir = "/tmp/elm-bench-cache";
    if (mkdir(dir, 0700) && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return -errno;
    }
    char f32[512];
    snprintf(f32, sizeof f32, "%s/%s-f32.gguf", dir, shape);
    snprintf(path, pathlen, "%s/%s-%s.gguf", dir, shape, preset);
    if (access(path, R_OK) == 0)
        return 0;
    int rc = 0;
    if (access(f32, R_OK) != 0) {
        bench_progress("writing synthetic %s (F32)...", shape);
        rc = write_f32(s, f32, err, errlen);
    }
    if (!rc && strcmp(preset, "f32") != 0) {
        bench_progress("quantizing synthetic %s to %s...", shape, preset);
        rc = elm_quantize_file(f32, path, preset, false, 0, NULL, err, errlen);
    }
    bench_progress(NULL);
    return rc;
}
