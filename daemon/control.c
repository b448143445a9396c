/* control.c — the control thread: the ZeroMQ ROUTER socket(s), signals, client deaths, the
 * loader thread's lifecycle, model swaps, shm-name timeouts, draining and shutdown.
 *
 * One zmq_poll() waits on everything: the sockets, an eventfd the signal handlers write, an
 * eventfd the engine and loader write, and one pidfd per session (readable when that client
 * exits, so a client killed with SIGKILL is noticed in the same poll round). Replies are sent
 * with ZMQ_DONTWAIT under ZMQ_ROUTER_MANDATORY: a peer that vanished or stopped reading costs a
 * dropped reply (counted), never a blocked daemon. ZMQ_MAXMSGSIZE makes ZeroMQ drop any peer
 * that sends a frame larger than the protocol allows before we ever see it.
 *
 * Why ROUTER: it can answer any peer at any time, so LOAD is answered when the model is ready
 * and an undecodable frame still gets an ERROR reply, without REQ/REP's strict lockstep (a
 * REQ client works too: its empty delimiter frame is echoed as an envelope).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "common/log.h"
#include "control.h"
#include "elm/status.h"

/* ---- signals: the handlers only count and poke the eventfd ------------------------------- */

static volatile sig_atomic_t g_term, g_hup;
static int g_sig_fd = -1;

static void on_signal(int sig)
{
    int saved = errno;
    if (sig == SIGHUP)
        g_hup = 1;
    else
        g_term++;
    uint64_t one = 1;
    if (write(g_sig_fd, &one, sizeof one) < 0) {
        /* the eventfd is full or gone: the flags are still set, the next poll round sees them */
    }
    errno = saved;
}

static int install_signals(struct elmd *d)
{
    g_sig_fd = d->sig_fd;
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    struct sigaction ign = {.sa_handler = SIG_IGN};
    if (sigaction(SIGTERM, &sa, NULL) || sigaction(SIGINT, &sa, NULL) ||
        sigaction(SIGHUP, &sa, NULL) || sigaction(SIGPIPE, &ign, NULL))
        return -errno;
    return 0;
}

/* ---- sockets -------------------------------------------------------------------------------- */

static int open_router(struct elmd *d, const char *endpoint, void **out, char *err, size_t errlen)
{
    void *s = zmq_socket(d->zctx, ZMQ_ROUTER);
    int one = 1, zero = 0, hwm = 1000;
    int64_t maxmsg = ELM_PROTO_MAX_FRAME;
    if (!s || zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof one) ||
        zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero) ||
        zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm) ||
        zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm) ||
        zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) || zmq_bind(s, endpoint)) {
        int e = zmq_errno();
        snprintf(err, errlen, "cannot listen on %s: %s", endpoint, zmq_strerror(e));
        if (s)
            zmq_close(s);
        return -e;
    }
    *out = s;
    return 0;
}

int elmd_control_open(struct elmd *d, char *err, size_t errlen)
{
    d->sig_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    d->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (d->sig_fd < 0 || d->wake_fd < 0)
        return snprintf(err, errlen, "eventfd: %s", strerror(errno)), -errno;
    int rc = install_signals(d);
    if (rc)
        return snprintf(err, errlen, "sigaction: %s", strerror(-rc)), rc;
    d->zctx = zmq_ctx_new();
    if (!d->zctx)
        return snprintf(err, errlen, "zmq_ctx_new: %s", zmq_strerror(zmq_errno())), -ENOMEM;
    zmq_ctx_set(d->zctx, ZMQ_BLOCKY, 0);
    char ep[PATH_MAX + 32];
    snprintf(ep, sizeof ep, "ipc://%s", d->rd.sock_path);
    /* The umask (077, set at start-up) makes the socket 0600 from its creation; chmod then
     * states it explicitly (0660 with a group). */
    if ((rc = open_router(d, ep, &d->router, err, errlen)))
        return rc;
    if ((rc = elmd_rundir_secure_socket(&d->rd)))
        return snprintf(err, errlen, "chmod %s: %s", d->rd.sock_path, strerror(-rc)), rc;
    if (d->cfg.endpoint[0] && (rc = open_router(d, d->cfg.endpoint, &d->router_tcp, err, errlen)))
        return rc;
    elm_info("listening on %s%s%s", ep, d->cfg.endpoint[0] ? " and " : "", d->cfg.endpoint);
    return 0;
}

void elmd_control_close(struct elmd *d)
{
    if (d->router)
        zmq_close(d->router);
    if (d->router_tcp)
        zmq_close(d->router_tcp);
    if (d->zctx)
        zmq_ctx_term(d->zctx);
    d->router = d->router_tcp = d->zctx = NULL;
    if (d->sig_fd >= 0)
        close(d->sig_fd);
    if (d->wake_fd >= 0)
        close(d->wake_fd);
    d->sig_fd = d->wake_fd = -1;
}

void elmd_reply(struct elmd *d, const struct elmd_peer *p, struct elm_proto_buf *b)
{
    const void *frame;
    size_t len;
    int rc = elm_proto_finish(b, &frame, &len);
    if (rc < 0) { /* a bug of ours: say so rather than send nothing */
        elm_err("control: cannot build a reply: %s", elm_strerror(rc));
        return;
    }
    bool ok = zmq_send(p->sock, p->id, p->id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0;
    for (int i = 0; ok && i < p->n_env; i++)
        ok = zmq_send(p->sock, p->env[i], p->env_len[i], ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0;
    ok = ok && zmq_send(p->sock, frame, len, ZMQ_DONTWAIT) >= 0;
    if (!ok) {
        elm_debug("control: reply dropped: %s", zmq_strerror(zmq_errno()));
        pthread_mutex_lock(&d->lock);
        d->st.c.n_dropped++;
        pthread_mutex_unlock(&d->lock);
    }
}

/* Receives up to a bounded number of messages (so one busy peer cannot starve the rest of the
 * loop) and answers each. */
static void serve_socket(struct elmd *d, void *sock)
{
    for (int budget = 0; budget < 256; budget++) {
        struct elmd_peer peer = {.sock = sock};
        zmq_msg_t part, payload;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&part);
            return;
        }
        peer.id_len = zmq_msg_size(&part) < sizeof peer.id ? zmq_msg_size(&part) : 0;
        memcpy(peer.id, zmq_msg_data(&part), peer.id_len);
        bool more = zmq_msg_more(&part), have = false, bad = false;
        zmq_msg_close(&part);
        /* The parts of one message arrive together, so these receives never wait. */
        while (more) {
            zmq_msg_t next;
            zmq_msg_init(&next);
            if (zmq_msg_recv(&next, sock, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&next);
                break;
            }
            more = zmq_msg_more(&next);
            if (have) { /* the previous part was envelope, not payload */
                size_t n = zmq_msg_size(&payload);
                if (peer.n_env < ELMD_MAX_ENVELOPE && n <= ELMD_MAX_ENV_LEN) {
                    memcpy(peer.env[peer.n_env], zmq_msg_data(&payload), n);
                    peer.env_len[peer.n_env++] = n;
                } else {
                    bad = true;
                }
                zmq_msg_close(&payload);
            }
            payload = next;
            have = true;
        }
        if (!have)
            continue; /* nothing after the routing id: nothing to answer */
        if (bad || !peer.id_len) {
            static const char junk[1];
            elmd_handle_frame(d, &peer, junk, 0); /* counted and answered as malformed */
        } else {
            elmd_handle_frame(d, &peer, zmq_msg_data(&payload), zmq_msg_size(&payload));
        }
        zmq_msg_close(&payload);
    }
}

/* ---- the loader thread ---------------------------------------------------------------------- */

static void *loader_main(void *arg)
{
    struct elmd *d = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    d->load_rc = elmd_model_load(d->load_path, &d->load_params, &d->progress, &d->load_result,
                                 d->load_err, sizeof d->load_err);
    atomic_store_explicit(&d->load_finished, true, memory_order_release);
    uint64_t one = 1;
    if (write(d->wake_fd, &one, sizeof one) < 0)
        elm_debug("loader: cannot notify control");
    return NULL;
}

int elmd_start_load(struct elmd *d, const char *path, int32_t ctx, int threads, char *err,
                    size_t errlen)
{
    if (d->loading)
        return snprintf(err, errlen, "a load of %s is in progress", d->load_path), ELM_EBUSY;
    const struct elmd_config *c = &d->cfg;
    d->load_params = (struct elmd_load_params){.threads = threads ? threads : c->threads,
                                               .kernel = c->kernel,
                                               .hugepages = c->hugepages,
                                               .mlock = c->mlock,
                                               .direct_io = c->direct_io,
                                               .io_depth = c->io_depth,
                                               .io_chunk = (size_t)c->io_chunk_kib << 10};
    snprintf(d->load_path, sizeof d->load_path, "%s", path);
    d->load_ctx = ctx;
    d->load_result = NULL;
    d->load_rc = 0;
    d->load_err[0] = 0;
    atomic_store(&d->progress.done, 0);
    atomic_store(&d->progress.total, 0);
    atomic_store(&d->progress.abort, false);
    atomic_store(&d->load_finished, false);
    int rc = pthread_create(&d->loader, NULL, loader_main, d);
    if (rc)
        return snprintf(err, errlen, "cannot start the loader: %s", strerror(rc)), -rc;
    d->loading = true;
    elm_info("loading %s", path);
    return 0;
}

void elmd_close_all_sessions(struct elmd *d, int code, const char *msg)
{
    pthread_mutex_lock(&d->lock);
    for (struct elmd_session *s = d->sessions; s; s = s->next)
        if (!s->close_req) {
            s->close_req = true;
            s->close_code = code;
            s->close_msg = msg;
        }
    pthread_mutex_unlock(&d->lock);
    elmd_engine_wake(d);
}

/* The KV pool of a freshly loaded model: kv_pool_tokens positions (or the default for ctx),
 * shared by every session on it. Its pages are handed out by the engine thread only. Returns 0
 * or an error with a message in err; *ctx is lowered to the pool's size if it is larger, so a
 * session's request can always fit an empty pool. */
static int make_kv_pool(struct elmd *d, struct elmd_model *dm, int32_t *ctx, char *err,
                        size_t errlen)
{
    const struct elmd_config *c = &d->cfg;
    int64_t tokens =
        c->kv_pool_tokens ? c->kv_pool_tokens : elmd_kv_pool_default(c->max_sessions, *ctx);
    int64_t pages = elm_kv_pages_for(tokens);
    /* as the weights: thp never takes reserved pages; hugetlb and auto try them first (the
     * pool is made after the weights, so it takes only what they left) */
    unsigned flags = (c->hugepages == ELMD_HUGE_THP   ? ELM_KV_POOL_THP
                      : c->hugepages != ELMD_HUGE_OFF ? ELM_KV_POOL_HUGE
                                                      : 0) |
                     (c->mlock ? ELM_KV_POOL_LOCK : 0);
    int rc = elm_kv_type_check(dm->m, c->kv_type, err, errlen);
    if (rc == 0 && (rc = elm_kv_pool_create(dm->m, c->kv_type, pages, flags, &dm->kv_pool)))
        snprintf(err, errlen, "cannot allocate a KV pool of %lld positions: %s", (long long)tokens,
                 elm_strerror(rc));
    if (rc)
        return rc;
    int64_t cap = elm_kv_pool_pages(dm->kv_pool) * ELM_KV_PAGE;
    if (*ctx > cap) {
        elm_warn("kv_pool_tokens %lld is less than the context %d: sessions get %lld tokens",
                 (long long)tokens, *ctx, (long long)cap);
        *ctx = (int32_t)cap;
    }
    const struct elm_kv_pool *p = dm->kv_pool;
    elm_info("KV pool: %lld pages of %d positions (%zu bytes each), %s, %s, %s", (long long)pages,
             ELM_KV_PAGE, elm_kv_pool_page_bytes(p), elmd_kv_type_name(c->kv_type),
             elm_kv_pool_backing(p), elm_kv_pool_locked(p) ? "pinned" : "not pinned");
    return 0;
}

/* The loader returned: hand a new model to the engine, or report the failure. */
static void finish_load(struct elmd *d, int *initial_rc)
{
    pthread_join(d->loader, NULL);
    d->loading = false;
    if (d->load_rc == 0 && atomic_load(&d->progress.abort)) {
        elmd_model_destroy(&d->load_result);
        d->load_rc = -ECANCELED;
        snprintf(d->load_err, sizeof d->load_err, "the load was cancelled");
    }
    int32_t ctx = 0;
    if (d->load_rc == 0) {
        ctx = elmd_ctx_default(d->load_result, d->load_ctx ? d->load_ctx : d->cfg.ctx);
        d->load_rc = make_kv_pool(d, d->load_result, &ctx, d->load_err, sizeof d->load_err);
        if (d->load_rc)
            elmd_model_destroy(&d->load_result);
    }
    if (d->load_rc) {
        snprintf(d->last_load_error, sizeof d->last_load_error, "%s: %s", d->load_path,
                 d->load_err);
        elm_err("cannot load %s", d->last_load_error);
        elmd_answer_pending(d, ELM_CMD_LOAD, d->load_rc, d->load_err);
        *initial_rc = d->load_rc;
        return;
    }
    d->last_load_error[0] = 0;
    pthread_mutex_lock(&d->lock);
    elmd_model_destroy(&d->swap_to);
    d->swap_to = d->load_result;
    d->swap_ctx = ctx;
    d->swap_pending = true;
    pthread_mutex_unlock(&d->lock);
    d->swapping = true;
    d->load_result = NULL;
    /* Sessions hold sequences of the old model: they end (ERROR to a running request). */
    elmd_close_all_sessions(d, ELM_ENOMODEL, "the model was replaced");
}

/* Frees what the engine let go; notices finished loads. */
static void handle_wake(struct elmd *d, int *initial_rc)
{
    pthread_mutex_lock(&d->lock);
    struct elmd_session *reaped = d->reaped;
    struct elmd_model *retired = d->retired;
    d->reaped = NULL;
    d->retired = NULL;
    pthread_mutex_unlock(&d->lock);
    while (reaped) {
        struct elmd_session *s = reaped;
        reaped = s->qnext;
        for (struct elmd_session **p = &d->sessions; *p; p = &(*p)->next)
            if (*p == s) {
                *p = s->next;
                break;
            }
        d->n_sessions--;
        elm_info("session %llu closed%s%s", (unsigned long long)s->id, s->reap_code ? ": " : "",
                 s->reap_code ? elm_strerror(s->reap_code) : "");
        elmd_session_destroy(&s);
    }
    elmd_model_destroy(&retired);
    if (d->loading && atomic_load_explicit(&d->load_finished, memory_order_acquire))
        finish_load(d, initial_rc);
}

/* True once a swap that control started has been done by the engine. */
static bool swap_finished(struct elmd *d)
{
    if (!d->swapping)
        return false;
    pthread_mutex_lock(&d->lock);
    bool pending = d->swap_pending;
    const struct elmd_model *m = d->model;
    pthread_mutex_unlock(&d->lock);
    if (pending)
        return false;
    d->swapping = false;
    if (m)
        elm_info("serving %s", m->path);
    else
        elm_info("model unloaded");
    return true;
}

/* ---- timers, deaths, draining ---------------------------------------------------------------- */

static void client_died(struct elmd *d, struct elmd_session *s)
{
    elm_info("session %llu: client pid %ld exited: freeing the session", (unsigned long long)s->id,
             s->pid);
    pthread_mutex_lock(&d->lock);
    if (!s->close_req) {
        s->close_req = true;
        s->close_code = ELM_ESESSION;
        s->close_msg = "the client exited";
        d->st.c.n_client_deaths++;
    }
    pthread_mutex_unlock(&d->lock);
    elmd_engine_wake(d);
}

/* Removes shm names whose client did not map them in time; returns ms to the next deadline. */
static int run_timers(struct elmd *d)
{
    uint64_t now = elmd_now_ns(), next = now + 1000000000u;
    for (struct elmd_session *s = d->sessions; s; s = s->next) {
        if (s->shm_unlinked)
            continue;
        if (now >= s->unlink_at_ns) {
            /* -ENOENT: the client mapped it and removed the name itself, as it should. */
            if (elm_shm_unlink(s->shm.name) == 0)
                elm_debug("session %llu: unlinked %s after the timeout", (unsigned long long)s->id,
                          s->shm.name);
            s->shm_unlinked = true;
        } else if (s->unlink_at_ns < next) {
            next = s->unlink_at_ns;
        }
    }
    if (d->draining && !d->stopping && d->drain_deadline_ns < next)
        next = d->drain_deadline_ns > now ? d->drain_deadline_ns : now;
    return (int)((next - now + 999999) / 1000000);
}

void elmd_begin_drain(struct elmd *d, const char *why)
{
    if (d->draining)
        return;
    elm_info("draining (%s): no new requests; running ones may finish for %d ms", why,
             d->cfg.drain_ms);
    d->draining = true;
    d->drain_deadline_ns = elmd_now_ns() + (uint64_t)d->cfg.drain_ms * 1000000u;
    pthread_mutex_lock(&d->lock);
    d->eng_draining = true;
    pthread_mutex_unlock(&d->lock);
    elmd_engine_wake(d);
    if (d->loading)
        atomic_store(&d->progress.abort, true);
}

/* Returns true once everything is closed and the loop may end. */
static bool drain_step(struct elmd *d)
{
    if (!d->draining)
        return false;
    if (!d->stopping) {
        pthread_mutex_lock(&d->lock);
        int running = d->n_running;
        bool seen = d->eng_drain_seen;
        pthread_mutex_unlock(&d->lock);
        if ((running || !seen) && elmd_now_ns() < d->drain_deadline_ns)
            return false;
        if (running)
            elm_info("drain time is up: ending %d request(s)", running);
        pthread_mutex_lock(&d->lock);
        d->eng_cancel_all = true;
        pthread_mutex_unlock(&d->lock);
        elmd_close_all_sessions(d, ELM_ESHUTDOWN, "the daemon is shutting down");
        d->stopping = true;
    }
    return !d->sessions && !d->loading;
}

/* A second SIGTERM/SIGINT: leave now, removing only what would mislead the next daemon. */
static void exit_now(struct elmd *d)
{
    elm_warn("second signal: exiting at once");
    for (struct elmd_session *s = d->sessions; s; s = s->next)
        if (!s->shm_unlinked)
            elm_shm_unlink(s->shm.name);
    elmd_rundir_close(&d->rd);
    _exit(1);
}

/* ---- SIGHUP ------------------------------------------------------------------------------------
 */

/* Parses the configuration again (file + the original command line) into a new value; an
 * invalid one is logged and the running configuration stays. Settings that shape what already
 * exists (directory, sockets, group) need a restart and keep their old values. */
void elmd_reload_config(struct elmd *d)
{
    struct elmd_config *n = malloc(sizeof *n);
    char err[640];
    if (!n) {
        elm_err("SIGHUP: out of memory: keeping the current configuration");
        return;
    }
    int rc = elmd_config_from_args(n, d->argc, d->argv, err, sizeof err);
    if (rc) {
        elm_err("SIGHUP: %s: keeping the current configuration", rc == 1 ? "no change" : err);
        free(n);
        return;
    }
    if (strcmp(n->runtime_dir, d->cfg.runtime_dir) || strcmp(n->endpoint, d->cfg.endpoint) ||
        strcmp(n->group, d->cfg.group))
        elm_warn("SIGHUP: runtime_dir, endpoint and group take effect at the next start");
    snprintf(n->runtime_dir, sizeof n->runtime_dir, "%s", d->cfg.runtime_dir);
    snprintf(n->endpoint, sizeof n->endpoint, "%s", d->cfg.endpoint);
    snprintf(n->group, sizeof n->group, "%s", d->cfg.group);
    n->foreground = d->cfg.foreground;
    n->use_syslog = d->cfg.use_syslog; /* where logs go is decided once, at start-up */
    bool new_model = n->model[0] && strcmp(n->model, d->cfg.model) != 0;
    d->cfg = *n;
    free(n);
    elm_log_setup((enum elm_log_level)d->cfg.log_level, d->cfg.use_syslog, "elmd");
    elmd_publish_knobs(d);
    elmd_engine_wake(d);
    elm_info("SIGHUP: configuration reloaded%s%s", d->cfg.config_path[0] ? " from " : "",
             d->cfg.config_path);
    if (new_model && !d->draining && elmd_start_load(d, d->cfg.model, 0, 0, err, sizeof err) < 0)
        elm_err("SIGHUP: cannot load %s: %s", d->cfg.model, err);
}

/* ---- the loop ----------------------------------------------------------------------------------
 */

int elmd_control_run(struct elmd *d, void (*ready)(struct elmd *d, int rc, const char *msg))
{
    bool waiting_initial = d->loading;
    if (!waiting_initial)
        ready(d, 0, NULL);
    for (;;) {
        zmq_pollitem_t it[4 + ELMD_MAX_SESSIONS_LIMIT];
        struct elmd_session *owner[4 + ELMD_MAX_SESSIONS_LIMIT] = {0};
        int n = 0;
        it[n++] = (zmq_pollitem_t){.socket = d->router, .events = ZMQ_POLLIN};
        if (d->router_tcp)
            it[n++] = (zmq_pollitem_t){.socket = d->router_tcp, .events = ZMQ_POLLIN};
        int sig_i = n;
        it[n++] = (zmq_pollitem_t){.fd = d->sig_fd, .events = ZMQ_POLLIN};
        it[n++] = (zmq_pollitem_t){.fd = d->wake_fd, .events = ZMQ_POLLIN};
        for (struct elmd_session *s = d->sessions; s && n < (int)(sizeof it / sizeof *it);
             s = s->next)
            if (s->pidfd >= 0 && !s->close_req) {
                owner[n] = s;
                it[n++] = (zmq_pollitem_t){.fd = s->pidfd, .events = ZMQ_POLLIN};
            }
        int timeout = run_timers(d);
        if (zmq_poll(it, n, timeout) < 0 && zmq_errno() != EINTR) {
            elm_err("control: zmq_poll: %s", zmq_strerror(zmq_errno()));
            usleep(10000);
        }
        uint64_t junk;
        if (read(d->sig_fd, &junk, sizeof junk) < 0 && errno != EAGAIN)
            elm_debug("control: signal eventfd: %s", strerror(errno));
        if (read(d->wake_fd, &junk, sizeof junk) < 0 && errno != EAGAIN)
            elm_debug("control: wake eventfd: %s", strerror(errno));
        if (g_term >= 2)
            exit_now(d);
        if (g_term && !d->draining)
            elmd_begin_drain(d, "signal");
        if (g_hup) {
            g_hup = 0;
            elmd_reload_config(d);
        }
        int initial_rc = 0;
        handle_wake(d, &initial_rc);
        if (swap_finished(d)) {
            elmd_answer_pending(d, 0, 0, NULL);
            if (waiting_initial) {
                waiting_initial = false;
                ready(d, 0, NULL);
            }
        }
        if (waiting_initial && initial_rc) {
            ready(d, initial_rc, d->last_load_error);
            d->exit_code = 1;
            waiting_initial = false;
            elmd_begin_drain(d, "the initial model did not load");
        }
        for (int i = sig_i + 2; i < n; i++)
            if (it[i].revents & ZMQ_POLLIN)
                client_died(d, owner[i]);
        serve_socket(d, d->router);
        if (d->router_tcp)
            serve_socket(d, d->router_tcp);
        if (drain_step(d))
            break;
    }
    elmd_answer_pending(d, 0, ELM_ESHUTDOWN, "the daemon is shutting down");
    return d->exit_code;
}
