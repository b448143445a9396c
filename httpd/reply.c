/* reply.c — the replies elm-httpd's handlers queue (reply.h). Every JSON document is built
 * with jansson; text from the model is cleaned into valid UTF-8 first (common/utf8.h), with a
 * character cut between two tokens held back until its other bytes come. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/trace.h"
#include "common/utf8.h"
#include "httpd/metrics.h"
#include "httpd/reply.h"

/* ---------------------------------------------------------------------------------------------
 * Replies
 */

static void add_common_headers(const struct hreq *r, struct MHD_Response *resp)
{
    if (r->h->o.cors) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", r->h->o.cors);
        MHD_add_response_header(resp, "Vary", "Origin");
    }
}

enum MHD_Result reply_queue(struct hreq *r, unsigned status, struct MHD_Response *resp)
{
    if (!resp)
        return MHD_NO; /* out of memory: close the connection */
    add_common_headers(r, resp);
    metrics_request(r->endpoint ? r->endpoint : "other", status);
    if (status == 503) /* elmd away, loading, or out of room: worth another try soon */
        MHD_add_response_header(resp, "Retry-After", "1");
    enum MHD_Result res = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    return res;
}

enum MHD_Result reply_json(struct hreq *r, unsigned status, json_t *j)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) {
        fprintf(stderr, "elm-httpd: a reply could not be built (out of memory?)\n");
        return MHD_NO;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/json");
    return reply_queue(r, status, resp);
}

/* OpenAI's error type for a status. */
static const char *openai_type(unsigned status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 404:
        return "not_found_error";
    case 413:
        return "invalid_request_error";
    case 429:
        return "rate_limit_error";
    default:
        return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

enum MHD_Result reply_error(struct hreq *r, unsigned status, const char *param, const char *fmt,
                            ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *m = json_text(msg, strlen(msg));
    json_t *j;
    if (r->api == API_OPENAI)
        j = json_pack("{s{sosssoso}}", "error", "message", m, "type", openai_type(status), "param",
                      param ? json_string(param) : json_null(), "code",
                      status == 404 && param && !strcmp(param, "model")
                          ? json_string("model_not_found")
                          : json_null());
    else
        j = json_pack("{so}", "error", m);
    return reply_json(r, status, j);
}

unsigned http_status_of(int rc)
{
    switch (rc) {
    case ELM_EDAEMON:
    case ELM_ENOMODEL:
    case ELM_EBUSY:
    case ELM_ESHUTDOWN:
        return 503;
    case ELM_ECONTEXT:
    case ELM_EUNSUPPORTED: /* e.g. chat with an embedding model, or embed with a chat model */
    case -EINVAL:
        return 400;
    case -EMSGSIZE:
        return 413;
    default:
        return 500;
    }
}

enum MHD_Result reply_elm_error(struct hreq *r, int rc, const char *daemon_msg)
{
    const char *what = rc == ELM_EDAEMON    ? "elmd is not running"
                       : rc == ELM_ENOMODEL ? "no model is loaded"
                                            : elm_strerror(rc);
    if (daemon_msg && *daemon_msg)
        return reply_error(r, http_status_of(rc), NULL, "%s: %s", what, daemon_msg);
    return reply_error(r, http_status_of(rc), NULL, "%s", what);
}

json_t *json_text(const char *s, size_t len)
{
    size_t n;
    char *clean = elm_utf8_clean(s, len, &n);
    json_t *v = clean ? json_stringn_nocheck(clean, n) : NULL;
    free(clean);
    return v;
}

json_t *body_object(struct hreq *r, enum MHD_Result *res)
{
    json_error_t err;
    json_t *j = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &err);
    if (!j) {
        *res = reply_error(r, 400, NULL, "the body is not valid JSON: %s (line %d, column %d)",
                           err.text, err.line, err.column);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        *res = reply_error(r, 400, NULL, "the body must be a JSON object");
        return NULL;
    }
    return j;
}

/* ---------------------------------------------------------------------------------------------
 * Streams
 */

void hs_put(struct hstream *s, const char *p, size_t n)
{
    if (s->len + n > s->cap) {
        size_t cap = (s->len + n) * 2 + 256;
        char *o = realloc(s->out, cap);
        if (!o) {
            s->oom = true;
            return;
        }
        s->out = o;
        s->cap = cap;
    }
    memcpy(s->out + s->len, p, n);
    s->len += n;
}

void hs_put_json(struct hstream *s, json_t *j, bool sse)
{
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!text) {
        s->oom = true;
        return;
    }
    if (sse)
        hs_put(s, "data: ", 6);
    hs_put(s, text, strlen(text));
    hs_put(s, sse ? "\n\n" : "\n", sse ? 2 : 1);
    free(text);
}

json_t *hs_text(struct hstream *s, const char *text, size_t len, bool last)
{
    char *buf = malloc(s->n_carry + len + 1);
    if (!buf)
        return NULL;
    memcpy(buf, s->carry, s->n_carry);
    memcpy(buf + s->n_carry, text, len);
    size_t n = s->n_carry + len;
    size_t whole = last ? n : elm_utf8_complete(buf, n);
    s->n_carry = n - whole;
    memcpy(s->carry, buf + whole, s->n_carry);
    json_t *v = json_text(buf, whole);
    free(buf);
    return v;
}

void conn_wait_begin(struct MHD_Connection *conn)
{
    MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
}

void conn_wait_end(struct MHD_Connection *conn, unsigned idle_s)
{
    MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, idle_s);
}

/* One event of s's generation into its bytes (waiting for it, or only if one is there already:
 * wait false). 0, -EAGAIN (nothing there yet), or -1: end the reply with an error (the client
 * left, or out of memory). */
static int take(struct hstream *s, bool wait)
{
    struct elm_event ev;
    int rc = wait ? gw_gen_next(&s->gen, &ev) : gw_gen_ready(&s->gen, &ev);
    if (rc == -EAGAIN)
        return rc;
    if (rc == -ECONNRESET)
        return -1; /* the client left: close, cancel */
    if (rc)
        ev = (struct elm_event){.type = ELM_EVENT_ERROR, .error = rc, .message = ""};
    s->finished = s->on_event(s, &ev);
    return s->oom ? -1 : 0;
}

/* libmicrohttpd asks for the next bytes (in the connection's thread, so waiting is fine). */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct hstream *s = cls;
    (void)pos;
    bool waits = s->off == s->len && !s->finished;
    if (waits)
        conn_wait_begin(s->conn);
    while (s->off == s->len) {
        s->off = s->len = 0;
        if (s->finished)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (take(s, true) < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    /* Tokens that came meanwhile (elmd ran ahead of this thread, or of the client) go out in
     * the same write: one send() and one wake-up of the client for all of them. */
    int rc = 0;
    while (!s->finished && s->len - s->off < max && (rc = take(s, false)) == 0)
        ;
    if (rc == -1)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (waits) /* bytes are ready: the client's clock again, from now */
        conn_wait_end(s->conn, s->idle_s);
    if (!s->wrote) /* the first bytes of the reply go to the client */
        elm_trace("h_write");
    s->wrote = true;
    size_t n = s->len - s->off < max ? s->len - s->off : max;
    memcpy(buf, s->out + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

/* The response is done with (sent, or the connection closed): a request still running is
 * cancelled by closing its session. */
static void stream_free(void *cls)
{
    struct hstream *s = cls;
    gw_gen_end(&s->gen);
    free(s->api);
    free(s->out);
    free(s);
}

enum MHD_Result reply_stream(struct hreq *r, struct hstream *s, const char *content_type)
{
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, s, stream_free);
    if (!resp) {
        stream_free(s);
        return MHD_NO;
    }
    s->conn = r->conn;
    s->idle_s = r->h->o.idle_s;
    MHD_add_response_header(resp, "Content-Type", content_type);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    return reply_queue(r, 200, resp);
}
