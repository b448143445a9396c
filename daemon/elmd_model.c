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

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("._-:/+", c));
}

void elmd_model_default_name(const char *path, char *name, size_t cap)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 5 && !strcmp(base + n - 5, ".gguf"))
        n -= 5;
    snprintf(name, cap, "%.*s", (int)n, base);
    for (char *p = name; *p; p++)
        if (!name_char(*p))
            *p = '_';
}

bool elmd_model_name_is_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= ELMD_MODEL_NAME_MAX)
        return false;
    for (const char *p = name; *p; p++)
        if (!name_char(*p))
            return false;
    return true;
}
