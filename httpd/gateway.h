/* gateway.h — elm-httpd's side of libelmclient: one shared connection to elmd that is dropped
 * when the daemon goes away and made again on the next request (gateway.c), one generation
 * per HTTP request on a session of its own that notices the HTTP client leaving, and the idle
 * sessions and cached status that keep control calls off a request's path (pool.c). */
#ifndef ELM_HTTPD_GATEWAY_H
#define ELM_HTTPD_GATEWAY_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "elm/client.h"

#define GW_MAX_MODELS 16
#define GW_NAME_MAX   64
#define GW_POOL_MAX   32  /* idle sessions kept for one model */
#define GW_CLOSE_MAX  256 /* sessions waiting for the pool thread to close them */

/* One model's idle sessions (pool.c). */
struct gw_slot {
    bool used;
    char model[GW_NAME_MAX]; /* its daemon name; "" the default model */
    int inflight;            /* requests running on it */
    int peak;                /* the most at once since the pool last emptied */
    int hold;                /* requests with their own keep_alive running: no refill */
    bool stuck;              /* a refill failed: none until a request takes a session */
    int n_idle;
    elm_session *idle[GW_POOL_MAX];
};

struct gw {
    const char *runtime_dir; /* NULL: libelmclient's default; borrowed */
    uint32_t max_prompt_bytes;
    pthread_mutex_t lock; /* guards c: a thread may drop it while another would use it */
    elm_client *c;        /* NULL until connected, and after the daemon went away */
    /* pool.c's, under pool_lock: */
    pthread_mutex_t pool_lock;
    pthread_cond_t wake;
    pthread_t thread;
    bool running, stop;
    elm_client *pc; /* the pool thread's own connection (only that thread uses it) */
    struct gw_slot slots[GW_MAX_MODELS];
    elm_session *closing[GW_CLOSE_MAX];
    int n_closing;
    int n_opening; /* sessions the thread is opening or closing right now */
    uint64_t last_use; /* CLOCK_MONOTONIC ns of the last request; 0: none since the pool emptied */
    struct elm_daemon_status st; /* the last status, taken st_at; valid while st_ok */
    bool st_ok;
    uint64_t st_at;
    char st_sig[3100]; /* the daemon's pid and resident models when st was taken */
    long pid;          /* the daemon st came from, watched through pidfd (-1: none) */
    int pidfd;
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

/* Several resident models (status's `models` list, in load order; the first is the default that
 * gw_model_id and the other status fields describe): at most GW_MAX_MODELS, names shorter than
 * GW_NAME_MAX. */
/* The resident models' daemon names; returns their number (at most GW_MAX_MODELS). */
int gw_model_names(const struct elm_daemon_status *st, char names[][GW_NAME_MAX]);
/* The resident model a client's name means (as gw_model_matches, or a resident model's daemon
 * name, with or without ":latest"): its daemon name in buf ("" for the default model), and
 * true; false when none is resident under that name. */
bool gw_model_resolve(const struct elm_daemon_status *st, const char *name, char *buf,
                      size_t cap);

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
int gw_embed(struct gw *g, struct gw_gen *gen, const struct gw_target *t,
             const char *const *texts, size_t n, float **vecs, uint32_t *n_embd,
             uint32_t *n_tokens, const char **msg);
/* The next event of the request. -ECONNRESET when the HTTP client hung up (the caller ends
 * the generation, which cancels it in the daemon). */
int gw_gen_next(struct gw_gen *gen, struct elm_event *ev);
/* Reads the request to its end: the tokens' texts concatenated into *text (malloc'ed,
 * NUL-terminated, *len bytes; caller frees, also on failure), the final DONE or ERROR in *ev.
 * Returns 0, or an error of gw_gen_next() (-ECONNRESET...) or -ENOMEM. */
int gw_gen_collect(struct gw_gen *gen, char **text, size_t *len, struct elm_event *ev);
/* Ends the request: a running one is cancelled at once, its session closed by the pool thread.
 * NULL-safe on a zeroed gen. */
void gw_gen_end(struct gw_gen *gen);

/* pool.c: the thread, started by gw_init and stopped (every session of the pool closed) by
 * gw_fini. */
void gw_pool_start(struct gw *g);
void gw_pool_stop(struct gw *g);
/* A request on model begins: counted for the pool's size; take: returns an idle session of it
 * (NULL when there is none); hold: the request has its own keep_alive, so the model's idle
 * sessions are closed and none is opened until it ends. */
elm_session *gw_pool_begin(struct gw *g, const char *model, bool take, bool hold);
/* The request begun with gw_pool_begin ended; s (NULL: none) is closed by the pool thread. */
void gw_pool_end(struct gw *g, const char *model, elm_session *s, bool held);
/* The sessions the pool holds open in elmd without a request: idle, or waiting to be closed. */
int gw_pool_ready(struct gw *g);
/* Closes one idle session of any model (elmd has no free slot); false when none is idle. */
bool gw_pool_evict(struct gw *g);
/* The status cache: a fresh status (put), the daemon gone (drop), and a copy (get: false when
 * it is old or its daemon has exited). */
void gw_cache_put(struct gw *g, const struct elm_daemon_status *st);
void gw_cache_drop(struct gw *g);
bool gw_cache_get(struct gw *g, struct elm_daemon_status *out);

#endif
