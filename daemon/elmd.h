/* elmd.h — the daemon's shared state and how its three threads divide it.
 *
 *   control thread (main.c, control.c, commands.c, lifecycle.c): owns the ZeroMQ sockets, the
 *       runtime directory, the session list and every session's lifetime (create, free), the
 *       loader thread;
 *   engine thread (scheduler.c): owns the forward pass and every adopted session's rings,
 *       sequence and request state, and hands out the KV pool's pages (admission.c); it is the
 *       only thread that touches those;
 *   loader thread (lifecycle.c, engine/loader.c): builds one new model, then hands it over
 *       and ends.
 *
 * They meet in the fields marked [L], under d->lock, held only for short bookkeeping (never
 * across a forward pass or a file read). Hand-overs are queues: control puts new sessions on
 * `adopt` and sets flags on sessions (close, cancel) or on d (swap, drain) and wakes the engine
 * through a futex word; the engine puts sessions it has let go on `reaped`, retires an old
 * model, and wakes control through an eventfd. So a session or model is freed only by control,
 * only after the engine has said it no longer uses it.
 */
#ifndef ELMD_H
#define ELMD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "daemon/config.h"
#include "daemon/elmd_model.h"
#include "daemon/rundir.h"
#include "daemon/stats.h"
#include "elm/version.h"
#include "engine/seq.h"
#include "ipc/proto.h"
#include "ipc/region.h"
#include "ipc/session_shm.h"
#include "ipc/shm.h"

#define ELMD_VERSION ELM_VERSION_STRING /* elm/version.h, generated from the project version */

/* Region socket connections waiting for their request, and how long each may wait
 * (daemon/regions.h). */
#define ELMD_REGION_CONNS   16
#define ELMD_REGION_CONN_MS 1000

/* Worst case of the events one step can push for a session: a TOKEN with the longest piece and
 * a DONE or ERROR. A session is planned only when this much fits, so pushes never fail with
 * -EAGAIN and a slow reader only ever stalls itself. */
#define ELMD_STEP_EVT_BYTES                                                                        \
    (2 * ELM_RING_REC_HDR + sizeof(struct elm_rec_token) + ELM_REC_MAX_PIECE +                     \
     sizeof(struct elm_rec_error) + ELM_REC_MAX_ERROR_MSG + 16)

/* A prompt copied out of a request ring and decoded; owned by the engine. */
struct elmd_wait;
struct elmd_embed;    /* daemon/embed.c: an embedding request's vectors being sent */
struct elm_embed_msg; /* ipc/embed_rec.h */
struct elmd_prompt {
    struct elmd_prompt *next;
    struct elm_prompt_msg msg; /* points into buf; for an EMBED only msg.hdr.req_id is set */
    const struct elm_embed_msg *embed; /* an EMBED (at the start of buf), NULL for a PROMPT */
    void *buf;
    uint64_t t_recv_ns;
    bool cancelled; /* a CANCEL came before it started */
};

struct elmd_session {
    struct elmd_session *next;  /* control's list */
    struct elmd_session *qnext; /* d->adopt / d->reaped */
    struct elmd *d;
    uint64_t id;
    long pid;  /* its opener, from the connection's SO_PEERCRED (reply.c), never from a request */
    int pidfd; /* polled by control: readable when the client exits; -1 */
    char client_name[64];
    uint64_t opened_ns;
    struct elm_shm shm;                  /* .fd: until handed to the client (regions.c), else -1 */
    uint8_t token[ELM_REGION_TOKEN_LEN]; /* the client shows it to fetch the region */
    uint64_t handover_by_ns;             /* the descriptor is dropped then, fetched or not */
    uint32_t req_cap, evt_cap;
    int32_t n_ctx;
    struct elmd_model *dm;         /* the served model it was opened on (d->models) */
    const struct elm_model *model; /* dm->m: the model seq was built for */
    struct elm_kv_pool *pool;      /* that model's KV pool (elmd_model.kv_pool) */
    /* Built and destroyed by the engine (at adoption, and before it lets the session go), so
     * that only the engine thread ever takes or gives back pages of the pool. */
    struct elm_seq *seq;
    struct elm_session_rings rings;

    /* [L] set by control, read by the engine */
    bool close_req;
    int close_code;        /* reported to a running request: ELM_ESESSION, ... */
    const char *close_msg; /* static string */
    bool cancel_req;

    /* [L] written by the engine, read by control */
    int state; /* enum elm_proto_session_state */
    uint64_t n_requests, n_prompt_tokens, n_gen_tokens;
    struct elmd_lat ttft, itl;
    int reap_code;   /* why the engine let it go (0: asked to) */
    int32_t kv_used; /* positions of its context in use */

    /* engine only */
    struct elmd_prompt *queue; /* prompts waiting for the running one to finish */
    int n_queued;
    bool dead;        /* stop serving it; reap at the end of the step */
    bool paused;      /* its event ring lacks room for a step's events */
    int32_t *history; /* tokens of the conversation so far (KEEP_CONTEXT) */
    int32_t n_history;
    struct elmd_wait *wait; /* a request waiting for KV pages (admission.c); NULL */
    struct elmd_embed *emb; /* an EMBED whose vectors are being sent (embed.c); NULL */
    bool preempted;         /* cur's request gave its pages back; it waits to be recomputed */
    uint64_t last_used_ns;  /* when its last request started or ended: reclaim order */
    struct {
        bool active;
        uint32_t req_id;
        uint64_t t_recv, t_first, t_last;
        uint64_t t_admit;  /* when it first got its pages: its age for preemption (plan.h) */
        int32_t n_predict; /* -1: no limit */
        int32_t to_eval;   /* prompt tokens not yet evaluated */
    } cur;
    struct { /* counters of this step, added to the [L] ones at its end */
        uint32_t req, err, tok, busy, reclaimed, preempted;
        uint64_t recomputed;
        uint64_t prompt_tok, prompt_reused, prompt_ns, gen_ns, ttft_ns, itl_ns;
        bool has_ttft, has_itl, ring_err;
    } step;
};

/* The settings the engine thread reads at every step: copied from the configuration under the
 * lock at start-up and on SIGHUP, because control replaces cfg without it. */
struct elmd_knobs {
    int prefill_chunk;    /* prompt tokens a session may evaluate per step */
    int step_ms;          /* prompt tokens per step fit this budget (0: only prefill_chunk) */
    int max_sessions;
    int max_queued;       /* requests that may wait for KV pages */
    int queue_timeout_ms; /* how long they may wait */
};

struct elmd {
    struct elmd_config cfg; /* control's; the engine reads the [L] copies below */
    int argc;
    char **argv;
    uint64_t start_ns;
    struct elmd_rundir rd;

    /* control thread */
    void *zctx, *router, *router_tcp;
    void *conn_mon; /* PAIR receiving the ipc router's accept/disconnect events */
    int n_conns;    /* ipc connections open now, from those events */
    bool refusing;  /* the socket is renamed away: no new connection can reach it */
    int sig_fd;     /* eventfd: the signal handlers write it */
    int wake_fd;    /* eventfd: engine and loader tell control something happened */
    int region_fd; /* the region socket's listener (regions.c); -1 */
    struct elmd_region_conn {
        int fd;
        uint64_t deadline_ns;
    } region_conns[ELMD_REGION_CONNS]; /* accepted, request not yet read */
    int n_region_conns;
    uint64_t region_pause_ns; /* accept failed (EMFILE...): the listener is not polled before */
    struct elmd_session *sessions;
    int n_sessions;
    uint64_t next_session_id;
    bool draining;
    uint64_t drain_deadline_ns;
    bool stopping; /* all requests ended; closing sessions, then exit */
    bool swapping; /* an unload control asked for is not done yet (a model is retiring) */
    int exit_code;
    struct elmd_pending *load_waiters; /* LOAD requests to answer when the load ends */

    struct elmd_load load; /* the loader thread and its outcome (lifecycle.c) */

    /* engine thread */
    pthread_t engine;
    bool engine_started;
    _Atomic uint32_t eng_seq; /* futex word: bumped to wake the engine */

    pthread_mutex_t lock;
    /* [L] the resident models in load order, models[0] the default; control adds them, the
     * engine removes a retiring one once no session of it is left (step.c) and puts it in
     * retired, for control to free */
    struct elmd_model *models[ELMD_MODEL_SLOTS];
    int n_models;
    struct elmd_model *retired[ELMD_MODEL_SLOTS]; /* [L] */
    int n_retired;                               /* [L] */
    struct elmd_session *adopt;  /* [L] */
    struct elmd_session *reaped; /* [L] */
    bool eng_draining;           /* [L] refuse new prompts */
    bool eng_cancel_all;         /* [L] end running requests with ESHUTDOWN */
    bool eng_stop;               /* [L] leave the loop */
    struct elmd_knobs knobs;     /* [L] the engine's settings, from cfg (elmd_publish_knobs) */
    int n_kv_waiting;            /* [L] requests waiting for KV pages */
    int n_running;               /* [L] requests running or queued */
    bool eng_drain_seen;         /* [L] n_running counts every ring read since draining began */
    struct elmd_stats st;        /* [L] */
};

/* scheduler.c */
void *elmd_engine_main(void *arg);
void elmd_engine_wake(struct elmd *d);
/* Copies cfg's engine settings to d->knobs (takes d->lock); the engine sees them next step. */
void elmd_publish_knobs(struct elmd *d);

/* session.c */
int elmd_session_create(struct elmd *d, struct elmd_model *m, int32_t n_ctx, uint32_t req_cap,
                        uint32_t evt_cap, long pid, const char *name, struct elmd_session **out,
                        char *err, size_t errlen);
void elmd_session_destroy(struct elmd_session **ps);
void elmd_session_free_queue(struct elmd_session *s);
/* The largest context a session on m may ask for: the default, or the model's training
 * context when larger. */
int32_t elmd_ctx_cap(const struct elmd_model *m, int32_t default_ctx);

uint64_t elmd_now_ns(void);

#endif
