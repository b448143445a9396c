/* step.c — the engine thread: one batched forward pass per step over the active sessions of
 * one resident model.
 *
 * Several models: each step's pass is for one model (a pass runs one model's weights); the
 * models with work take turns, one pass each, in the order they were loaded (pick_model). So
 * with two busy models each gets every other pass on the same cores: fair in passes, and a
 * model's tokens still come out as they would alone (each pass is batch-invariant). Requests of
 * every model are read, admitted and started every step.
 *
 * A step: (1) take control's hand-overs (new sessions, close/cancel flags, a model swap);
 * (2) read each session's request ring and start what can start (scheduler.c); (3) plan
 * (plan.c): every decoding session gets its one token, then prompts share the rest fairly,
 * within the batch and the step's time budget; then the KV pages those tokens reach are taken,
 * preempting the most recently admitted requests when the pool is short (plan.h's
 * elmd_plan_memory; the preempted ones are resumed by scheduler.c when pages are free again,
 * and recompute their tokens); (4) ONE elm_model_forward() over all the items —
 * the pass is batch-invariant, so each session's logits are bit-identical to running alone;
 * (5) advance each sequence and push TOKEN / DONE / ERROR to its event ring.
 *
 * Back-pressure: a session is planned only when its event ring has room for the events a step
 * can produce (ELMD_STEP_EVT_BYTES), so pushes never block; a client that stops reading pauses
 * only its own session. Pushing costs no system call unless the client may be asleep (ring.h).
 *
 * Idle: with nothing to compute the thread sleeps in futex_waitv(2) on its own wake word
 * (bumped by control) and on each session's request-ring data word (and, for paused sessions,
 * the event-ring space word), arming them with the ring's waiting flags exactly as ring.h's
 * lost-wakeup argument requires. The wait has a 1 s timeout so a client that scribbles on its
 * words can waste a loop turn, not hang the engine. Without futex_waitv (Linux < 5.16) it
 * falls back to polling every 2 ms.
 */
#include <errno.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/pool.h"
#include "common/trace.h"
#include "daemon/admission.h"
#include "daemon/elmd.h"
#include "daemon/embed.h"
#include "daemon/engine_thread.h"
#include "daemon/plan.h"
#include "elm/status.h"
#include "engine/kv.h"

#define IDLE_TIMEOUT_MS 1000
#define GATHER_NS       1000000 /* what the others get to submit: 1 ms */

void elmd_publish_knobs(struct elmd *d)
{
    const struct elmd_config *c = &d->cfg;
    pthread_mutex_lock(&d->lock);
    d->knobs = (struct elmd_knobs){.prefill_chunk = c->prefill_chunk,
                                   .step_ms = c->step_ms,
                                   .max_sessions = c->max_sessions,
                                   .max_queued = c->max_queued,
                                   .queue_timeout_ms = c->queue_timeout_ms};
    pthread_mutex_unlock(&d->lock);
    elm_pool_set_wait(c->wait); /* the pool reads it at its next parallel call */
}

void elmd_engine_wake(struct elmd *d)
{
    atomic_fetch_add_explicit(&d->eng_seq, 1, memory_order_release);
    syscall(SYS_futex, &d->eng_seq, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void notify_control(struct elmd *d)
{
    uint64_t one = 1;
    if (write(d->wake_fd, &one, sizeof one) < 0)
        elm_debug("engine: cannot notify control: %s", strerror(errno));
}

/* Adds a session's counters of this step to the shared ones; d->lock held. */

/* ---- planning ----------------------------------------------------------------------------- */

static bool runnable(const struct elmd_session *s)
{
    return !s->dead && s->cur.active && !s->preempted && elm_seq_done(s->seq) == ELM_STOP_NONE;
}

/* True when a step's events fit the event ring (or the ring is closed or broken: the push
 * then says so and the session ends); marks the session paused otherwise. */
static bool has_room(struct elmd_session *s)
{
    s->paused = !elm_ring_is_ready(&s->rings.evt, STEP_PAYLOAD);
    return !s->paused;
}

static struct elmd_plan_limits limits(const struct eng *e)
{
    return (struct elmd_plan_limits){.batch = e->m->w_batch,
                                     .prefill_chunk = e->k.prefill_chunk,
                                     .step_ms = e->k.step_ms,
                                     .fixed_ns = e->m->cost.fixed_ns,
                                     .tok_ns = e->m->cost.tok_ns};
}

/* Takes back every page of s's running request, which waits to be recomputed. */
static void preempt(struct elmd_session *s)
{
    int32_t dropped = elm_seq_preempt(s->seq);
    s->preempted = true;
    s->step.preempted++;
    s->step.recomputed += (uint64_t)dropped;
    elm_debug("session %llu: request %u preempted: %d tokens to evaluate again",
              (unsigned long long)s->id, s->cur.req_id, elm_seq_n_pending(s->seq));
}

/* Takes the pages the planned tokens reach, deciding whose pages go when the pool is short
 * (plan.c); a preempted session's tokens leave the plan. */
static void take_pages(struct eng *e)
{
    struct elmd_mem_slot sl[ELMD_MAX_SESSIONS_LIMIT + 1];
    bool take[ELMD_MAX_SESSIONS_LIMIT + 1];
    int64_t want = 0, free_pages = elm_kv_pool_free_pages(e->m->kv_pool);
    for (int k = 0; k < e->n_act; k++) {
        const struct elmd_session *s = e->act[k];
        bool mine = s->dm == e->m; /* other models' sessions hold pages of other pools */
        bool running = mine && !s->dead && s->cur.active && !s->preempted;
        bool idle = mine && !s->dead && !s->cur.active;
        sl[k] = (struct elmd_mem_slot){
            .running = running,
            .order = running ? s->cur.t_admit : s->last_used_ns,
            .held = (running || idle) && s->seq ? elm_seq_pages(s->seq) : 0,
            .want = running && e->counts[k] ? elm_seq_pages_short(s->seq, e->counts[k]) : 0};
        want += sl[k].want;
    }
    if (want > free_pages && elmd_plan_memory(sl, e->n_act, free_pages, take) > 0)
        for (int k = 0; k < e->n_act; k++) {
            struct elmd_session *s = e->act[k];
            if (!take[k])
                continue;
            if (sl[k].running) {
                preempt(s);
                e->counts[k] = 0;
            } else {
                elm_seq_release(s->seq, false);
                s->step.reclaimed++;
            }
        }
    for (int k = 0; k < e->n_act; k++)
        if (e->counts[k] && elm_seq_grow(e->act[k]->seq, e->counts[k]) != 0) {
            /* the planner counted these pages: a bug, not a state to serve through */
            elm_err("session %llu: no KV page for its planned tokens",
                    (unsigned long long)e->act[k]->id);
            preempt(e->act[k]);
            e->counts[k] = 0;
        }
}

/* Plans the step (plan.c) and fills the pass's items in that order; returns their number. */
static int plan(struct eng *e)
{
    struct elmd_plan_slot slots[ELMD_MAX_SESSIONS_LIMIT + 1];
    for (int k = 0; k < e->n_act; k++) {
        struct elmd_session *s = e->act[k];
        slots[k] = (struct elmd_plan_slot){.ready = s->dm == e->m && runnable(s) && has_room(s),
                                           .to_eval = s->cur.to_eval};
    }
    const struct elmd_plan_limits lim = limits(e);
    int m, used = 0;
    elmd_plan(slots, e->n_act, &lim, &e->rr, e->counts, e->order, &m);
    take_pages(e);
    for (int i = 0; i < m; i++) {
        int k = e->order[i];
        if (!e->counts[k])
            continue;
        /* gives what was planned: the sequence has that many tokens pending (to_eval mirrors
         * it), so the counts stay those plan.c chose */
        e->counts[k] = elm_seq_plan(e->act[k]->seq, e->counts[k], e->items + used);
        used += e->counts[k];
    }
    return used;
}

/* Marks what a pass carried, "d_pass:DECODE_ROWS:PROMPT_TOKENS" (scripts/serve-trace.sh reads
 * it beside d_fwd_start/d_fwd_end). The name is formatted only when tracing is on. */
static void trace_pass(const struct eng *e, int n)
{
    if (!elm_trace_is_on())
        return;
    int dec = 0;
    for (int k = 0; k < e->n_act; k++)
        dec += e->counts[k] && e->act[k]->cur.to_eval == 0;
    char name[48];
    snprintf(name, sizeof name, "d_pass:%d:%d", dec, n - dec);
    elm_trace(name);
}

/* Recreates the model's scratch buffers (and the shared item array) when the batch size
 * changed; each model keeps its own, so alternating passes allocate nothing. */
static int ensure_work(struct eng *e)
{
    struct elmd_model *m = e->m;
    int32_t batch =
        (e->k.max_sessions > e->n_act ? e->k.max_sessions : e->n_act) + e->k.prefill_chunk;
    if (e->items_cap < batch) {
        free(e->items);
        e->items_cap = 0;
        if (!(e->items = malloc((size_t)batch * sizeof *e->items)))
            return -ENOMEM;
        e->items_cap = batch;
    }
    if (m->w && m->w_batch == batch)
        return 0;
    elm_work_destroy(&m->w);
    m->w_ctx = elmd_ctx_cap(m, m->ctx);
    int rc = elm_work_create(m->m, batch, m->w_ctx, &m->w);
    if (rc) {
        elm_err("engine: cannot allocate scratch for %d tokens: %s", batch, elm_strerror(rc));
        m->w_batch = 0;
        return rc;
    }
    m->w_batch = batch;
    return 0;
}

/* The model this step's pass is for: the next one, in load order after the last that had a
 * pass, with a session that can be planned. NULL: no model has work. */
static struct elmd_model *pick_model(struct eng *e)
{
    for (int i = 0; i < e->n_models; i++) {
        int j = (e->model_rr + i) % e->n_models;
        for (int k = 0; k < e->n_act; k++) {
            struct elmd_session *s = e->act[k];
            if (s->dm == e->models[j] && runnable(s) && has_room(s)) {
                e->model_rr = (j + 1) % e->n_models;
                return e->models[j];
            }
        }
    }
    return NULL;
}

/* ---- hand-overs and bookkeeping ------------------------------------------------------------ */

static void take_commands(struct eng *e)
{
    struct elmd *d = e->d;
    struct todo {
        struct elmd_session *s;
        int code;
        const char *msg;
        bool close;
    } todo[ELMD_MAX_SESSIONS_LIMIT + 1];
    int n_todo = 0, first_new = e->n_act;
    pthread_mutex_lock(&d->lock);
    while (d->adopt && e->n_act < ELMD_MAX_SESSIONS_LIMIT) {
        struct elmd_session *s = d->adopt;
        d->adopt = s->qnext;
        s->qnext = NULL;
        e->act[e->n_act++] = s;
    }
    for (int k = 0; k < e->n_act; k++) {
        struct elmd_session *s = e->act[k];
        if (s->close_req && !s->dead)
            todo[n_todo++] = (struct todo){s, s->close_code, s->close_msg, true};
        else if (s->cancel_req)
            todo[n_todo++] = (struct todo){s, 0, NULL, false};
        s->cancel_req = false;
    }
    e->n_models = d->n_models;
    memcpy(e->models, d->models, sizeof e->models);
    e->draining = d->eng_draining;
    e->cancel_all = d->eng_cancel_all;
    e->stop = d->eng_stop;
    e->k = d->knobs;
    pthread_mutex_unlock(&d->lock);

    /* New sessions get their sequence here, on the thread that owns the pool's pages. */
    for (int k = first_new; k < e->n_act; k++) {
        struct elmd_session *s = e->act[k];
        int rc = elm_seq_create_pooled(s->model, s->pool, s->n_ctx, &s->seq);
        if (rc) {
            elm_err("session %llu: cannot create its sequence: %s", (unsigned long long)s->id,
                    elm_strerror(rc));
            elmd_push_error(s, 0, rc, "the daemon cannot create the session's context");
            s->dead = true;
            s->reap_code = rc;
        }
    }

    for (int i = 0; i < n_todo; i++) {
        if (todo[i].close)
            elmd_close_session(todo[i].s, todo[i].code, todo[i].msg);
        else
            elmd_cancel_request(todo[i].s, 0, NULL);
    }
    if (e->cancel_all)
        for (int k = 0; k < e->n_act; k++)
            elmd_cancel_request(e->act[k], ELM_ESHUTDOWN, "the daemon is shutting down");
}

/* Whether a session (running here, or still waiting in adopt) was opened on m. */
static bool model_in_use(const struct eng *e, const struct elmd_model *m)
{
    for (int k = 0; k < e->n_act; k++)
        if (e->act[k]->dm == m)
            return true;
    for (const struct elmd_session *s = e->d->adopt; s; s = s->qnext)
        if (s->dm == m)
            return true;
    return false;
}

/* Lets go of every retiring model no session uses any more: control frees it (d->lock held).
 * Returns true when one went. */
static bool retire_models(struct eng *e)
{
    struct elmd *d = e->d;
    bool any = false;
    for (int i = 0; i < d->n_models;) {
        struct elmd_model *m = d->models[i];
        if (!m->retiring || model_in_use(e, m) || d->n_retired == ELMD_MODEL_SLOTS) {
            i++;
            continue;
        }
        memmove(d->models + i, d->models + i + 1, (size_t)(d->n_models - i - 1) * sizeof m);
        d->models[--d->n_models] = NULL;
        d->retired[d->n_retired++] = m;
        any = true;
    }
    /* Control may free a retired model as soon as the lock is released: no pointer to one may
     * stay in this step's snapshot (the loop still reads the pools after end_step). */
    e->m = NULL;
    e->n_models = d->n_models;
    memcpy(e->models, d->models, sizeof e->models);
    return any;
}

/* Adds the step's counters to the shared ones, publishes states, hands dead sessions back. */
static void end_step(struct eng *e, bool stepped)
{
    struct elmd *d = e->d;
    bool reaped = false;
    int running = 0, waiting = 0;
    /* A session leaves the engine without its sequence: its pages go back to the pool here,
     * on this thread. */
    for (int k = 0; k < e->n_act; k++)
        if (e->act[k]->dead) {
            elmd_wait_free(e->act[k]->wait);
            e->act[k]->wait = NULL;
            elmd_embed_free(&e->act[k]->emb); /* vectors nobody will read */
            elm_seq_destroy(&e->act[k]->seq);
        }
    pthread_mutex_lock(&d->lock);
    d->st.c.n_steps += stepped;
    for (int k = 0; k < e->n_act; k++) {
        struct elmd_session *s = e->act[k];
        elmd_flush_stats(d, s);
        int64_t held = s->seq ? elm_seq_pages(s->seq) * ELM_KV_PAGE : 0;
        s->kv_used = held < s->n_history ? (int32_t)held : s->n_history;
        bool busy = s->cur.active || s->queue || s->wait || s->emb;
        waiting += (s->wait || s->preempted) && !s->dead;
        running += busy && !s->dead;
        s->state = s->dead ? ELM_SESSION_STATE_CLOSING
                   : busy  ? ELM_SESSION_STATE_RUNNING
                           : ELM_SESSION_STATE_IDLE;
    }
    for (int k = 0; k < e->n_act;) {
        struct elmd_session *s = e->act[k];
        if (!s->dead) {
            k++;
            continue;
        }
        /* The engine lets go: control frees it. Closing our ends tells the client. */
        elm_ring_close(&s->rings.evt);
        elm_ring_close(&s->rings.req);
        s->qnext = d->reaped;
        d->reaped = s;
        e->act[k] = e->act[--e->n_act];
        reaped = true;
    }
    d->n_kv_waiting = waiting;
    for (int i = 0; i < d->n_models; i++)
        d->models[i]->kv_free_pages = elm_kv_pool_free_pages(d->models[i]->kv_pool);
    reaped |= retire_models(e);
    /* While draining, control waits for the last request to end: tell it when that happens. */
    bool tell = e->draining && (!d->eng_drain_seen || (d->n_running && !running));
    d->n_running = running;
    /* This step read every ring after it saw the drain flag: prompts that came before the
     * signal are in n_running now (or were answered with ESHUTDOWN). */
    d->eng_drain_seen = e->draining;
    pthread_mutex_unlock(&d->lock);
    if (reaped || tell)
        notify_control(d);
}

/* ---- sleeping ------------------------------------------------------------------------------ */

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif

/* The event-ring room a paused session waits for: a step's events, or an EMBED's next record. */
static uint32_t evt_need(const struct elmd_session *s)
{
    return s->emb ? elmd_embed_need(s) : STEP_PAYLOAD;
}

/* Sleeps until a ring or control needs the engine, or timeout_ms (< 0: IDLE_TIMEOUT_MS). */
static void idle_wait(struct eng *e, int timeout_ms)
{
    struct elmd *d = e->d;
    if (e->no_waitv) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
        return;
    }
    struct futex_waitv w[2 * ELMD_MAX_SESSIONS_LIMIT + 1];
    int n = 0;
    bool ready = false;
    w[n++] = (struct futex_waitv){.val = e->wake_seen,
                                  .uaddr = (uintptr_t)&d->eng_seq,
                                  .flags = FUTEX_32 | FUTEX_PRIVATE_FLAG};
    /* ring.h's protocol for many rings: arm each, then re-check each, then sleep. Shared
     * futexes (no PRIVATE flag): the client wakes them through its own mapping. */
    for (int k = 0; k < e->n_act; k++) {
        struct elmd_session *s = e->act[k];
        struct elm_ring_futex f;
        if (s->n_queued < MAX_QUEUED && elm_ring_arm(&s->rings.req, 0, &f) == 0)
            w[n++] =
                (struct futex_waitv){.val = f.val, .uaddr = (uintptr_t)f.uaddr, .flags = FUTEX_32};
        if (s->paused && elm_ring_arm(&s->rings.evt, evt_need(s), &f) == 0)
            w[n++] =
                (struct futex_waitv){.val = f.val, .uaddr = (uintptr_t)f.uaddr, .flags = FUTEX_32};
    }
    for (int k = 0; k < e->n_act && !ready; k++) {
        struct elmd_session *s = e->act[k];
        ready = (s->n_queued < MAX_QUEUED && elm_ring_is_ready(&s->rings.req, 0)) ||
                (s->paused && elm_ring_is_ready(&s->rings.evt, evt_need(s)));
    }
    if (!ready) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int ms = timeout_ms < 0 || timeout_ms > IDLE_TIMEOUT_MS ? IDLE_TIMEOUT_MS : timeout_ms;
        ts.tv_sec += ms / 1000;
        ts.tv_nsec += (long)(ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        long r = syscall(SYS_futex_waitv, w, (unsigned)n, 0, &ts, CLOCK_MONOTONIC);
        if (r < 0 && errno == ENOSYS) {
            elm_warn("engine: futex_waitv unavailable (Linux < 5.16): polling every 2 ms");
            e->no_waitv = true;
        }
    }
    for (int k = 0; k < e->n_act; k++) {
        elm_ring_disarm(&e->act[k]->rings.req);
        elm_ring_disarm(&e->act[k]->rings.evt);
    }
}

/* Woken from idle by a request while other sessions are open: programs that start together
 * (one event triggering several) submit within a fraction of a millisecond of each other, but
 * the first one's pass took both cores before the others ran, so their prompts were read a
 * step late and cut to the step budget beside the first ones' decoding (8 tinyllama clients
 * on a Zen 5 VM: every round read in two steps, ~100 ms gaps in the early streams, inter-token
 * p99 up to 5x one client's; with this moment every traced round was read in one step, p99
 * 1.5-2.7x in alternated runs; docs/benchmarks.md). A lone session never waits. */
static void gather(const struct eng *e)
{
    if (e->n_act < 2)
        return;
    bool request = false;
    for (int k = 0; k < e->n_act && !request; k++)
        request = elm_ring_is_ready(&e->act[k]->rings.req, 0);
    if (!request)
        return;
    struct timespec ts = {0, GATHER_NS};
    nanosleep(&ts, NULL);
}

/* ---- the loop ------------------------------------------------------------------------------ */

/* Free pages of every resident model's pool (as of this step's snapshot). */
static int64_t pools_free_pages(const struct eng *e)
{
    int64_t n = 0;
    for (int i = 0; i < e->n_models; i++)
        n += elm_kv_pool_free_pages(e->models[i]->kv_pool);
    return n;
}

void *elmd_engine_main(void *arg)
{
    struct eng e = {.d = arg};
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals are the control thread's business */
    for (;;) {
        e.wake_seen = atomic_load_explicit(&e.d->eng_seq, memory_order_acquire);
        take_commands(&e);
        if (e.stop)
            break;
        for (int k = 0; k < e.n_act; k++)
            elmd_read_requests(e.act[k]);
        int wait_ms = elmd_admit_waiting(&e);
        for (int k = 0; k < e.n_act; k++)
            elmd_start_next(&e, e.act[k]);
        int64_t free_seen = pools_free_pages(&e);
        if (wait_ms < 0 && elmd_n_waiting(&e, NULL))
            wait_ms = e.k.queue_timeout_ms; /* a request that began to wait in this step */
        int n = 0, rc = 0;
        if ((e.m = pick_model(&e)) && ensure_work(&e) == 0)
            n = plan(&e);
        if (n > 0) {
            const uint64_t t0 = elmd_now_ns();
            elm_trace("d_fwd_start");
            elmd_compute_threads(e.m->m);
            rc = elm_model_forward(e.m->m, e.m->w, e.items, n);
            elm_trace("d_fwd_end");
            trace_pass(&e, n);
            elmd_cost_learn(&e.m->cost, n, elmd_now_ns() - t0);
            if (rc)
                elm_err("engine: forward pass over %d tokens failed: %s", n, elm_strerror(rc));
            for (int k = 0; k < e.n_act; k++)
                if (e.counts[k])
                    elmd_advance(e.act[k], e.counts[k], rc);
        }
        end_step(&e, n > 0);
        /* Pages freed in this step (a session closed) may let a waiting request in: no sleep. */
        bool freed = elmd_n_waiting(&e, NULL) && pools_free_pages(&e) > free_seen;
        if (n == 0 && !freed) {
            idle_wait(&e, wait_ms);
            elm_trace("d_woke");
            gather(&e);
        }
    }
    /* Control asked us to stop after closing every session; hand back any stragglers. */
    for (int k = 0; k < e.n_act; k++)
        e.act[k]->dead = true;
    end_step(&e, false);
    free(e.items);
    return NULL;
}
