/* cli_eval.c — the options, model loading and text tokenizing that elmctl's evaluation commands
 * (perplexity, kld, imatrix, distill-data) share (cli_eval.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_eval.h"
#include "cli/cli_util.h"
#include "elm/status.h"
#include "engine/kv.h"

void eval_opts_default(struct eval_opts *o, long ctx)
{
    *o = (struct eval_opts){.ctx = ctx, .chunks = -1, .kv_type = ELM_TYPE_F16};
}

int eval_opt(struct eval_opts *o, int c, const char *arg)
{
    switch (c) {
    case EV_CTX:
        return cli_int("--ctx", arg, 4, 1 << 20, &o->ctx) ? 1 : -1;
    case EV_CHUNKS:
        return cli_int("--chunks", arg, 1, 1 << 30, &o->chunks) ? 1 : -1;
    case EV_THREADS:
        return cli_int("--threads", arg, 1, 1024, &o->threads) ? 1 : -1;
    case EV_KERNEL:
        o->kernel = arg;
        return 1;
    case EV_ORDER:
        if (!strcmp(arg, "avx512"))
            o->order = ELM_ORDER_AVX512;
        else if (!strcmp(arg, "avx2"))
            o->order = ELM_ORDER_AVX2;
        else
            return cli_usage("--order expects avx512 or avx2, got '%s'", arg), -1;
        return 1;
    case EV_KV_TYPE:
        if (!strcmp(arg, "f16"))
            o->kv_type = ELM_TYPE_F16;
        else if (!strcmp(arg, "f32"))
            o->kv_type = ELM_TYPE_F32;
        else if (!strcmp(arg, "q8_0"))
            o->kv_type = ELM_TYPE_Q8_0;
        else
            return cli_usage("--kv-type expects f16, f32 or q8_0, got '%s'", arg), -1;
        return 1;
    default:
        return 0;
    }
}

int eval_load(const char *path, const struct eval_opts *o, struct elm_model **m)
{
    struct elm_model_params mp = {
        .n_threads = (int)o->threads, .kernel = o->kernel, .order = o->order};
    char err[512] = "";
    int rc = elm_model_load(path, &mp, m, err, sizeof err);
    if (rc)
        return cli_fail_file(path, rc, err);
    if (elm_model_is_embedding(*m)) {
        elm_model_destroy(m);
        return cli_fail("%s: an embedding model has no logits to evaluate", path);
    }
    return 0;
}

int eval_tokens(const struct elm_model *m, const char *path, int32_t **ids, int32_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return cli_fail_file(path, -errno, "");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? 2 * cap : 1 << 16;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return cli_fail("out of memory reading %s", path);
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    const bool bad = ferror(f);
    fclose(f);
    int rc = bad ? -EIO : elm_eval_tokenize(m, buf, len, ids, n);
    free(buf);
    if (rc)
        return cli_fail_file(path, rc, "");
    return 0;
}

int eval_chunks(const struct eval_opts *o, int32_t n_tok, int32_t *n_chunk)
{
    if (n_tok < 2 * o->ctx)
        return cli_fail("the text has %d tokens; a context of %ld needs at least %ld", n_tok,
                        o->ctx, 2 * o->ctx);
    int32_t n = (int32_t)(n_tok / o->ctx);
    *n_chunk = o->chunks > 0 && o->chunks < n ? (int32_t)o->chunks : n;
    return 0;
}

int eval_runner(const struct elm_model *m, const struct eval_opts *o, int32_t n_ctx,
                struct elm_eval **e)
{
    char err[256];
    int rc = elm_kv_type_check(m, o->kv_type, err, sizeof err);
    if (rc)
        return cli_fail("--kv-type: %s", err);
    if ((rc = elm_eval_create(m, n_ctx, o->kv_type, e)))
        return cli_fail("cannot set up a context of %d: %s", n_ctx, elm_strerror(rc));
    return 0;
}
