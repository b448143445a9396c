/* lifecycle.c — loading, swapping, unloading the served model, and draining (lifecycle.h).
 *
 * A load runs on its own thread so that control keeps answering (status shows its progress);
 * the thread only calls the engine's loader and reports through d->load and the wake eventfd.
 * The KV pool is made afterwards, on control, so that a pool the memory cannot hold fails the
 * load and leaves the served model in place. The new model then waits in d->swap_to until the
 * engine has let every session of the old one go (scheduler.c swap_model).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int elmd_start_load(struct elmd *d, const char *path, int32_t ctx, int threads, char *err,
                    size_t errlen)
{
    struct elmd_load *L = &d->load;
    if (L->active)
        return snprintf(err, errlen, "a load of %s is in progress", L->path), ELM_EBUSY;
    const struct elmd_config *c = &d->cfg;
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
    L->ctx = ctx;
    L->result = NULL;
    L->rc = 0;
    L->err[0] = 0;
    atomic_store(&L->progress.done, 0);
    atomic_store(&L->progress.total, 0);
    atomic_store(&L->progress.abort, false);
    atomic_store(&L->finished, false);
    rc = pthread_create(&L->thread, NULL, loader_main, d);
    if (rc)
        return snprintf(err, errlen, "cannot start the loader: %s", strerror(rc)), -rc;
    L->active = true;
    elm_info("loading %s", path);
    return 0;
}

void elmd_load_cancel(struct elmd *d)
{
    if (d->load.active)
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
    pthread_mutex_lock(&d->lock);
    elmd_model_destroy(&d->swap_to);
    d->swap_to = L->result;
    d->swap_ctx = ctx;
    d->swap_pending = true;
    pthread_mutex_unlock(&d->lock);
    d->swapping = true;
    L->result = NULL;
    /* Sessions hold sequences of the old model: they end (ERROR to a running request). */
    elmd_close_all_sessions(d, ELM_ENOMODEL, "the model was replaced");
    return 0;
}

bool elmd_unload(struct elmd *d)
{
    elmd_load_cancel(d); /* its LOAD waiters get ECANCELED when it returns */
    pthread_mutex_lock(&d->lock);
    bool idle = !d->model && !d->swap_pending;
    if (!idle) {
        elmd_model_destroy(&d->swap_to); /* a loaded model waiting to be installed: not now */
        d->swap_pending = true;
    }
    pthread_mutex_unlock(&d->lock);
    if (!idle)
        d->swapping = true;
    return !idle;
}

bool elmd_swap_finished(struct elmd *d)
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
