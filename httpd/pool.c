/* pool.c — the gateway's idle sessions and cached status (gateway.h), kept by one background
 * thread so a request's way to its first token holds no control call: opening a session and
 * asking the status each wait for elmd's next gap between forward passes, and through one shared
 * connection they queued behind each other.
 *
 * Sizing: a model's pool keeps as many sessions open (idle + running) as the most requests it
 * had at once (peak), so a burst like the last one finds a session each; a used session is never
 * reused (its pages and counters would change the next reply's usage), it is closed here and
 * replaced. GW_LINGER_MS after the gateway's last request every idle session is closed, so a
 * model's keep_alive (which counts from its last session's close) starts then. A refill refused
 * (elmd's max_sessions, no such model) stops until a request takes a session again; a request
 * that finds every slot taken closes an idle one first (gw_pool_evict).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "httpd/gateway.h"

#define REFRESH_MS   250   /* how old the cached status may get */
#define GW_LINGER_MS 30000 /* idle sessions are closed this long after the last request */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* With pool_lock held: the slot of model, made when new (NULL when all are taken). */
static struct gw_slot *slot_of(struct gw *g, const char *model, bool make)
{
    struct gw_slot *free_slot = NULL;
    for (int i = 0; i < GW_MAX_MODELS; i++) {
        struct gw_slot *s = &g->slots[i];
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
static bool park(struct gw *g, elm_session *s)
{
    if (g->n_closing == GW_CLOSE_MAX || !g->running)
        return false;
    g->closing[g->n_closing++] = s;
    pthread_cond_signal(&g->wake);
    return true;
}

/* With pool_lock held: every idle session of slot s to be closed. Returns those that did not
 * fit the closing list in out (the caller closes them without the lock). */
static int flush_slot(struct gw *g, struct gw_slot *s, elm_session **out)
{
    int n = 0;
    while (s->n_idle) {
        elm_session *x = s->idle[--s->n_idle];
        if (!park(g, x))
            out[n++] = x;
    }
    return n;
}

static void flush_all(struct gw *g, bool forget_peaks)
{
    elm_session *rest[GW_POOL_MAX];
    for (int i = 0; i < GW_MAX_MODELS; i++) {
        struct gw_slot *s = &g->slots[i];
        int n = flush_slot(g, s, rest);
        for (int j = 0; j < n; j++) { /* rare: the thread is gone or far behind */
            pthread_mutex_unlock(&g->pool_lock);
            elm_session_close(&rest[j]);
            pthread_mutex_lock(&g->pool_lock);
        }
        if (forget_peaks)
            s->peak = 0;
    }
}

elm_session *gw_pool_begin(struct gw *g, const char *model, bool take, bool hold)
{
    elm_session *got = NULL, *rest[GW_POOL_MAX];
    int n_rest = 0;
    pthread_mutex_lock(&g->pool_lock);
    g->last_use = now_ns();
    struct gw_slot *s = slot_of(g, model, true);
    if (s) {
        s->inflight++;
        s->peak = s->inflight > s->peak ? s->inflight : s->peak;
        s->stuck = false;
        if (hold) { /* its own keep_alive: nothing of ours may keep the model after it */
            s->hold++;
            n_rest = flush_slot(g, s, rest);
        } else if (take && s->n_idle)
            got = s->idle[--s->n_idle];
        pthread_cond_signal(&g->wake); /* a refill, maybe */
    }
    pthread_mutex_unlock(&g->pool_lock);
    for (int i = 0; i < n_rest; i++)
        elm_session_close(&rest[i]);
    return got;
}

void gw_pool_end(struct gw *g, const char *model, elm_session *ses, bool held)
{
    pthread_mutex_lock(&g->pool_lock);
    struct gw_slot *s = slot_of(g, model, false);
    if (s) {
        s->inflight -= s->inflight > 0;
        if (held) {
            s->hold -= s->hold > 0;
            s->peak = 0; /* no refill until a request without keep_alive comes */
        }
    }
    bool parked = ses && park(g, ses);
    pthread_mutex_unlock(&g->pool_lock);
    if (ses && !parked)
        elm_session_close(&ses);
}

int gw_pool_ready(struct gw *g)
{
    pthread_mutex_lock(&g->pool_lock);
    int n = g->n_closing + g->n_opening;
    for (int i = 0; i < GW_MAX_MODELS; i++)
        n += g->slots[i].n_idle;
    pthread_mutex_unlock(&g->pool_lock);
    return n;
}

bool gw_pool_evict(struct gw *g)
{
    elm_session *x = NULL;
    pthread_mutex_lock(&g->pool_lock);
    for (int i = 0; i < GW_MAX_MODELS && !x; i++)
        if (g->slots[i].n_idle)
            x = g->slots[i].idle[--g->slots[i].n_idle];
    pthread_mutex_unlock(&g->pool_lock);
    elm_session_close(&x);
    return x != NULL;
}

/* ---- the cached status ------------------------------------------------------------------- */

/* The resident models as one string: when it changes, sessions of the default ("") may be on
 * another model, so every idle session goes. */
static void signature(const struct elm_daemon_status *st, char *buf, size_t cap)
{
    snprintf(buf, cap, "%ld|%.2000s|%.1000s", st->pid, st->model_path, st->models);
}

/* With pool_lock held. */
static void cache_put(struct gw *g, const struct elm_daemon_status *st)
{
    char sig[sizeof g->st_sig];
    signature(st, sig, sizeof sig);
    if (strcmp(sig, g->st_sig)) {
        flush_all(g, false);
        snprintf(g->st_sig, sizeof g->st_sig, "%s", sig);
    }
    if (st->pid != g->pid) { /* a new daemon: watch its exit */
        if (g->pidfd >= 0)
            close(g->pidfd);
        g->pidfd = (int)syscall(SYS_pidfd_open, (pid_t)st->pid, 0);
        g->pid = st->pid;
    }
    g->st = *st;
    g->st_ok = true;
    g->st_at = now_ns();
}

/* With pool_lock held. */
static void cache_drop(struct gw *g)
{
    g->st_ok = false;
    g->st_sig[0] = 0;
    flush_all(g, false);
}

void gw_cache_put(struct gw *g, const struct elm_daemon_status *st)
{
    pthread_mutex_lock(&g->pool_lock);
    cache_put(g, st);
    pthread_mutex_unlock(&g->pool_lock);
}

void gw_cache_drop(struct gw *g)
{
    pthread_mutex_lock(&g->pool_lock);
    cache_drop(g);
    pthread_mutex_unlock(&g->pool_lock);
}

bool gw_cache_get(struct gw *g, struct elm_daemon_status *out)
{
    pthread_mutex_lock(&g->pool_lock);
    bool ok = g->st_ok && now_ns() - g->st_at < 4ull * REFRESH_MS * 1000000u;
    if (ok && g->pidfd >= 0) { /* readable once the daemon has exited */
        struct pollfd p = {.fd = g->pidfd, .events = POLLIN};
        if (poll(&p, 1, 0) != 0) {
            cache_drop(g);
            ok = false;
        }
    }
    if (ok)
        *out = g->st;
    pthread_mutex_unlock(&g->pool_lock);
    return ok;
}

/* ---- the thread ---------------------------------------------------------------------------- */

/* With pool_lock held: a slot short of sessions. */
static struct gw_slot *wanting(struct gw *g)
{
    if (!g->st_ok)
        return NULL;
    for (int i = 0; i < GW_MAX_MODELS; i++) {
        struct gw_slot *s = &g->slots[i];
        if (s->used && !s->hold && !s->stuck && s->n_idle < GW_POOL_MAX &&
            s->n_idle + s->inflight < s->peak)
            return s;
    }
    return NULL;
}

/* Without the lock: the status through the thread's own connection. */
static int refresh(struct gw *g, struct elm_daemon_status *st)
{
    int rc = g->pc ? 0 : elm_client_connect(g->runtime_dir, &g->pc);
    if (rc == 0 && (rc = elm_client_status(g->pc, st)) != 0)
        elm_client_close(&g->pc); /* made again next time: the daemon may have restarted */
    return rc;
}

static void *pool_main(void *arg)
{
    struct gw *g = arg;
    struct elm_daemon_status *st = malloc(sizeof *st);
    uint64_t refreshed = 0;
    pthread_mutex_lock(&g->pool_lock);
    while (!g->stop && st) {
        uint64_t now = now_ns();
        struct gw_slot *s;
        if (g->n_closing) {
            elm_session *x = g->closing[--g->n_closing];
            g->n_opening++; /* still open in elmd while it closes */
            pthread_mutex_unlock(&g->pool_lock);
            elm_session_close(&x);
            pthread_mutex_lock(&g->pool_lock);
            g->n_opening--;
        } else if (now - refreshed >= REFRESH_MS * 1000000ull) {
            pthread_mutex_unlock(&g->pool_lock);
            int rc = refresh(g, st);
            pthread_mutex_lock(&g->pool_lock);
            refreshed = now_ns();
            if (rc == 0)
                cache_put(g, st);
            else
                cache_drop(g);
        } else if (g->last_use && now - g->last_use > GW_LINGER_MS * 1000000ull) {
            flush_all(g, true);
            g->last_use = 0;
        } else if ((s = wanting(g)) != NULL) {
            char model[GW_NAME_MAX];
            snprintf(model, sizeof model, "%s", s->model);
            struct elm_session_params p = {.max_prompt_bytes = g->max_prompt_bytes,
                                           .model = model};
            elm_session *x = NULL;
            g->n_opening++; /* open in elmd before the call returns */
            pthread_mutex_unlock(&g->pool_lock);
            int rc = g->pc ? elm_session_open_params(g->pc, &p, &x) : ELM_EDAEMON;
            if (rc == ELM_EDAEMON || rc == ELM_ESHUTDOWN || rc == ELM_EPROTO)
                elm_client_close(&g->pc);
            pthread_mutex_lock(&g->pool_lock);
            g->n_opening--;
            s = slot_of(g, model, false);
            if (rc)
                s = s ? (s->stuck = true, NULL) : NULL;
            if (x && s && !s->hold && s->n_idle < GW_POOL_MAX && s->n_idle + s->inflight < s->peak)
                s->idle[s->n_idle++] = x;
            else if (x && !park(g, x)) {
                pthread_mutex_unlock(&g->pool_lock);
                elm_session_close(&x);
                pthread_mutex_lock(&g->pool_lock);
            }
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += REFRESH_MS * 1000000L;
            ts.tv_sec += ts.tv_nsec / 1000000000L;
            ts.tv_nsec %= 1000000000L;
            pthread_cond_timedwait(&g->wake, &g->pool_lock, &ts);
        }
    }
    /* stopping: every session of ours goes */
    g->running = false;
    flush_all(g, true);
    while (g->n_closing) {
        elm_session *x = g->closing[--g->n_closing];
        pthread_mutex_unlock(&g->pool_lock);
        elm_session_close(&x);
        pthread_mutex_lock(&g->pool_lock);
    }
    pthread_mutex_unlock(&g->pool_lock);
    free(st);
    return NULL;
}

void gw_pool_start(struct gw *g)
{
    g->pidfd = -1;
    pthread_mutex_init(&g->pool_lock, NULL);
    pthread_cond_init(&g->wake, NULL);
    /* without the thread, requests open their own sessions and ask the status each time */
    g->running = true;
    if (pthread_create(&g->thread, NULL, pool_main, g))
        g->running = false;
}

void gw_pool_stop(struct gw *g)
{
    pthread_mutex_lock(&g->pool_lock);
    g->stop = true;
    bool joined = g->running;
    pthread_cond_signal(&g->wake);
    pthread_mutex_unlock(&g->pool_lock);
    if (joined)
        pthread_join(g->thread, NULL);
    elm_client_close(&g->pc);
    if (g->pidfd >= 0)
        close(g->pidfd);
    pthread_cond_destroy(&g->wake);
    pthread_mutex_destroy(&g->pool_lock);
}
