/* elmd_model.c — freeing a served model (elmd_model.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/elmd_model.h"

void elmd_model_destroy(struct elmd_model **pm)
{
    if (!pm || !*pm)
        return;
    struct elmd_model *dm = *pm;
    elm_work_destroy(&dm->w);          /* the engine's: it is done with the model when this runs */
    elm_kv_pool_destroy(&dm->kv_pool); /* its sequences are gone: the engine destroyed them */
    elm_loader_unload(&dm->m, &dm->res);
    free(dm);
    *pm = NULL;
}

void elmd_model_default_name(const char *path, char *name, size_t cap)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 5 && !strcmp(base + n - 5, ".gguf"))
        n -= 5;
    snprintf(name, cap, "%.*s", (int)n, base);
}
