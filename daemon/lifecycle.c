/* lifecycle.c — loading, unloading the resident models, the memory budget and keep_alive,
 * and draining (lifecycle.h).
 *
 * A load runs on its own thread so that control keeps answering (status shows its progress);
 * the thread only calls the engine's loader and reports through d->load and the wake eventfd.
 * The KV pool is made afterwards, on control, so that a pool the memory cannot hold fails the
 * load and leaves the resident models in place. The new model then joins d->models and serves
 * at once; a resident model of the same name is replaced (retired).
 *
 * Unloading is retiring: control marks the model, closes its sessions, and the engine lets it
 * go once none is left (step.c retire_models); control frees it then (control.c handle_wake).
 *
 * The budget (max_resident_bytes) counts each model's bytes: its weights' mapping and its KV
 * pool. Before a load starts, the file's size (about its weights) must fit beside the resident
 * models; if it does not, idle models (no open session) are retired, least recently used
 * first, and the load starts when their memory is back. A model with open sessions is never
 * retired for room: the load waits, and status says for what. keep_alive retires a model that
 * has been idle (no open session) that long.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/elmd.h"
#include "daemon/lifecycle.h"
#include "elm/status.h"

/* ---- the loader thread ---------------------------------------------------------------------- */

static void *loader_main(void *arg)
{
    struct elmd *d = arg;
    struct elmd_load *L = &d->load;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    struct elmd_model *dm = calloc(1, sizeof *dm);
    if (!dm) {
        L->rc = -ENOMEM;
        snprintf(L->err, sizeof L->err, "out of memory");
    } else {
        snprintf(dm->path, sizeof dm->path, "%s", L->path);
        L->rc = elm_loader_load(L->path, &L->params, &L->progress, &dm->m, &dm->res, L->err,
                                sizeof L->err);
        if (L->rc)
            free(dm);
        else
            L->result = dm;
    }
    atomic_store_explicit(&L->finished, true, memory_order_release);
    uint64_t one = 1;
    if (write(d->wake_fd, &one, sizeof one) < 0)
        elm_debug("loader: cannot notify control");
    return NULL;
}

/* Threads beyond the CPUs only take turns: 1024 of them made a 64-token reply take 8.8 s
 * instead of 0.02 s (issue 17 item 5). The bound is for what a client asks; the owner's
 * `threads` setting is the owner's. */
static int check_threads(const struct elmd_config *c, int threads, char *err, size_t errlen)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    long max = c->max_threads ? c->max_threads : cpus > 0 ? cpus : 1;
    if (threads <= max)
        return 0;
    snprintf(err, errlen, "%d threads asked for, but this daemon allows at most %ld (%s)", threads,
             max, c->max_threads ? "max_threads" : "the online CPUs");
    return -EINVAL;
}

/* ---- the budget ----------------------------------------------------------------------------- */

uint64_t elmd_budget(const struct elmd *d)
{
    return d->cfg.max_resident_bytes ? d->cfg.max_resident_bytes : elmd_resident_default();
}

uint64_t elmd_resident_bytes(struct elmd *d)
{
    uint64_t n = 0;
    pthread_mutex_lock(&d->lock);
    for (int i = 0; i < d->n_models; i++)
        n += d->models[i]->bytes;
    for (int i = 0; i < d->n_retired; i++)
        n += d->retired[i]->bytes;
    pthread_mutex_unlock(&d->lock);
    return n;
}

void elmd_close_model_sessions(struct elmd *d, const struct elmd_model *m, int code,
                               const char *msg)
{
    pthread_mutex_lock(&d->lock);
    for (struct elmd_session *s = d->sessions; s; s = s->next)
        if (s->dm == m && !s->close_req) {
            s->close_req = true;
            s->close_code = code;
            s->close_msg = msg;
        }
    pthread_mutex_unlock(&d->lock);
    elmd_engine_wake(d);
}

void elmd_retire(struct elmd *d, struct elmd_model *m, const char *why)
{
    pthread_mutex_lock(&d->lock);
    bool was = m->retiring;
    m->retiring = true;
    pthread_mutex_unlock(&d->lock);
    if (was)
        return;
    elm_info("unloading %s (%s)", m->name, why);
    d->swapping = true;
    elmd_close_model_sessions(d, m, ELM_ENOMODEL,
                              !strcmp(why, "replaced") ? "the model was replaced"
                                                       : "the model was unloaded");
}

/* Retires idle models, least recently used first, until need bytes fit the budget beside the
 * rest (keep excepted). Returns 0 when they fit now, -EAGAIN when they will once retiring
 * models are freed or models in use close their sessions (msg says which), -ENOMEM when they
 * never can. */
static int make_room(struct elmd *d, uint64_t need, const struct elmd_model *keep, char *msg,
                     size_t cap)
{
    uint64_t budget = elmd_budget(d), used = elmd_resident_bytes(d), idle = 0, busy = 0;
    if (need > budget) {
        snprintf(msg, cap, "it needs about %llu bytes but max_resident_bytes is %llu",
                 (unsigned long long)need, (unsigned long long)budget);
        return -ENOMEM;
    }
    if (used + need <= budget)
        return 0;
    /* The list as of now (the engine removes retired models from it under the lock; control,
     * the only thread that frees them, is this one, so the pointers stay valid). */
    struct elmd_model *ms[ELMD_MODEL_SLOTS];
    pthread_mutex_lock(&d->lock);
    int n = d->n_models;
    memcpy(ms, d->models, sizeof ms);
    pthread_mutex_unlock(&d->lock);
    for (int i = 0; i < n; i++) {
        const struct elmd_model *m = ms[i];
        if (!m->retiring)
            *(m->n_sessions || m == keep ? &busy : &idle) += m->bytes;
    }
    uint64_t freeing = used - idle - busy; /* of models retiring already */
    while (used - freeing + need > budget) {
        struct elmd_model *lru = NULL;
        for (int i = 0; i < n; i++) {
            struct elmd_model *m = ms[i];
            if (m != keep && !m->retiring && !m->n_sessions &&
                (!lru || m->idle_since_ns < lru->idle_since_ns))
                lru = m;
        }
        if (!lru)
            break;
        elmd_retire(d, lru, "least recently used, to make room");
        freeing += lru->bytes;
    }
    if (used - freeing + need > budget)
        snprintf(msg, cap,
                 "waiting for room: needs %llu bytes, %llu of the %llu budget are held by models "
                 "with open sessions",
                 (unsigned long long)need, (unsigned long long)busy, (unsigned long long)budget);
    else
        snprintf(msg, cap, "waiting for %llu bytes of unloading models to be freed",
                 (unsigned long long)freeing);
    return -EAGAIN;
}

static int spawn_loader(struct elmd *d, char *err, size_t errlen);

int elmd_start_load(struct elmd *d, const struct elmd_load_args *a, char *err, size_t errlen)
{
    struct elmd_load *L = &d->load;
    if (L->active || L->waiting_room)
        return snprintf(err, errlen, "a load of %s is in progress", L->path), ELM_EBUSY;
    const struct elmd_config *c = &d->cfg;
    const char *path = a->path;
    int32_t ctx = a->ctx;
    int threads = a->threads;
    struct stat st;
    if (stat(path, &st) < 0)
        return snprintf(err, errlen, "%s: %s", path, strerror(errno)), -errno;
    char name[ELMD_MODEL_NAME_MAX];
    if (a->name && a->name[0] && !elmd_model_name_is_valid(a->name))
        return snprintf(err, errlen,
                        "a model name is 1 to %d of A-Z a-z 0-9 . _ - : / + (not '%.64s')",
                        ELMD_MODEL_NAME_MAX - 1, a->name),
               -EINVAL;
    if (a->name && a->name[0])
        snprintf(name, sizeof name, "%s", a->name);
    else
        elmd_model_default_name(path, name, sizeof name);
    bool replaces = elmd_find_model(d, name) != NULL;
    if (!replaces && d->n_models >= ELMD_MAX_MODELS)
        return snprintf(err, errlen, "%d models are resident already: unload one first",
                        ELMD_MAX_MODELS),
               ELM_EBUSY;
    int rc = check_threads(c, threads, err, errlen);
    if (rc)
        return rc;
    L->params = (struct elm_load_params){.threads = threads ? threads : c->threads,
                                         .kernel = c->kernel,
                                         .hugepages = c->hugepages,
                                         .mlock = c->mlock,
                                         .direct_io = c->direct_io,
                                         .io_depth = c->io_depth,
                                         .io_chunk = (size_t)c->io_chunk_kib << 10};
    snprintf(L->path, sizeof L->path, "%s", path);
    snprintf(L->name, sizeof L->name, "%s", name);
    L->keep_alive_ms = a->has_keep_alive ? a->keep_alive_ms : c->keep_alive_ms;
    L->need_bytes = (uint64_t)st.st_size;
    L->ctx = ctx;
    L->result = NULL;
    L->rc = 0;
    L->err[0] = 0;
    atomic_store(&L->progress.done, 0);
    atomic_store(&L->progress.total, 0);
    atomic_store(&L->progress.abort, false);
    atomic_store(&L->finished, false);
    rc = make_room(d, L->need_bytes, NULL, err, errlen);
    if (rc == -EAGAIN) {
        L->waiting_room = true;
        snprintf(L->err, sizeof L->err, "%s", err); /* status shows it (load_wait) */
        elm_info("load of %s as %s: %s", path, name, err);
        return 0;
    }
    return rc ? rc : spawn_loader(d, err, errlen);
}

static int spawn_loader(struct elmd *d, char *err, size_t errlen)
{
    struct elmd_load *L = &d->load;
    int rc = pthread_create(&L->thread, NULL, loader_main, d);
    if (rc)
        return snprintf(err, errlen, "cannot start the loader: %s", strerror(rc)), -rc;
    L->active = true;
    elm_info("loading %s as %s", L->path, L->name);
    return 0;
}

int elmd_load_retry(struct elmd *d)
{
    struct elmd_load *L = &d->load;
    if (!L->waiting_room)
        return 0;
    if (atomic_load(&L->progress.abort)) {
        L->waiting_room = false;
        L->rc = -ECANCELED;
        snprintf(L->err, sizeof L->err, "the load was cancelled");
        return L->rc;
    }
    char msg[256];
    int rc = make_room(d, L->need_bytes, NULL, msg, sizeof msg);
    if (rc == -EAGAIN) {
        snprintf(L->err, sizeof L->err, "%s", msg);
        return 0;
    }
    L->waiting_room = false;
    if (rc == 0)
        rc = spawn_loader(d, msg, sizeof msg);
    if (rc) {
        L->rc = rc;
        snprintf(L->err, sizeof L->err, "%s", msg);
    }
    return rc;
}

struct elmd_model *elmd_find_model(struct elmd *d, const char *name)
{
    struct elmd_model *found = NULL;
    pthread_mutex_lock(&d->lock);
    for (int i = 0; i < d->n_models && !found; i++)
        if (!d->models[i]->retiring && (!name || !name[0] || !strcmp(d->models[i]->name, name)))
            found = d->models[i];
    pthread_mutex_unlock(&d->lock);
    return found;
}

void elmd_load_cancel(struct elmd *d)
{
    if (d->load.active || d->load.waiting_room)
        atomic_store(&d->load.progress.abort, true);
}

bool elmd_load_is_finished(struct elmd *d)
{
    return d->load.active && atomic_load_explicit(&d->load.finished, memory_order_acquire);
}

/* ---- hand-over ------------------------------------------------------------------------------ */

/* The largest context a client's LOAD may ask of model m: max_ctx, else what the model was
 * trained for (beyond it the output is meaningless anyway), else the default's bound. A
 * million tokens pinned a 2.5 GiB KV pool for a 1 MB model (issue 17 item 5). */
static int check_ctx(const struct elmd_config *c, const struct elm_model *m, int32_t ctx, char *err,
                     size_t errlen)
{
    int32_t train = m->hp.n_ctx_train;
    int32_t max = c->max_ctx ? c->max_ctx : train > 0 ? train : ELM_CTX_DEFAULT_MAX;
    if (ctx <= max)
        return 0;
    snprintf(err, errlen,
             "a context of %d tokens asked for, but this daemon allows at most %d (%s)", ctx, max,
             c->max_ctx ? "max_ctx" : "the model's trained context");
    return ELM_ECONTEXT;
}

/* The bytes a KV pool may take: max_kv_mib, else half the physical memory, so that no setting
 * or request can pin the machine's memory for KV. */
static int64_t kv_budget(const struct elmd_config *c)
{
    if (c->max_kv_mib)
        return c->max_kv_mib << 20;
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (int64_t)pages * size / 2 : INT64_MAX;
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
    unsigned flags = (c->hugepages == ELM_HUGE_THP   ? ELM_KV_POOL_THP
                      : c->hugepages != ELM_HUGE_OFF ? ELM_KV_POOL_HUGE
                                                     : 0) |
                     (c->mlock ? ELM_KV_POOL_LOCK : 0);
    int rc = elm_kv_type_check(dm->m, c->kv_type, err, errlen);
    int64_t bytes = pages * (int64_t)elm_kv_page_bytes(dm->m, c->kv_type), budget = kv_budget(c);
    if (rc == 0 && bytes > budget) {
        snprintf(err, errlen,
                 "a KV pool of %lld positions would take %lld MiB, more than this daemon allows "
                 "(%lld MiB: %s); lower the context or kv_pool_tokens",
                 (long long)tokens, (long long)(bytes >> 20), (long long)(budget >> 20),
                 c->max_kv_mib ? "max_kv_mib" : "half the physical memory");
        rc = -ENOMEM;
    }
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

int elmd_finish_load(struct elmd *d)
{
    struct elmd_load *L = &d->load;
    pthread_join(L->thread, NULL);
    L->active = false;
    if (L->rc == 0 && atomic_load(&L->progress.abort)) {
        elmd_model_destroy(&L->result);
        L->rc = -ECANCELED;
        snprintf(L->err, sizeof L->err, "the load was cancelled");
    }
    int32_t ctx = 0;
    /* Room in d->models: ELMD_MAX_MODELS serving, and one more slot for a replaced model
     * that is still unloading beside its successor. */
    bool replacing = elmd_find_model(d, L->name) != NULL;
    pthread_mutex_lock(&d->lock);
    bool full = d->n_models - replacing >= ELMD_MAX_MODELS || d->n_models >= ELMD_MODEL_SLOTS;
    pthread_mutex_unlock(&d->lock);
    if (L->rc == 0 && full) {
        elmd_model_destroy(&L->result);
        L->rc = ELM_EBUSY;
        snprintf(L->err, sizeof L->err, "%d models are resident (one may be unloading): try again",
                 ELMD_MAX_MODELS);
    }
    if (L->rc == 0) {
        ctx = elm_model_ctx_default(L->result->m, L->ctx ? L->ctx : d->cfg.ctx);
        L->rc = check_ctx(&d->cfg, L->result->m, L->ctx, L->err, sizeof L->err);
        if (L->rc == 0)
            L->rc = make_kv_pool(d, L->result, &ctx, L->err, sizeof L->err);
        if (L->rc)
            elmd_model_destroy(&L->result);
    }
    if (L->rc) {
        /* The engine's messages about the file already start with its path: name it once. */
        size_t pl = strlen(L->path);
        bool named = !strncmp(L->err, L->path, pl) && L->err[pl] == ':';
        snprintf(L->last_error, sizeof L->last_error, "%s%s%s", named ? "" : L->path,
                 named ? "" : ": ", L->err);
        elm_err("cannot load %s", L->last_error);
        return L->rc;
    }
    L->last_error[0] = 0;
    struct elmd_model *dm = L->result, *old = elmd_find_model(d, L->name);
    L->result = NULL;
    snprintf(dm->name, sizeof dm->name, "%s", L->name);
    dm->ctx = ctx;
    dm->bytes =
        dm->res.mem.len + elm_kv_pool_pages(dm->kv_pool) * elm_kv_pool_page_bytes(dm->kv_pool);
    dm->keep_alive_ms = L->keep_alive_ms;
    dm->idle_since_ns = elmd_now_ns();
    dm->kv_free_pages = elm_kv_pool_free_pages(dm->kv_pool);
    /* Sessions hold sequences of the old model of this name: they end (ERROR to a running
     * request); the new one serves from now on. */
    if (old)
        elmd_retire(d, old, "replaced");
    pthread_mutex_lock(&d->lock);
    d->models[d->n_models++] = dm; /* room: checked above */
    pthread_mutex_unlock(&d->lock);
    L->added = dm;
    uint64_t used = elmd_resident_bytes(d), budget = elmd_budget(d);
    if (used > budget) /* the KV pool came on top of the file's size */
        elm_warn("%llu bytes resident, over max_resident_bytes %llu: idle models go first",
                 (unsigned long long)used, (unsigned long long)budget);
    char msg[256];
    make_room(d, 0, dm, msg, sizeof msg);
    elm_info("serving %s as %s (%llu bytes with its KV pool)", dm->path, dm->name,
             (unsigned long long)dm->bytes);
    return 0;
}

int elmd_unload(struct elmd *d, const char *name)
{
    if (!name || !name[0])
        elmd_load_cancel(d); /* its LOAD waiters get ECANCELED when it returns */
    struct elmd_model *todo[ELMD_MODEL_SLOTS];
    int n = 0;
    pthread_mutex_lock(&d->lock);
    for (int i = 0; i < d->n_models; i++)
        if (!name || !name[0] || !strcmp(d->models[i]->name, name))
            todo[n++] = d->models[i];
    bool retiring = false;
    for (int i = 0; i < d->n_models; i++)
        retiring |= d->models[i]->retiring;
    pthread_mutex_unlock(&d->lock);
    for (int i = 0; i < n; i++)
        elmd_retire(d, todo[i], "unload requested");
    if (name && name[0] && !n)
        return -ENOENT;
    return n || retiring;
}

bool elmd_swap_finished(struct elmd *d)
{
    if (!d->swapping)
        return false;
    bool pending = false;
    pthread_mutex_lock(&d->lock);
    for (int i = 0; i < d->n_models; i++)
        pending |= d->models[i]->retiring;
    pthread_mutex_unlock(&d->lock);
    if (pending)
        return false;
    d->swapping = false;
    return true;
}

int elmd_keep_alive_step(struct elmd *d, uint64_t now)
{
    int64_t next_ms = -1;
    struct elmd_model *expired[ELMD_MODEL_SLOTS];
    int n = 0;
    pthread_mutex_lock(&d->lock);
    for (int i = 0; i < d->n_models; i++) {
        struct elmd_model *m = d->models[i];
        if (m->retiring || m->n_sessions || m->keep_alive_ms < 0)
            continue;
        uint64_t at = m->idle_since_ns + (uint64_t)m->keep_alive_ms * 1000000u;
        if (now >= at) {
            expired[n++] = m;
            continue;
        }
        int64_t ms = (int64_t)((at - now + 999999) / 1000000);
        if (next_ms < 0 || ms < next_ms)
            next_ms = ms;
    }
    pthread_mutex_unlock(&d->lock);
    for (int i = 0; i < n; i++)
        elmd_retire(d, expired[i], "keep_alive expired");
    return next_ms > INT32_MAX ? INT32_MAX : (int)next_ms;
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

/* ---- draining ------------------------------------------------------------------------------- */

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
    elmd_load_cancel(d);
}

bool elmd_drain_step(struct elmd *d)
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
    return !d->sessions && !d->load.active;
}
