/* log.c — leveled logging; one fprintf per line so lines from threads do not interleave. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "common/log.h"

static enum elm_log_level g_max = ELM_LOG_INFO;
static bool g_syslog;

void elm_log_setup(enum elm_log_level max, bool use_syslog, const char *ident)
{
    g_max = max;
    if (use_syslog && !g_syslog)
        openlog(ident ? ident : "elm", LOG_PID, LOG_DAEMON);
    g_syslog = use_syslog;
}

int elm_log_level_parse(const char *s)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

void elm_log(enum elm_log_level lvl, const char *fmt, ...)
{
    static const char *tags[] = {"error", "warn", "info", "debug"};
    static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    if (lvl > g_max)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g_syslog) {
        syslog(prio[lvl], "%s", msg);
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "%02d:%02d:%02d.%03ld %s: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
            ts.tv_nsec / 1000000, tags[lvl], msg);
}
