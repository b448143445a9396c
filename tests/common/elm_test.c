/* elm_test.c — see elm_test.h. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/common/elm_test.h"

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

static int sh(char *out, size_t cap, const char *errpath, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = elm_test_vsh(out, cap, errpath, fmt, ap);
    va_end(ap);
    return rc;
}

int elm_test_curl(char *out, size_t cap, const char *errpath, const char *fmt, ...)
{
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    sh(out, cap, errpath, "curl -sS --max-time 60 -w '\\nHTTP %%{http_code}' %s", args);
    char *last = strrchr(out, '\n');
    int status = last && !strncmp(last, "\nHTTP ", 6) ? atoi(last + 6) : -1;
    if (last)
        *last = 0;
    return status;
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

/* True when the NUL-separated command line of pid contains marker in one of its arguments. */
static int cmdline_has(long pid, const char *marker)
{
    char path[64], buf[8192];
    snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    for (ssize_t i = 0; i < n; i += (ssize_t)strlen(buf + i) + 1)
        if (strstr(buf + i, marker))
            return 1;
    return 0;
}

int elm_test_signal_if_ours(long pid, const char *marker, int sig)
{
    if (pid <= 0 || !marker || !*marker)
        return -ESRCH;
    /* The pidfd pins the process that has the pid now. If it is still alive after the command
     * line was read, that command line was its own: the pid cannot be reused while it lives. */
    int fd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
    if (fd < 0)
        return -errno;
    int rc = -EPERM;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (cmdline_has(pid, marker) && poll(&p, 1, 0) == 0)
        rc = syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}
