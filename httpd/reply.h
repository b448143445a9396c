/* reply.h — the replies an elm-httpd handler queues (reply.c): a JSON document, an error in
 * its API's shape, or a stream of server-sent events or JSON lines fed by a generation; and
 * reading a request's JSON body. */
#ifndef ELM_HTTPD_REPLY_H
#define ELM_HTTPD_REPLY_H

#include <jansson.h>
#include <stdbool.h>

#include "httpd/httpd.h"

/* ---- replies: each queues one response and returns what the access handler returns ------ */

/* Queues resp (with the CORS headers when --cors is on) and releases it. */
enum MHD_Result reply_queue(struct hreq *r, unsigned status, struct MHD_Response *resp);

/* status with the document j (reference stolen). */
enum MHD_Result reply_json(struct hreq *r, unsigned status, json_t *j);
/* An error: OpenAI's {"error":{"message","type","param","code"}} or Ollama's {"error":S}.
 * param: the request field at fault, or NULL. */
enum MHD_Result reply_error(struct hreq *r, unsigned status, const char *param, const char *fmt,
                            ...) __attribute__((format(printf, 4, 5)));
/* The HTTP status and message for a libelmclient error code (503 when the daemon is away...). */
unsigned http_status_of(int rc);
/* reply_error() for a failed gateway call: status from the code, message from the daemon. */
enum MHD_Result reply_elm_error(struct hreq *r, int rc, const char *daemon_msg);

/* The idle timeout (--idle-timeout) is for the client: while the gateway itself waits on elmd
 * (a handler's call, a stream's next token), it is lifted for the connection, so a slow first
 * token or a long gap between tokens never cuts a reply; wait_end puts it back, which restarts
 * its clock (libmicrohttpd restarts it when a timeout goes from none to some), so what it then
 * measures is only the client not reading what is ready (or not sending its next request). */
void conn_wait_begin(struct MHD_Connection *conn);
void conn_wait_end(struct MHD_Connection *conn, unsigned idle_s);

/* A response fed by a generation: on_event turns each event into bytes (hs_put) and returns
 * true once the stream is complete (the final record and terminator written). */
struct hstream {
    struct gw_gen gen;
    bool (*on_event)(struct hstream *s, const struct elm_event *ev);
    void *api;                   /* the endpoint's state, freed with free() */
    struct MHD_Connection *conn; /* the stream's connection and its idle timeout (conn_wait_*) */
    unsigned idle_s;
    char *out; /* bytes not yet taken by the server */
    size_t len, off, cap;
    bool finished;
    bool oom;
    bool wrote; /* bytes went out already (ELM_TRACE's h_write marks the first) */
    /* Text of tokens not yet written: a cut multi-byte character waits for its other bytes. */
    char carry[4];
    size_t n_carry;
};
void hs_put(struct hstream *s, const char *p, size_t n);
/* Writes j as one line: "data: J\n\n" (sse) or "J\n" (JSON lines); releases j. */
void hs_put_json(struct hstream *s, json_t *j, bool sse);
/* The text of a token as a JSON string, holding back a cut character (last: flush it). New
 * reference. */
json_t *hs_text(struct hstream *s, const char *text, size_t len, bool last);
/* Queues the stream s (allocated by the caller with its gen started; owned by the server from
 * here, whatever the result) with content_type. */
enum MHD_Result reply_stream(struct hreq *r, struct hstream *s, const char *content_type);

/* ---- reading a request ------------------------------------------------------------------- */

/* The body as a JSON object, or NULL after replying 400 (*res set). */
json_t *body_object(struct hreq *r, enum MHD_Result *res);
/* A JSON string of bytes (invalid UTF-8 replaced). New reference. */
json_t *json_text(const char *s, size_t len);

#endif
