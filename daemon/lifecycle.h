/* lifecycle.h — the resident models' lives on the control thread: loading one (on a thread of
 * its own), the memory budget and keep_alive, unloading, and draining before exit.
 *
 * Control owns every struct elmd_model: it loads one, adds it to d->models (where the engine
 * finds it), and frees it only after the engine has let it go (elmd.h says how the threads
 * meet).
 */
#ifndef ELMD_LIFECYCLE_H
#define ELMD_LIFECYCLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/elmd_model.h"

struct elmd;

/* What a LOAD asks for (borrowed for the call). */
struct elmd_load_args {
    const char *path;
    const char *name;    /* NULL or "": the file's stem */
    int32_t ctx;         /* 0: the configuration's */
    int threads;         /* 0: the configuration's */
    bool has_keep_alive; /* else the configuration's keep_alive */
    int64_t keep_alive_ms;
};

/* Starts loading a model beside the resident ones, on a new thread, once the budget has room
 * (it may first retire idle models, or wait: status shows why). Returns 0, ELM_EBUSY when a
 * load runs or ELMD_MAX_MODELS are resident, -ENOMEM when the file alone exceeds the budget,
 * or -errno; message in err. */
int elmd_start_load(struct elmd *d, const struct elmd_load_args *a, char *err, size_t errlen);

/* Starts a load that waits for room once there is. Returns 0, or the error that ended it
 * (d->load.err says why; the caller answers its LOAD). */
int elmd_load_retry(struct elmd *d);

/* Asks a running load to stop; it ends with -ECANCELED. */
void elmd_load_cancel(struct elmd *d);

/* True once the loader thread is done and elmd_finish_load may join it. */
bool elmd_load_is_finished(struct elmd *d);

/* Joins the loader thread; adds the new model to d->models (retiring a resident one of the same
 * name, closing its sessions) and returns 0 with d->load.added set, or returns the load's error
 * with d->load.err and last_error set (the caller answers the LOAD requests waiting for it). */
int elmd_finish_load(struct elmd *d);

/* The resident model called name (NULL or "": the default, the first loaded), not retiring;
 * NULL when there is none. Control thread. */
struct elmd_model *elmd_find_model(struct elmd *d, const char *name);

/* Unload: retires the model called name (NULL or "": every model, and cancels a load). Returns
 * 1 when a model is retiring (answer when elmd_swap_finished), 0 when nothing was resident,
 * -ENOENT when no model has that name. The sessions on them are closed with ELM_ENOMODEL. */
int elmd_unload(struct elmd *d, const char *name);

/* Retires m: no new session may open on it, its sessions are closed, and the engine lets it go
 * once they are (why is logged). */
void elmd_retire(struct elmd *d, struct elmd_model *m, const char *why);

/* Asks the engine to close every session opened on m with code/msg. */
void elmd_close_model_sessions(struct elmd *d, const struct elmd_model *m, int code,
                               const char *msg);

/* True once every model control retired has been let go by the engine. */
bool elmd_swap_finished(struct elmd *d);

/* Retires the idle models whose keep_alive has passed; returns the ms until the next one
 * expires (-1: none). */
int elmd_keep_alive_step(struct elmd *d, uint64_t now);

/* max_resident_bytes, or its default (config.h). */
uint64_t elmd_budget(const struct elmd *d);
/* Bytes of the resident models (and of those retired but not yet freed). */
uint64_t elmd_resident_bytes(struct elmd *d);

/* Asks the engine to close every session with code/msg (model swap, unload, shutdown). */
void elmd_close_all_sessions(struct elmd *d, int code, const char *msg);

/* Starts draining: no new sessions, prompts or loads; running requests may finish. */
void elmd_begin_drain(struct elmd *d, const char *why);

/* One turn of a drain: once the requests ended (or drain_ms passed) it closes every session.
 * Returns true once everything is closed and the daemon may exit. */
bool elmd_drain_step(struct elmd *d);

#endif
