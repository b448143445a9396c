/* pool.c — the gateway's idle sessions and cached status (gateway.h), kept by one background
 * thread so a request's way to its first token holds no control call: opening a session and
 * asking the status each wait for elmd's next gap between forward passes, and through one shared
 * connection they queued behind each other.
 *
 * Sizing: a model's pool keeps as many sessions open (idle + running) as the most requests it
 * had at once (peak), so a burst like the last one finds a session each, and from the moment the
 * gateway first sees the model (the default one at start, when elmd is up) at least its warm-up,
 * min(max_sessions / 2, GW_WARM_MAX), so the first burst does not open sessions on its way to
 * the first token either. Half of max_sessions leaves the other half to elmd's other clients;
 * 4 covers the bursts measured (docs/benchmarks.md) at a cost of one shared-memory region each,
 * and a larger burst grows the pool by peak from then on. A used session is never
 * reused (its pages and counters would change the next reply's usage), it is closed here and
 * replaced. GW_LINGER_MS after the gateway's last request ended (or its start) every idle session
 * is closed and peaks and warm-ups forgotten, so a model's keep_alive (which counts from its last
 * session's close) starts then. Never holding slots others need: no refill while elmd's status
 * says every session slot is taken, and then every idle session is closed (elmd's other clients
 * get the room); a refill refused (max_sessions, no such model) stops until a request takes a
 * session again; a request that finds every slot taken closes an idle one first
 * (gw_pool_evict).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "httpd/pool.h"

#define REFRESH_MS   250   /* how old the cached status may get */
#define GW_LINGER_MS 30000 /* idle sessions are closed this long after the last request */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* With pool_lock held: the slot of model, made when new (NULL when all are taken). */
static struct gw_slot *slot_of(struct gw_pool *p, const char *model, bool make)
{
    struct gw_slot *free_slot = NULL;
    for (int i = 0; i < GW_MAX_MODELS; i++) {
        struct gw_slot *s = &p->slots[i];
        if (s->used && !strcmp(s->model, model))
            return s;
        if (!s->used && !free_slot)
            free_slot = s;
    }
    if (!make || !free_slot)
        return NULL;
    memset(free_slot, 0, sizeof *free_slot);
    free_slot->used = true;
    snprintf(free_slot->model, sizeof free_slot->model, "%s", model);
    return free_slot;
}

/* With pool_lock held: hands s to the thread to close; false when its list is full (the
 * caller closes it, without the lock). */
static bool park(struct gw_pool *p, elm_session *s)
{
    if (p->n_closing == GW_CLOSE_MAX || !p->running)
        return false;
    p->closing[p->n_closing++] = s;
    pthread_cond_signal(&p->wake);
    return true;
}

/* With pool_lock held: every idle session of slot s to be closed. Returns those that did not
 * fit the closing list in out (the caller closes them without the lock). */
static int flush_slot(struct gw_pool *p, struct gw_slot *s, elm_session **out)
{
    int n = 0;
    while (s->n_idle) {
        elm_session *x = s->idle[--s->n_idle];
        if (!park(p, x))
            out[n++] = x;
    }
    return n;
}

static void flush_all(struct gw_pool *p, bool forget_peaks)
{
    elm_session *rest[GW_POOL_MAX];
    for (int i = 0; i < GW_MAX_MODELS; i++) {
        struct gw_slot *s = &p->slots[i];
        int n = flush_slot(p, s, rest);
        for (int j = 0; j < n; j++) { /* rare: the thread is gone or far behind */
            pthread_mutex_unlock(&p->lock);
            elm_session_close(&rest[j]);
            pthread_mutex_lock(&p->lock);
        }
        if (forget_peaks)
            s->peak = s->warm = 0;
    }
}

elm_session *gw_pool_begin(struct gw_pool *p, const char *model, bool take, bool hold)
{
    elm_session *got = NULL, *rest[GW_POOL_MAX];
    int n_rest = 0;
    pthread_mutex_lock(&p->lock);
    p->last_use = now_ns();
    struct gw_slot *s = slot_of(p, model, true);
    if (s) {
        if (!s->peak) /* first seen since the pool emptied: its warm-up */
            s->warm = p->warm;
        s->inflight++;
        s->peak = s->inflight > s->peak ? s->inflight : s->peak;
        s->stuck = false;
        if (hold) { /* its own keep_alive: nothing of ours may keep the model after it */
            s->hold++;
            n_rest = flush_slot(p, s, rest);
        } else if (take && s->n_idle)
            got = s->idle[--s->n_idle];
        pthread_cond_signal(&p->wake); /* a refill, maybe */
    }
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < n_rest; i++)
        elm_session_close(&rest[i]);
    return got;
}

void gw_pool_end(struct gw_pool *p, const char *model, elm_session *ses, bool held)
{
    pthread_mutex_lock(&p->lock);
    p->last_use = now_ns(); /* the linger counts from a request's end too: one may run long */
    struct gw_slot *s = slot_of(p, model, false);
    if (s) {
        s->inflight -= s->inflight > 0;
        if (held) {
            s->hold -= s->hold > 0;
            s->peak = s->warm = 0; /* no refill until a request without keep_alive comes */
        }
    }
    bool parked = ses && park(p, ses);
    pthread_mutex_unlock(&p->lock);
    if (ses && !parked)
        elm_session_close(&ses);
}

int gw_pool_ready(struct gw_pool *p)
{
    pthread_mutex_lock(&p->lock);
    int n = p->n_closing + p->n_busy;
    for (int i = 0; i < GW_MAX_MODELS; i++)
        n += p->slots[i].n_idle;
    pthread_mutex_unlock(&p->lock);
    return n;
}

bool gw_pool_evict(struct gw_pool *p)
{
    elm_session *x = NULL;
    pthread_mutex_lock(&p->lock);
    for (int i = 0; i < GW_MAX_MODELS && !x; i++)
        if (p->slots[i].n_idle)
            x = p->slots[i].idle[--p->slots[i].n_idle];
    pthread_mutex_unlock(&p->lock);
    elm_session_close(&x);
    return x != NULL;
}

/* ---- the cached status ------------------------------------------------------------------- */

int gw_model_names(const struct elm_daemon_status *st, char names[][GW_NAME_MAX])
{
    /* "NAME (state, size), NAME (...)": elmd's names hold no space, comma or parenthesis */
    int n = 0;
    for (const char *p = st->models; *p && n < GW_MAX_MODELS;) {
        size_t len = strcspn(p, " (,");
        if (len && len < GW_NAME_MAX)
            snprintf(names[n++], GW_NAME_MAX, "%.*s", (int)len, p);
        const char *next = strstr(p, "), ");
        if (!next)
            break;
        p = next + 3;
    }
    return n;
}

/* The daemon and its resident models as one string: when it changes, a session of the default
 * ("") may be on another model, or of a model since unloaded, so every idle session goes. */
static void signature(const struct elm_daemon_status *st, char *buf, size_t cap)
{
    char names[GW_MAX_MODELS][GW_NAME_MAX];
    int n = gw_model_names(st, names);
    size_t at = (size_t)snprintf(buf, cap, "%ld|%.4096s", st->pid, st->model_path);
    for (int i = 0; i < n && at < cap; i++)
        at += (size_t)snprintf(buf + at, cap - at, "|%s", names[i]);
}

/* With pool_lock held. */
static void cache_put(struct gw_pool *p, const struct elm_daemon_status *st)
{
    char sig[sizeof p->st_sig];
    signature(st, sig, sizeof sig);
    if (strcmp(sig, p->st_sig)) {
        flush_all(p, false);
        snprintf(p->st_sig, sizeof p->st_sig, "%s", sig);
    }
    if (st->pid != p->pid) { /* a new daemon: watch its exit */
        if (p->pidfd >= 0)
            close(p->pidfd);
        p->pidfd = (int)syscall(SYS_pidfd_open, (pid_t)st->pid, 0);
        p->pid = st->pid;
    }
    int half = (int)(st->max_sessions / 2);
    p->warm = half < GW_WARM_MAX ? half : GW_WARM_MAX;
    p->st = *st;
    p->st_ok = true;
    p->st_at = now_ns();
}

/* With pool_lock held. */
static void cache_drop(struct gw_pool *p)
{
    p->st_ok = false;
    p->st_sig[0] = 0;
    flush_all(p, false);
}

void gw_cache_put(struct gw_pool *p, const struct elm_daemon_status *st)
{
    pthread_mutex_lock(&p->lock);
    cache_put(p, st);
    pthread_mutex_unlock(&p->lock);
}

void gw_cache_drop(struct gw_pool *p)
{
    pthread_mutex_lock(&p->lock);
    cache_drop(p);
    pthread_mutex_unlock(&p->lock);
}

bool gw_cache_get(struct gw_pool *p, struct elm_daemon_status *out)
{
    pthread_mutex_lock(&p->lock);
    bool ok = p->st_ok && now_ns() - p->st_at < 4ull * REFRESH_MS * 1000000u;
    if (ok) { /* the pidfd is readable once the daemon has exited; without one, ask kill */
        struct pollfd pf = {.fd = p->pidfd, .events = POLLIN};
        bool gone = p->pidfd >= 0 ? poll(&pf, 1, 0) != 0
                                  : p->pid > 0 && kill((pid_t)p->pid, 0) && errno == ESRCH;
        if (gone) {
            cache_drop(p);
            ok = false;
        }
    }
    if (ok)
        *out = p->st;
    pthread_mutex_unlock(&p->lock);
    return ok;
}

/* ---- the thread ---------------------------------------------------------------------------- */

/* With pool_lock held: whether a request runs on any model (no lingering out under it). */
static bool running(const struct gw_pool *p)
{
    for (int i = 0; i < GW_MAX_MODELS; i++)
        if (p->slots[i].inflight)
            return true;
    return false;
}

/* The sessions slot s keeps open, idle + running. */
static int target(const struct gw_slot *s)
{
    return s->peak > s->warm ? s->peak : s->warm;
}

/* With pool_lock held: whether elmd's last status says every session slot is taken. */
static bool daemon_full(const struct gw_pool *p)
{
    return p->st_ok && p->st.max_sessions && p->st.n_sessions >= p->st.max_sessions;
}

/* With pool_lock held: a slot short of sessions. */
static struct gw_slot *wanting(struct gw_pool *p)
{
    if (!p->st_ok || daemon_full(p))
        return NULL;
    for (int i = 0; i < GW_MAX_MODELS; i++) {
        struct gw_slot *s = &p->slots[i];
        if (s->used && !s->hold && !s->stuck && s->n_idle < GW_POOL_MAX &&
            s->n_idle + s->inflight < target(s))
            return s;
    }
    return NULL;
}

/* With pool_lock held, after a fresh status: elmd full, so every idle session goes, and none is
 * opened again until a request takes one (stuck), whoever filled it. */
static void give_room(struct gw_pool *p)
{
    if (!daemon_full(p))
        return;
    for (int i = 0; i < GW_MAX_MODELS; i++)
        if (p->slots[i].n_idle)
            p->slots[i].stuck = true;
    flush_all(p, false);
}

/* Without the lock: the status through the thread's own connection. */
static int refresh(struct gw_pool *p, struct elm_daemon_status *st)
{
    int rc = p->pc ? 0 : elm_client_connect(p->runtime_dir, &p->pc);
    if (rc == 0 && (rc = elm_client_status(p->pc, st)) != 0)
        elm_client_close(&p->pc); /* made again next time: the daemon may have restarted */
    return rc;
}

/* With pool_lock held, at start: elmd up with a model, its default model's warm-up begins as
 * if a request had just come (so it lingers as after one). */
static void warm_start(struct gw_pool *p, struct elm_daemon_status *st)
{
    if (!st)
        return;
    pthread_mutex_unlock(&p->lock);
    int rc = refresh(p, st);
    pthread_mutex_lock(&p->lock);
    if (rc || !st->model_loaded)
        return;
    cache_put(p, st);
    struct gw_slot *s = slot_of(p, "", true);
    if (s && !s->peak) {
        s->warm = p->warm;
        p->last_use = now_ns();
    }
}

static void *pool_main(void *arg)
{
    struct gw_pool *p = arg;
    struct elm_daemon_status *st = malloc(sizeof *st);
    uint64_t refreshed = 0;
    pthread_mutex_lock(&p->lock);
    warm_start(p, st);
    while (!p->stop && st) {
        uint64_t now = now_ns();
        struct gw_slot *s;
        if (p->n_closing) {
            elm_session *x = p->closing[--p->n_closing];
            p->n_busy++; /* still open in elmd while it closes */
            pthread_mutex_unlock(&p->lock);
            elm_session_close(&x);
            pthread_mutex_lock(&p->lock);
            p->n_busy--;
        } else if (p->last_use && now - refreshed >= REFRESH_MS * 1000000ull) {
            /* only while requests come: an idle gateway leaves elmd alone (the first request
             * after a pause then asks the status itself) */
            pthread_mutex_unlock(&p->lock);
            int rc = refresh(p, st);
            pthread_mutex_lock(&p->lock);
            refreshed = now_ns();
            if (rc == 0) {
                cache_put(p, st);
                give_room(p);
            } else
                cache_drop(p);
        } else if (p->last_use && now - p->last_use > GW_LINGER_MS * 1000000ull && !running(p)) {
            flush_all(p, true);
            p->last_use = 0;
        } else if ((s = wanting(p)) != NULL) {
            char model[GW_NAME_MAX];
            snprintf(model, sizeof model, "%s", s->model);
            struct elm_session_params sp = {.max_prompt_bytes = p->max_prompt_bytes,
                                            .model = model};
            elm_session *x = NULL;
            p->n_busy++; /* open in elmd before the call returns */
            pthread_mutex_unlock(&p->lock);
            int rc = p->pc ? elm_session_open_params(p->pc, &sp, &x) : ELM_EDAEMON;
            if (rc == ELM_EDAEMON || rc == ELM_ESHUTDOWN || rc == ELM_EPROTO)
                elm_client_close(&p->pc);
            pthread_mutex_lock(&p->lock);
            p->n_busy--;
            s = slot_of(p, model, false);
            if (rc)
                s = s ? (s->stuck = true, NULL) : NULL;
            if (x && s && !s->hold && s->n_idle < GW_POOL_MAX &&
                s->n_idle + s->inflight < target(s))
                s->idle[s->n_idle++] = x;
            else if (x && !park(p, x)) {
                pthread_mutex_unlock(&p->lock);
                elm_session_close(&x);
                pthread_mutex_lock(&p->lock);
            }
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += (p->last_use ? REFRESH_MS : 4 * REFRESH_MS) * 1000000L;
            ts.tv_sec += ts.tv_nsec / 1000000000L;
            ts.tv_nsec %= 1000000000L;
            pthread_cond_timedwait(&p->wake, &p->lock, &ts);
        }
    }
    /* stopping: every session of ours goes */
    p->running = false;
    flush_all(p, true);
    while (p->n_closing) {
        elm_session *x = p->closing[--p->n_closing];
        pthread_mutex_unlock(&p->lock);
        elm_session_close(&x);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    free(st);
    return NULL;
}

void gw_pool_start(struct gw_pool *p, const char *runtime_dir, uint32_t max_prompt_bytes)
{
    memset(p, 0, sizeof *p);
    p->runtime_dir = runtime_dir;
    p->max_prompt_bytes = max_prompt_bytes;
    p->pidfd = -1;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    /* without the thread, requests open their own sessions and ask the status each time */
    p->running = true;
    if (pthread_create(&p->thread, NULL, pool_main, p))
        p->running = false;
}

void gw_pool_stop(struct gw_pool *p)
{
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    bool joined = p->running;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
    if (joined)
        pthread_join(p->thread, NULL);
    elm_client_close(&p->pc);
    if (p->pidfd >= 0)
        close(p->pidfd);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
}
