/* elmd_model.h — a model as the daemon serves it (resident weights and the KV pool its sessions
 * share), and the state of the load that makes one. The types only: lifecycle.c loads, swaps
 * and unloads them; elmd.h embeds the load state in struct elmd.
 */
#ifndef ELMD_MODEL_H
#define ELMD_MODEL_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/kv.h"
#include "engine/loader.h"
#include "engine/model.h"

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

#endif
