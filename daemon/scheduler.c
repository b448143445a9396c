/* scheduler.c — the engine thread: one batched forward pass per step over every active
 * session.
 *
 * A step: (1) take control's hand-overs (new sessions, close/cancel flags, a model swap);
 * (2) read each session's request ring — records are copied out, decoded with the session_shm
 * decoders, and a bad one ends that session alone (ERROR, then closed); (3) plan: every
 * decoding session gets its one token, then prompts get chunks of at most prefill_chunk
 * tokens, round-robin, within the batch, so a long prompt delays the others by one chunk per
 * step, never by its whole length; (4) ONE elm_model_forward() over all the items — the pass is
 * batch-invariant, so each session's logits are bit-identical to running alone; (5) advance
 * each sequence and push TOKEN / DONE / ERROR to its event ring.
 *
 * KV memory: a request starts only once its pages of the model's pool are reserved
 * (admission.c; idle sessions' pages are taken back first). Otherwise it waits in one FIFO for
 * every session, retried each step oldest first, until queue_timeout_ms (then ERROR ELM_EBUSY);
 * max_queued bounds the FIFO. A request that ends keeps its conversation's pages.
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

#include "admission.h"
#include "common/log.h"
#include "elm/status.h"
#include "elmd.h"
#include "engine/kv.h"
#include "ipc/proto.h"

#define MAX_QUEUED      4 /* prompts read ahead per session; the rest wait in the ring */
#define IDLE_TIMEOUT_MS 1000
/* Payload bytes one record holding a step's events would need (see ELMD_STEP_EVT_BYTES). */
#define STEP_PAYLOAD ((uint32_t)(ELMD_STEP_EVT_BYTES - ELM_RING_REC_HDR))

struct eng {
    struct elmd *d;
    struct elmd_session *act[ELMD_MAX_SESSIONS_LIMIT + 1];
    int counts[ELMD_MAX_SESSIONS_LIMIT + 1]; /* items planned per session this step */
    int n_act;
    const struct elmd_model *m;
    struct elm_work *w;
    int32_t w_batch, w_ctx;
    struct elm_batch_item *items;
    int rr;
    struct elmd_knobs k; /* d->knobs as of this step */
    double ns_per_tok;   /* running estimate of a token's cost in a batch of several (0: none) */
    bool draining, cancel_all, stop;
    uint32_t wake_seen;
    bool no_waitv;
};

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
static void flush_stats(struct elmd *d, struct elmd_session *s)
{
    s->n_requests += s->step.req;
    s->n_prompt_tokens += s->step.prompt_tok;
    s->n_gen_tokens += s->step.tok;
    d->st.c.n_requests += s->step.req;
    d->st.c.n_errors += s->step.err;
    d->st.c.n_prompt_tokens += s->step.prompt_tok;
    d->st.c.n_prompt_reused += s->step.prompt_reused;
    d->st.c.n_gen_tokens += s->step.tok;
    d->st.c.prompt_ns += s->step.prompt_ns;
    d->st.c.gen_ns += s->step.gen_ns;
    d->st.c.n_ring_errors += s->step.ring_err;
    d->st.c.n_busy += s->step.busy;
    d->st.c.n_kv_reclaimed += s->step.reclaimed;
    if (s->step.has_ttft) {
        elmd_lat_add(&s->ttft, s->step.ttft_ns);
        elmd_lat_add(&d->st.ttft, s->step.ttft_ns);
    }
    if (s->step.has_itl) {
        elmd_lat_add(&s->itl, s->step.itl_ns);
        elmd_lat_add(&d->st.itl, s->step.itl_ns);
    }
    memset(&s->step, 0, sizeof s->step);
}

/* Before a request's last record goes out: whoever reads it and then asks for `stats` must
 * find the request counted. */
static void flush_now(struct elmd_session *s)
{
    pthread_mutex_lock(&s->d->lock);
    flush_stats(s->d, s);
    if (!s->dead) /* the request has ended (cur.active is false by now) */
        s->state = s->queue || s->wait ? ELM_SESSION_STATE_RUNNING : ELM_SESSION_STATE_IDLE;
    pthread_mutex_unlock(&s->d->lock);
}

/* ---- events ------------------------------------------------------------------------------- */

/* A push can only fail when the client broke or closed its ring (room was checked): the session
 * is then beyond help. */
static void check_push(struct elmd_session *s, int rc)
{
    if (rc < 0 && !s->dead) {
        elm_info("session %llu: cannot send events (%s): closing it", (unsigned long long)s->id,
                 elm_strerror(rc));
        s->dead = true;
        s->reap_code = rc;
    }
}

static void push_error(struct elmd_session *s, uint32_t req_id, int code, const char *msg)
{
    if (!s->dead)
        check_push(s, elm_rec_error_push(&s->rings.evt, req_id, code, msg));
}

/* Prompt tokens the request evaluated: the history whose KV was kept is not counted. */
static int32_t n_evaluated(const struct elmd_session *s)
{
    return elm_seq_n_prompt(s->seq) - elm_seq_n_reused(s->seq);
}

static void end_stats(struct elmd_session *s, uint64_t now)
{
    s->step.req++;
    s->step.prompt_tok += (uint64_t)n_evaluated(s);
    s->step.prompt_reused += (uint64_t)elm_seq_n_reused(s->seq);
    if (s->cur.t_first) {
        s->step.prompt_ns += s->cur.t_first - s->cur.t_recv;
        s->step.gen_ns += now - s->cur.t_first;
    }
    s->cur.active = false;
    s->last_used_ns = now;
    /* The pages beyond the conversation go back to the pool; the history's stay, so the next
     * KEEP_CONTEXT turn (or a prompt sharing a prefix) does not evaluate it again — unless the
     * pool needs them first (admission.c). */
    elm_seq_release(s->seq, true);
}

/* Ends the running request with ERROR(code). */
static void fail_request(struct elmd_session *s, int code, const char *msg)
{
    if (!s->cur.active)
        return;
    elm_seq_cancel(s->seq);
    s->step.err++;
    end_stats(s, elmd_now_ns());
    flush_now(s);
    push_error(s, s->cur.req_id, code, msg);
    elm_debug("session %llu: request %u: error %d (%s)", (unsigned long long)s->id, s->cur.req_id,
              code, msg);
}

static void finish_request(struct elmd_session *s, enum elm_done_reason reason)
{
    uint64_t now = elmd_now_ns();
    struct elm_rec_done dn = {
        .req_id = s->cur.req_id,
        .reason = reason,
        .n_prompt = (uint32_t)n_evaluated(s),
        .n_gen = (uint32_t)elm_seq_n_generated(s->seq),
        .t_first_ns = s->cur.t_first ? s->cur.t_first - s->cur.t_recv : 0,
        .t_total_ns = now - s->cur.t_recv,
    };
    end_stats(s, now);
    flush_now(s);
    if (!s->dead)
        check_push(s, elm_rec_done_push(&s->rings.evt, &dn));
    elm_debug("session %llu: request %u: done (%u), %u tokens", (unsigned long long)s->id,
              dn.req_id, dn.reason, dn.n_gen);
}

/* Answers the request waiting for KV pages without running it: DONE/CANCEL when code is 0,
 * else ERROR(code). */
static void end_wait(struct elmd_session *s, int code, const char *msg)
{
    struct elmd_wait *w = s->wait;
    uint32_t req_id = w->p->msg.hdr.req_id;
    uint64_t t_total = elmd_now_ns() - w->p->t_recv_ns;
    s->wait = NULL;
    elmd_wait_free(w);
    s->step.req++;
    s->step.err += code != 0;
    s->step.busy += code == ELM_EBUSY;
    flush_now(s);
    if (code) {
        push_error(s, req_id, code, msg);
    } else if (!s->dead) {
        struct elm_rec_done dn = {
            .req_id = req_id, .reason = ELM_DONE_CANCEL, .t_total_ns = t_total};
        check_push(s, elm_rec_done_push(&s->rings.evt, &dn));
    }
    elm_debug("session %llu: request %u: ended while waiting for KV memory (%d)",
              (unsigned long long)s->id, req_id, code);
}

/* Ends a request that a cancel reached: DONE/CANCEL, or the error a shutdown asks for. A
 * request still waiting for KV pages ends the same way. */
static void cancel_request(struct elmd_session *s, int code, const char *msg)
{
    if (!s->cur.active && s->wait)
        end_wait(s, code, msg);
    if (!s->cur.active)
        return;
    elm_seq_cancel(s->seq);
    if (code)
        fail_request(s, code, msg);
    else
        finish_request(s, ELM_DONE_CANCEL);
}

/* The session is broken (bad record, corrupted ring): tell the client why, then close it. */
static void kill_session(struct elmd_session *s, int code, const char *msg)
{
    elm_warn("session %llu: %s: closing it", (unsigned long long)s->id, msg);
    if (s->cur.active)
        fail_request(s, code, msg);
    else if (s->wait)
        end_wait(s, code, msg);
    else
        push_error(s, 0, code, msg);
    s->dead = true;
    s->reap_code = code;
    s->step.ring_err = true;
}

/* ---- requests ----------------------------------------------------------------------------- */

static void handle_cancel(struct elmd_session *s, uint32_t req_id)
{
    if ((s->cur.active && s->cur.req_id == req_id) ||
        (s->wait && s->wait->p->msg.hdr.req_id == req_id)) {
        cancel_request(s, 0, NULL);
        return;
    }
    /* A queued prompt that never ran still gets its answer, in order, when its turn comes:
     * mark it, and start_next answers DONE/CANCEL instead of running it. */
    for (struct elmd_prompt *p = s->queue; p; p = p->next)
        if (p->msg.hdr.req_id == req_id)
            p->cancelled = true;
}

/* Copies out every record that is there (up to MAX_QUEUED prompts), validating each. */
static void read_requests(struct elmd_session *s)
{
    while (!s->dead && s->n_queued < MAX_QUEUED) {
        struct elm_ring_rec rec;
        int rc = elm_ring_peek(&s->rings.req, &rec);
        if (rc == -EAGAIN)
            return;
        if (rc == -EPIPE) { /* the client closed its end: it is leaving */
            cancel_request(s, 0, NULL);
            s->dead = true;
            return;
        }
        if (rc < 0) {
            kill_session(s, ELM_ERING, "the request ring is corrupted");
            return;
        }
        void *buf = malloc(rec.len ? rec.len : 1);
        struct elmd_prompt *p = calloc(1, sizeof *p);
        if (!buf || !p) {
            free(buf);
            free(p);
            kill_session(s, -ENOMEM, "out of memory reading a request");
            return;
        }
        rc = elm_ring_pop(&s->rings.req, &rec, buf, rec.len);
        uint32_t cancel_id;
        if (rc == 0 && rec.type == ELM_REC_PROMPT &&
            (rc = elm_rec_prompt_decode(buf, rec.len, &p->msg)) == 0) {
            p->buf = buf;
            p->t_recv_ns = elmd_now_ns();
            struct elmd_prompt **tail = &s->queue;
            while (*tail)
                tail = &(*tail)->next;
            *tail = p;
            s->n_queued++;
            continue;
        }
        free(p);
        if (rc == 0 && rec.type == ELM_REC_CANCEL &&
            (rc = elm_rec_cancel_decode(buf, rec.len, &cancel_id)) == 0) {
            free(buf);
            handle_cancel(s, cancel_id);
            continue;
        }
        free(buf);
        char msg[96];
        if (rc == 0)
            snprintf(msg, sizeof msg, "unexpected record type %u in the request ring",
                     (unsigned)rec.type);
        else
            snprintf(msg, sizeof msg, "malformed %s record (%s)", elm_rec_type_name(rec.type),
                     elm_strerror(rc));
        kill_session(s, rc ? rc : ELM_EPROTO, msg);
        return;
    }
}

/* Tokens of the prompt text, BOS per the vocabulary when asked. *ids is malloc'ed. */
static int tokenize(const struct elm_model *m, const struct elm_prompt_msg *p, bool bos,
                    int32_t **ids, int32_t *n)
{
    bool special = p->hdr.flags & ELM_PROMPT_F_PARSE_SPECIAL;
    return elm_tokenize_alloc(m->vocab, p->text, p->hdr.prompt_len, bos, special, ids, n);
}

/* The sequence prompt p asks for on s (its kept history, when KEEP_CONTEXT, then the prompt's
 * tokens) and its parameters, in a new *out. Everything that can refuse the request is checked
 * here, before anything of the session changes, so a refused request leaves the conversation
 * as it was. */
static int prepare(struct eng *e, struct elmd_session *s, struct elmd_prompt *p,
                   struct elmd_wait **out)
{
    const struct elm_rec_prompt *h = &p->msg.hdr;
    bool keep = (h->flags & ELM_PROMPT_F_KEEP_CONTEXT) && s->n_history > 0;
    /* A continued conversation never gets a BOS in its middle. */
    bool bos = (h->flags & ELM_PROMPT_F_ADD_BOS) && !keep;
    int32_t *ids = NULL, n = 0;
    int rc = tokenize(e->m->m, &p->msg, bos, &ids, &n);
    if (rc)
        return rc;
    int32_t base = keep ? s->n_history : 0;
    struct elmd_wait *w = NULL;
    if ((int64_t)base + n > s->n_ctx)
        rc = ELM_ECONTEXT;
    else if (base + n == 0)
        rc = -EINVAL;
    else if (!(w = calloc(1, sizeof *w)) ||
             !(w->toks = malloc((size_t)(base + n) * sizeof(int32_t))))
        rc = -ENOMEM;
    else if (!s->history && !(s->history = malloc(((size_t)s->n_ctx + 1) * sizeof(int32_t))))
        rc = -ENOMEM;
    if (rc) {
        free(ids);
        elmd_wait_free(w);
        return rc;
    }
    memcpy(w->toks, s->history, (size_t)base * sizeof *ids);
    memcpy(w->toks + base, ids, (size_t)n * sizeof *ids);
    free(ids);
    w->n = base + n;
    struct elm_gen_params *gp = &w->gp;
    elm_gen_params_default(gp);
    gp->sampling = (struct elm_sampling){
        .temp = h->temp,
        .top_k = h->top_k,
        .top_p = h->top_p,
        .min_p = h->min_p,
        .repeat_penalty = h->repeat_penalty,
        .repeat_last_n = (int32_t)(h->repeat_last_n > 1u << 20 ? 1u << 20 : h->repeat_last_n),
        .seed = h->seed};
    gp->n_predict =
        h->n_predict ? (int32_t)(h->n_predict > INT32_MAX ? INT32_MAX : h->n_predict) : -1;
    /* The record's stop strings are not NUL-terminated: copy them out. */
    gp->n_stop = (int)h->n_stop;
    for (uint32_t i = 0; i < h->n_stop; i++) {
        memcpy(w->stops[i], p->msg.stop[i], p->msg.stop_len[i]);
        w->stops[i][p->msg.stop_len[i]] = 0;
        gp->stop[i] = w->stops[i];
    }
    if ((rc = elm_sampling_check(&gp->sampling))) {
        elmd_wait_free(w);
        return rc;
    }
    *out = w;
    return 0;
}

/* The request w (from prompt p) has its pages: it runs from the next plan on. */
static void commit(struct elmd_session *s, struct elmd_prompt *p, struct elmd_wait *w)
{
    memcpy(s->history, w->toks, (size_t)w->n * sizeof *w->toks);
    s->n_history = w->n;
    s->cur.active = true;
    s->cur.req_id = p->msg.hdr.req_id;
    s->cur.t_recv = p->t_recv_ns;
    s->cur.t_first = s->cur.t_last = 0;
    s->cur.n_predict = w->gp.n_predict;
    s->cur.to_eval = w->n - elm_seq_n_reused(s->seq);
    s->last_used_ns = elmd_now_ns();
    elm_debug("session %llu: request %u: %d prompt tokens (%d reused)", (unsigned long long)s->id,
              s->cur.req_id, w->n, elm_seq_n_reused(s->seq));
}

static int n_waiting(const struct eng *e)
{
    int n = 0;
    for (int k = 0; k < e->n_act; k++)
        n += e->act[k]->wait != NULL;
    return n;
}

static void busy_message(const struct elmd_wait *w, char *msg, size_t cap)
{
    snprintf(msg, cap, "no KV memory free: %lld pages needed, %lld free; try later",
             (long long)w->need_pages, (long long)w->free_pages);
}

/* Starts prompt p on s (which is idle), or makes it wait for KV pages. Returns 0 (started),
 * 1 (waiting: s->wait owns p now) or an error for an ERROR reply, with msg filled for
 * ELM_EBUSY. */
static int start_prompt(struct eng *e, struct elmd_session *s, struct elmd_prompt *p, char *msg,
                        size_t cap)
{
    struct elmd_wait *w;
    int rc = prepare(e, s, p, &w);
    if (rc)
        return rc;
    /* The requests already waiting came first: with any, this one queues behind them. */
    int waiting = n_waiting(e), reclaimed = 0;
    rc = waiting ? -ENOSPC : elmd_admit(e->act, e->n_act, s, w, &reclaimed);
    s->step.reclaimed += (uint32_t)reclaimed;
    if (rc == 0)
        commit(s, p, w);
    if (rc != -ENOSPC) {
        elmd_wait_free(w);
        return rc;
    }
    if (waiting) {
        w->need_pages = elmd_wait_need(s, w);
        w->free_pages = elm_kv_pool_free_pages(s->pool);
    }
    if (e->k.queue_timeout_ms == 0 || waiting >= e->k.max_queued) {
        busy_message(w, msg, cap);
        elm_debug("session %llu: request %u refused: %s (%d waiting)", (unsigned long long)s->id,
                  p->msg.hdr.req_id, msg, waiting);
        elmd_wait_free(w);
        return ELM_EBUSY;
    }
    w->p = p;
    w->since_ns = elmd_now_ns();
    s->wait = w;
    elm_debug("session %llu: request %u waits for %lld KV pages (%lld free)",
              (unsigned long long)s->id, p->msg.hdr.req_id, (long long)w->need_pages,
              (long long)w->free_pages);
    return 1;
}

/* Each step, before new prompts: starts the waiting requests that fit now, oldest first, and
 * stops at the first that does not (strict FIFO: a large request is not overtaken for ever by
 * small ones); refuses the ones that waited too long. Returns the milliseconds until the next
 * of those deadlines (-1: none). */
static int admit_waiting(struct eng *e)
{
    struct elmd_session *q[ELMD_MAX_SESSIONS_LIMIT + 1];
    int n = 0;
    for (int k = 0; k < e->n_act; k++) { /* sorted by arrival: a handful, insertion sort */
        struct elmd_session *s = e->act[k];
        if (!s->wait || s->dead)
            continue;
        int i = n++;
        for (; i > 0 && q[i - 1]->wait->since_ns > s->wait->since_ns; i--)
            q[i] = q[i - 1];
        q[i] = s;
    }
    uint64_t now = elmd_now_ns(), timeout = (uint64_t)e->k.queue_timeout_ms * 1000000u;
    uint64_t next = UINT64_MAX;
    bool blocked = false;
    char msg[160];
    for (int i = 0; i < n; i++) {
        struct elmd_session *s = q[i];
        struct elmd_wait *w = s->wait;
        if (e->draining) {
            end_wait(s, ELM_ESHUTDOWN, "the daemon is shutting down");
            continue;
        }
        if (!blocked) {
            int reclaimed = 0;
            int rc = elmd_admit(e->act, e->n_act, s, w, &reclaimed);
            s->step.reclaimed += (uint32_t)reclaimed;
            if (rc == 0) {
                struct elmd_prompt *p = w->p;
                s->wait = NULL;
                w->p = NULL;
                commit(s, p, w);
                elmd_wait_free(w);
                free(p->buf);
                free(p);
                continue;
            }
            if (rc != -ENOSPC) {
                end_wait(s, rc, elm_strerror(rc));
                continue;
            }
            blocked = true;
        }
        if (now - w->since_ns >= timeout) {
            busy_message(w, msg, sizeof msg);
            end_wait(s, ELM_EBUSY, msg);
        } else if (w->since_ns + timeout < next) {
            next = w->since_ns + timeout;
        }
    }
    return next == UINT64_MAX ? -1 : (int)((next - now + 999999) / 1000000);
}

/* Starts the next queued prompt of an idle session. */
static void start_next(struct eng *e, struct elmd_session *s)
{
    while (!s->dead && !s->cur.active && !s->wait && s->queue) {
        struct elmd_prompt *p = s->queue;
        s->queue = p->next;
        s->n_queued--;
        int rc;
        const char *msg = NULL;
        char buf[160];
        if (p->cancelled) {
            struct elm_rec_done dn = {.req_id = p->msg.hdr.req_id,
                                      .reason = ELM_DONE_CANCEL,
                                      .t_total_ns = elmd_now_ns() - p->t_recv_ns};
            s->step.req++;
            flush_now(s);
            check_push(s, elm_rec_done_push(&s->rings.evt, &dn));
            rc = 0;
        } else if (e->draining) {
            rc = ELM_ESHUTDOWN;
            msg = "the daemon is shutting down";
        } else {
            rc = start_prompt(e, s, p, buf, sizeof buf);
            if (rc == 1)
                return; /* waiting for KV pages: s->wait owns p */
            msg = rc == ELM_ECONTEXT ? "the prompt does not fit the session's context"
                  : rc == -EINVAL    ? "empty prompt (and the model adds no BOS) or invalid "
                                       "sampling parameters"
                  : rc == ELM_EBUSY  ? buf
                                     : elm_strerror(rc);
        }
        if (rc) {
            s->step.req++;
            s->step.err++;
            s->step.busy += rc == ELM_EBUSY;
            flush_now(s);
            push_error(s, p->msg.hdr.req_id, rc, msg);
        }
        free(p->buf);
        free(p);
    }
}

/* ---- planning and stepping ---------------------------------------------------------------- */

static bool runnable(const struct elmd_session *s)
{
    return !s->dead && s->cur.active && elm_seq_done(s->seq) == ELM_STOP_NONE;
}

/* True when a step's events fit the event ring (or the ring is closed or broken: the push
 * then says so and the session ends); marks the session paused otherwise. */
static bool has_room(struct elmd_session *s)
{
    s->paused = !elm_ring_is_ready(&s->rings.evt, STEP_PAYLOAD);
    return !s->paused;
}

/* Prompt tokens this step may take besides the `decoding` tokens, so that the step stays
 * within step_ms: many-token passes are compute-bound, so their cost grows with the tokens
 * (ns_per_tok, measured). At least one, so prompts always progress. */
static int prefill_allowance(const struct eng *e, int decoding)
{
    int left = e->w_batch - decoding;
    if (e->k.step_ms <= 0 || e->ns_per_tok <= 0)
        return left;
    double fit = (double)e->k.step_ms * 1e6 / e->ns_per_tok - decoding;
    return fit < 1 ? 1 : fit < left ? (int)fit : left;
}

/* Learns a token's cost from passes of several tokens (a pass of one or two reads all the
 * weights for little work: its cost per token says nothing about larger batches). */
static void learn_cost(struct eng *e, int n, uint64_t ns)
{
    if (n < 8)
        return;
    double per = (double)ns / n;
    e->ns_per_tok = e->ns_per_tok > 0 ? 0.75 * e->ns_per_tok + 0.25 * per : per;
}

static int plan(struct eng *e)
{
    int used = 0;
    for (int k = 0; k < e->n_act; k++) {
        struct elmd_session *s = e->act[k];
        e->counts[k] = 0;
        if (runnable(s) && s->cur.to_eval == 0 && has_room(s)) {
            e->counts[k] = elm_seq_plan(s->seq, 1, e->items + used);
            used += e->counts[k];
        }
    }
    const int limit = used + prefill_allowance(e, used);
    for (int j = 0; j < e->n_act && used < limit; j++) {
        int k = (e->rr + j) % e->n_act;
        struct elmd_session *s = e->act[k];
        if (runnable(s) && s->cur.to_eval > 0 && has_room(s)) {
            int left = limit - used;
            int max = left < e->k.prefill_chunk ? left : e->k.prefill_chunk;
            e->counts[k] = elm_seq_plan(s->seq, max, e->items + used);
            used += e->counts[k];
        }
    }
    e->rr = e->n_act ? (e->rr + 1) % e->n_act : 0;
    return used;
}

static enum elm_done_reason done_reason(enum elm_stop_reason r)
{
    switch (r) {
    case ELM_STOP_EOS:
        return ELM_DONE_EOS;
    case ELM_STOP_STRING:
        return ELM_DONE_STOP;
    case ELM_STOP_CANCEL:
        return ELM_DONE_CANCEL;
    default:
        break;
    }
    return ELM_DONE_LENGTH; /* n_predict reached, or the context is full */
}

static void advance(struct elmd_session *s, int n, int rc)
{
    struct elm_seq_out out;
    elm_seq_advance(s->seq, n, rc, &out);
    s->cur.to_eval = s->cur.to_eval > n ? s->cur.to_eval - n : 0;
    uint64_t now = elmd_now_ns();
    if (out.token >= 0) {
        size_t len = out.text_len;
        if (len > ELM_REC_MAX_PIECE) { /* held-back stop text is far shorter; never expected */
            elm_warn("session %llu: %zu bytes of text in one step, cut to %d",
                     (unsigned long long)s->id, len, ELM_REC_MAX_PIECE);
            len = ELM_REC_MAX_PIECE;
        }
        check_push(s, elm_rec_token_push(&s->rings.evt, out.token, out.text, (uint32_t)len));
        if (!s->cur.t_first) {
            s->cur.t_first = now;
            s->step.ttft_ns = now - s->cur.t_recv;
            s->step.has_ttft = true;
        } else {
            s->step.itl_ns = now - s->cur.t_last;
            s->step.has_itl = true;
        }
        s->cur.t_last = now;
        s->step.tok++;
        if (!elm_vocab_is_eog(s->model->vocab, out.token) && s->n_history < s->n_ctx + 1)
            s->history[s->n_history++] = out.token;
    }
    /* (Text released without a token happens only when a cancel flushes held-back text; the
     * wire has no record for text without a token id, and a cancelled stream may end early.) */
    if (out.done == ELM_STOP_ERROR)
        fail_request(s, rc ? rc : -EIO, "the forward pass failed");
    else if (out.done)
        finish_request(s, done_reason(out.done));
}

/* Recreates the scratch buffers when the model or the batch size changed. */
static int ensure_work(struct eng *e)
{
    int32_t batch = (e->k.max_sessions > e->n_act ? e->k.max_sessions : e->n_act) + e->k.prefill_chunk;
    if (e->w && e->w_batch == batch)
        return 0;
    elm_work_destroy(&e->w);
    free(e->items);
    e->items = malloc((size_t)batch * sizeof *e->items);
    int rc = e->items ? elm_work_create(e->m->m, batch, e->w_ctx, &e->w) : -ENOMEM;
    if (rc) {
        elm_err("engine: cannot allocate scratch for %d tokens: %s", batch, elm_strerror(rc));
        e->w_batch = 0;
        return rc;
    }
    e->w_batch = batch;
    return 0;
}

/* Control closes the session (unload, shutdown, client gone...). Every prompt the client sent
 * still gets its answer, in order, so nobody waits for a reply that cannot come: the running
 * one and the queued ones (including those still in the ring) end with ERROR(code). */
static void close_session(struct elmd_session *s, int code, const char *msg)
{
    read_requests(s);
    cancel_request(s, code, msg);
    while (s->queue && !s->dead) {
        struct elmd_prompt *p = s->queue;
        s->queue = p->next;
        s->n_queued--;
        s->step.req++;
        s->step.err++;
        flush_now(s);
        push_error(s, p->msg.hdr.req_id, code, msg);
        free(p->buf);
        free(p);
    }
    s->dead = true;
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
            push_error(s, 0, rc, "the daemon cannot create the session's context");
            s->dead = true;
            s->reap_code = rc;
        }
    }

    for (int i = 0; i < n_todo; i++) {
        if (todo[i].close)
            close_session(todo[i].s, todo[i].code, todo[i].msg);
        else
            cancel_request(todo[i].s, 0, NULL);
    }
    if (e->cancel_all)
        for (int k = 0; k < e->n_act; k++)
            cancel_request(e->act[k], ELM_ESHUTDOWN, "the daemon is shutting down");
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
            elm_seq_destroy(&e->act[k]->seq);
        }
    pthread_mutex_lock(&d->lock);
    d->st.c.n_steps += stepped;
    for (int k = 0; k < e->n_act; k++) {
        struct elmd_session *s = e->act[k];
        flush_stats(d, s);
        int64_t held = s->seq ? elm_seq_pages(s->seq) * ELM_KV_PAGE : 0;
        s->kv_used = held < s->n_history ? (int32_t)held : s->n_history;
        bool busy = s->cur.active || s->queue || s->wait;
        waiting += s->wait && !s->dead;
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
    if (e->m)
        d->kv_free_pages = elm_kv_pool_free_pages(e->m->kv_pool);
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

/* After every session of the old model was let go: installs the new model (or none). */
static void swap_model(struct eng *e)
{
    struct elmd *d = e->d;
    elm_work_destroy(&e->w);
    e->w_batch = 0;
    e->ns_per_tok = 0; /* another model, another cost */
    pthread_mutex_lock(&d->lock);
    /* A session control opened for the old model may still wait in adopt: it must be adopted
     * (and closed by the swap) before the old model can go. */
    bool pending = d->swap_pending && e->n_act == 0 && !d->adopt;
    if (pending) {
        d->retired = d->model;
        d->model = d->swap_to;
        d->model_ctx = d->swap_ctx;
        d->swap_to = NULL;
        d->swap_pending = false;
    }
    e->m = d->model;
    if (e->m)
        e->w_ctx = elmd_ctx_cap(e->m, d->model_ctx);
    d->kv_free_pages = e->m ? elm_kv_pool_free_pages(e->m->kv_pool) : 0;
    pthread_mutex_unlock(&d->lock);
    if (pending)
        notify_control(d);
}

/* ---- sleeping ------------------------------------------------------------------------------ */

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif

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
        if (s->paused && elm_ring_arm(&s->rings.evt, STEP_PAYLOAD, &f) == 0)
            w[n++] =
                (struct futex_waitv){.val = f.val, .uaddr = (uintptr_t)f.uaddr, .flags = FUTEX_32};
    }
    for (int k = 0; k < e->n_act && !ready; k++) {
        struct elmd_session *s = e->act[k];
        ready = (s->n_queued < MAX_QUEUED && elm_ring_is_ready(&s->rings.req, 0)) ||
                (s->paused && elm_ring_is_ready(&s->rings.evt, STEP_PAYLOAD));
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

/* ---- the loop ------------------------------------------------------------------------------ */

void *elmd_engine_main(void *arg)
{
    struct eng e = {.d = arg};
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals are the control thread's business */
    swap_model(&e);
    for (;;) {
        e.wake_seen = atomic_load_explicit(&e.d->eng_seq, memory_order_acquire);
        take_commands(&e);
        if (e.stop)
            break;
        bool swap;
        pthread_mutex_lock(&e.d->lock);
        swap = e.d->swap_pending || e.m != e.d->model;
        pthread_mutex_unlock(&e.d->lock);
        for (int k = 0; k < e.n_act; k++)
            read_requests(e.act[k]);
        int wait_ms = admit_waiting(&e);
        for (int k = 0; k < e.n_act; k++)
            start_next(&e, e.act[k]);
        int64_t free_seen = e.m ? elm_kv_pool_free_pages(e.m->kv_pool) : 0;
        if (wait_ms < 0 && n_waiting(&e))
            wait_ms = e.k.queue_timeout_ms; /* a request that began to wait in this step */
        int n = 0, rc = 0;
        if (e.m && e.n_act && ensure_work(&e) == 0)
            n = plan(&e);
        if (n > 0) {
            const uint64_t t0 = elmd_now_ns();
            rc = elm_model_forward(e.m->m, e.w, e.items, n);
            learn_cost(&e, n, elmd_now_ns() - t0);
            if (rc)
                elm_err("engine: forward pass over %d tokens failed: %s", n, elm_strerror(rc));
            for (int k = 0; k < e.n_act; k++)
                if (e.counts[k])
                    advance(e.act[k], e.counts[k], rc);
        }
        end_step(&e, n > 0);
        if (swap) {
            swap_model(&e);
            continue;
        }
        /* Pages freed in this step (a session closed) may let a waiting request in: no sleep. */
        bool freed = e.m && n_waiting(&e) && elm_kv_pool_free_pages(e.m->kv_pool) > free_seen;
        if (n == 0 && !freed)
            idle_wait(&e, wait_ms);
    }
    /* Control asked us to stop after closing every session; hand back any stragglers. */
    for (int k = 0; k < e.n_act; k++)
        e.act[k]->dead = true;
    end_step(&e, false);
    elm_work_destroy(&e.w);
    free(e.items);
    return NULL;
}
