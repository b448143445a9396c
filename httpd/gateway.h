/* gateway.h — elm-httpd's side of libelmclient: one shared connection to elmd that is dropped
 * when the daemon goes away and made again on the next request (gateway.c), one generation
 * per HTTP request on a session of its own that notices the HTTP client leaving, taken from
 * the pool of idle sessions when it can (pool.h). */
#ifndef ELM_HTTPD_GATEWAY_H
#define ELM_HTTPD_GATEWAY_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "elm/client.h"
#include "httpd/pool.h"

struct gw {
    const char *runtime_dir; /* NULL: libelmclient's default; borrowed */
    uint32_t max_prompt_bytes;
    pthread_mutex_t lock; /* guards c: a thread may drop it while another would use it */
    elm_client *c;        /* NULL until connected, and after the daemon went away */
    struct gw_pool pool;  /* idle sessions and the cached status */
};

void gw_init(struct gw *g, const char *runtime_dir, uint32_t max_prompt_bytes);
void gw_fini(struct gw *g);

/* The daemon's status (connecting first if needed). ELM_EDAEMON when it is not running. */
int gw_status(struct gw *g, struct elm_daemon_status *out);
/* As gw_status(), from the pool thread's copy when it is fresh, the daemon still runs, a model
 * is loaded and model (NULL: any) is resident; else asked now, so an answer saying "no" or
 * "not found" is never stale. */
int gw_status_cached(struct gw *g, struct elm_daemon_status *out, const char *model);

/* The name clients use for the loaded model: the file's name without ".gguf". */
void gw_model_id(const struct elm_daemon_status *st, char *buf, size_t cap);
/* Whether a client's model name names the loaded model: its id, its general.name, or either
 * with Ollama's ":latest" tag. */
bool gw_model_matches(const struct elm_daemon_status *st, const char *name);

/* Several resident models: gw_model_names (pool.h) lists them. */
/* The resident model a client's name means (as gw_model_matches, or a resident model's daemon
 * name, with or without ":latest"): its daemon name in buf ("" for the default model), and
 * true; false when none is resident under that name. */
bool gw_model_resolve(const struct elm_daemon_status *st, const char *name, char *buf, size_t cap);

/* Where a request runs: model (NULL or "": the default model; else a daemon name from
 * gw_model_resolve), n_ctx (0: the model's default), keep_alive (NULL: unchanged; else how long
 * the model stays once idle, elm_session_params's). Only n_ctx 0 without keep_alive takes a
 * pooled session. */
struct gw_target {
    const char *model;
    uint32_t n_ctx;
    const char *keep_alive;
};

/* One request's generation. */
struct gw_gen {
    struct gw *g;
    char model[GW_NAME_MAX]; /* its pool slot's name */
    bool held;               /* it has its own keep_alive (gw_pool_begin's hold) */
    bool pooled;             /* s came from the pool */
    elm_session *s;
    int client_fd;             /* the HTTP client's socket, watched for a hang-up while waiting */
    bool submitted;            /* a request is running: close cancels it */
    uint64_t t_submit, t_last; /* CLOCK_MONOTONIC ns: for the latency metrics */
    uint64_t t_checked;        /* when the HTTP client's socket was last looked at */
    bool had_token;
    char err[256]; /* the daemon's message when the start failed */
};

/* Takes a pooled session for t or opens one (while elmd has no free session slot, waits up to
 * 10 s for one) and submits r. On failure nothing is left open and *msg (in gen) gives the
 * daemon's message, "" when it gave none. */
int gw_gen_start(struct gw *g, struct gw_gen *gen, const struct gw_target *t,
                 const struct elm_request *r, int client_fd, const char **msg);
/* gw_gen_start() for a chat request: the daemon renders the n_msgs messages with the model's
 * chat template (elm_session_submit_chat()). */
int gw_chat_start(struct gw *g, struct gw_gen *gen, const struct gw_target *t,
                  const struct elm_request *r, const struct elm_chat_message *msgs, int n_msgs,
                  int client_fd, const char **msg);
/* The embeddings of n texts (elm_session_embed(): *vecs malloc'ed, n * *n_embd floats;
 * n_tokens gets n counts) on a session of its own, as gw_gen_start's. On failure *msg (in gen)
 * gives the daemon's message. */
int gw_embed(struct gw *g, struct gw_gen *gen, const struct gw_target *t, const char *const *texts,
             size_t n, float **vecs, uint32_t *n_embd, uint32_t *n_tokens, const char **msg);
/* Sets t->model's keep_alive (t->keep_alive, not NULL) without running anything: a session is
 * opened with it and closed in this thread, as ollama's requests without a prompt do; "0"
 * unloads the model once its last session closes (the pool's idle ones go too). On failure *msg
 * (in gen) gives the daemon's message (a keep_alive it cannot read...). */
int gw_keep_alive(struct gw *g, struct gw_gen *gen, const struct gw_target *t, const char **msg);
/* The next event of the request. -ECONNRESET when the HTTP client hung up (the caller ends
 * the generation, which cancels it in the daemon): its socket is looked at every 100 ms, while
 * waiting and while tokens flow. */
int gw_gen_next(struct gw_gen *gen, struct elm_event *ev);
/* gw_gen_next() without waiting: -EAGAIN when elmd has sent nothing more yet. A stream takes
 * what is already there into the same write. */
int gw_gen_ready(struct gw_gen *gen, struct elm_event *ev);
/* Reads the request to its end: the tokens' texts concatenated into *text (malloc'ed,
 * NUL-terminated, *len bytes; caller frees, also on failure), the final DONE or ERROR in *ev.
 * Returns 0, or an error of gw_gen_next() (-ECONNRESET...) or -ENOMEM. */
int gw_gen_collect(struct gw_gen *gen, char **text, size_t *len, struct elm_event *ev);
/* Ends the request: a running one is cancelled at once, its session closed by the pool thread.
 * NULL-safe on a zeroed gen. */
void gw_gen_end(struct gw_gen *gen);

#endif
