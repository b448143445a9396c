/* gguf_check.h — what the GGUF reader and writer tests share (test_gguf.c, test_gguf_writer.c):
 * the invariants every successful parse must hold, two assertions, and the group's temporary
 * directory. */
#ifndef ELM_TEST_GGUF_CHECK_H
#define ELM_TEST_GGUF_CHECK_H

#include <string.h>

#include "engine/gguf.h"
#include "tests/common/elm_test.h"

/* Named like cmocka's own assert_* family, which they extend. */
#define assert_ok(expr) assert_int_equal((expr), 0)

#define assert_contains(hay, needle)                                                               \
    do {                                                                                           \
        if (!strstr((hay), (needle)))                                                              \
            fail_msg("message \"%s\" does not contain \"%s\"", (hay), (needle));                   \
    } while (0)

/* What a successful parse promises: everything it describes lies inside the buffer. */
void elm_test_gguf_check_invariants(const struct elm_gguf *g);

/* cmocka group fixtures: a fresh mkdtemp() directory for the group's files, removed with
 * everything in it by the teardown. */
int elm_test_gguf_group_setup(void **state);
int elm_test_gguf_group_teardown(void **state);

/* That directory's path (valid between setup and teardown). */
const char *elm_test_gguf_tmpdir(void);

#endif
