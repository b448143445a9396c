/* trace.c — see trace.h. The file is opened once, on the first mark, by whichever thread gets
 * there first (pthread_once); a file that cannot be opened turns tracing off. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "common/trace.h"

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_fd = -1;

static void open_trace(void)
{
    const char *path = getenv("ELM_TRACE");
    if (path && *path)
        g_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
}

bool elm_trace_is_on(void)
{
    pthread_once(&g_once, open_trace);
    return g_fd >= 0;
}

void elm_trace(const char *name)
{
    pthread_once(&g_once, open_trace);
    if (g_fd < 0)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char line[128];
    int n = snprintf(line, sizeof line, "%ld %s %lld\n", (long)getpid(), name,
                     (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
    if (n > 0 && n < (int)sizeof line && write(g_fd, line, (size_t)n) < 0)
        return; /* a lost mark is a missing column in a benchmark, nothing more */
}
