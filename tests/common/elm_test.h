/* elm_test.h — helpers shared by the cmocka tests: where the model files are, reading files. */
#ifndef ELM_TEST_H
#define ELM_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* $ELM_MODELS_DIR, else ../shared/models beside the source checkout. */
const char *elm_test_models_dir(void);

/* Full path of a file under the models folder, in a static buffer per call slot (up to 8 live
 * results). Returns NULL when the file does not exist: callers then skip with a message. */
const char *elm_test_model_path(const char *rel);

/* In a cmocka test: resolves rel or skips the test with a clear message. */
#define ELM_REQUIRE_MODEL(var, rel)                                                                \
    const char *var = elm_test_model_path(rel);                                                    \
    do {                                                                                           \
        if (!var) {                                                                                \
            print_message("SKIP: model file %s/%s not found (set ELM_MODELS_DIR)\n",               \
                          elm_test_models_dir(), rel);                                             \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* Reads a whole file into a malloc'ed buffer (NUL-terminated, not counted in *len).
 * Returns NULL on failure. Caller frees. */
char *elm_test_read_file(const char *path, size_t *len);

/* Directory of the build tree (for helper binaries such as elmd), from ELM_BUILD_DIR. */
const char *elm_test_build_dir(void);

/* Runs a shell command (printf-style) with its stdout in out (NUL-terminated, at most cap - 1
 * bytes kept) and its stderr in the file errpath (NULL: left alone). Returns the exit status, -1
 * when it did not exit. Asserts that the shell could be started. */
int elm_test_vsh(char *out, size_t cap, const char *errpath, const char *fmt, va_list ap);

/* curl (silent, 60 s at most) with the arguments fmt makes: the reply's body in out, curl's
 * stderr in errpath. Returns the HTTP status (-1 when curl gave none). */
int elm_test_curl(char *out, size_t cap, const char *errpath, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The start (up to 8 KiB) of a text file, "" when it cannot be read. Static buffer. */
const char *elm_test_file_text(const char *path);

/* Sends sig to process pid only while it is still the process whose command line contains
 * marker (a unique mkdtemp path the test gave it): a pid read from a file may belong to anybody
 * by now (a stale pid file, pid reuse). Race-free through a pidfd. Returns 0 when sent, -ESRCH
 * when no such process runs (or pid <= 0), -EPERM when pid is somebody else's. */
int elm_test_signal_if_ours(long pid, const char *marker, int sig);

#endif
