/* start_httpd.c — running elm-httpd beside elmd for `elmctl start --http` (start_httpd.h).
 *
 * The gateway is a separate, unprivileged process and a client of elmd like any other; elmctl
 * only starts it, records its pid in the runtime directory, and ends it at `elmctl stop`. It is
 * ready when it prints its "listening on" line, which comes back through a pipe.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli_util.h"
#include "cli/start_httpd.h"
#include "elm/client.h"

#define READY_TIMEOUT_MS 10000

static int runtime_dir(const char *dir, char *buf, size_t cap)
{
    if (dir) {
        snprintf(buf, cap, "%s", dir);
        return 0;
    }
    return elm_client_default_runtime_dir(buf, cap);
}

/* The pid in <dir>/elm-httpd.pid (its first line; the second is the URL, copied to url) if
 * that process is still an elm-httpd, else 0. */
static pid_t running_pid(const char *dir, char *url, size_t cap)
{
    char path[PATH_MAX], buf[PATH_MAX] = "";
    snprintf(path, sizeof path, "%s/elm-httpd.pid", dir);
    FILE *f = fopen(path, "r");
    long pid = f && fgets(buf, sizeof buf, f) ? strtol(buf, NULL, 10) : 0;
    if (f && url && fgets(buf, sizeof buf, f))
        snprintf(url, cap, "%.*s", (int)strcspn(buf, "\n"), buf);
    if (f)
        fclose(f);
    if (pid <= 0)
        return 0;
    snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
    f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = 0;
    return strstr(buf, "elm-httpd") ? (pid_t)pid : 0; /* argv[0] ends the first string */
}

pid_t cli_httpd_start(const char *dir_opt, const char *listen, char *url, size_t cap)
{
    char dir[PATH_MAX], path[PATH_MAX + 32], bin[PATH_MAX + 32];
    if (runtime_dir(dir_opt, dir, sizeof dir))
        return (pid_t)(cli_fail("the runtime directory's name is too long"), 0);
    pid_t old = running_pid(dir, url, cap);
    if (old)
        return old; /* already running: its URL is the one it was started with */
    int fds[2];
    if (pipe2(fds, O_CLOEXEC))
        return (pid_t)(cli_fail("pipe: %s", strerror(errno)), 0);
    const char *httpd =
        cli_find_program("ELM_HTTPD", "elm-httpd", "../httpd/elm-httpd", bin, sizeof bin);
    snprintf(path, sizeof path, "%s/elm-httpd.log", dir);
    pid_t pid = fork();
    if (pid == 0) {
        /* A session of its own: elmctl's terminal closing does not end it. stdout is the pipe
         * (its one "listening on" line), stderr its log. */
        setsid();
        int null = open("/dev/null", O_RDONLY);
        int log = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (null >= 0)
            dup2(null, 0);
        dup2(fds[1], 1);
        if (log >= 0)
            dup2(log, 2);
        execlp(httpd, httpd, "--listen", listen, "--runtime-dir", dir, (char *)NULL);
        fprintf(stderr, "elmctl: cannot run %s: %s\n", httpd, strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        return (pid_t)(cli_fail("cannot fork: %s", strerror(errno)), 0);
    }
    char line[512];
    size_t n = 0;
    struct pollfd p = {.fd = fds[0], .events = POLLIN};
    while (n < sizeof line - 1 && !memchr(line, '\n', n) && poll(&p, 1, READY_TIMEOUT_MS) > 0) {
        ssize_t k = read(fds[0], line + n, sizeof line - 1 - n);
        if (k <= 0)
            break; /* it exited before saying it listens */
        n += (size_t)k;
    }
    close(fds[0]);
    line[n] = 0;
    const char *at = strstr(line, "http://");
    if (!at) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        return (pid_t)(cli_fail("elm-httpd did not start (see %s)", path), 0);
    }
    snprintf(url, cap, "%.*s", (int)strcspn(at, "\n"), at);
    snprintf(path, sizeof path, "%s/elm-httpd.pid", dir);
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "%ld\n%s\n", (long)pid, url);
        fclose(f);
    }
    return pid;
}

void cli_httpd_stop(const char *dir_opt)
{
    char dir[PATH_MAX], path[PATH_MAX + 32];
    if (runtime_dir(dir_opt, dir, sizeof dir))
        return;
    pid_t pid = running_pid(dir, NULL, 0);
    snprintf(path, sizeof path, "%s/elm-httpd.pid", dir);
    unlink(path);
    if (!pid || kill(pid, SIGTERM))
        return;
    for (int i = 0; i < 100 && kill(pid, 0) == 0; i++) {
        waitpid(pid, NULL, WNOHANG); /* our child when started by this elmctl process */
        usleep(50 * 1000);
    }
}
