/* lifecycle.h — the served model's life on the control thread: loading it (on a thread of its
 * own), handing it to the engine (a swap), unloading it, and draining before exit.
 *
 * Control owns every struct elmd_model: it loads one, gives it to the engine through d->swap_to,
 * and frees it only after the engine has retired it (elmd.h says how the threads meet).
 */
#ifndef ELMD_LIFECYCLE_H
#define ELMD_LIFECYCLE_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/kv.h"
#include "engine/loader.h"
#include "engine/model.h"

struct elmd;

/* A model as the daemon serves it: resident weights and the KV pool its sessions share. */
struct elmd_model {
    struct elm_model *m;         /* built on res's memory (engine/loader.h) */
    struct elm_kv_pool *kv_pool; /* every session's KV pages; made when the load ends */
    struct elm_residency res;
    char path[PATH_MAX];
};

/* NULL-safe; frees the pool, the model and its weights; nulls *pm. */
void elmd_model_destroy(struct elmd_model **pm);

/* The load in progress (at most one) and the last one's outcome. Control's, except where
 * marked: the loader thread writes result, rc and err, then sets finished. */
struct elmd_load {
    pthread_t thread;
    bool active;                       /* a loader thread runs or has not been joined */
    _Atomic bool finished;             /* set by the loader thread when it is done */
    struct elm_load_progress progress; /* shared with the loader thread; read by `status` */
    struct elm_load_params params;
    char path[PATH_MAX];
    int32_t ctx;                     /* from LOAD's N_CTX, 0 = config */
    struct elmd_model *result;       /* loader thread */
    int rc;                          /* loader thread */
    char err[512];                   /* loader thread */
    char last_error[PATH_MAX + 600]; /* "path: message" of the last failed load, for status */
};

/* Starts loading path on a new thread. ctx and threads (0: the configuration's) come from LOAD.
 * Returns 0, ELM_EBUSY when a load runs, or -errno; message in err. */
int elmd_start_load(struct elmd *d, const char *path, int32_t ctx, int threads, char *err,
                    size_t errlen);

/* Asks a running load to stop; it ends with -ECANCELED. */
void elmd_load_cancel(struct elmd *d);

/* True once the loader thread is done and elmd_finish_load may join it. */
bool elmd_load_is_finished(struct elmd *d);

/* Joins the loader thread; hands a new model to the engine (a swap, closing every session of
 * the old one) and returns 0, or returns the load's error with d->load.err and last_error set
 * (the caller answers the LOAD requests waiting for it). */
int elmd_finish_load(struct elmd *d);

/* Unload: cancels a running load and asks the engine to drop the model. Returns false when
 * there is nothing to unload. The caller then closes the sessions and answers its requests. */
bool elmd_unload(struct elmd *d);

/* True once a swap that control started (load or unload) has been done by the engine; logs
 * what is served now. */
bool elmd_swap_finished(struct elmd *d);

/* Asks the engine to close every session with code/msg (model swap, unload, shutdown). */
void elmd_close_all_sessions(struct elmd *d, int code, const char *msg);

/* Starts draining: no new sessions, prompts or loads; running requests may finish. */
void elmd_begin_drain(struct elmd *d, const char *why);

/* One turn of a drain: once the requests ended (or drain_ms passed) it closes every session.
 * Returns true once everything is closed and the daemon may exit. */
bool elmd_drain_step(struct elmd *d);

#endif
