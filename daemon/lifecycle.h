/* lifecycle.h — the served model's life on the control thread: loading it (on a thread of its
 * own), handing it to the engine (a swap), unloading it, and draining before exit.
 *
 * Control owns every struct elmd_model: it loads one, gives it to the engine through d->swap_to,
 * and frees it only after the engine has retired it (elmd.h says how the threads meet).
 */
#ifndef ELMD_LIFECYCLE_H
#define ELMD_LIFECYCLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/elmd_model.h"

struct elmd;

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
