/* variants.h — one cmocka case per kernel variant, from the dispatch table's own list
 * (elm_kernels_variant), so that a variant added to kernels/dispatch.c is tested, or reported as
 * skipped on a CPU that lacks it, without editing the tests. A variant the CPU cannot run is a
 * skip with its reason, never a pass. */
#ifndef ELM_TEST_VARIANTS_H
#define ELM_TEST_VARIANTS_H

#include <stdbool.h>

#include "kernels/kernels.h"
#include "tests/common/elm_test.h"

/* Appends to out[*n..cap) one case per built-in variant, named "<name>/<variant>", running fn
 * with the variant as its state; with_ref false leaves out "ref" (for tests that compare a
 * variant with ref). Fails the program (abort) when cap is too small: a silently dropped
 * variant would be an untested one. */
void elm_test_add_variant_cases(struct CMUnitTest *out, size_t *n, size_t cap, const char *name,
                                CMUnitTestFunction fn, bool with_ref);

/* In such a case: the variant's name; skips the case ("SKIP: <case>: ...") when this CPU cannot
 * run it. */
const char *elm_test_variant_name(void **state);

/* The same, returning the variant's kernel table. */
const struct elm_kernels *elm_test_variant(void **state);

#endif
