/* pool.h — the gateway's idle sessions per model and its cached status (pool.c), kept by a
 * thread of their own so a request takes a session and reads the status without a control call
 * to elmd; and the parser of status's list of resident models, whose names key the pool. */
#ifndef ELM_HTTPD_POOL_H
#define ELM_HTTPD_POOL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "elm/client.h"

/* Several resident models (status's `models` list, in load order; the first is the default
 * that the other status fields describe): at most GW_MAX_MODELS, names shorter than
 * GW_NAME_MAX. */
#define GW_MAX_MODELS 16
#define GW_NAME_MAX   64
/* The resident models' daemon names; returns their number (at most GW_MAX_MODELS). */
int gw_model_names(const struct elm_daemon_status *st, char names[][GW_NAME_MAX]);

#define GW_POOL_MAX 32 /* idle sessions kept for one model */
/* Warm-up: a model the gateway sees first (the default one at start) gets this many sessions
 * ready before any burst, at most half of elmd's max_sessions (pool.c says why 4). */
#define GW_WARM_MAX  4
#define GW_CLOSE_MAX 256 /* sessions waiting for the pool thread to close them */

/* One model's idle sessions. */
struct gw_slot {
    bool used;
    char model[GW_NAME_MAX]; /* its daemon name; "" the default model */
    int inflight;            /* requests running on it */
    int peak;                /* the most at once since the pool last emptied */
    int warm;                /* sessions kept ready from its first sight (warm-up) */
    int hold;                /* requests with their own keep_alive running: no refill */
    bool stuck;              /* a refill failed: none until a request takes a session */
    int n_idle;
    elm_session *idle[GW_POOL_MAX];
};

struct gw_pool {
    const char *runtime_dir; /* elmd's (NULL: libelmclient's default); borrowed */
    uint32_t max_prompt_bytes;
    pthread_mutex_t lock; /* guards everything below but pc */
    pthread_cond_t wake;
    pthread_t thread;
    bool running, stop;
    elm_client *pc; /* the thread's own connection (only that thread uses it) */
    struct gw_slot slots[GW_MAX_MODELS];
    elm_session *closing[GW_CLOSE_MAX];
    int n_closing;
    int n_busy;        /* sessions the thread is opening or closing right now */
    int warm;          /* a new slot's warm: min(max_sessions / 2, GW_WARM_MAX) from the status */
    uint64_t last_use; /* CLOCK_MONOTONIC ns of the last request's start or end; 0: none since
                        * the pool emptied */
    struct elm_daemon_status st; /* the last status, taken at st_at; valid while st_ok */
    bool st_ok;
    uint64_t st_at;
    char st_sig[GW_MAX_MODELS * GW_NAME_MAX + 4200]; /* daemon pid, default path, names */
    long pid;                                        /* the daemon st came from, */
    int pidfd;                                       /* watched through its pidfd (-1: none) */
};

/* Starts the thread (without it, every request opens its own session and asks the status);
 * stop closes every session of the pool. Sessions are opened with max_prompt_bytes. */
void gw_pool_start(struct gw_pool *p, const char *runtime_dir, uint32_t max_prompt_bytes);
void gw_pool_stop(struct gw_pool *p);
/* A request on model ("": the default) begins: counted for the pool's size; take: returns an
 * idle session of it (NULL when there is none); hold: the request has its own keep_alive, so
 * the model's idle sessions are closed and none is opened until it ends. */
elm_session *gw_pool_begin(struct gw_pool *p, const char *model, bool take, bool hold);
/* The request begun with gw_pool_begin ended; s (NULL: none) is closed by the pool thread. */
void gw_pool_end(struct gw_pool *p, const char *model, elm_session *s, bool held);
/* The sessions the pool holds open in elmd without a request: idle, or being closed. */
int gw_pool_ready(struct gw_pool *p);
/* Closes one idle session of any model (elmd has no free slot); false when none is idle. */
bool gw_pool_evict(struct gw_pool *p);
/* The status cache: a fresh status (put), the daemon gone (drop), and a copy (get: false when
 * it is old or its daemon has exited). */
void gw_cache_put(struct gw_pool *p, const struct elm_daemon_status *st);
void gw_cache_drop(struct gw_pool *p);
bool gw_cache_get(struct gw_pool *p, struct elm_daemon_status *out);

#endif
