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
#include <stddef.h>
#include <stdint.h>

#include "daemon/plan.h"
#include "engine/kv.h"
#include "engine/loader.h"
#include "engine/model.h"

#define ELMD_MAX_MODELS     8  /* models resident at once */
/* Slots for them: one more for a replaced model still unloading beside its successor. */
#define ELMD_MODEL_SLOTS    (ELMD_MAX_MODELS + 1)
#define ELMD_MODEL_NAME_MAX 64 /* bytes of a model's name, with its NUL */

/* A model as the daemon serves it: resident weights and the KV pool its sessions share. Control
 * creates and frees it; while it is in d->models (elmd.h) the engine may use it. */
struct elmd_model {
    struct elm_model *m;         /* built on res's memory (engine/loader.h) */
    struct elm_kv_pool *kv_pool; /* every session's KV pages; made when the load ends */
    struct elm_residency res;
    char path[PATH_MAX];
    char name[ELMD_MODEL_NAME_MAX]; /* what requests call it: --as NAME, or the file's stem */
    int32_t ctx;                    /* default context of sessions on it */
    uint64_t bytes;                 /* weights' mapping + KV pool: what the budget counts */
    /* control only */
    int n_sessions;         /* sessions open on it: while > 0 it is never unloaded */
    uint64_t idle_since_ns; /* when its last session closed (or it was loaded) */
    int64_t keep_alive_ms;  /* the latest LOAD's or session's, else the daemon's; -1 forever */
    /* [L] */
    int64_t kv_free_pages; /* the pool's free pages, as of the engine's last step */
    bool retiring;         /* control asked the engine to drop it; no new session may open on it */
    struct {               /* STATS's line for it: what its sessions did since it was loaded */
        uint64_t n_requests, n_prompt_tokens, n_gen_tokens, gen_ns, n_preemptions;
    } counts;
    /* engine only: its scratch buffers and its cost estimate (step.c) */
    struct elm_work *w;
    int32_t w_batch, w_ctx;
    struct elmd_pass_cost cost;
};

/* The name a model file gets when LOAD gives none: its file name without ".gguf", each
 * character a name may not hold replaced by '_'. */
void elmd_model_default_name(const char *path, char *name, size_t cap);
/* Whether name may name a model: 1..63 of A-Z a-z 0-9 . _ - : / + (as ollama's names), so
 * status's list of them ("NAME (state), ...") reads back unambiguously. */
bool elmd_model_name_is_valid(const char *name);

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
    char name[ELMD_MODEL_NAME_MAX];  /* what it will be called */
    int64_t keep_alive_ms;           /* from LOAD (or the configuration) */
    uint64_t need_bytes;             /* the file's size: what the budget must make room for */
    bool waiting_room;               /* not started: the budget is full of models in use */
    struct elmd_model *added;        /* the model the last load added, until LOAD is answered */
    struct elmd_model *result;       /* loader thread */
    int rc;                          /* loader thread */
    char err[512];                   /* loader thread */
    char last_error[PATH_MAX + 600]; /* "path: message" of the last failed load, for status */
};

#endif
