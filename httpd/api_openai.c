/* api_openai.c — the OpenAI-compatible endpoints: GET /v1/models, POST /v1/completions and
 * /v1/chat/completions (streamed as server-sent events ending with "data: [DONE]", or one
 * document) and POST /v1/embeddings.
 *
 * Where the API and elm differ: sampling values a request leaves out keep elm's defaults
 * (llama.cpp's, as llama-server does), not OpenAI's temperature 1; max_tokens left out means
 * "until the end of the text or of the context", as llama-server, not OpenAI's 16. Fields the
 * sampler cannot honour (presence/frequency penalties other than 0, logprobs, echo, best_of,
 * suffix, logit_bias) and n > 1 are refused with a 400 that names the field.
 */
#include <stdatomic.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "httpd/api.h"
#include "httpd/params.h"
#include "httpd/reply.h"

static const char *const sampling_names[6] = {"temperature", "top_k",          "top_p",
                                              "min_p",       "repeat_penalty", "repeat_last_n"};

/* The loaded model's status (maybe the gateway's cached copy: gw_status_cached), or NULL after
 * replying (503 when there is none). Caller frees. */
static struct elm_daemon_status *loaded(struct hreq *r, const char *model, enum MHD_Result *res)
{
    struct elm_daemon_status *st = malloc(sizeof *st);
    if (!st) {
        *res = MHD_NO;
        return NULL;
    }
    int rc = gw_status_cached(&r->h->gw, st, model);
    if (!rc && !st->model_loaded)
        rc = ELM_ENOMODEL;
    if (rc) {
        free(st);
        *res = reply_elm_error(r, rc, NULL);
        return NULL;
    }
    return st;
}

enum MHD_Result openai_models(struct hreq *r)
{
    struct elm_daemon_status *st = malloc(sizeof *st);
    if (!st)
        return MHD_NO;
    int rc = gw_status(&r->h->gw, st);
    if (rc) {
        free(st);
        return reply_elm_error(r, rc, NULL);
    }
    json_t *data = json_array();
    char names[GW_MAX_MODELS][GW_NAME_MAX];
    int n = gw_model_names(st, names);
    json_int_t created = (json_int_t)time(NULL) - (json_int_t)(st->uptime_ns / 1000000000u);
    for (int i = 0; i < n || (i == 0 && st->model_loaded); i++) {
        char id[256]; /* the default model (first) by its file name, as before */
        if (i == 0)
            gw_model_id(st, id, sizeof id);
        else
            snprintf(id, sizeof id, "%s", names[i]);
        json_array_append_new(data,
                              json_pack("{sosssssI}", "id", json_text(id, strlen(id)), "object",
                                        "model", "owned_by", "elm", "created", created));
    }
    free(st);
    return reply_json(r, 200, json_pack("{ssso}", "object", "list", "data", data));
}

/* ---- /v1/completions --------------------------------------------------------------------- */

struct completion {
    char id[48];
    char model[256];
    json_int_t created;
    bool include_usage;
    bool chat; /* a chat completion: choices carry a message (a delta when streamed) */
    bool stream;
    const char *obj; /* the documents' "object" */
    /* A streamed token's chunk as jansson writes it, cut around its text: every token's chunk is
     * the same document but for the text, so only the text is encoded per token (tmpl_len 0:
     * each chunk is built whole). */
    char tmpl[1024];
    size_t tmpl_len, text_at, text_end;
};

static void completion_init(struct completion *c, const struct elm_daemon_status *st, bool chat,
                            bool stream)
{
    static atomic_uint_fast64_t serial;
    c->chat = chat;
    c->stream = stream;
    c->obj = !chat ? "text_completion" : stream ? "chat.completion.chunk" : "chat.completion";
    snprintf(c->id, sizeof c->id, "%s-elm-%lx-%llu", chat ? "chatcmpl" : "cmpl", (long)st->pid,
             (unsigned long long)atomic_fetch_add(&serial, 1));
    gw_model_id(st, c->model, sizeof c->model);
    c->created = (json_int_t)time(NULL);
}

static const char *finish_reason(int reason)
{
    return reason == ELM_FINISH_LENGTH ? "length" : "stop"; /* eos, a stop string, a cancel */
}

/* {"id","object","created","model","choices":[...]} around choices (stolen). */
static json_t *chunk(const struct completion *c, json_t *choices)
{
    return json_pack("{sssssIssso}", "id", c->id, "object", c->obj, "created", c->created, "model",
                     c->model, "choices", choices);
}

/* One choice (text stolen; NULL: ""). A chat chunk's text goes in a delta, which a stream's
 * first chunk opens with the assistant's role and its last leaves empty; a whole chat reply's
 * in a message. */
static json_t *choice(const struct completion *c, json_t *text, const char *finish)
{
    json_t *f = finish ? json_string(finish) : json_null();
    if (!text)
        text = json_string("");
    if (!c->chat)
        return json_pack("{sosisnso}", "text", text, "index", 0, "logprobs", "finish_reason", f);
    json_t *m;
    if (!c->stream)
        m = json_pack("{ssso}", "role", "assistant", "content", text);
    else if (finish && !json_string_length(text)) {
        m = json_object();
        json_decref(text);
    } else
        m = json_pack("{so}", "content", text);
    return json_pack("{siso*snso}", "index", 0, c->stream ? "delta" : "message", m, "logprobs",
                     "finish_reason", f);
}

/* Writes c's token chunk once with a marker for its text, and finds the marker (the last one:
 * the id and model come before the choices, and a marker in them is escaped the same way). */
static void template_init(struct completion *c)
{
    static const char mark[] = "\"\\u0001\""; /* the string "\x01", as jansson writes it */
    json_t *j = chunk(c, json_pack("[o]", choice(c, json_string("\x01"), NULL)));
    size_t n = j ? json_dumpb(j, c->tmpl, sizeof c->tmpl, JSON_COMPACT) : 0;
    json_decref(j);
    c->tmpl_len = 0;
    if (n == 0 || n > sizeof c->tmpl)
        return;
    for (size_t i = n - (sizeof mark - 1) + 1; i-- > 0;)
        if (!memcmp(c->tmpl + i, mark, sizeof mark - 1)) {
            c->text_at = i;
            c->text_end = i + sizeof mark - 1;
            c->tmpl_len = n;
            return;
        }
}

/* "data: " and a token's chunk with the text t (stolen), as chunk(choice(t)) would be written;
 * false when the template cannot (none, or a text too long for the buffer here). */
static bool put_token_chunk(struct hstream *s, const struct completion *c, json_t *t)
{
    char enc[512];
    size_t n = c->tmpl_len ? json_dumpb(t, enc, sizeof enc, JSON_COMPACT | JSON_ENCODE_ANY) : 0;
    if (n == 0 || n > sizeof enc)
        return false;
    json_decref(t);
    hs_put(s, "data: ", 6);
    hs_put(s, c->tmpl, c->text_at);
    hs_put(s, enc, n);
    hs_put(s, c->tmpl + c->text_end, c->tmpl_len - c->text_end);
    hs_put(s, "\n\n", 2);
    return true;
}

static json_t *usage(const struct elm_event *ev)
{
    return json_pack("{sIsIsI}", "prompt_tokens", (json_int_t)ev->n_prompt, "completion_tokens",
                     (json_int_t)ev->n_gen, "total_tokens",
                     (json_int_t)ev->n_prompt + (json_int_t)ev->n_gen);
}

static json_t *error_object(int rc, const char *msg)
{
    char m[512];
    snprintf(m, sizeof m, "%s%s%s", elm_strerror(rc), msg && *msg ? ": " : "", msg ? msg : "");
    return json_pack("{s{sosssn}}", "error", "message", json_text(m, strlen(m)), "type",
                     http_status_of(rc) >= 500 ? "server_error" : "invalid_request_error", "code");
}

static bool sse_event(struct hstream *s, const struct elm_event *ev)
{
    const struct completion *c = s->api;
    if (ev->type == ELM_EVENT_TOKEN) {
        json_t *t = hs_text(s, ev->text, ev->text_len, false);
        if (!json_string_length(t))
            json_decref(t); /* nothing whole yet: wait for the rest of the character */
        else if (!put_token_chunk(s, c, t))
            hs_put_json(s, chunk(c, json_pack("[o]", choice(c, t, NULL))), true);
        return false;
    }
    if (ev->type == ELM_EVENT_DONE) {
        json_t *t = s->n_carry ? hs_text(s, "", 0, true) : NULL;
        hs_put_json(s, chunk(c, json_pack("[o]", choice(c, t, finish_reason(ev->reason)))), true);
        if (c->include_usage) {
            json_t *j = chunk(c, json_array());
            json_object_set_new(j, "usage", usage(ev));
            hs_put_json(s, j, true);
        }
    } else {
        hs_put_json(s, error_object(ev->error, ev->message), true);
    }
    hs_put(s, "data: [DONE]\n\n", 14);
    return true;
}

/* The whole completion as one document, once the request is over. */
static enum MHD_Result complete(struct hreq *r, struct gw_gen *gen, const struct completion *c)
{
    char *text;
    size_t len;
    struct elm_event ev;
    int rc = gw_gen_collect(gen, &text, &len, &ev);
    enum MHD_Result res;
    if (rc == -ECONNRESET)
        res = MHD_NO; /* the client left: close; gw_gen_end cancels */
    else if (rc || ev.type == ELM_EVENT_ERROR)
        res = reply_elm_error(r, rc ? rc : ev.error, rc ? NULL : ev.message);
    else {
        json_t *j = chunk(c, json_pack("[o]", choice(c, json_text(text ? text : "", len),
                                                     finish_reason(ev.reason))));
        json_object_set_new(j, "usage", usage(&ev));
        res = reply_json(r, 200, j);
    }
    free(text);
    gw_gen_end(gen);
    return res;
}

/* The completion's prompt: a string, or an array of one. */
static int parse_prompt(const json_t *b, const char **prompt, struct perr *e)
{
    const json_t *p = json_object_get(b, "prompt");
    if (json_is_array(p) && json_array_size(p) == 1)
        p = json_array_get(p, 0); /* a batch of one */
    if (!json_is_string(p)) {
        snprintf(e->param, sizeof e->param, "prompt");
        snprintf(e->msg, sizeof e->msg, "prompt must be a string (or an array of one)");
        return -1;
    }
    *prompt = json_string_value(p);
    return 0;
}

/* The fields both completions share into q; 0, or -1 with e filled. */
static int parse(const json_t *b, struct elm_request *q, bool *stream, bool *include_usage,
                 struct perr *e)
{
    long long n = 1, max_tokens = -1;
    const json_t *so = json_object_get(b, "stream_options");
    if (so && !json_is_null(so) && !json_is_object(so)) {
        snprintf(e->param, sizeof e->param, "stream_options");
        snprintf(e->msg, sizeof e->msg, "stream_options must be an object");
        return -1;
    }
    if (p_bool(b, "stream", stream, e) || p_bool(so, "include_usage", include_usage, e) ||
        p_int(b, "n", 1, INT32_MAX, &n, e) ||
        p_int(b, "max_tokens", 0, INT32_MAX, &max_tokens, e) ||
        p_int(b, "max_completion_tokens", 0, INT32_MAX, &max_tokens, e) ||
        p_float(b, "temperature", &q->temp, e) || p_float(b, "top_p", &q->top_p, e) ||
        p_stop(b, "stop", q, e) || p_unsupported_num(b, "presence_penalty", 0, e) ||
        p_unsupported_num(b, "frequency_penalty", 0, e) || p_unsupported(b, "logprobs", e) ||
        p_unsupported(b, "top_logprobs", e) || p_unsupported(b, "echo", e) ||
        p_unsupported_num(b, "best_of", 1, e) || p_unsupported(b, "suffix", e) ||
        p_unsupported(b, "logit_bias", e) || p_unsupported(b, "tools", e) ||
        p_unsupported(b, "tool_choice", e) || p_unsupported(b, "functions", e) ||
        p_unsupported(b, "response_format", e))
        return -1;
    if (n != 1) {
        snprintf(e->param, sizeof e->param, "n");
        snprintf(e->msg, sizeof e->msg, "n must be 1: elm makes one choice per request");
        return -1;
    }
    long long seed = -1;
    if (p_int(b, "seed", INT64_MIN, INT64_MAX, &seed, e))
        return -1;
    if (json_object_get(b, "seed") && !json_is_null(json_object_get(b, "seed")))
        q->seed = (uint64_t)seed;
    q->n_predict = (int32_t)max_tokens;
    return p_check_sampling(q, sampling_names, e);
}

/* /v1/completions (chat false) and /v1/chat/completions. */
static enum MHD_Result completions(struct hreq *r, bool chat)
{
    enum MHD_Result res;
    json_t *b = body_object(r, &res);
    if (!b)
        return res;
    struct elm_request q;
    elm_request_init(&q);
    struct perr e = {0};
    bool stream = false, include_usage = false;
    const char *model = NULL;
    char keep_alive[32] = ""; /* elmd's field */
    struct elm_daemon_status *st = NULL;
    struct elm_chat_message *msgs = NULL;
    int n_msgs = 0;
    if (p_str(b, "model", &model, &e) ||
        p_keep_alive(b, "keep_alive", keep_alive, sizeof keep_alive, &e) ||
        (chat ? p_messages(b, &msgs, &n_msgs, &e) : parse_prompt(b, &q.prompt, &e)) ||
        parse(b, &q, &stream, &include_usage, &e)) {
        res = reply_error(r, 400, e.param, "%s", e.msg);
        goto out;
    }
    if (!(st = loaded(r, model, &res)))
        goto out;
    char dname[GW_NAME_MAX] = ""; /* the resident model's daemon name, "" for the default */
    if (model && !gw_model_resolve(st, model, dname, sizeof dname)) {
        res = reply_error(r, 404, "model", "the model '%s' is not resident in elmd", model);
        goto out;
    }
    struct hstream *s = calloc(1, sizeof *s);
    struct completion *c = calloc(1, sizeof *c);
    if (!s || !c) {
        free(s);
        free(c);
        res = MHD_NO;
        goto out;
    }
    completion_init(c, st, chat, stream);
    if (dname[0])
        snprintf(c->model, sizeof c->model, "%s", dname);
    c->include_usage = include_usage;
    const char *msg;
    struct gw_target t = {dname, 0, keep_alive[0] ? keep_alive : NULL};
    int rc = chat ? gw_chat_start(&r->h->gw, &s->gen, &t, &q, msgs, n_msgs, r->fd, &msg)
                  : gw_gen_start(&r->h->gw, &s->gen, &t, &q, r->fd, &msg);
    if (rc) {
        res = reply_elm_error(r, rc, msg); /* msg lives in s */
        free(s);
        free(c);
        goto out;
    }
    if (stream) {
        if (chat) /* OpenAI's first chunk names the speaker */
            hs_put_json(
                s,
                chunk(c, json_pack("[{sis{ssss}snsn}]", "index", 0, "delta", "role", "assistant",
                                   "content", "", "logprobs", "finish_reason")),
                true);
        template_init(c);
        s->api = c;
        s->on_event = sse_event;
        res = reply_stream(r, s, "text/event-stream");
    } else {
        res = complete(r, &s->gen, c);
        free(s);
        free(c);
    }
out:
    free(msgs);
    free(st);
    json_decref(b);
    return res;
}

enum MHD_Result openai_completions(struct hreq *r)
{
    return completions(r, false);
}

enum MHD_Result openai_chat(struct hreq *r)
{
    return completions(r, true);
}
