/* scheduler.c — the engine thread's requests: reading a session's request ring, starting a
 * prompt (or making it wait for KV pages), advancing it after each pass, and ending it with
 * DONE or ERROR. The loop that calls these is step.c; which tokens go into a pass is plan.c.
 *
 * Requests: records are copied out of each session's request ring, decoded with the
 * session_shm decoders, and a bad one ends that session alone (ERROR, then closed). A session
 * runs one request at a time; up to MAX_QUEUED more wait in order.
 *
 * KV memory: a request starts once its prompt's pages of the model's pool are taken
 * (admission.c; idle sessions' pages are taken back first); it grows page by page (step.c), and
 * a preempted one (plan.h) waits to be resumed. A request that cannot start waits in its
 * model's FIFO (one per KV pool), beside the preempted ones, retried each step oldest first (a preempted
 * request by its first admission, a new one by its arrival), until queue_timeout_ms (then ERROR
 * ELM_EBUSY; a preempted request never times out: it has started); max_queued bounds the new
 * ones. A request that could need more than the whole pool is refused at once (ELM_ECONTEXT).
 * A request that ends keeps its conversation's pages.
 *
 * Events: a session is planned only when its event ring has room for the events a step can
 * produce (ELMD_STEP_EVT_BYTES), so pushes here never block and never fail with -EAGAIN.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/trace.h"
#include "daemon/admission.h"
#include "daemon/elmd.h"
#include "daemon/embed.h"
#include "daemon/engine_thread.h"
#include "elm/status.h"
#include "engine/chat.h"
#include "engine/kv.h"
#include "ipc/proto.h"

/* The event plumbing every request kind shares is in events.c (embed.c uses it too); these
 * are its short names here. */
static void flush_now(struct elmd_session *s)
{
    elmd_flush_now(s);
}

static void check_push(struct elmd_session *s, int rc)
{
    elmd_check_push(s, rc);
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
    s->preempted = false;
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
    elmd_push_error(s, s->cur.req_id, code, msg);
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
        elmd_push_error(s, req_id, code, msg);
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
void elmd_cancel_request(struct elmd_session *s, int code, const char *msg)
{
    if (s->emb) {
        elmd_embed_cancel(s, code, msg);
        return;
    }
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
        elmd_push_error(s, 0, code, msg);
    s->dead = true;
    s->reap_code = code;
    s->step.ring_err = true;
}

/* ---- requests ----------------------------------------------------------------------------- */

static void handle_cancel(struct elmd_session *s, uint32_t req_id)
{
    if ((s->cur.active && s->cur.req_id == req_id) ||
        (s->wait && s->wait->p->msg.hdr.req_id == req_id) || elmd_embed_is_running(s, req_id)) {
        elmd_cancel_request(s, 0, NULL);
        return;
    }
    /* A queued prompt that never ran still gets its answer, in order, when its turn comes:
     * mark it, and start_next answers DONE/CANCEL instead of running it. */
    for (struct elmd_prompt *p = s->queue; p; p = p->next)
        if (p->msg.hdr.req_id == req_id)
            p->cancelled = true;
}

/* Copies out every record that is there (up to MAX_QUEUED prompts), validating each. */
void elmd_read_requests(struct elmd_session *s)
{
    while (!s->dead && s->n_queued < MAX_QUEUED) {
        struct elm_ring_rec rec;
        int rc = elm_ring_peek(&s->rings.req, &rec);
        if (rc == -EAGAIN)
            return;
        if (rc == -EPIPE) { /* the client closed its end: it is leaving */
            elmd_cancel_request(s, 0, NULL);
            s->dead = true;
            return;
        }
        if (rc < 0) {
            kill_session(s, ELM_ERING, "the request ring is corrupted");
            return;
        }
        /* an EMBED's decoded struct goes first in buf (embed.h), so free(buf) frees both */
        size_t extra = elmd_embed_extra(rec.type);
        void *buf = malloc(extra + (rec.len ? rec.len : 1));
        struct elmd_prompt *p = calloc(1, sizeof *p);
        if (!buf || !p) {
            free(buf);
            free(p);
            kill_session(s, -ENOMEM, "out of memory reading a request");
            return;
        }
        void *payload = (char *)buf + extra;
        rc = elm_ring_pop(&s->rings.req, &rec, payload, rec.len);
        uint32_t cancel_id;
        if (rc == 0 &&
            ((rec.type == ELM_REC_PROMPT &&
              (rc = elm_rec_prompt_decode(payload, rec.len, &p->msg)) == 0) ||
             (rec.type == ELM_REC_EMBED && (rc = elmd_embed_decode(p, buf, rec.len)) == 0))) {
            p->buf = buf;
            p->t_recv_ns = elmd_now_ns();
            elm_trace("d_req_read");
            struct elmd_prompt **tail = &s->queue;
            while (*tail)
                tail = &(*tail)->next;
            *tail = p;
            s->n_queued++;
            continue;
        }
        free(p);
        if (rc == 0 && rec.type == ELM_REC_CANCEL &&
            (rc = elm_rec_cancel_decode(payload, rec.len, &cancel_id)) == 0) {
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

/* Tokenizes len bytes of text into *ids, unless they cannot fit whatever they say (the session's
 * context holds n_ctx tokens, base of them kept from the conversation):
 * a 60 MB prompt took the engine thread, and so every session, 36 s to tokenize only to be
 * refused (issue 17 item 3). No token stands for more than the vocabulary's longest piece, so
 * more bytes than room times that piece can only make more than room tokens. The exact check
 * (prepare) follows the tokenizing of everything that passes. */
static int tokenize_text(const struct elm_model *m, const char *text, size_t len, bool bos,
                         bool special, int32_t n_ctx, int32_t base, int32_t **ids, int32_t *n,
                         char *msg, size_t cap)
{
    size_t per = elm_vocab_max_bytes_per_token(m->vocab, special);
    int64_t room = (int64_t)n_ctx - base; /* below 0 once a full conversation's reply is kept */
    if (per && (room < 0 || len / per > (uint64_t)room)) {
        char kept[64] = "";
        if (base)
            snprintf(kept, sizeof kept, ", %d of them kept from the conversation", base);
        snprintf(msg, cap,
                 "the prompt has %zu bytes, so at least %zu tokens but the session's context "
                 "holds %d%s (no token of the model is longer than %zu bytes)",
                 len, len / per, n_ctx, kept, per);
        return ELM_ECONTEXT;
    }
    return elm_tokenize_alloc(m->vocab, text, len, bos, special, ids, n);
}

/* A conversation (ELM_PROMPT_F_MESSAGES) rendered with the model's chat template and tokenized
 * as llama-server does a chat request: BOS per the vocabulary, the template's control tokens
 * parsed. The message names an unrecognised template. */
static int tokenize_chat(const struct elm_model *m, const struct elm_prompt_msg *p, int32_t n_ctx,
                         int32_t base, int32_t **ids, int32_t *n, char *msg, size_t cap)
{
    uint32_t k;
    enum elm_chat_tmpl t;
    int rc = elm_rec_messages_decode(p->text, p->hdr.prompt_len, NULL, 0, &k);
    if (!rc)
        rc = elm_chat_model_template(m, NULL, &t, msg, cap);
    if (rc)
        return rc;
    struct elm_rec_message *rm = malloc(k * sizeof *rm);
    struct elm_chat_msg *cm = malloc(k * sizeof *cm);
    char *text = NULL;
    size_t len;
    rc = rm && cm ? elm_rec_messages_decode(p->text, p->hdr.prompt_len, rm, k, &k) : -ENOMEM;
    for (uint32_t i = 0; !rc && i < k; i++)
        cm[i] = (struct elm_chat_msg){rm[i].role, rm[i].role_len, rm[i].content,
                                      rm[i].content_len};
    if (!rc)
        rc = elm_chat_render_alloc(t, cm, (int)k, true, &text, &len);
    if (!rc)
        rc = tokenize_text(m, text, len, true, true, n_ctx, base, ids, n, msg, cap);
    free(text);
    free(cm);
    free(rm);
    return rc;
}

/* Tokens of the prompt text, BOS per the vocabulary when asked, for a context of n_ctx with
 * base tokens kept. *ids is malloc'ed. */
static int tokenize(const struct elm_model *m, const struct elm_prompt_msg *p, bool bos,
                    int32_t n_ctx, int32_t base, int32_t **ids, int32_t *n, char *msg, size_t cap)
{
    if (p->hdr.flags & ELM_PROMPT_F_MESSAGES)
        return tokenize_chat(m, p, n_ctx, base, ids, n, msg, cap);
    bool special = p->hdr.flags & ELM_PROMPT_F_PARSE_SPECIAL;
    return tokenize_text(m, p->text, p->hdr.prompt_len, bos, special, n_ctx, base, ids, n, msg,
                         cap);
}

/* The sequence prompt p asks for on s (its kept history, when KEEP_CONTEXT, then the prompt's
 * tokens) and its parameters, in a new *out. Everything that can refuse the request is checked
 * here, before anything of the session changes, so a refused request leaves the conversation
 * as it was. A prompt too long for the context says so in msg, with the numbers. */
static int prepare(struct eng *e, struct elmd_session *s, struct elmd_prompt *p,
                   struct elmd_wait **out, char *msg, size_t cap)
{
    const struct elm_rec_prompt *h = &p->msg.hdr;
    bool keep = (h->flags & ELM_PROMPT_F_KEEP_CONTEXT) && s->n_history > 0;
    /* A continued conversation never gets a BOS in its middle. */
    bool bos = (h->flags & ELM_PROMPT_F_ADD_BOS) && !keep;
    int32_t *ids = NULL, n = 0;
    int32_t base = keep ? s->n_history : 0;
    int rc = tokenize(s->model, &p->msg, bos, s->n_ctx, base, &ids, &n, msg, cap);
    if (rc)
        return rc;
    elm_trace("d_tokenized");
    struct elmd_wait *w = NULL;
    if ((int64_t)base + n > s->n_ctx) {
        rc = ELM_ECONTEXT;
        if (base)
            snprintf(msg, cap,
                     "the prompt has %d tokens, %lld with the conversation kept so far, "
                     "but the session's context holds %d",
                     n, (long long)base + n, s->n_ctx);
        else
            snprintf(msg, cap, "the prompt has %d tokens but the session's context holds %d", n,
                     s->n_ctx);
    } else if (base + n == 0)
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
    s->cur.t_admit = elmd_now_ns();
    s->preempted = false;
    s->cur.n_predict = w->gp.n_predict;
    s->cur.to_eval = w->n - elm_seq_n_reused(s->seq);
    s->last_used_ns = elmd_now_ns();
    elm_debug("session %llu: request %u: %d prompt tokens (%d reused)", (unsigned long long)s->id,
              s->cur.req_id, w->n, elm_seq_n_reused(s->seq));
}

int elmd_n_waiting(const struct eng *e, const struct elm_kv_pool *pool)
{
    int n = 0;
    for (int k = 0; k < e->n_act; k++) {
        const struct elmd_session *s = e->act[k];
        n += (s->wait != NULL || s->preempted) && (!pool || s->pool == pool);
    }
    return n;
}

/* New requests waiting for their first pages (of any model): what max_queued bounds. */
static int n_new_waiting(const struct eng *e)
{
    int n = 0;
    for (int k = 0; k < e->n_act; k++)
        n += e->act[k]->wait != NULL;
    return n;
}

/* A waiting session's place in the FIFO: a preempted request's first admission, a new one's
 * arrival. */
static uint64_t fifo_key(const struct elmd_session *s)
{
    return s->preempted ? s->cur.t_admit : s->wait->since_ns;
}

static void busy_message(const struct elmd_wait *w, char *msg, size_t cap)
{
    snprintf(msg, cap,
             "no KV memory for this request: %lld pages needed, %lld free, %d requests waiting "
             "before it; try later",
             (long long)w->need_pages, (long long)w->free_pages, w->ahead);
}

/* Starts prompt p on s (which is idle), or makes it wait for KV pages. Returns 0 (started),
 * 1 (waiting: s->wait owns p now) or an error for an ERROR reply, with msg filled for
 * ELM_EBUSY, ELM_ECONTEXT and a chat template elm cannot render (ELM_EUNSUPPORTED). */
static int start_prompt(struct eng *e, struct elmd_session *s, struct elmd_prompt *p, char *msg,
                        size_t cap)
{
    struct elmd_wait *w;
    int rc = prepare(e, s, p, &w, msg, cap);
    if (rc)
        return rc;
    int64_t worst = elmd_request_pages(s, w), pool = elm_kv_pool_pages(s->pool);
    if (worst > pool) {
        snprintf(msg, cap,
                 "the request may need %lld KV positions (%d prompt tokens, context %d) but "
                 "the whole KV pool holds %lld (%lld pages of %d): limit n_predict or the context",
                 (long long)worst * ELM_KV_PAGE, w->n, s->n_ctx, (long long)pool * ELM_KV_PAGE,
                 (long long)pool, ELM_KV_PAGE);
        elmd_wait_free(w);
        return ELM_ECONTEXT;
    }
    /* The requests already waiting for this pool came first: with any, this one queues behind
     * them (another model's pool is no obstacle). */
    int waiting = elmd_n_waiting(e, s->pool), reclaimed = 0;
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
    w->ahead = waiting;
    if (e->k.queue_timeout_ms == 0 || n_new_waiting(e) >= e->k.max_queued) {
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

/* Each step, before new prompts: starts the waiting requests that fit now, oldest first (one
 * queue per model's pool), and stops at the first that does not (strict FIFO: a large request is
 * not overtaken for ever by small ones); refuses the ones that waited too long. Returns the milliseconds until the next
 * of those deadlines (-1: none). */
int elmd_admit_waiting(struct eng *e)
{
    struct elmd_session *q[ELMD_MAX_SESSIONS_LIMIT + 1];
    int n = 0;
    for (int k = 0; k < e->n_act; k++) { /* sorted by arrival: a handful, insertion sort */
        struct elmd_session *s = e->act[k];
        if ((!s->wait && !s->preempted) || s->dead)
            continue;
        int i = n++;
        for (; i > 0 && fifo_key(q[i - 1]) > fifo_key(s); i--)
            q[i] = q[i - 1];
        q[i] = s;
    }
    uint64_t now = elmd_now_ns(), timeout = (uint64_t)e->k.queue_timeout_ms * 1000000u;
    uint64_t next = UINT64_MAX;
    char msg[256];
    /* One FIFO per pool (per model): a request waits only behind those of its own pool. */
    const struct elm_kv_pool *pools[ELMD_MODEL_SLOTS];
    bool blocked_of[ELMD_MODEL_SLOTS] = {0};
    int ahead_of[ELMD_MODEL_SLOTS] = {0}; /* the requests before the one at hand still waiting */
    int n_pools = 0;
    for (int i = 0; i < n; i++) {
        struct elmd_session *s = q[i];
        struct elmd_wait *w = s->wait;
        int pi = 0;
        while (pi < n_pools && pools[pi] != s->pool)
            pi++;
        if (pi == n_pools) {
            if (n_pools == ELMD_MODEL_SLOTS)
                continue; /* cannot happen: one pool per resident model */
            pools[n_pools++] = s->pool;
        }
        if (s->preempted) { /* a running request: it never times out, a drain lets it finish */
            int reclaimed = 0;
            if (!blocked_of[pi] && elmd_resume(e->act, e->n_act, s, &reclaimed) == 0) {
                s->preempted = false;
                s->cur.to_eval = elm_seq_n_pending(s->seq);
                elm_debug("session %llu: request %u resumes: %d tokens to evaluate again",
                          (unsigned long long)s->id, s->cur.req_id, s->cur.to_eval);
            }
            s->step.reclaimed += (uint32_t)reclaimed;
            blocked_of[pi] = blocked_of[pi] || s->preempted;
            ahead_of[pi] += s->preempted;
            continue;
        }
        if (e->draining) {
            end_wait(s, ELM_ESHUTDOWN, "the daemon is shutting down");
            continue;
        }
        if (!blocked_of[pi]) {
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
            blocked_of[pi] = true;
        }
        if (ahead_of[pi] > 0) { /* not tried, behind an older one: the numbers as of now */
            w->need_pages = elmd_wait_need(s, w);
            w->free_pages = elm_kv_pool_free_pages(s->pool);
        }
        w->ahead = ahead_of[pi]++;
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
void elmd_start_next(struct eng *e, struct elmd_session *s)
{
    if (s->emb && !elmd_embed_flush(s))
        return; /* an EMBED's vectors wait for room in the event ring */
    while (!s->dead && !s->cur.active && !s->wait && !s->emb && s->queue) {
        struct elmd_prompt *p = s->queue;
        s->queue = p->next;
        s->n_queued--;
        int rc;
        const char *msg = NULL;
        char buf[384] = ""; /* room for a chat template's start, escaped */
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
        } else if ((rc = elmd_embed_check_kind(s->model, p, buf, sizeof buf)) ||
                   (p->embed && (rc = elmd_embed_start(s, p, buf, sizeof buf)))) {
            msg = buf;
        } else if (p->embed) {
            /* started: its vectors are on their way (s->emb) */
        } else {
            rc = start_prompt(e, s, p, buf, sizeof buf);
            if (rc == 1)
                return; /* waiting for KV pages: s->wait owns p */
            msg = rc == -EINVAL ? "empty prompt (and the model adds no BOS) "
                                  "or invalid sampling parameters"
                  : rc == ELM_EBUSY || rc == ELM_ECONTEXT || (rc == ELM_EUNSUPPORTED && buf[0])
                      ? buf
                      : elm_strerror(rc);
        }
        if (rc) {
            s->step.req++;
            s->step.err++;
            s->step.busy += rc == ELM_EBUSY;
            flush_now(s);
            elmd_push_error(s, p->msg.hdr.req_id, rc, msg);
        }
        free(p->buf);
        free(p);
    }
}

/* ---- after a pass ------------------------------------------------------------------------- */

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

void elmd_advance(struct elmd_session *s, int n, int rc)
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

/* Control closes the session (unload, shutdown, client gone...). Every prompt the client sent
 * still gets its answer, in order, so nobody waits for a reply that cannot come: the running
 * one and the queued ones (including those still in the ring) end with ERROR(code). */
void elmd_close_session(struct elmd_session *s, int code, const char *msg)
{
    elmd_read_requests(s);
    elmd_cancel_request(s, code, msg);
    while (s->queue && !s->dead) {
        struct elmd_prompt *p = s->queue;
        s->queue = p->next;
        s->n_queued--;
        s->step.req++;
        s->step.err++;
        flush_now(s);
        elmd_push_error(s, p->msg.hdr.req_id, code, msg);
        free(p->buf);
        free(p);
    }
    s->dead = true;
}
