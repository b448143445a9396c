/* elmd_model.c — freeing a served model (elmd_model.h). */
#include <stdlib.h>

#include "daemon/elmd_model.h"

void elmd_model_destroy(struct elmd_model **pm)
{
    if (!pm || !*pm)
        return;
    struct elmd_model *dm = *pm;
    elm_kv_pool_destroy(&dm->kv_pool); /* its sequences are gone: the engine destroyed them */
    elm_loader_unload(&dm->m, &dm->res);
    free(dm);
    *pm = NULL;
}
