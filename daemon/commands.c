/* commands.c — the control commands: decoding a frame with ipc/proto.h, checking it against
 * the daemon's state, and building the reply.
 *
 * Every frame gets exactly one reply: a decode failure is answered with an ERROR frame naming
 * the problem (and counted as malformed); a well-formed request that cannot be served gets its
 * own command's reply with a negative STATUS and a MESSAGE. Handlers never block: LOAD and
 * UNLOAD are answered later, when the engine has swapped the model (lifecycle.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/commands.h"
#include "daemon/lifecycle.h"
#include "elm/status.h"
#include "ipc/proto.h"

#define MIN_REQ_RING (4u << 10)
#define MIN_EVT_RING (16u << 10) /* several steps of events (ELMD_STEP_EVT_BYTES each) */
#define MAX_RING     (64u << 20) /* per ring: a session must not be able to pin gigabytes */

/* Replies with a status (and message) only. Returns 0, so handlers can end with it. */
static int simple_reply(struct elmd *d, const struct elmd_peer *p, const struct elm_proto_msg *m,
                        int rc, const char *msg)
{
    struct elm_proto_buf b;
    elm_proto_buf_init(&b);
    elm_proto_begin_reply(&b, m, rc, msg);
    elmd_reply(d, p, &b);
    elm_proto_buf_fini(&b);
    return 0;
}

static uint64_t rss_bytes(void)
{
    unsigned long long size, rss;
    FILE *f = fopen("/proc/self/statm", "re");
    if (!f)
        return 0;
    int n = fscanf(f, "%llu %llu", &size, &rss);
    fclose(f);
    return n == 2 ? rss * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

static void put_pcts(struct elm_proto_buf *b, const struct elmd_lat *ttft,
                     const struct elmd_lat *itl)
{
    uint64_t t[3], i[3];
    elmd_lat_pct(ttft, t);
    elmd_lat_pct(itl, i);
    for (int k = 0; k < 3; k++) {
        elm_proto_put_u64(b, (uint16_t)(ELM_TAG_TTFT_P50_NS + k), t[k]);
        elm_proto_put_u64(b, (uint16_t)(ELM_TAG_ITL_P50_NS + k), i[k]);
    }
}

static struct elmd_session *find_session(struct elmd *d, const struct elm_proto_msg *m)
{
    uint64_t id;
    if (elm_proto_get_u64(&m->body, ELM_TAG_SESSION_ID, &id) < 0)
        return NULL;
    for (struct elmd_session *s = d->sessions; s; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

/* ---- hello, status, stats, sessions --------------------------------------------------------- */

static void cmd_hello(struct elmd *d, const struct elmd_peer *p, const struct elm_proto_msg *m)
{
    uint64_t lo = 0, hi = 0;
    uint8_t v;
    elm_proto_get_u64(&m->body, ELM_TAG_VERSION_MIN, &lo);
    elm_proto_get_u64(&m->body, ELM_TAG_VERSION_MAX, &hi);
    struct elm_proto_buf b;
    elm_proto_buf_init(&b);
    if (elm_proto_negotiate(lo, hi, &v) < 0) {
        char msg[96];
        snprintf(msg, sizeof msg, "no common protocol version: elmd speaks %d..%d",
                 ELM_PROTO_VERSION_MIN, ELM_PROTO_VERSION_MAX);
        elm_proto_begin_reply(&b, m, ELM_EPROTO, msg);
    } else {
        elm_proto_begin_reply(&b, m, 0, NULL);
        elm_proto_put_u64(&b, ELM_TAG_VERSION, v);
    }
    elm_proto_put_u64(&b, ELM_TAG_VERSION_MIN, ELM_PROTO_VERSION_MIN);
    elm_proto_put_u64(&b, ELM_TAG_VERSION_MAX, ELM_PROTO_VERSION_MAX);
    elm_proto_put_str(&b, ELM_TAG_DAEMON_VERSION, ELMD_VERSION);
    elm_proto_put_u64(&b, ELM_TAG_PID, (uint64_t)getpid());
    elmd_reply(d, p, &b);
    elm_proto_buf_fini(&b);
}

static void put_model(struct elm_proto_buf *b, const struct elmd_model *dm, int32_t ctx)
{
    const struct elm_model *m = dm->m;
    const struct elm_residency *r = &dm->res;
    struct elm_gguf_str name;
    uint64_t n_params = 0;
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++)
        n_params += m->gguf->tensors[i].n_elements;
    elm_proto_put_str(b, ELM_TAG_PATH, dm->path);
    if (elm_gguf_get_str(m->gguf, "general.name", &name) == 0)
        elm_proto_put_strn(b, ELM_TAG_MODEL_NAME, name.ptr,
                           name.len > ELM_PROTO_MAX_STR ? ELM_PROTO_MAX_STR : name.len);
    elm_proto_put_u64(b, ELM_TAG_N_CTX, (uint64_t)ctx);
    elm_proto_put_u64(b, ELM_TAG_N_VOCAB, (uint64_t)m->hp.n_vocab);
    elm_proto_put_u64(b, ELM_TAG_N_THREADS, (uint64_t)m->n_threads);
    elm_proto_put_u64(b, ELM_TAG_LOAD_NS, r->total_ns);
    elm_proto_put_str(b, ELM_TAG_ARCH, m->hp.arch == ELM_ARCH_QWEN2 ? "qwen2" : "llama");
    elm_proto_put_str(b, ELM_TAG_KERNEL, m->k->name);
    elm_proto_put_u64(b, ELM_TAG_N_PARAMS, n_params);
    elm_proto_put_u64(b, ELM_TAG_N_LAYER, (uint64_t)m->hp.n_layer);
    elm_proto_put_u64(b, ELM_TAG_N_EMBD, (uint64_t)m->hp.n_embd);
    elm_proto_put_u64(b, ELM_TAG_N_CTX_TRAIN, (uint64_t)m->hp.n_ctx_train);
    elm_proto_put_str(b, ELM_TAG_KV_TYPE, elmd_kv_type_name(elm_kv_pool_type(dm->kv_pool)));
    elm_proto_put_u64(b, ELM_TAG_WEIGHT_BYTES, r->data_size);
    bool pinned = r->mem.locked || r->mem.backing == ELM_BACK_HUGETLB; /* hugetlb never swaps */
    elm_proto_put_u64(b, ELM_TAG_PINNED_BYTES, pinned ? r->locked_bytes : 0);
    elm_proto_put_u64(b, ELM_TAG_HUGE_BYTES, r->huge_bytes);
    elm_proto_put_f64(b, ELM_TAG_HUGE_SHARE,
                      r->mem.len ? (double)r->huge_bytes / (double)r->mem.len : 0.0);
    elm_proto_put_str(b, ELM_TAG_BACKING, elm_backing_name(r->mem.backing));
    elm_proto_put_u64(b, ELM_TAG_O_DIRECT, r->direct);
    elm_proto_put_u64(b, ELM_TAG_IO_URING, r->uring);
    elm_proto_put_f64(b, ELM_TAG_LOAD_GBPS, r->gbps);
    if (r->notes[0])
        elm_proto_put_str(b, ELM_TAG_LOAD_NOTES, r->notes);
}

static void cmd_status(struct elmd *d, const struct elmd_peer *p, const struct elm_proto_msg *m)
{
    struct elm_proto_buf b;
    elm_proto_buf_init(&b);
    elm_proto_begin_reply(&b, m, 0, NULL);
    elm_proto_put_u64(&b, ELM_TAG_UPTIME_NS, elmd_now_ns() - d->start_ns);
    elm_proto_put_u64(&b, ELM_TAG_N_SESSIONS, (uint64_t)d->n_sessions);
    elm_proto_put_u64(&b, ELM_TAG_MAX_SESSIONS, (uint64_t)d->cfg.max_sessions);
    elm_proto_put_u64(&b, ELM_TAG_PID, (uint64_t)getpid());
    elm_proto_put_str(&b, ELM_TAG_DAEMON_VERSION, ELMD_VERSION);
    pthread_mutex_lock(&d->lock);
    /* Safe under the lock: only control frees models, and the engine swaps them under it. The
     * pool's size, page size, backing and pinning never change; its free pages are the engine's
     * business, published at the end of each step. */
    if (d->model) {
        const struct elm_kv_pool *pool = d->model->kv_pool;
        uint64_t pages = (uint64_t)elm_kv_pool_pages(pool), used = 0;
        uint64_t page_bytes = elm_kv_pool_page_bytes(pool);
        for (struct elmd_session *s = d->sessions; s; s = s->next)
            used += (uint64_t)s->kv_used;
        put_model(&b, d->model, d->model_ctx);
        elm_proto_put_u64(&b, ELM_TAG_KV_BYTES, pages * page_bytes);
        elm_proto_put_u64(&b, ELM_TAG_KV_TOKENS, used);
        elm_proto_put_u64(&b, ELM_TAG_KV_CAPACITY, pages * ELM_KV_PAGE);
        elm_proto_put_u64(&b, ELM_TAG_KV_PAGES, pages);
        elm_proto_put_u64(&b, ELM_TAG_KV_PAGES_FREE, (uint64_t)d->kv_free_pages);
        elm_proto_put_u64(&b, ELM_TAG_KV_PAGE_BYTES, page_bytes);
        elm_proto_put_u64(&b, ELM_TAG_KV_PAGE_TOKENS, ELM_KV_PAGE);
        elm_proto_put_str(&b, ELM_TAG_KV_BACKING, elm_kv_pool_backing(pool));
        elm_proto_put_u64(&b, ELM_TAG_KV_LOCKED, elm_kv_pool_locked(pool));
        elm_proto_put_u64(&b, ELM_TAG_N_QUEUED, (uint64_t)d->n_kv_waiting);
    }
    pthread_mutex_unlock(&d->lock);
    if (d->load.active) {
        elm_proto_put_str(&b, ELM_TAG_LOADING_PATH, d->load.path);
        elm_proto_put_u64(&b, ELM_TAG_LOAD_DONE, atomic_load(&d->load.progress.done));
        elm_proto_put_u64(&b, ELM_TAG_LOAD_TOTAL, atomic_load(&d->load.progress.total));
    }
    if (d->load.last_error[0])
        elm_proto_put_str(&b, ELM_TAG_LOAD_ERROR, d->load.last_error);
    elmd_reply(d, p, &b);
    elm_proto_buf_fini(&b);
}

static void cmd_stats(struct elmd *d, const struct elmd_peer *p, const struct elm_proto_msg *m)
{
    struct elm_proto_buf b;
    elm_proto_buf_init(&b);
    elm_proto_begin_reply(&b, m, 0, NULL);
    elm_proto_put_u64(&b, ELM_TAG_UPTIME_NS, elmd_now_ns() - d->start_ns);
    pthread_mutex_lock(&d->lock);
    const struct elmd_stats *st = &d->st;
    elm_proto_put_u64(&b, ELM_TAG_N_REQUESTS, st->n_requests);
    elm_proto_put_u64(&b, ELM_TAG_N_PROMPT_TOKENS, st->n_prompt_tokens);
    elm_proto_put_u64(&b, ELM_TAG_N_GEN_TOKENS, st->n_gen_tokens);
    elm_proto_put_u64(&b, ELM_TAG_PROMPT_NS, st->prompt_ns);
    elm_proto_put_u64(&b, ELM_TAG_GEN_NS, st->gen_ns);
    elm_proto_put_u64(&b, ELM_TAG_N_ERRORS, st->n_errors);
    elm_proto_put_f64(&b, ELM_TAG_GEN_TOKENS_PER_S,
                      st->gen_ns ? (double)st->n_gen_tokens * 1e9 / (double)st->gen_ns : 0.0);
    elm_proto_put_u64(&b, ELM_TAG_N_MALFORMED, st->n_malformed);
    elm_proto_put_u64(&b, ELM_TAG_N_CONTROL, st->n_control);
    elm_proto_put_u64(&b, ELM_TAG_N_DROPPED, st->n_dropped);
    elm_proto_put_u64(&b, ELM_TAG_N_STEPS, st->n_steps);
    elm_proto_put_u64(&b, ELM_TAG_N_CLIENT_DEATHS, st->n_client_deaths);
    elm_proto_put_u64(&b, ELM_TAG_N_RING_ERRORS, st->n_ring_errors);
    elm_proto_put_u64(&b, ELM_TAG_N_PROMPT_REUSED, st->n_prompt_reused);
    elm_proto_put_u64(&b, ELM_TAG_N_BUSY, st->n_busy);
    elm_proto_put_u64(&b, ELM_TAG_N_KV_RECLAIMED, st->n_kv_reclaimed);
    put_pcts(&b, &st->ttft, &st->itl);
    pthread_mutex_unlock(&d->lock);
    elm_proto_put_u64(&b, ELM_TAG_RSS_BYTES, rss_bytes());
    elm_proto_put_u64(&b, ELM_TAG_N_SESSIONS, (uint64_t)d->n_sessions);
    elmd_reply(d, p, &b);
    elm_proto_buf_fini(&b);
}

static void cmd_sessions(struct elmd *d, const struct elmd_peer *p, const struct elm_proto_msg *m)
{
    struct elm_proto_buf b;
    elm_proto_buf_init(&b);
    elm_proto_begin_reply(&b, m, 0, NULL);
    uint64_t now = elmd_now_ns();
    pthread_mutex_lock(&d->lock);
    for (struct elmd_session *s = d->sessions; s; s = s->next) {
        elm_proto_group_begin(&b, ELM_TAG_SESSION);
        elm_proto_put_u64(&b, ELM_TAG_SESSION_ID, s->id);
        elm_proto_put_u64(&b, ELM_TAG_STATE,
                          (uint64_t)(s->close_req ? ELM_SESSION_STATE_CLOSING : s->state));
        if (s->pid > 0)
            elm_proto_put_u64(&b, ELM_TAG_PID, (uint64_t)s->pid);
        if (s->client_name[0])
            elm_proto_put_str(&b, ELM_TAG_CLIENT_NAME, s->client_name);
        elm_proto_put_u64(&b, ELM_TAG_N_CTX, (uint64_t)s->n_ctx);
        elm_proto_put_u64(&b, ELM_TAG_N_PROMPT_TOKENS, s->n_prompt_tokens);
        elm_proto_put_u64(&b, ELM_TAG_N_GEN_TOKENS, s->n_gen_tokens);
        elm_proto_put_u64(&b, ELM_TAG_AGE_NS, now - s->opened_ns);
        elm_proto_put_u64(&b, ELM_TAG_N_REQUESTS_SESSION, s->n_requests);
        put_pcts(&b, &s->ttft, &s->itl);
        elm_proto_group_end(&b);
    }
    pthread_mutex_unlock(&d->lock);
    elmd_reply(d, p, &b);
    elm_proto_buf_fini(&b);
}

/* ---- load, unload --------------------------------------------------------------------------- */

static int add_pending(struct elmd *d, const struct elmd_peer *p, const struct elm_proto_msg *m)
{
    struct elmd_pending *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->peer = *p;
    w->req.hdr = m->hdr;
    w->next = d->load_waiters;
    d->load_waiters = w;
    return 0;
}

void elmd_answer_pending(struct elmd *d, uint16_t cmd, int rc, const char *msg)
{
    for (struct elmd_pending **pw = &d->load_waiters; *pw;) {
        struct elmd_pending *w = *pw;
        if (cmd && w->req.hdr.cmd != cmd) {
            pw = &w->next;
            continue;
        }
        *pw = w->next;
        struct elm_proto_buf b;
        elm_proto_buf_init(&b);
        elm_proto_begin_reply(&b, &w->req, rc, rc ? msg : NULL);
        pthread_mutex_lock(&d->lock);
        if (rc == 0 && w->req.hdr.cmd == ELM_CMD_LOAD && d->model) {
            struct elm_gguf_str name;
            if (elm_gguf_get_str(d->model->m->gguf, "general.name", &name) == 0)
                elm_proto_put_strn(&b, ELM_TAG_MODEL_NAME, name.ptr,
                                   name.len > ELM_PROTO_MAX_STR ? ELM_PROTO_MAX_STR : name.len);
            elm_proto_put_u64(&b, ELM_TAG_N_CTX, (uint64_t)d->model_ctx);
            elm_proto_put_u64(&b, ELM_TAG_N_VOCAB, (uint64_t)d->model->m->hp.n_vocab);
            elm_proto_put_u64(&b, ELM_TAG_LOAD_NS, d->model->res.total_ns);
        }
        pthread_mutex_unlock(&d->lock);
        elmd_reply(d, &w->peer, &b);
        elm_proto_buf_fini(&b);
        free(w);
    }
}

static int cmd_load(struct elmd *d, const struct elmd_peer *p, const struct elm_proto_msg *m)
{
    char path[PATH_MAX], err[600];
    uint64_t ctx = 0, threads = 0;
    if (elm_proto_copy_str(&m->body, ELM_TAG_PATH, path, sizeof path) < 0 || path[0] != '/')
        return simple_reply(d, p, m, -EINVAL, "PATH must be an absolute path");
    elm_proto_get_u64(&m->body, ELM_TAG_N_CTX, &ctx);
    elm_proto_get_u64(&m->body, ELM_TAG_N_THREADS, &threads);
    if (ctx > (1u << 20) || threads > 1024)
        return simple_reply(d, p, m, -EINVAL, "N_CTX or N_THREADS out of range");
    if (d->draining)
        return simple_reply(d, p, m, ELM_ESHUTDOWN, "the daemon is shutting down");
    int rc = elmd_start_load(d, path, (int32_t)ctx, (int)threads, err, sizeof err);
    if (rc == 0)
        rc = add_pending(d, p, m);
    if (rc)
        simple_reply(d, p, m, rc, err);
    return 0;
}

static int cmd_unload(struct elmd *d, const struct elmd_peer *p, const struct elm_proto_msg *m)
{
    if (!elmd_unload(d))
        return simple_reply(d, p, m, 0, NULL);
    elmd_answer_pending(d, ELM_CMD_LOAD, ELM_ECANCELED, "superseded by an unload");
    elmd_close_all_sessions(d, ELM_ENOMODEL, "the model was unloaded");
    if (add_pending(d, p, m) < 0)
        simple_reply(d, p, m, -ENOMEM, "out of memory");
    return 0;
}

/* ---- sessions ------------------------------------------------------------------------------- */

static int ring_size(const struct elm_proto_msg *m, uint16_t tag, uint32_t def, uint32_t min,
                     uint32_t *out)
{
    uint64_t v = 0;
    if (elm_proto_get_u64(&m->body, tag, &v) < 0 || v == 0)
        v = def;
    if (v < min)
        v = min; /* more room than asked never hurts the client */
    if (v > MAX_RING || !elm_ring_capacity_is_valid((uint32_t)v))
        return -EINVAL;
    *out = (uint32_t)v;
    return 0;
}

static int cmd_open_session(struct elmd *d, const struct elmd_peer *p,
                            const struct elm_proto_msg *m)
{
    uint64_t ctx = 0, pid = 0;
    uint32_t req_cap, evt_cap;
    char name[64] = "", err[256], msg[128];
    if (d->draining)
        return simple_reply(d, p, m, ELM_ESHUTDOWN, "the daemon is shutting down");
    if (ring_size(m, ELM_TAG_REQ_RING_SIZE, ELM_SESSION_DEFAULT_REQ_CAPACITY, MIN_REQ_RING,
                  &req_cap) < 0 ||
        ring_size(m, ELM_TAG_EVT_RING_SIZE, ELM_SESSION_DEFAULT_EVT_CAPACITY, MIN_EVT_RING,
                  &evt_cap) < 0)
        return simple_reply(d, p, m, -EINVAL, "ring sizes must be powers of two up to 64 MiB");
    elm_proto_get_u64(&m->body, ELM_TAG_N_CTX, &ctx);
    elm_proto_get_u64(&m->body, ELM_TAG_PID, &pid);
    if (elm_proto_copy_str(&m->body, ELM_TAG_CLIENT_NAME, name, sizeof name) == -ENOSPC)
        name[0] = 0;
    if (pid > (uint64_t)INT32_MAX)
        return simple_reply(d, p, m, -EINVAL, "PID out of range");

    /* Only control starts swaps, so the model cannot change while this handler runs. */
    pthread_mutex_lock(&d->lock);
    const struct elmd_model *model = d->swap_pending ? NULL : d->model;
    bool swapping = d->swap_pending;
    int32_t def_ctx = d->model_ctx;
    pthread_mutex_unlock(&d->lock);
    if (!model)
        return simple_reply(d, p, m, swapping ? ELM_EBUSY : ELM_ENOMODEL,
                            swapping ? "the model is being replaced; try again"
                                     : "no model is loaded");
    if (d->n_sessions >= d->cfg.max_sessions) {
        snprintf(msg, sizeof msg, "all %d sessions are in use", d->cfg.max_sessions);
        return simple_reply(d, p, m, ELM_EBUSY, msg);
    }
    /* A session never gets more context than the KV pool holds, so every request it sends can
     * run once the pool is free (elm_seq_start reserves up to the whole context). */
    int32_t cap = elmd_ctx_cap(model, def_ctx);
    int64_t pool_cap = elm_kv_pool_pages(model->kv_pool) * ELM_KV_PAGE;
    if (cap > pool_cap)
        cap = (int32_t)pool_cap;
    if (ctx > (uint64_t)cap) {
        snprintf(msg, sizeof msg, "N_CTX %llu exceeds the limit of %d", (unsigned long long)ctx,
                 cap);
        return simple_reply(d, p, m, ELM_ECONTEXT, msg);
    }
    struct elmd_session *s;
    int rc = elmd_session_create(d, model, ctx ? (int32_t)ctx : def_ctx, req_cap, evt_cap,
                                 (long)pid, name, &s, err, sizeof err);
    if (rc)
        return simple_reply(d, p, m, rc, err);
    s->id = ++d->next_session_id;
    struct elm_proto_buf b;
    elm_proto_buf_init(&b);
    elm_proto_begin_reply(&b, m, 0, NULL);
    elm_proto_put_u64(&b, ELM_TAG_SESSION_ID, s->id);
    elm_proto_put_str(&b, ELM_TAG_SHM_NAME, s->shm.name);
    elm_proto_put_u64(&b, ELM_TAG_SHM_SIZE, s->shm.size);
    elm_proto_put_u64(&b, ELM_TAG_REQ_RING_SIZE, req_cap);
    elm_proto_put_u64(&b, ELM_TAG_EVT_RING_SIZE, evt_cap);
    elm_proto_put_u64(&b, ELM_TAG_N_CTX, (uint64_t)s->n_ctx);

    s->next = d->sessions;
    d->sessions = s;
    d->n_sessions++;
    pthread_mutex_lock(&d->lock);
    d->st.n_sessions++;
    s->qnext = NULL;
    struct elmd_session **tail = &d->adopt;
    while (*tail)
        tail = &(*tail)->qnext;
    *tail = s;
    pthread_mutex_unlock(&d->lock);
    elmd_engine_wake(d);
    elm_info("session %llu opened: pid %ld (%s), %d-token context, rings %u/%u, %s",
             (unsigned long long)s->id, s->pid, s->client_name[0] ? s->client_name : "?", s->n_ctx,
             req_cap, evt_cap, s->shm.name);
    elmd_reply(d, p, &b);
    elm_proto_buf_fini(&b);
    return 0;
}

static int cmd_close_session(struct elmd *d, const struct elmd_peer *p,
                             const struct elm_proto_msg *m)
{
    struct elmd_session *s = find_session(d, m);
    pthread_mutex_lock(&d->lock);
    bool ok = s && !s->close_req;
    if (ok) {
        s->close_req = true;
        s->close_code = ELM_ESESSION;
        s->close_msg = "the session was closed";
    }
    pthread_mutex_unlock(&d->lock);
    if (!ok)
        return simple_reply(d, p, m, ELM_ESESSION, "no such session");
    elmd_engine_wake(d);
    simple_reply(d, p, m, 0, NULL);
    return 0;
}

static int cmd_cancel(struct elmd *d, const struct elmd_peer *p, const struct elm_proto_msg *m)
{
    struct elmd_session *s = find_session(d, m);
    pthread_mutex_lock(&d->lock);
    bool ok = s && !s->close_req;
    if (ok)
        s->cancel_req = true;
    pthread_mutex_unlock(&d->lock);
    if (!ok)
        return simple_reply(d, p, m, ELM_ESESSION, "no such session");
    elmd_engine_wake(d);
    simple_reply(d, p, m, 0, NULL);
    return 0;
}

/* ---- dispatch ------------------------------------------------------------------------------- */

void elmd_handle_frame(struct elmd *d, const struct elmd_peer *p, const void *frame, size_t len)
{
    struct elm_proto_msg m;
    const char *why = "malformed";
    int rc = elm_proto_decode(frame, len, &m, &why);
    if (rc == 0 && (m.hdr.flags & ELM_PROTO_F_REPLY)) {
        rc = ELM_EPROTO;
        why = "a reply sent to the daemon";
    }
    pthread_mutex_lock(&d->lock);
    d->st.n_control++;
    d->st.n_malformed += rc != 0;
    pthread_mutex_unlock(&d->lock);
    if (rc) {
        struct elm_proto_hdr h = {0};
        elm_proto_decode_header(frame, len, &h); /* for its req_id, when readable */
        elm_debug("control: malformed frame (%zu bytes): %s", len, why);
        struct elm_proto_buf b;
        elm_proto_buf_init(&b);
        elm_proto_begin_error(&b, h.req_id, ELM_EPROTO, why);
        elmd_reply(d, p, &b);
        elm_proto_buf_fini(&b);
        return;
    }
    elm_debug("control: %s", elm_proto_cmd_name(m.hdr.cmd));
    switch (m.hdr.cmd) {
    case ELM_CMD_HELLO:
        cmd_hello(d, p, &m);
        break;
    case ELM_CMD_STATUS:
        cmd_status(d, p, &m);
        break;
    case ELM_CMD_LOAD:
        cmd_load(d, p, &m);
        break;
    case ELM_CMD_UNLOAD:
        cmd_unload(d, p, &m);
        break;
    case ELM_CMD_OPEN_SESSION:
        cmd_open_session(d, p, &m);
        break;
    case ELM_CMD_CLOSE_SESSION:
        cmd_close_session(d, p, &m);
        break;
    case ELM_CMD_CANCEL:
        cmd_cancel(d, p, &m);
        break;
    case ELM_CMD_SESSIONS:
        cmd_sessions(d, p, &m);
        break;
    case ELM_CMD_STATS:
        cmd_stats(d, p, &m);
        break;
    case ELM_CMD_SHUTDOWN:
        simple_reply(d, p, &m, 0, NULL);
        elmd_begin_drain(d, "shutdown requested");
        break;
    default: /* decodable but not a request we serve (the decoder knows every command) */
        simple_reply(d, p, &m, ELM_EPROTO, "command not served by elmd");
        break;
    }
}
