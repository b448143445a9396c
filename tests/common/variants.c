/* variants.c — see variants.h. The case names and states live in a static pool: cmocka keeps
 * pointers to them for the whole run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/common/variants.h"

struct variant_case {
    char test[96];       /* "<test>/<variant>", the cmocka case name */
    const char *variant; /* a name from elm_kernels_variant(), static */
};

static struct variant_case pool[64];
static size_t pool_used;

void elm_test_add_variant_cases(struct CMUnitTest *out, size_t *n, size_t cap, const char *name,
                                CMUnitTestFunction fn, bool with_ref)
{
    const char *v;
    for (size_t i = 0; (v = elm_kernels_variant(i)) != NULL; i++) {
        if (!with_ref && !strcmp(v, "ref"))
            continue;
        if (*n >= cap || pool_used >= sizeof pool / sizeof *pool) {
            fprintf(stderr, "elm_test_add_variant_cases: no room for %s/%s\n", name, v);
            abort();
        }
        struct variant_case *c = &pool[pool_used++];
        snprintf(c->test, sizeof c->test, "%s/%s", name, v);
        c->variant = v;
        out[(*n)++] = (struct CMUnitTest){.name = c->test, .test_func = fn, .initial_state = c};
    }
}

const char *elm_test_variant_name(void **state)
{
    const struct variant_case *c = *state;
    if (!elm_kernels_get(c->variant)) {
        print_message("SKIP: %s: this CPU (or OS) cannot run the %s kernels\n", c->test,
                      c->variant);
        skip();
    }
    return c->variant;
}

const struct elm_kernels *elm_test_variant(void **state)
{
    return elm_kernels_get(elm_test_variant_name(state));
}
