/* guard.c — see guard.h. The protocol is one short line per message (atomic on a pipe):
 *   "s <value> <path>"  write value into path on death     "S <path>"  forget it
 *   "m <dir>"           detach the mount at dir on death   "M <dir>"   forget it */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/common/guard.h"

#define MAX_ENTRIES 8
#define MAX_LINE    512

static int g_fd = -1; /* write end of the pipe to the guardian; -1 before start */

struct entry {
    char kind;      /* 's' or 'm'; 0 when free */
    long value;     /* for 's' */
    char path[400]; /* sysctl file or mount point */
};

static void put(struct entry *e, char kind, long value, const char *path)
{
    for (int i = 0; i < MAX_ENTRIES; i++) /* a newer value for the same path replaces it */
        if (e[i].kind == kind && !strcmp(e[i].path, path)) {
            e[i].value = value;
            return;
        }
    for (int i = 0; i < MAX_ENTRIES; i++)
        if (!e[i].kind) {
            e[i] = (struct entry){.kind = kind, .value = value};
            snprintf(e[i].path, sizeof e[i].path, "%s", path);
            return;
        }
}

static void drop(struct entry *e, char kind, const char *path)
{
    for (int i = 0; i < MAX_ENTRIES; i++)
        if (e[i].kind == kind && !strcmp(e[i].path, path))
            e[i].kind = 0;
}

static void undo(const struct entry *e)
{
    for (int i = 0; i < MAX_ENTRIES; i++) {
        if (e[i].kind == 'm') {
            if (umount2(e[i].path, MNT_DETACH) == 0)
                rmdir(e[i].path);
        } else if (e[i].kind == 's') {
            int fd = open(e[i].path, O_WRONLY | O_CLOEXEC);
            if (fd >= 0) {
                char buf[32];
                int n = snprintf(buf, sizeof buf, "%ld\n", e[i].value);
                if (write(fd, buf, (size_t)n) < 0) {
                    /* nothing more to try: the guardian has no one to tell */
                }
                close(fd);
            }
        }
    }
}

/* The guardian's life: read messages until the test is gone, then undo. */
static void guardian(int rd)
{
    struct entry e[MAX_ENTRIES] = {{0}};
    FILE *in = fdopen(rd, "r");
    char line[MAX_LINE];
    while (in && fgets(line, sizeof line, in)) {
        line[strcspn(line, "\n")] = 0;
        char *sp = strchr(line, ' ');
        if (line[0] == 's' && sp) {
            char *end;
            long v = strtol(sp + 1, &end, 10);
            if (*end == ' ')
                put(e, 's', v, end + 1);
        } else if (line[0] == 'S' && sp) {
            drop(e, 's', sp + 1);
        } else if (line[0] == 'm' && sp) {
            put(e, 'm', 0, sp + 1);
        } else if (line[0] == 'M' && sp) {
            drop(e, 'm', sp + 1);
        }
    }
    undo(e);
}

int elm_test_guard_start(void)
{
    if (g_fd >= 0)
        return 0;
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) /* CLOEXEC: a daemon the test execs must not hold it open */
        return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int rc = -errno;
        close(p[0]);
        close(p[1]);
        return rc;
    }
    if (pid == 0) {
        close(p[1]);
        /* the grandchild is the guardian: re-parented, in a session of its own */
        if (fork() != 0)
            _exit(0);
        setsid();
        for (int fd = 0; fd < 1024; fd++)
            if (fd != p[0] && fd != 2)
                close(fd);
        guardian(p[0]);
        _exit(0); /* not exit(): no atexit handlers or leak checks of the test's copy */
    }
    close(p[0]);
    waitpid(pid, NULL, 0);
    g_fd = p[1];
    return 0;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
    if (g_fd < 0)
        return;
    char line[MAX_LINE];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0 && n < (int)sizeof line && write(g_fd, line, (size_t)n) < 0) {
        /* the guardian is gone: nothing will be undone on death; teardown still undoes */
    }
}

void elm_test_guard_sysctl(const char *path, long old)
{
    say("s %ld %s\n", old, path);
}

void elm_test_guard_sysctl_done(const char *path)
{
    say("S %s\n", path);
}

void elm_test_guard_mount(const char *dir)
{
    say("m %s\n", dir);
}

void elm_test_guard_mount_done(const char *dir)
{
    say("M %s\n", dir);
}
