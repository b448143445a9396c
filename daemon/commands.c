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
#include "common/pool.h"
#include "common/trace.h"
#include "daemon/commands.h"
#include "daemon/lifecycle.h"
#include "elm/status.h"
#include "ipc/fields.h"
#include "ipc/proto.h"
#include "ipc/schema.h"

/* The largest ring is a bound of the request table (ELM_REQ_MAX_RING, ipc/fields.c). */
#define MIN_REQ_RING (4u << 10)
#define MIN_EVT_RING (16u << 10) /* several steps of events (ELMD_STEP_EVT_BYTES each) */

typedef int (*cmd_fn)(struct elmd *d, const struct elmd_peer *p, const struct elm_proto_msg *m);

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

/* Replies with success and the fields of table t read from obj (a filled public struct). */
static void reply_fields(struct elmd *d, const struct elmd_peer *p, const struct elm_proto_msg *m,
                         const struct elm_fields *t, const void *obj, unsigned sections)
{
    struct elm_proto_buf b;
    elm_proto_buf_init(&b);
    elm_proto_begin_reply(&b, m, 0, NULL);
    elm_fields_put(&b, t, obj, sections);
    elmd_reply(d, p, &b);
    elm_proto_buf_fini(&b);
}

/* Copies n bytes of s (or up to its NUL) into buf with a NUL, cut to fit: the public structs'
 * buffers are as long as a client keeps anyway. */
static void set_strn(char *buf, size_t cap, const char *s, size_t n)
{
    n = strnlen(s, n < cap ? n : cap - 1);
    memcpy(buf, s, n);
    buf[n] = 0;
}

static void set_str(char *buf, size_t cap, const char *s)
{
    set_strn(buf, cap, s, cap - 1);
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

/* Reads request m into req (a zeroed struct of t's type) through its table. Returns 0, or
 * replies with the error naming the field and its bound and returns it. */
static int read_request(struct elmd *d, const struct elmd_peer *p, const struct elm_proto_msg *m,
                        const struct elm_fields *t, void *req)
{
    char msg[128];
    int rc = elm_fields_get_request(&m->body, t, req, msg, sizeof msg);
    if (rc)
        simple_reply(d, p, m, rc, msg);
    return rc;
}

static struct elmd_session *find_session(struct elmd *d, const struct elm_proto_msg *m)
{
    struct elm_session_req r = {0};
    if (elm_fields_get_request(&m->body, &elm_fields_session_req, &r, NULL, 0) < 0)
        return NULL;
    for (struct elmd_session *s = d->sessions; s; s = s->next)
        if (s->id == r.session_id)
            return s;
    return NULL;
}

/* The one rule of session ownership: a session is its opener's, the process the kernel named
 * when it connected (reply.c), never a pid a client writes in a request. Only that process may
 * cancel or close it; the uid alone is not enough, as every client of a daemon without a group
 * shares the daemon's uid. The opener's pid cannot be reused while the session exists: its exit
 * closes the session (its pidfd, control.c). */
static bool is_owner(const struct elmd_session *s, const struct elmd_peer *p)
{
    return p->has_cred && p->pid == s->pid;
}

/* The one rule of the daemon's rights (issue 17 item 7): only its owner, a local process of the
 * daemon's uid (or root, who could do anything to it anyway), may load, unload or shut it down.
 * LOAD opens a path with the daemon's rights, which are the owner's alone: a group member could
 * otherwise load the owner's private files, and learn from the error whether a private path
 * exists. The TCP endpoint has no credentials, so it serves only what reads (hello, status,
 * stats, sessions): OPEN_SESSION needs an opener too, CANCEL and CLOSE a session's opener. Group
 * members use the model the owner loaded. */
static bool is_daemon_owner(const struct elmd_peer *p)
{
    return p->has_cred && (p->uid == (long)geteuid() || p->uid == 0);
}

/* Answers the requests only the daemon's owner may make, from anyone else: true when refused. */
static bool refuse_non_owner(struct elmd *d, const struct elmd_peer *p,
                             const struct elm_proto_msg *m)
{
    bool admin = m->hdr.cmd == ELM_CMD_LOAD || m->hdr.cmd == ELM_CMD_UNLOAD ||
                 m->hdr.cmd == ELM_CMD_SHUTDOWN;
    if (!admin || is_daemon_owner(p))
        return false;
    char msg[192];
    snprintf(msg, sizeof msg, "%s: only the daemon's owner may load, unload or shut it down%s",
             elm_proto_cmd_name(m->hdr.cmd),
             p->has_cred ? "" : "; the TCP endpoint serves only hello, status, stats and sessions");
    simple_reply(d, p, m, -EPERM, msg);
    return true;
}

/* Answers a CANCEL or CLOSE_SESSION that cannot act on s: 0 when it can. */
static int refuse_session(struct elmd *d, const struct elmd_peer *p, const struct elm_proto_msg *m,
                          const struct elmd_session *s)
{
    if (!s)
        return simple_reply(d, p, m, ELM_ESESSION, "no such session"), -1;
    if (!is_owner(s, p)) {
        char msg[96];
        snprintf(msg, sizeof msg, "session %llu belongs to another process",
                 (unsigned long long)s->id);
        return simple_reply(d, p, m, -EPERM, msg), -1;
    }
    return 0;
}

/* ---- hello, status, stats, sessions --------------------------------------------------------- */

static int cmd_hello(struct elmd *d, const struct elmd_peer *p, const struct elm_proto_msg *m)
{
    struct elm_hello_req r = {0}; /* no bounds: a failed read leaves 0s, which negotiate refuses */
    uint8_t v;
    elm_fields_get_request(&m->body, &elm_fields_hello_req, &r, NULL, 0);
    struct elm_proto_buf b;
    elm_proto_buf_init(&b);
    if (elm_proto_negotiate(r.version_min, r.version_max, &v) < 0) {
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
    return 0;
}

/* The default model's fields of STATUS (section ELM_STATUS_MODEL); d->lock held. */
static void fill_model(struct elm_daemon_status *st, const struct elmd *d,
                       const struct elmd_model *dm)
{
    const struct elm_model *m = dm->m;
    const struct elm_residency *r = &dm->res;
    const struct elm_kv_pool *pool = dm->kv_pool;
    struct elm_gguf_str name;
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++)
        st->n_params += m->gguf->tensors[i].n_elements;
    set_str(st->model_path, sizeof st->model_path, dm->path);
    if (elm_gguf_get_str(m->gguf, "general.name", &name) == 0)
        set_strn(st->model_name, sizeof st->model_name, name.ptr, name.len);
    st->n_ctx = (uint32_t)dm->ctx;
    st->n_vocab = (uint32_t)m->hp.n_vocab;
    st->n_threads = (uint32_t)m->n_threads;
    st->load_ns = r->total_ns;
    set_str(st->arch, sizeof st->arch, elm_arch_name(m->hp.arch));
    set_str(st->kernel, sizeof st->kernel, m->k->name);
    set_str(st->matrix_unit, sizeof st->matrix_unit, elm_kernels_matrix_unit(m->k));
    st->n_layer = (uint32_t)m->hp.n_layer;
    st->n_embd = (uint32_t)m->hp.n_embd;
    st->n_ctx_train = (uint32_t)m->hp.n_ctx_train;
    set_str(st->kv_type, sizeof st->kv_type, elmd_kv_type_name(elm_kv_pool_type(pool)));
    st->weight_bytes = r->data_size;
    bool pinned = r->mem.locked || r->mem.backing == ELM_BACK_HUGETLB; /* hugetlb never swaps */
    st->pinned_bytes = pinned ? r->locked_bytes : 0;
    st->huge_bytes = r->huge_bytes;
    st->huge_share = r->mem.len ? (double)r->huge_bytes / (double)r->mem.len : 0.0;
    set_str(st->backing, sizeof st->backing, elm_backing_name(r->mem.backing));
    st->o_direct = r->direct;
    st->io_uring = r->uring;
    st->load_gbps = r->gbps;
    set_str(st->load_notes, sizeof st->load_notes, r->notes);
    /* Safe under the lock: only control frees models, and the engine swaps them under it. The
     * pool's size, page size, backing and pinning never change; its free pages are the engine's
     * business, published at the end of each step. */
    st->kv_pages = (uint64_t)elm_kv_pool_pages(pool);
    st->kv_page_bytes = elm_kv_pool_page_bytes(pool);
    st->kv_page_tokens = ELM_KV_PAGE;
    st->kv_bytes = st->kv_pages * st->kv_page_bytes;
    st->kv_capacity = st->kv_pages * ELM_KV_PAGE;
    st->kv_pages_free = (uint64_t)dm->kv_free_pages;
    for (const struct elmd_session *s = d->sessions; s; s = s->next)
        st->kv_tokens += s->dm == dm ? (uint64_t)s->kv_used : 0;
    set_str(st->kv_backing, sizeof st->kv_backing, elm_kv_pool_backing(pool));
    st->kv_locked = elm_kv_pool_locked(pool);
    st->n_queued = (uint32_t)d->n_kv_waiting;
}

/* STATUS's list of every resident model: "NAME (N sessions|idle, BYTES MiB)", in load order;
 * d->lock held. */
static void list_models(struct elm_daemon_status *st, const struct elmd *d)
{
    size_t at = 0;
    for (int i = 0; i < d->n_models; i++) {
        const struct elmd_model *dm = d->models[i];
        char state[48];
        if (dm->retiring)
            snprintf(state, sizeof state, "unloading");
        else if (dm->n_sessions)
            snprintf(state, sizeof state, "%d session%s", dm->n_sessions,
                     dm->n_sessions > 1 ? "s" : "");
        else
            snprintf(state, sizeof state, "idle");
        int n = snprintf(st->models + at, sizeof st->models - at, "%s%s (%s, %.1f MiB)",
                         i ? ", " : "", dm->name, state, (double)dm->bytes / (1 << 20));
        if (n < 0 || (size_t)n >= sizeof st->models - at)
            break; /* cut: n_models still counts them all */
        at += (size_t)n;
    }
    st->n_models = (uint32_t)d->n_models;
}

static int cmd_status(struct elmd *d, const struct elmd_peer *p, const struct elm_proto_msg *m)
{
    struct elm_daemon_status *st = calloc(1, sizeof *st); /* 9 KiB of path buffers */
    if (!st)
        return simple_reply(d, p, m, -ENOMEM, "out of memory");
    unsigned sections = 0;
    st->uptime_ns = elmd_now_ns() - d->start_ns;
    st->n_sessions = (uint32_t)d->n_sessions;
    st->max_sessions = (uint32_t)d->cfg.max_sessions;
    st->pid = (long)getpid();
    set_str(st->daemon_version, sizeof st->daemon_version, ELMD_VERSION);
    struct elmd_model *def = elmd_find_model(d, NULL);
    pthread_mutex_lock(&d->lock);
    if (def) {
        fill_model(st, d, def);
        sections |= ELM_STATUS_MODEL;
    }
    list_models(st, d);
    pthread_mutex_unlock(&d->lock);
    st->resident_bytes = elmd_resident_bytes(d);
    st->max_resident_bytes = elmd_budget(d);
    if (d->load.waiting_room)
        set_str(st->load_wait, sizeof st->load_wait, d->load.err);
    if (d->load.active || d->load.waiting_room) {
        set_str(st->loading_path, sizeof st->loading_path, d->load.path);
        st->load_done = atomic_load(&d->load.progress.done);
        st->load_total = atomic_load(&d->load.progress.total);
        sections |= ELM_STATUS_LOADING;
    }
    set_str(st->load_error, sizeof st->load_error, d->load.last_error);
    reply_fields(d, p, m, &elm_fields_status, st, sections);
    free(st);
    return 0;
}

/* STATS's line per resident model, in load order; d->lock held. */
static void list_model_counts(struct elm_daemon_stats *st, const struct elmd *d)
{
    size_t at = 0;
    for (int i = 0; i < d->n_models; i++) {
        const struct elmd_model *dm = d->models[i];
        const double tps = dm->counts.gen_ns
                               ? (double)dm->counts.n_gen_tokens * 1e9 / (double)dm->counts.gen_ns
                               : 0.0;
        int n = snprintf(st->models + at, sizeof st->models - at,
                         "%s%s: %llu requests, %llu prompt + %llu generated tokens (%.1f tokens/s), "
                         "%llu preempted",
                         i ? "; " : "", dm->name, (unsigned long long)dm->counts.n_requests,
                         (unsigned long long)dm->counts.n_prompt_tokens,
                         (unsigned long long)dm->counts.n_gen_tokens, tps,
                         (unsigned long long)dm->counts.n_preemptions);
        if (n < 0 || (size_t)n >= sizeof st->models - at) {
            st->models[at] = 0; /* cut at a whole model: n_models still counts them all */
            break;
        }
        at += (size_t)n;
    }
}

static int cmd_stats(struct elmd *d, const struct elmd_peer *p, const struct elm_proto_msg *m)
{
    pthread_mutex_lock(&d->lock);
    struct elm_daemon_stats st = d->st.c;
    elmd_lat_pct(&d->st.ttft, st.ttft_ns);
    elmd_lat_pct(&d->st.itl, st.itl_ns);
    pthread_mutex_unlock(&d->lock);
    st.uptime_ns = elmd_now_ns() - d->start_ns;
    st.gen_tokens_per_s = st.gen_ns ? (double)st.n_gen_tokens * 1e9 / (double)st.gen_ns : 0.0;
    st.rss_bytes = rss_bytes();
    st.n_sessions = (uint32_t)d->n_sessions;
    st.n_sessions_opened = d->next_session_id; /* ids count from 1 */
    struct elm_pool_stats ps;
    elm_pool_stats(&ps); /* the engine's compute threads: elmd's only pool user */
    st.n_pool_busy = ps.n_busy;
    st.n_pool_samples = ps.n_samples;
    st.n_pool_sleeps = ps.n_sleeps;
    st.n_pool_spin_sleeps = ps.n_spin_sleeps;
    st.n_pool_probes = ps.n_probes;
    st.n_pool_probes_free = ps.n_probes_free;
    _Static_assert(sizeof st.pool_delay == sizeof ps.delay_hist, "one histogram");
    _Static_assert(sizeof st.pool_gaps == sizeof ps.gap_hist, "one histogram");
    memcpy(st.pool_delay, ps.delay_hist, sizeof st.pool_delay);
    memcpy(st.pool_gaps, ps.gap_hist, sizeof st.pool_gaps);
    pthread_mutex_lock(&d->lock);
    st.n_models = (uint32_t)d->n_models;
    list_model_counts(&st, d);
    pthread_mutex_unlock(&d->lock);
    reply_fields(d, p, m, &elm_fields_stats, &st, 0);
    return 0;
}

static int cmd_sessions(struct elmd *d, const struct elmd_peer *p, const struct elm_proto_msg *m)
{
    struct elm_proto_buf b;
    elm_proto_buf_init(&b);
    elm_proto_begin_reply(&b, m, 0, NULL);
    uint64_t now = elmd_now_ns();
    pthread_mutex_lock(&d->lock);
    for (struct elmd_session *s = d->sessions; s; s = s->next) {
        struct elm_session_info si = {
            .id = s->id,
            .state = s->close_req ? ELM_SESSION_STATE_CLOSING : s->state,
            .pid = s->pid > 0 ? s->pid : 0,
            .n_ctx = (uint32_t)s->n_ctx,
            .n_prompt_tokens = s->n_prompt_tokens,
            .n_gen_tokens = s->n_gen_tokens,
            .age_ns = now - s->opened_ns,
            .n_requests = s->n_requests,
        };
        set_str(si.client_name, sizeof si.client_name, s->client_name);
        set_str(si.model, sizeof si.model, s->dm->name);
        elmd_lat_pct(&s->ttft, si.ttft_ns);
        elmd_lat_pct(&s->itl, si.itl_ns);
        elm_proto_group_begin(&b, ELM_TAG_SESSION);
        elm_fields_put(&b, &elm_fields_session, &si, 0);
        elm_proto_group_end(&b);
    }
    pthread_mutex_unlock(&d->lock);
    elmd_reply(d, p, &b);
    elm_proto_buf_fini(&b);
    return 0;
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
        const struct elmd_model *dm = d->load.added; /* control's: no lock needed */
        if (rc == 0 && w->req.hdr.cmd == ELM_CMD_LOAD && dm) {
            struct elm_load_result r = {
                .n_ctx = (uint32_t)dm->ctx,
                .n_vocab = (uint32_t)dm->m->hp.n_vocab,
                .load_ns = dm->res.total_ns,
            };
            set_str(r.model_name, sizeof r.model_name, dm->name);
            elm_fields_put(&b, &elm_fields_load, &r, 0);
        }
        elmd_reply(d, &w->peer, &b);
        elm_proto_buf_fini(&b);
        free(w);
    }
}

static int cmd_load(struct elmd *d, const struct elmd_peer *p, const struct elm_proto_msg *m)
{
    struct elm_load_req r = {0}; /* 4 KiB: the path */
    char err[600];
    if (read_request(d, p, m, &elm_fields_load_req, &r))
        return 0;
    if (r.path[0] != '/')
        return simple_reply(d, p, m, -EINVAL, "PATH must be an absolute path");
    if (d->draining)
        return simple_reply(d, p, m, ELM_ESHUTDOWN, "the daemon is shutting down");
    struct elmd_load_args la = {.path = r.path,
                                .name = r.name,
                                .ctx = (int32_t)r.n_ctx,
                                .threads = (int)r.n_threads,
                                .has_keep_alive = r.keep_alive[0] != 0};
    if (la.has_keep_alive && elmd_parse_keep_alive(r.keep_alive, &la.keep_alive_ms))
        return simple_reply(d, p, m, -EINVAL, "KEEP_ALIVE must be a duration: 5m, 30s, 0, -1");
    int rc = elmd_start_load(d, &la, err, sizeof err);
    if (rc == 0)
        rc = add_pending(d, p, m);
    if (rc)
        simple_reply(d, p, m, rc, err);
    return 0;
}

static int cmd_unload(struct elmd *d, const struct elmd_peer *p, const struct elm_proto_msg *m)
{
    struct elm_unload_req r = {0};
    if (read_request(d, p, m, &elm_fields_unload_req, &r))
        return 0;
    int rc = elmd_unload(d, r.name);
    if (rc < 0) {
        char msg[128];
        snprintf(msg, sizeof msg, "no model named '%s' is resident", r.name);
        return simple_reply(d, p, m, ELM_ENOMODEL, msg);
    }
    if (rc == 0)
        return simple_reply(d, p, m, 0, NULL);
    if (!r.name[0])
        elmd_answer_pending(d, ELM_CMD_LOAD, ELM_ECANCELED, "superseded by an unload");
    if (add_pending(d, p, m) < 0)
        simple_reply(d, p, m, -ENOMEM, "out of memory");
    return 0;
}

/* ---- sessions ------------------------------------------------------------------------------- */

/* The ring capacity for a requested size v (already within ELM_REQ_MAX_RING). */
static int ring_size(uint32_t v, uint32_t def, uint32_t min, uint32_t *out)
{
    if (v == 0)
        v = def;
    if (v < min)
        v = min; /* more room than asked never hurts the client */
    if (!elm_ring_capacity_is_valid(v))
        return -EINVAL;
    *out = v;
    return 0;
}

static int cmd_open_session(struct elmd *d, const struct elmd_peer *p,
                            const struct elm_proto_msg *m)
{
    struct elm_open_req r = {0};
    uint32_t req_cap, evt_cap;
    char err[256], msg[256];
    if (d->draining)
        return simple_reply(d, p, m, ELM_ESHUTDOWN, "the daemon is shutting down");
    if (read_request(d, p, m, &elm_fields_open_req, &r))
        return 0;
    if (!p->has_cred) /* no opener to bind it to, or to notice the exit of (is_owner) */
        return simple_reply(d, p, m, -EPERM,
                            "sessions are opened on the local socket, whose peer is known");
    if (ring_size(r.req_ring_size, ELM_SESSION_DEFAULT_REQ_CAPACITY, MIN_REQ_RING, &req_cap) < 0 ||
        ring_size(r.evt_ring_size, ELM_SESSION_DEFAULT_EVT_CAPACITY, MIN_EVT_RING, &evt_cap) < 0)
        return simple_reply(d, p, m, -EINVAL, "ring sizes must be powers of two up to 64 MiB");
    uint64_t ctx = r.n_ctx;
    elm_trace("d_open_rx");

    /* Only control adds and retires models, so this one stays while the handler runs. */
    struct elmd_model *model = elmd_find_model(d, r.model);
    if (!model) {
        if (!r.model[0])
            return simple_reply(d, p, m, ELM_ENOMODEL, "no model is loaded");
        snprintf(msg, sizeof msg, "no model named '%s' is resident (elmctl load FILE --as %s)",
                 r.model, r.model);
        return simple_reply(d, p, m, ELM_ENOMODEL, msg);
    }
    int64_t keep_alive = 0;
    if (r.keep_alive[0] && elmd_parse_keep_alive(r.keep_alive, &keep_alive))
        return simple_reply(d, p, m, -EINVAL, "KEEP_ALIVE must be a duration: 5m, 30s, 0, -1");
    int32_t def_ctx = model->ctx;
    if (d->n_sessions >= d->cfg.max_sessions) {
        snprintf(msg, sizeof msg, "all %d sessions are in use", d->cfg.max_sessions);
        return simple_reply(d, p, m, ELM_EBUSY, msg);
    }
    /* A context larger than the KV pool is allowed: a request that could outgrow the pool is
     * refused when it comes, with its numbers (scheduler.c), one that stays within it runs. */
    int32_t cap = elmd_ctx_cap(model, def_ctx);
    if (ctx > (uint64_t)cap) {
        snprintf(msg, sizeof msg, "N_CTX %llu exceeds the limit of %d", (unsigned long long)ctx,
                 cap);
        return simple_reply(d, p, m, ELM_ECONTEXT, msg);
    }
    struct elmd_session *s;
    int rc = elmd_session_create(d, model, ctx ? (int32_t)ctx : def_ctx, req_cap, evt_cap, p->pid,
                                 r.client_name, &s, err, sizeof err);
    if (rc)
        return simple_reply(d, p, m, rc, err);
    elm_trace("d_open_shm");
    s->id = ++d->next_session_id;
    model->n_sessions++; /* never unloaded while this session is open */
    if (r.keep_alive[0]) /* as ollama: the latest request's keep_alive is the model's */
        model->keep_alive_ms = keep_alive;
    struct elm_proto_buf b;
    elm_proto_buf_init(&b);
    elm_proto_begin_reply(&b, m, 0, NULL);
    elm_proto_put_u64(&b, ELM_TAG_SESSION_ID, s->id);
    elm_proto_put_str(&b, ELM_TAG_REGION_SOCKET, d->rd.region_path);
    elm_proto_put_bytes(&b, ELM_TAG_REGION_TOKEN, s->token, sizeof s->token);
    elm_proto_put_u64(&b, ELM_TAG_SHM_SIZE, s->shm.size);
    elm_proto_put_u64(&b, ELM_TAG_REQ_RING_SIZE, req_cap);
    elm_proto_put_u64(&b, ELM_TAG_EVT_RING_SIZE, evt_cap);
    elm_proto_put_u64(&b, ELM_TAG_N_CTX, (uint64_t)s->n_ctx);

    s->next = d->sessions;
    d->sessions = s;
    d->n_sessions++;
    pthread_mutex_lock(&d->lock);
    s->qnext = NULL;
    struct elmd_session **tail = &d->adopt;
    while (*tail)
        tail = &(*tail)->qnext;
    *tail = s;
    pthread_mutex_unlock(&d->lock);
    elmd_engine_wake(d);
    elm_info("session %llu opened: pid %ld (%s), %d-token context, rings %u/%u",
             (unsigned long long)s->id, s->pid, s->client_name[0] ? s->client_name : "?", s->n_ctx,
             req_cap, evt_cap);
    elmd_reply(d, p, &b);
    elm_proto_buf_fini(&b);
    return 0;
}

static int cmd_close_session(struct elmd *d, const struct elmd_peer *p,
                             const struct elm_proto_msg *m)
{
    struct elmd_session *s = find_session(d, m);
    if (refuse_session(d, p, m, s))
        return 0;
    pthread_mutex_lock(&d->lock);
    bool ok = !s->close_req;
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
    if (refuse_session(d, p, m, s))
        return 0;
    pthread_mutex_lock(&d->lock);
    bool ok = !s->close_req;
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

static int cmd_shutdown(struct elmd *d, const struct elmd_peer *p, const struct elm_proto_msg *m)
{
    simple_reply(d, p, m, 0, NULL);
    elmd_begin_drain(d, "shutdown requested");
    return 0;
}

/* One handler per request elmd serves, indexed by command; the others (ERROR) are NULL. */
static const cmd_fn handlers[ELM_CMD_LIMIT] = {
    [ELM_CMD_HELLO] = cmd_hello,
    [ELM_CMD_STATUS] = cmd_status,
    [ELM_CMD_LOAD] = cmd_load,
    [ELM_CMD_UNLOAD] = cmd_unload,
    [ELM_CMD_OPEN_SESSION] = cmd_open_session,
    [ELM_CMD_CLOSE_SESSION] = cmd_close_session,
    [ELM_CMD_CANCEL] = cmd_cancel,
    [ELM_CMD_SESSIONS] = cmd_sessions,
    [ELM_CMD_STATS] = cmd_stats,
    [ELM_CMD_SHUTDOWN] = cmd_shutdown,
};

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
    d->st.c.n_control++;
    d->st.c.n_malformed += rc != 0;
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
    cmd_fn fn = m.hdr.cmd < ELM_CMD_LIMIT ? handlers[m.hdr.cmd] : NULL;
    if (fn && refuse_non_owner(d, p, &m))
        return;
    if (fn)
        fn(d, p, &m);
    else /* decodable but not a request we serve (the decoder knows every command) */
        simple_reply(d, p, &m, ELM_EPROTO, "command not served by elmd");
}
