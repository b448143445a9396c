/* engine_thread.h — the engine thread's state, shared by its loop (step.c) and its request
 * handling (scheduler.c). Engine thread only: nothing here is touched by another thread.
 */
#ifndef ELMD_ENGINE_THREAD_H
#define ELMD_ENGINE_THREAD_H

#include <stdbool.h>
#include <stdint.h>

#include "common/pool.h"
#include "daemon/elmd.h"

#define MAX_QUEUED 4 /* prompts read ahead per session; the rest wait in the ring */
/* Payload bytes one record holding a step's events would need (see ELMD_STEP_EVT_BYTES). */
#define STEP_PAYLOAD ((uint32_t)(ELMD_STEP_EVT_BYTES - ELM_RING_REC_HDR))

struct eng {
    struct elmd *d;
    struct elmd_session *act[ELMD_MAX_SESSIONS_LIMIT + 1];
    int counts[ELMD_MAX_SESSIONS_LIMIT + 1]; /* items planned per session this step */
    int order[ELMD_MAX_SESSIONS_LIMIT + 1];  /* sessions in the order they went into the pass */
    int n_act;
    /* The resident models as of this step (d->models), and the one this step's pass is for:
     * passes take turns among the models with work (step.c pick_model). */
    struct elmd_model *models[ELMD_MODEL_SLOTS];
    int n_models;
    int model_rr;         /* the model after the last one that had a pass */
    struct elmd_model *m; /* this step's: its sessions alone are planned */
    struct elm_batch_item *items;
    int32_t items_cap;
    int rr;
    struct elmd_knobs k; /* d->knobs as of this step */
    bool draining, cancel_all, stop;
    uint32_t wake_seen;
    bool no_waitv;
};

/* ---- computing ---------------------------------------------------------------------------- */

/* Before computing anything for model m (a pass in step.c, an embedding in embed.c): its thread
 * count (elmd.conf `threads`, elmctl start --threads, a load's threads) governs the whole pass,
 * the products' pool team as well as the attention, so a daemon told 1 thread computes on 1.
 * The pool's count is the process's; in elmd the engine thread alone computes. Inline: both
 * callers use it, and scheduler.c, between them, must not make a call cycle. */
static inline void elmd_compute_threads(const struct elm_model *m)
{
    elm_pool_set_threads(m->n_threads);
}

/* ---- events.c: what every request kind pushes and counts ------------------------------- */

/* Adds a session's counters of this step to the shared ones; d->lock held. */
void elmd_flush_stats(struct elmd *d, struct elmd_session *s);
/* Counts a push's failure: a push can only fail when the client broke or closed its ring
 * (room was checked), and the session is then closed. */
void elmd_check_push(struct elmd_session *s, int rc);
/* Publishes the session's counters and state before a request's last record goes out. */
void elmd_flush_now(struct elmd_session *s);
/* Sends ERROR(code) for req_id unless the session is already dead. */
void elmd_push_error(struct elmd_session *s, uint32_t req_id, int code, const char *msg);

/* ---- scheduler.c: requests --------------------------------------------------------------- */

/* Ends the running (or KV-waiting) request: DONE/CANCEL when code is 0, else ERROR(code). */
void elmd_cancel_request(struct elmd_session *s, int code, const char *msg);
/* Copies out every record of the request ring (up to MAX_QUEUED prompts), validating each. */
void elmd_read_requests(struct elmd_session *s);
/* Requests waiting for pages of pool (NULL: of any pool). */
int elmd_n_waiting(const struct eng *e, const struct elm_kv_pool *pool);
/* Starts the waiting requests that fit now, oldest first; refuses those that waited too long.
 * Returns the milliseconds until the next such deadline (-1: none). */
int elmd_admit_waiting(struct eng *e);
/* Starts the next queued prompt of an idle session (or makes it wait for KV pages). */
void elmd_start_next(struct eng *e, struct elmd_session *s);
/* Advances s by the n items of the pass that returned rc; pushes its events. */
void elmd_advance(struct elmd_session *s, int n, int rc);
/* Control closes s: every prompt the client sent gets its answer, then the session is dead. */
void elmd_close_session(struct elmd_session *s, int code, const char *msg);

#endif
