/* control.c — the control thread's event loop: the ZeroMQ ROUTER socket(s), signals, client
 * deaths, the region socket (regions.c) and SIGHUP. Requests go to commands.c, the model's load,
 * swap and drain to lifecycle.c, replies through reply.c.
 *
 * One zmq_poll() waits on everything: the sockets, an eventfd the signal handlers write, an
 * eventfd the engine and loader write, and one pidfd per session (readable when that client
 * exits, so a client killed with SIGKILL is noticed in the same poll round). ZMQ_MAXMSGSIZE
 * makes ZeroMQ drop any peer that sends a frame larger than the protocol allows before we ever
 * see it.
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
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "common/log.h"
#include "daemon/commands.h"
#include "daemon/control.h"
#include "daemon/lifecycle.h"
#include "daemon/regions.h"
#include "daemon/reply.h"
#include "elm/status.h"
#include "ipc/endpoint.h"
#include "ipc/session_shm.h"

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

/* ---- the connection limit ------------------------------------------------------------------
 *
 * Every ipc connection costs a descriptor, and libzmq aborts the process when an accept fails
 * with EMFILE; it has no per-connection refusal on a ROUTER either. So elmd counts connections
 * from the socket's monitor events and, at the limit, renames the socket file away: connect()
 * then finds no socket, while the bound listener and every open connection stay as they are.
 * The name comes back once enough connections closed. The limit is max_connections, and at
 * most half the open-file limit, so the connections accepted before the rename takes effect
 * (the event is asynchronous) and the sessions' own descriptors still fit.
 */

#define CONN_MON_EP "inproc://elmd-connections"

static void conn_full_path(const struct elmd *d, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s" ELM_CONTROL_FULL_SUFFIX, d->rd.sock_path);
}

static int conn_limit(const struct elmd *d)
{
    struct rlimit rl;
    int lim = d->cfg.max_connections;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur / 2 < (rlim_t)lim)
        lim = (int)(rl.rlim_cur / 2);
    return lim;
}

static int open_conn_monitor(struct elmd *d, char *err, size_t errlen)
{
    int zero = 0;
    char full[sizeof d->rd.sock_path + 8];
    conn_full_path(d, full, sizeof full);
    unlink(full); /* a previous daemon's, killed while refusing */
    d->conn_mon = zmq_socket(d->zctx, ZMQ_PAIR);
    if (!d->conn_mon || zmq_setsockopt(d->conn_mon, ZMQ_RCVHWM, &zero, sizeof zero) ||
        zmq_socket_monitor(d->router, CONN_MON_EP, ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) ||
        zmq_connect(d->conn_mon, CONN_MON_EP)) {
        int e = zmq_errno();
        snprintf(err, errlen, "cannot watch the connections: %s", zmq_strerror(e));
        return -e;
    }
    return 0;
}

/* Puts the socket's name back (at exit: so that it is removed like any other time). */
static void conn_accept_again(struct elmd *d)
{
    char full[sizeof d->rd.sock_path + 8];
    conn_full_path(d, full, sizeof full);
    if (d->refusing && rename(full, d->rd.sock_path) == 0)
        d->refusing = false;
}

/* Reads the monitor's events (two frames each: event + value, then the endpoint), counts the
 * connections and applies the limit. */
static void count_connections(struct elmd *d)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    while (zmq_msg_recv(&m, d->conn_mon, ZMQ_DONTWAIT) >= 0) {
        uint16_t ev = 0;
        if (zmq_msg_size(&m) >= sizeof ev)
            memcpy(&ev, zmq_msg_data(&m), sizeof ev);
        d->n_conns += ev == ZMQ_EVENT_ACCEPTED ? 1 : ev == ZMQ_EVENT_DISCONNECTED ? -1 : 0;
        while (zmq_msg_more(&m) && zmq_msg_recv(&m, d->conn_mon, ZMQ_DONTWAIT) >= 0)
            ;
    }
    zmq_msg_close(&m);
    int limit = conn_limit(d);
    char full[sizeof d->rd.sock_path + 8];
    conn_full_path(d, full, sizeof full);
    if (!d->refusing && d->n_conns >= limit) {
        if (rename(d->rd.sock_path, full) == 0) {
            d->refusing = true;
            elm_warn("%d connections (limit %d): refusing new ones until some close", d->n_conns,
                     limit);
        }
    } else if (d->refusing && d->n_conns < limit - limit / 8) {
        conn_accept_again(d);
        if (!d->refusing)
            elm_info("%d connections: accepting new ones again", d->n_conns);
    }
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
    if ((rc = open_router(d, ep, &d->router, err, errlen)) ||
        (rc = elmd_regions_open(d, err, errlen)))
        return rc;
    if ((rc = elmd_rundir_secure_socket(&d->rd)))
        return snprintf(err, errlen, "chmod %s: %s", d->rd.dir, strerror(-rc)), rc;
    if ((rc = open_conn_monitor(d, err, errlen)))
        return rc;
    if (d->cfg.endpoint[0] && (rc = open_router(d, d->cfg.endpoint, &d->router_tcp, err, errlen)))
        return rc;
    elm_info("listening on %s%s%s", ep, d->cfg.endpoint[0] ? " and " : "", d->cfg.endpoint);
    return 0;
}

void elmd_control_close(struct elmd *d)
{
    conn_accept_again(d);
    elmd_regions_close(d);
    if (d->conn_mon) {
        /* Stop the events, then read those in flight: libzmq leaks event messages (their
         * endpoint strings) still queued when the socket is closed. */
        zmq_socket_monitor(d->router, NULL, 0);
        zmq_msg_t m;
        zmq_msg_init(&m);
        while (zmq_msg_recv(&m, d->conn_mon, ZMQ_DONTWAIT) >= 0)
            ;
        zmq_msg_close(&m);
        zmq_close(d->conn_mon);
    }
    d->conn_mon = NULL;
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

/* Receives up to a bounded number of messages (so one busy peer cannot starve the rest of the
 * loop) and answers each. */
static void serve_socket(struct elmd *d, void *sock)
{
    struct elmd_peer peer;
    zmq_msg_t payload;
    bool have, bad;
    for (int budget = 0; budget < 256 && elmd_recv(sock, &peer, &payload, &have, &bad); budget++) {
        if (!have)
            continue; /* nothing after the routing id: nothing to answer */
        if (bad) {
            static const char junk[1];
            elmd_handle_frame(d, &peer, junk, 0); /* counted and answered as malformed */
        } else {
            elmd_handle_frame(d, &peer, zmq_msg_data(&payload), zmq_msg_size(&payload));
        }
        zmq_msg_close(&payload);
    }
}

/* Frees what the engine let go; notices finished loads. */
static void handle_wake(struct elmd *d, int *initial_rc)
{
    pthread_mutex_lock(&d->lock);
    struct elmd_session *reaped = d->reaped;
    struct elmd_model *retired[ELMD_MODEL_SLOTS];
    int n_retired = d->n_retired;
    memcpy(retired, d->retired, sizeof retired);
    d->reaped = NULL;
    d->n_retired = 0;
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
        if (s->dm && --s->dm->n_sessions == 0) /* idle from now: keep_alive counts from here */
            s->dm->idle_since_ns = elmd_now_ns();
        elm_info("session %llu closed%s%s", (unsigned long long)s->id, s->reap_code ? ": " : "",
                 s->reap_code ? elm_strerror(s->reap_code) : "");
        elmd_session_destroy(&s);
    }
    pthread_mutex_lock(&d->lock);
    d->st.c.n_unloads += (uint64_t)n_retired;
    pthread_mutex_unlock(&d->lock);
    for (int i = 0; i < n_retired; i++) {
        elm_info("model %s unloaded", retired[i]->name);
        elmd_model_destroy(&retired[i]); /* its memory goes back here */
    }
    /* A load waiting for room may start now (sessions closed, models freed). */
    int rc = elmd_load_retry(d);
    if (rc) {
        elmd_answer_pending(d, ELM_CMD_LOAD, rc, d->load.err);
        *initial_rc = rc;
    }
    if (elmd_load_is_finished(d)) {
        rc = elmd_finish_load(d);
        elmd_answer_pending(d, ELM_CMD_LOAD, rc, d->load.err);
        d->load.added = NULL;
        *initial_rc = rc ? rc : 1;
    }
}

/* ---- timers, deaths ------------------------------------------------------------------------ */

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

/* The heartbeat (docs/protocol.md, 2.2): bumped in every session's region this often, by this
 * thread rather than the engine's, so a long prompt is not mistaken for a stall; a stopped or
 * wedged process stops it, and its clients give up after their stall timeout. */
#define BEAT_NS 250000000u

static void beat(struct elmd *d, uint64_t now, uint64_t *next)
{
    static uint64_t last;
    if (now - last >= BEAT_NS) {
        for (struct elmd_session *s = d->sessions; s; s = s->next)
            elm_session_shm_beat(s->shm.base);
        last = now;
    }
    if (last + BEAT_NS < *next)
        *next = last + BEAT_NS;
}

/* Serves the region socket, drops region descriptors nobody fetched in time, beats; returns
 * ms to the next deadline. */
static int run_timers(struct elmd *d)
{
    uint64_t now = elmd_now_ns(), next = now + 1000000000u;
    beat(d, now, &next);
    elmd_regions_serve(d, now, &next);
    elmd_regions_expire(d, now, &next);
    if (d->draining && !d->stopping && d->drain_deadline_ns < next)
        next = d->drain_deadline_ns > now ? d->drain_deadline_ns : now;
    int ka = d->draining ? -1 : elmd_keep_alive_step(d, now);
    if (ka >= 0 && now + (uint64_t)ka * 1000000u < next)
        next = now + (uint64_t)ka * 1000000u;
    return (int)((next - now + 999999) / 1000000);
}

/* A second SIGTERM/SIGINT: leave now, removing only what would mislead the next daemon. */
static void exit_now(struct elmd *d)
{
    elm_warn("second signal: exiting at once");
    conn_accept_again(d);
    elmd_rundir_close(&d->rd);
    _exit(1);
}

/* ---- SIGHUP ------------------------------------------------------------------------------------
 */

void elmd_reload_config(struct elmd *d)
{
    struct elmd_config *n = malloc(sizeof *n);
    char err[640];
    bool restart_only = false;
    if (!n) {
        elm_err("SIGHUP: out of memory: keeping the current configuration");
        return;
    }
    int rc = elmd_config_reload(&d->cfg, d->argc, d->argv, n, &restart_only, err, sizeof err);
    if (rc) {
        elm_err("SIGHUP: %s: keeping the current configuration", rc == 1 ? "no change" : err);
        free(n);
        return;
    }
    if (restart_only)
        elm_warn("SIGHUP: runtime_dir, endpoint and group take effect at the next start");
    bool new_model = n->model[0] && strcmp(n->model, d->cfg.model) != 0;
    d->cfg = *n;
    free(n);
    elm_log_setup((enum elm_log_level)d->cfg.log_level, d->cfg.use_syslog, "elmd");
    elmd_publish_knobs(d);
    elmd_engine_wake(d);
    elm_info("SIGHUP: configuration reloaded%s%s", d->cfg.config_path[0] ? " from " : "",
             d->cfg.config_path);
    struct elmd_load_args la = {.path = d->cfg.model};
    if (new_model && !d->draining && elmd_start_load(d, &la, err, sizeof err) < 0)
        elm_err("SIGHUP: cannot load %s: %s", d->cfg.model, err);
}

/* ---- the loop ----------------------------------------------------------------------------------
 */

int elmd_control_run(struct elmd *d, void (*ready)(struct elmd *d, int rc, const char *msg))
{
    bool waiting_initial = d->load.active || d->load.waiting_room;
    if (!waiting_initial)
        ready(d, 0, NULL);
    for (;;) {
        zmq_pollitem_t it[6 + ELMD_REGION_CONNS + ELMD_MAX_SESSIONS_LIMIT];
        struct elmd_session *owner[6 + ELMD_REGION_CONNS + ELMD_MAX_SESSIONS_LIMIT] = {0};
        /* First: it may close region connections, which must not be polled after. */
        int timeout = run_timers(d);
        int n = 0;
        it[n++] = (zmq_pollitem_t){.socket = d->router, .events = ZMQ_POLLIN};
        if (d->router_tcp)
            it[n++] = (zmq_pollitem_t){.socket = d->router_tcp, .events = ZMQ_POLLIN};
        it[n++] = (zmq_pollitem_t){.socket = d->conn_mon, .events = ZMQ_POLLIN};
        /* (served in run_timers, at the top of the next round) */
        n += elmd_regions_poll_items(d, it + n, 1 + ELMD_REGION_CONNS);
        int sig_i = n;
        it[n++] = (zmq_pollitem_t){.fd = d->sig_fd, .events = ZMQ_POLLIN};
        it[n++] = (zmq_pollitem_t){.fd = d->wake_fd, .events = ZMQ_POLLIN};
        for (struct elmd_session *s = d->sessions; s && n < (int)(sizeof it / sizeof *it);
             s = s->next)
            if (s->pidfd >= 0 && !s->close_req) {
                owner[n] = s;
                it[n++] = (zmq_pollitem_t){.fd = s->pidfd, .events = ZMQ_POLLIN};
            }
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
        int initial_rc = 0; /* 1: a load finished well, else its error */
        handle_wake(d, &initial_rc);
        if (elmd_swap_finished(d))
            elmd_answer_pending(d, ELM_CMD_UNLOAD, 0, NULL);
        if (waiting_initial && initial_rc == 1) {
            waiting_initial = false;
            ready(d, 0, NULL);
        } else if (waiting_initial && initial_rc) {
            ready(d, initial_rc, d->load.last_error);
            d->exit_code = 1;
            waiting_initial = false;
            elmd_begin_drain(d, "the initial model did not load");
        }
        for (int i = sig_i + 2; i < n; i++)
            if (it[i].revents & ZMQ_POLLIN)
                client_died(d, owner[i]);
        count_connections(d);
        serve_socket(d, d->router);
        if (d->router_tcp)
            serve_socket(d, d->router_tcp);
        if (elmd_drain_step(d))
            break;
    }
    elmd_answer_pending(d, 0, ELM_ESHUTDOWN, "the daemon is shutting down");
    return d->exit_code;
}
