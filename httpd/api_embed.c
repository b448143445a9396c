/* api_embed.c — embeddings in both APIs: OpenAI's POST /v1/embeddings, Ollama's /api/embed and
 * its older /api/embeddings. All three send their texts to elmd in one elm_session_embed() call
 * (at most ELM_EMBED_MAX_TEXTS), whose vectors are pooled and L2-normalised as llama.cpp's
 * server does; a model that generates text answers 400 (ELM_EUNSUPPORTED).
 *
 * OpenAI's "encoding_format": "float" (a JSON array) or "base64" (the floats' little-endian
 * bytes, which the official SDKs ask for by default and decode themselves). "dimensions" other
 * than the model's width is refused: elm does not truncate vectors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "httpd/api.h"
#include "httpd/params.h"
#include "httpd/reply.h"

/* The texts of input (a string or an array of 1..ELM_EMBED_MAX_TEXTS strings), borrowed into
 * texts. 0, or -1 with e filled. */
static int parse_input(const json_t *in, const char *key, const char **texts, size_t *n,
                       struct perr *e)
{
    snprintf(e->param, sizeof e->param, "%s", key);
    if (json_is_string(in)) {
        texts[0] = json_string_value(in);
        *n = 1;
        return 0;
    }
    size_t na = json_array_size(in);
    if (!json_is_array(in) || na < 1 || na > ELM_EMBED_MAX_TEXTS) {
        snprintf(e->msg, sizeof e->msg, "%s must be a string or an array of 1 to %d strings", key,
                 ELM_EMBED_MAX_TEXTS);
        return -1;
    }
    for (size_t i = 0; i < na; i++)
        if (!(texts[i] = json_string_value(json_array_get(in, i)))) {
            snprintf(e->msg, sizeof e->msg, "%s[%zu] must be a string (token arrays are not taken)",
                     key, i);
            return -1;
        }
    *n = na;
    return 0;
}

/* The little-endian bytes of v[0..n) in base64. New reference. */
static json_t *base64_floats(const float *v, size_t n)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t nb = n * 4;
    unsigned char *b = malloc(nb + 2);
    char *out = malloc((nb + 2) / 3 * 4 + 1);
    json_t *j = NULL;
    if (b && out) {
        for (size_t i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, &v[i], 4);
            for (int k = 0; k < 4; k++)
                b[i * 4 + k] = (unsigned char)(u >> (8 * k));
        }
        size_t o = 0;
        for (size_t i = 0; i < nb; i += 3) {
            uint32_t w = (uint32_t)b[i] << 16 | (i + 1 < nb ? (uint32_t)b[i + 1] << 8 : 0) |
                         (i + 2 < nb ? b[i + 2] : 0);
            out[o++] = abc[w >> 18 & 63];
            out[o++] = abc[w >> 12 & 63];
            out[o++] = i + 1 < nb ? abc[w >> 6 & 63] : '=';
            out[o++] = i + 2 < nb ? abc[w & 63] : '=';
        }
        j = json_stringn(out, o);
    }
    free(b);
    free(out);
    return j;
}

static json_t *float_array(const float *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_real(v[i]));
    return a;
}

struct embedding {
    float *vecs;
    uint32_t n_embd;
    uint32_t n_tokens[ELM_EMBED_MAX_TEXTS];
    uint32_t n_prompt;   /* the texts' tokens */
    char model[256];     /* the loaded model's id */
    char keep_alive[32]; /* Ollama's, for the session; "": none */
    struct timespec t0;
};

/* Checks the model's name (when given) and embeds the n texts into em; 0, or -1 after
 * replying (*res set). */
static int embed(struct hreq *r, const char *model, const char *const *texts, size_t n,
                 struct embedding *em, enum MHD_Result *res)
{
    struct elm_daemon_status *st = malloc(sizeof *st);
    if (!st) {
        *res = MHD_NO;
        return -1;
    }
    clock_gettime(CLOCK_MONOTONIC, &em->t0);
    int rc = gw_status_cached(&r->h->gw, st, model);
    if (!rc && !st->model_loaded)
        rc = ELM_ENOMODEL;
    if (rc) {
        free(st);
        *res = reply_elm_error(r, rc, NULL);
        return -1;
    }
    gw_model_id(st, em->model, sizeof em->model);
    char dname[GW_NAME_MAX] = ""; /* the resident model's daemon name, "" for the default */
    bool known = !model || gw_model_resolve(st, model, dname, sizeof dname);
    free(st);
    if (!known) {
        *res = reply_error(r, 404, "model", "model '%s' is not resident in elmd", model);
        return -1;
    }
    if (dname[0])
        snprintf(em->model, sizeof em->model, "%s", dname);
    struct gw_gen gen;
    const char *msg;
    struct gw_target t = {dname, 0, em->keep_alive[0] ? em->keep_alive : NULL};
    rc = gw_embed(&r->h->gw, &gen, &t, texts, n, &em->vecs, &em->n_embd, em->n_tokens, &msg);
    if (rc) {
        *res = reply_elm_error(r, rc, msg);
        return -1;
    }
    em->n_prompt = 0;
    for (size_t i = 0; i < n; i++)
        em->n_prompt += em->n_tokens[i];
    return 0;
}

enum MHD_Result openai_embeddings(struct hreq *r)
{
    enum MHD_Result res;
    json_t *b = body_object(r, &res);
    if (!b)
        return res;
    const char *tx[ELM_EMBED_MAX_TEXTS];
    size_t n = 0;
    const char *model = NULL, *format = "float";
    struct perr e = {0};
    struct embedding *em = calloc(1, sizeof *em);
    if (!em) {
        json_decref(b);
        return MHD_NO;
    }
    if (p_str(b, "model", &model, &e) || p_str(b, "encoding_format", &format, &e) ||
        p_unsupported(b, "dimensions", &e) ||
        parse_input(json_object_get(b, "input"), "input", tx, &n, &e)) {
        res = reply_error(r, 400, e.param, "%s", e.msg);
        goto out;
    }
    bool b64 = !strcmp(format, "base64");
    if (!b64 && strcmp(format, "float")) {
        res = reply_error(r, 400, "encoding_format", "encoding_format must be float or base64");
        goto out;
    }
    if (embed(r, model, tx, n, em, &res))
        goto out;
    json_t *data = json_array();
    for (size_t i = 0; i < n; i++) {
        const float *v = em->vecs + i * em->n_embd;
        json_array_append_new(
            data, json_pack("{sssIso}", "object", "embedding", "index", (json_int_t)i, "embedding",
                            b64 ? base64_floats(v, em->n_embd) : float_array(v, em->n_embd)));
    }
    res = reply_json(r, 200,
                     json_pack("{sssosss{sIsI}}", "object", "list", "data", data, "model",
                               em->model, "usage", "prompt_tokens", (json_int_t)em->n_prompt,
                               "total_tokens", (json_int_t)em->n_prompt));
out:
    free(em->vecs);
    free(em);
    json_decref(b);
    return res;
}

static int64_t since_ns(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)(t.tv_sec - t0->tv_sec) * 1000000000 + (t.tv_nsec - t0->tv_nsec);
}

/* /api/embed ({"input": S or [S...]} → "embeddings") and, legacy, /api/embeddings
 * ({"prompt": S} → "embedding"). Ollama's "model" is required; "keep_alive" goes to the session;
 * "truncate" and "options" are accepted and have no effect (a text longer than the context is a
 * 400). */
static enum MHD_Result ollama_embed_any(struct hreq *r, bool legacy)
{
    enum MHD_Result res;
    json_t *b = body_object(r, &res);
    if (!b)
        return res;
    const char *tx[ELM_EMBED_MAX_TEXTS];
    size_t n = 0;
    const char *model = NULL;
    struct perr e = {0};
    struct embedding *em = calloc(1, sizeof *em);
    if (!em) {
        json_decref(b);
        return MHD_NO;
    }
    const char *key = legacy ? "prompt" : "input";
    const json_t *in = json_object_get(b, key);
    if (p_str(b, "model", &model, &e) ||
        p_keep_alive(b, "keep_alive", em->keep_alive, sizeof em->keep_alive, &e) ||
        (legacy && !json_is_string(in) && in) || (in && parse_input(in, key, tx, &n, &e))) {
        res = reply_error(r, 400, e.param[0] ? e.param : key, "%s",
                          e.msg[0] ? e.msg : "prompt must be a string");
        goto out;
    }
    if (!model) {
        res = reply_error(r, 400, "model", "model is required");
        goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &em->t0);
    /* no input: ollama's way to load a model, which is loaded already */
    if (n && embed(r, model, tx, n, em, &res))
        goto out;
    json_t *j;
    if (legacy)
        j = json_pack("{so}", "embedding", n ? float_array(em->vecs, em->n_embd) : json_array());
    else {
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(a, float_array(em->vecs + i * em->n_embd, em->n_embd));
        j = json_pack("{sssosIsisI}", "model", model, "embeddings", a, "total_duration",
                      (json_int_t)since_ns(&em->t0), "load_duration", 0, "prompt_eval_count",
                      (json_int_t)em->n_prompt);
    }
    res = reply_json(r, 200, j);
out:
    free(em->vecs);
    free(em);
    json_decref(b);
    return res;
}

enum MHD_Result ollama_embed(struct hreq *r)
{
    return ollama_embed_any(r, false);
}

enum MHD_Result ollama_embeddings(struct hreq *r)
{
    return ollama_embed_any(r, true);
}
