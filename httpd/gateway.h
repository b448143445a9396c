/* gateway.h — elm-httpd's side of libelmclient: one shared connection to elmd that is dropped
 * when the daemon goes away and made again on the next request (gateway.c), and one generation
 * per HTTP request on a session of its own that notices the HTTP client leaving. */
#ifndef ELM_HTTPD_GATEWAY_H
#define ELM_HTTPD_GATEWAY_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "elm/client.h"

struct gw {
    const char *runtime_dir; /* NULL: libelmclient's default; borrowed */
    uint32_t max_prompt_bytes;
    pthread_mutex_t lock; /* guards c: a thread may drop it while another would use it */
    elm_client *c;        /* NULL until connected, and after the daemon went away */
};

void gw_init(struct gw *g, const char *runtime_dir, uint32_t max_prompt_bytes);
void gw_fini(struct gw *g);

/* The daemon's status (connecting first if needed). ELM_EDAEMON when it is not running. */
int gw_status(struct gw *g, struct elm_daemon_status *out);

/* The name clients use for the loaded model: the file's name without ".gguf". */
void gw_model_id(const struct elm_daemon_status *st, char *buf, size_t cap);
/* Whether a client's model name names the loaded model: its id, its general.name, or either
 * with Ollama's ":latest" tag. */
bool gw_model_matches(const struct elm_daemon_status *st, const char *name);

/* Several resident models (status's `models` list, in load order; the first is the default that
 * gw_model_id and the other status fields describe). */
#define GW_MAX_MODELS 16
#define GW_NAME_MAX   64
/* The resident models' daemon names; returns their number (at most GW_MAX_MODELS). */
int gw_model_names(const struct elm_daemon_status *st, char names[][GW_NAME_MAX]);
/* The resident model a client's name means (as gw_model_matches, or a resident model's daemon
 * name, with or without ":latest"): its daemon name in buf ("" for the default model), and
 * true; false when none is resident under that name. */
bool gw_model_resolve(const struct elm_daemon_status *st, const char *name, char *buf,
                      size_t cap);

/* One request's generation. */
struct gw_gen {
    elm_session *s;
    int client_fd;             /* the HTTP client's socket, watched for a hang-up while waiting */
    bool submitted;            /* a request is running: close cancels it */
    uint64_t t_submit, t_last; /* CLOCK_MONOTONIC ns: for the latency metrics */
    bool had_token;
    char err[256]; /* the daemon's message when the start failed */
};

/* Opens a session on model (NULL or "": the default model; else a daemon name from
 * gw_model_resolve) (n_ctx 0: the model's default; while elmd has no free session slot, waits up
 * to 10 s for one) and submits r. On failure nothing is left open and *msg (in gen) gives the
 * daemon's message, "" when it gave none. */
int gw_gen_start(struct gw *g, struct gw_gen *gen, const char *model, const struct elm_request *r,
                 uint32_t n_ctx, int client_fd, const char **msg);
/* gw_gen_start() for a chat request: the daemon renders the n_msgs messages with the model's
 * chat template (elm_session_submit_chat()). */
int gw_chat_start(struct gw *g, struct gw_gen *gen, const char *model, const struct elm_request *r,
                  const struct elm_chat_message *msgs, int n_msgs, uint32_t n_ctx, int client_fd,
                  const char **msg);
/* The embeddings of n texts (elm_session_embed(): *vecs malloc'ed, n * *n_embd floats;
 * n_tokens gets n counts) on a session opened and closed for the call. On failure *msg (in gen)
 * gives the daemon's message. */
int gw_embed(struct gw *g, struct gw_gen *gen, const char *model, const char *const *texts,
             size_t n, float **vecs, uint32_t *n_embd, uint32_t *n_tokens, const char **msg);
/* The next event of the request. -ECONNRESET when the HTTP client hung up (the caller ends
 * the generation, which cancels it in the daemon). */
int gw_gen_next(struct gw_gen *gen, struct elm_event *ev);
/* Reads the request to its end: the tokens' texts concatenated into *text (malloc'ed,
 * NUL-terminated, *len bytes; caller frees, also on failure), the final DONE or ERROR in *ev.
 * Returns 0, or an error of gw_gen_next() (-ECONNRESET...) or -ENOMEM. */
int gw_gen_collect(struct gw_gen *gen, char **text, size_t *len, struct elm_event *ev);
/* Closes the session, cancelling a request still running. NULL-safe on a zeroed gen. */
void gw_gen_end(struct gw_gen *gen);

#endif
