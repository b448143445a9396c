/* elm_test.c — see elm_test.h. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "elm_test.h"

const char *elm_test_models_dir(void)
{
    const char *d = getenv("ELM_MODELS_DIR");
    return (d && *d) ? d : ELM_DEFAULT_MODELS_DIR;
}

const char *elm_test_model_path(const char *rel)
{
    static char slots[8][4096];
    static unsigned next;
    char *buf = slots[next++ % 8];
    snprintf(buf, sizeof slots[0], "%s/%s", elm_test_models_dir(), rel);
    return access(buf, R_OK) == 0 ? buf : NULL;
}

char *elm_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 65536 + 1 > cap) {
            cap = cap ? cap * 2 : 131072;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, 65536, f);
        n += r;
        if (r < 65536)
            break;
    }
    fclose(f);
    buf[n] = 0;
    if (len)
        *len = n;
    return buf;
}

const char *elm_test_build_dir(void)
{
    const char *d = getenv("ELM_BUILD_DIR");
    return (d && *d) ? d : ELM_BUILD_DIR;
}

int elm_test_vsh(char *out, size_t cap, const char *errpath, const char *fmt, va_list ap)
{
    char cmd[8192];
    int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
    assert_true(n >= 0 && (size_t)n < sizeof cmd - 200);
    if (errpath)
        snprintf(cmd + n, sizeof cmd - (size_t)n, " 2>%s", errpath);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t got = fread(out, 1, cap - 1, p);
    out[got] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

const char *elm_test_file_text(const char *path)
{
    static char buf[8192];
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[n] = 0;
    if (f)
        fclose(f);
    return buf;
}
