/* fuzz_model.c — the model loaders on arbitrary GGUF bytes: elm_model_create from memory (what
 * `elmctl --local` and the tests use) and, for inputs that pass its checks, the daemon's
 * resident loader (engine/loader.c: io_uring or pread into anonymous memory) on the same bytes
 * in a memfd. Neither may read outside the file or build a model with a tensor out of shape.
 */
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"
#include "engine/gguf.h"
#include "engine/loader.h"
#include "engine/model.h"

/* The loader reads from a path: give it the input as a memory-backed file. */
static void load_resident(const uint8_t *data, size_t size)
{
    static int fd = -1;
    char path[64], err[512];
    const struct elm_load_params p = {.threads = 1, .hugepages = ELM_HUGE_OFF};
    struct elm_model *m = NULL;
    struct elm_residency r;

    if (fd < 0 && (fd = memfd_create("elm-fuzz-model", 0)) < 0)
        return;
    if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        return;
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    if (elm_loader_load(path, &p, NULL, &m, &r, err, sizeof err) == 0)
        elm_loader_unload(&m, &r);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    elm_log_setup(ELM_LOG_ERROR, false, "fuzz_model"); /* not a line per load */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct elm_gguf *g = NULL;
    struct elm_model *m = NULL;
    const struct elm_model_params mp = {.n_threads = 1, .vocab_optional = true};
    char err[512];

    if (elm_gguf_parse(data, size, &g, err, sizeof err) < 0)
        return 0;
    if (elm_model_check(g, err, sizeof err) < 0) {
        elm_gguf_destroy(&g);
        return 0;
    }
    if (elm_model_create(g, NULL, &mp, &m, err, sizeof err) == 0)
        elm_model_destroy(&m); /* owned g */
    else
        elm_gguf_destroy(&g);
    load_resident(data, size);
    return 0;
}
