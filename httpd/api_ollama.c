/* api_ollama.c — the Ollama-compatible endpoints: /api/generate and /api/chat (JSON lines, or
 * one document with "stream": false), /api/tags, /api/ps, /api/show, /api/version — enough for
 * ollama's own clients to list, describe and run the model elmd serves.
 *
 * Mapping: options.num_predict, temperature, top_k, top_p, min_p, seed, stop, repeat_penalty,
 * repeat_last_n go to the request, options.num_ctx to the session's context; other options are
 * ignored, as ollama ignores options it does not know. keep_alive goes to the session (elmd
 * then keeps the model that long once idle, as ollama does). /api/generate is always raw (elm
 * applies no prompt template there), so "system", "template", "context", "images", "format" and a
 * "suffix" are refused with a 400 rather than silently dropped. /api/chat's messages are
 * rendered by elmd with the model's chat template (elm_session_submit_chat()). A request
 * without prompt or messages loads or unloads the model, as ollama's (load_or_unload).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "elm/version.h"
#include "httpd/api.h"
#include "httpd/params.h"
#include "httpd/reply.h"

static const char *const sampling_names[6] = {"options.temperature",    "options.top_k",
                                              "options.top_p",          "options.min_p",
                                              "options.repeat_penalty", "options.repeat_last_n"};

/* Ollama's timestamps: RFC 3339 in UTC with nanoseconds. */
static void rfc3339(char *buf, size_t cap, const struct timespec *ts)
{
    struct tm tm;
    gmtime_r(&ts->tv_sec, &tm);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, cap - n, ".%09ldZ", ts->tv_nsec);
}

static json_t *now_json(void)
{
    struct timespec ts;
    char buf[64];
    clock_gettime(CLOCK_REALTIME, &ts);
    rfc3339(buf, sizeof buf, &ts);
    return json_string(buf);
}

/* "260K", "7.2B": the parameter count as ollama writes it. */
static void param_size(uint64_t n, char *buf, size_t cap)
{
    if (n >= 1000000000u)
        snprintf(buf, cap, "%.1fB", n / 1e9);
    else if (n >= 1000000u)
        snprintf(buf, cap, "%.1fM", n / 1e6);
    else
        snprintf(buf, cap, "%.0fK", n / 1e3);
}

static json_t *details(const struct elm_daemon_status *st)
{
    char ps[32];
    param_size(st->n_params, ps, sizeof ps);
    return json_pack("{sssssss[s]ssss}", "parent_model", "", "format", "gguf", "family", st->arch,
                     "families", st->arch, "parameter_size", ps, "quantization_level", "");
}

/* The status (NULL after replying on failure); need_model: 503 without a loaded model; for a
 * model (non-NULL) it may be the gateway's cached copy (gw_status_cached). */
static struct elm_daemon_status *status(struct hreq *r, bool need_model, const char *model,
                                        enum MHD_Result *res)
{
    struct elm_daemon_status *st = malloc(sizeof *st);
    if (!st) {
        *res = MHD_NO;
        return NULL;
    }
    int rc = model ? gw_status_cached(&r->h->gw, st, model) : gw_status(&r->h->gw, st);
    if (!rc && need_model && !st->model_loaded)
        rc = ELM_ENOMODEL;
    if (rc) {
        free(st);
        *res = reply_elm_error(r, rc, NULL);
        return NULL;
    }
    return st;
}

/* {"name","model",...} of the loaded model, for /api/tags and /api/ps. */
static json_t *model_entry(const struct elm_daemon_status *st)
{
    char id[256], name[300];
    gw_model_id(st, id, sizeof id);
    snprintf(name, sizeof name, "%s:latest", id);
    return json_pack("{sososssssIso}", "name", json_text(name, strlen(name)), "model",
                     json_text(name, strlen(name)), "digest", "", "modified_at", "", "size",
                     (json_int_t)st->weight_bytes, "details", details(st));
}

/* The entry of resident model name other than the default (status describes the default
 * alone): its name, and what is known without asking for it. */
static json_t *other_entry(const char *name)
{
    char tagged[GW_NAME_MAX + 8];
    snprintf(tagged, sizeof tagged, "%s:latest", name);
    return json_pack("{sssssssssIs{sssssss[]ssss}}", "name", tagged, "model", tagged, "digest", "",
                     "modified_at", "", "size", (json_int_t)0, "details", "parent_model", "",
                     "format", "gguf", "family", "", "families", "parameter_size", "",
                     "quantization_level", "");
}

/* Every resident model's entry, the default's in full, for /api/tags and /api/ps. */
static json_t *model_entries(const struct elm_daemon_status *st)
{
    json_t *models = json_array();
    char names[GW_MAX_MODELS][GW_NAME_MAX];
    int n = gw_model_names(st, names);
    if (st->model_loaded)
        json_array_append_new(models, model_entry(st));
    for (int i = 1; i < n; i++)
        json_array_append_new(models, other_entry(names[i]));
    return models;
}

enum MHD_Result ollama_tags(struct hreq *r)
{
    enum MHD_Result res;
    struct elm_daemon_status *st = status(r, false, NULL, &res);
    if (!st)
        return res;
    json_t *models = model_entries(st), *m;
    size_t i;
    json_array_foreach(models, i, m) json_object_set_new(m, "modified_at", now_json());
    free(st);
    return reply_json(r, 200, json_pack("{so}", "models", models));
}

enum MHD_Result ollama_ps(struct hreq *r)
{
    enum MHD_Result res;
    struct elm_daemon_status *st = status(r, false, NULL, &res);
    if (!st)
        return res;
    json_t *models = model_entries(st), *m;
    size_t i;
    json_array_foreach(models, i, m)
    {
        json_object_del(m, "modified_at");
        if (i == 0 && st->model_loaded)
            json_object_set_new(m, "size",
                                json_integer((json_int_t)(st->weight_bytes + st->kv_bytes)));
        json_object_set_new(m, "size_vram", json_integer(0));
        /* elmd does not report when a model's keep_alive ends: the far future, as ollama
         * shows keep_alive -1 */
        json_object_set_new(m, "expires_at", json_string("2318-01-01T00:00:00Z"));
    }
    free(st);
    return reply_json(r, 200, json_pack("{so}", "models", models));
}

enum MHD_Result ollama_version(struct hreq *r)
{
    return reply_json(r, 200, json_pack("{ss}", "version", ELM_VERSION_STRING));
}

/* The request's "model" (or "name", its older spelling); NULL after a 400. */
static const char *model_field(struct hreq *r, const json_t *b, enum MHD_Result *res)
{
    struct perr e = {0};
    const char *m = NULL;
    if (p_str(b, "model", &m, &e) || (!m && p_str(b, "name", &m, &e))) {
        *res = reply_error(r, 400, e.param, "%s", e.msg);
        return NULL;
    }
    if (!m)
        *res = reply_error(r, 400, "model", "model is required");
    return m;
}

enum MHD_Result ollama_show(struct hreq *r)
{
    enum MHD_Result res;
    json_t *b = body_object(r, &res);
    if (!b)
        return res;
    struct elm_daemon_status *st = NULL;
    const char *model = model_field(r, b, &res);
    if (!model || !(st = status(r, true, NULL, &res)))
        goto out;
    if (!gw_model_matches(st, model)) {
        res = reply_error(r, 404, "model", "model '%s' not found", model);
        goto out;
    }
    char key[64], modelfile[4200];
    json_t *info = json_pack("{sssI}", "general.architecture", st->arch, "general.parameter_count",
                             (json_int_t)st->n_params);
    snprintf(key, sizeof key, "%s.context_length", st->arch);
    json_object_set_new(info, key, json_integer(st->n_ctx_train));
    snprintf(key, sizeof key, "%s.embedding_length", st->arch);
    json_object_set_new(info, key, json_integer(st->n_embd));
    snprintf(key, sizeof key, "%s.block_count", st->arch);
    json_object_set_new(info, key, json_integer(st->n_layer));
    snprintf(modelfile, sizeof modelfile, "# served by elmd\nFROM %s\n", st->model_path);
    res = reply_json(r, 200,
                     json_pack("{sssosssssososo}", "license", "", "modelfile",
                               json_text(modelfile, strlen(modelfile)), "parameters", "",
                               "template", "", "details", details(st), "model_info", info,
                               "capabilities", json_pack("[s]", "completion")));
out:
    free(st);
    json_decref(b);
    return res;
}

/* ---- /api/generate ----------------------------------------------------------------------- */

struct generation {
    bool chat; /* /api/chat: the text goes in "message" rather than "response" */
    char model[300];
    struct timespec t0; /* the request's arrival */
};

static json_t *line(const struct generation *g, json_t *response, bool done)
{
    json_t *t = response ? response : json_string("");
    if (g->chat)
        t = json_pack("{ssso}", "role", "assistant", "content", t);
    return json_pack("{sssoso*sb}", "model", g->model, "created_at", now_json(),
                     g->chat ? "message" : "response", t, "done", done);
}

static int64_t since_ns(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)(t.tv_sec - t0->tv_sec) * 1000000000 + (t.tv_nsec - t0->tv_nsec);
}

/* The final line's counters (ollama's names; durations in nanoseconds). */
static void finish(json_t *j, const struct generation *g, const struct elm_event *ev)
{
    json_int_t first = (json_int_t)ev->t_first_ns, total = (json_int_t)ev->t_total_ns;
    json_object_set_new(j, "done_reason",
                        json_string(ev->reason == ELM_FINISH_LENGTH ? "length" : "stop"));
    json_object_set_new(j, "total_duration", json_integer(since_ns(&g->t0)));
    json_object_set_new(j, "load_duration", json_integer(0));
    json_object_set_new(j, "prompt_eval_count", json_integer(ev->n_prompt));
    json_object_set_new(j, "prompt_eval_duration", json_integer(first));
    json_object_set_new(j, "eval_count", json_integer(ev->n_gen));
    json_object_set_new(j, "eval_duration", json_integer(total > first ? total - first : 0));
}

static bool ndjson_event(struct hstream *s, const struct elm_event *ev)
{
    const struct generation *g = s->api;
    if (ev->type == ELM_EVENT_TOKEN) {
        json_t *t = hs_text(s, ev->text, ev->text_len, false);
        if (json_string_length(t))
            hs_put_json(s, line(g, t, false), false);
        else
            json_decref(t);
        return false;
    }
    if (ev->type == ELM_EVENT_DONE) {
        json_t *j = line(g, s->n_carry ? hs_text(s, "", 0, true) : NULL, true);
        finish(j, g, ev);
        hs_put_json(s, j, false);
    } else {
        char m[512];
        snprintf(m, sizeof m, "%s%s%s", elm_strerror(ev->error), *ev->message ? ": " : "",
                 ev->message);
        hs_put_json(s, json_pack("{so}", "error", json_text(m, strlen(m))), false);
    }
    return true;
}

static enum MHD_Result generate_whole(struct hreq *r, struct gw_gen *gen,
                                      const struct generation *g)
{
    char *text;
    size_t len;
    struct elm_event ev;
    int rc = gw_gen_collect(gen, &text, &len, &ev);
    enum MHD_Result res;
    if (rc == -ECONNRESET)
        res = MHD_NO;
    else if (rc || ev.type == ELM_EVENT_ERROR)
        res = reply_elm_error(r, rc ? rc : ev.error, rc ? NULL : ev.message);
    else {
        json_t *j = line(g, json_text(text ? text : "", len), true);
        finish(j, g, &ev);
        res = reply_json(r, 200, j);
    }
    free(text);
    gw_gen_end(gen);
    return res;
}

/* options and the top-level fields into q; 0 or -1 with e filled. */
static int parse(const json_t *b, struct elm_request *q, long long *num_ctx, char *keep_alive,
                 size_t ka_cap, struct perr *e)
{
    const json_t *o = json_object_get(b, "options");
    if (o && !json_is_null(o) && !json_is_object(o)) {
        snprintf(e->param, sizeof e->param, "options");
        snprintf(e->msg, sizeof e->msg, "options must be an object");
        return -1;
    }
    long long n_predict = -1, top_k = q->top_k, last_n = q->repeat_last_n, seed = -1;
    bool raw = true;
    if (p_keep_alive(b, "keep_alive", keep_alive, ka_cap, e) || p_bool(b, "raw", &raw, e) ||
        p_unsupported(b, "system", e) || p_unsupported(b, "template", e) ||
        p_unsupported(b, "context", e) || p_unsupported(b, "images", e) ||
        p_unsupported(b, "format", e) || p_unsupported(b, "suffix", e) ||
        p_unsupported(b, "think", e) || p_int(o, "num_predict", -2, INT32_MAX, &n_predict, e) ||
        p_int(o, "num_ctx", 0, UINT32_MAX, num_ctx, e) || p_float(o, "temperature", &q->temp, e) ||
        p_int(o, "top_k", INT32_MIN, INT32_MAX, &top_k, e) || p_float(o, "top_p", &q->top_p, e) ||
        p_float(o, "min_p", &q->min_p, e) || p_float(o, "repeat_penalty", &q->repeat_penalty, e) ||
        p_int(o, "repeat_last_n", INT32_MIN, INT32_MAX, &last_n, e) ||
        p_int(o, "seed", INT64_MIN, INT64_MAX, &seed, e) || p_stop(o, "stop", q, e) ||
        p_unsupported_num(o, "presence_penalty", 0, e) ||
        p_unsupported_num(o, "frequency_penalty", 0, e)) {
        if (o && e->param[0] && strncmp(e->param, "options.", 8) && json_object_get(o, e->param)) {
            char p[sizeof e->param];
            memcpy(p, e->param, sizeof p);
            snprintf(e->param, sizeof e->param, "options.%.55s", p);
        }
        return -1;
    }
    q->n_predict = n_predict < 0 ? -1 : (int32_t)n_predict; /* -2: until the context is full */
    q->top_k = (int32_t)top_k;
    q->repeat_last_n = (int32_t)last_n;
    if (json_object_get(o, "seed") && !json_is_null(json_object_get(o, "seed")))
        q->seed = (uint64_t)seed;
    return p_check_sampling(q, sampling_names, e);
}

/* A keep_alive that elmd read as zero: its numbers are all zeros ("0", "0s", "0m0s", 0.0). */
static bool zero_duration(const char *ka)
{
    return !strpbrk(ka, "123456789");
}

/* A request without prompt or messages, as ollama's clients send to load a model (or with
 * keep_alive 0, to unload it): the model is resident already (a request names only resident
 * models), so it is answered at once with done_reason "load", after its keep_alive, when given,
 * is passed to elmd; a zero keep_alive unloads the model once its last session closes (other
 * clients' requests finish first, as in ollama): "unload". */
static enum MHD_Result load_or_unload(struct hreq *r, const struct generation *g,
                                      struct gw_gen *gen, const struct gw_target *t)
{
    const char *msg;
    int rc = t->keep_alive ? gw_keep_alive(&r->h->gw, gen, t, &msg) : 0;
    if (rc)
        return reply_elm_error(r, rc, msg);
    json_t *j = line(g, NULL, true);
    bool unload = t->keep_alive && zero_duration(t->keep_alive);
    json_object_set_new(j, "done_reason", json_string(unload ? "unload" : "load"));
    return reply_json(r, 200, j);
}

/* /api/generate (chat false) and /api/chat. */
static enum MHD_Result generate(struct hreq *r, bool chat)
{
    enum MHD_Result res;
    json_t *b = body_object(r, &res);
    if (!b)
        return res;
    struct elm_daemon_status *st = NULL;
    struct elm_request q;
    elm_request_init(&q);
    q.prompt = "";
    struct perr e = {0};
    bool stream = true;
    long long num_ctx = 0;
    char keep_alive[32] = ""; /* elmd's field */
    struct elm_chat_message *msgs = NULL;
    int n_msgs = 0;
    const char *model = model_field(r, b, &res);
    if (!model)
        goto out;
    /* no prompt, no messages: ollama's request to load (or with keep_alive 0 unload) a model */
    const json_t *m = json_object_get(b, "messages");
    bool load = chat ? !m || json_is_null(m) || (json_is_array(m) && !json_array_size(m)) : false;
    if ((chat ? p_unsupported(b, "tools", &e) || (!load && p_messages(b, &msgs, &n_msgs, &e))
              : p_str(b, "prompt", &q.prompt, &e)) ||
        p_bool(b, "stream", &stream, &e) ||
        parse(b, &q, &num_ctx, keep_alive, sizeof keep_alive, &e)) {
        res = reply_error(r, 400, e.param, "%s", e.msg);
        goto out;
    }
    if (!(st = status(r, true, model, &res)))
        goto out;
    char dname[GW_NAME_MAX]; /* the resident model's daemon name, "" for the default */
    if (!gw_model_resolve(st, model, dname, sizeof dname)) {
        res = reply_error(r, 404, "model", "model '%s' not found", model);
        goto out;
    }
    struct generation *g = calloc(1, sizeof *g);
    struct hstream *s = calloc(1, sizeof *s);
    if (!g || !s) {
        free(g);
        free(s);
        res = MHD_NO;
        goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &g->t0);
    g->chat = chat;
    snprintf(g->model, sizeof g->model, "%s", model);
    const char *msg;
    struct gw_target t = {dname, (uint32_t)num_ctx, keep_alive[0] ? keep_alive : NULL};
    if (load || (!chat && !*q.prompt)) {
        res = load_or_unload(r, g, &s->gen, &t);
        free(g);
        free(s);
        goto out;
    }
    int rc = chat ? gw_chat_start(&r->h->gw, &s->gen, &t, &q, msgs, n_msgs, r->fd, &msg)
                  : gw_gen_start(&r->h->gw, &s->gen, &t, &q, r->fd, &msg);
    if (rc) {
        res = reply_elm_error(r, rc, msg); /* msg lives in s */
        free(g);
        free(s);
        goto out;
    }
    if (stream) {
        s->api = g;
        s->on_event = ndjson_event;
        res = reply_stream(r, s, "application/x-ndjson");
    } else {
        res = generate_whole(r, &s->gen, g);
        free(g);
        free(s);
    }
out:
    free(msgs);
    free(st);
    json_decref(b);
    return res;
}

enum MHD_Result ollama_generate(struct hreq *r)
{
    return generate(r, false);
}

enum MHD_Result ollama_chat(struct hreq *r)
{
    return generate(r, true);
}
