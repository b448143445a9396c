/* endpoint.c — the default runtime directory (see endpoint.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ipc/endpoint.h"

int elm_rundir_default(char *buf, size_t cap)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    char run[64];
    struct stat st;
    int n;
    snprintf(run, sizeof run, "/run/user/%u", (unsigned)geteuid());
    if (xdg && xdg[0] == '/')
        n = snprintf(buf, cap, "%s/elm", xdg);
    else if (stat(run, &st) == 0 && S_ISDIR(st.st_mode))
        n = snprintf(buf, cap, "%s/elm", run);
    else
        n = snprintf(buf, cap, "/tmp/elm-%u", (unsigned)geteuid());
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}
