/* bench_llama.c — a llama-server that `elm-bench serve --vs-llama-server PATH` starts beside
 * elmd on the same model file (bench_http.h), so one command measures both servers under the
 * same machine mood. Its settings mirror elmd's in that sweep: the same threads, as many
 * parallel slots as the largest client count, each slot the same context. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_http.h"

/* A loopback port nobody listens on now (the kernel's pick; the server binds it a moment
 * later, so another process could take it in between: the start then fails visibly). */
static int free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa) ||
                     getsockname(fd, (struct sockaddr *)&sa, &len)
                 ? -errno
                 : ntohs(sa.sin_port);
    close(fd);
    return rc;
}

/* Whether GET /health answers 200 (llama-server says 503 while it loads the model). */
static bool healthy(const char *url)
{
    int fd = bench_http_connect(url);
    if (fd < 0)
        return false;
    static const char req[] = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    char line[32] = {0};
    bool ok = write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1) &&
              read(fd, line, sizeof line - 1) >= 12 && !strncmp(line + 9, "200", 3);
    close(fd);
    return ok;
}

int bench_llama_server_start(const char *exe, const char *model, int threads, int n_parallel,
                             int ctx, struct bench_gateway *g)
{
    int port = free_port();
    if (port < 0)
        return port;
    char sport[16], st[16], snp[16], sctx[16];
    snprintf(sport, sizeof sport, "%d", port);
    snprintf(st, sizeof st, "%d", threads);
    snprintf(snp, sizeof snp, "%d", n_parallel);
    snprintf(sctx, sizeof sctx, "%d", ctx * n_parallel); /* llama-server splits -c among slots */
    char *argv[] = {(char *)exe, "-m", (char *)model, "--host", "127.0.0.1", "--port", sport,
                    "-t", st, "-tb", st, "-np", snp, "-c", sctx, "--no-webui", "--log-disable",
                    NULL};
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execv(exe, argv);
        _exit(127);
    }
    *g = (struct bench_gateway){.pid = pid, .out_fd = -1};
    snprintf(g->url, sizeof g->url, "http://127.0.0.1:%d", port);
    /* loading a 1B model from a cold cache takes seconds; give it two minutes */
    for (int i = 0; i < 1200; i++) {
        if (healthy(g->url))
            return 0;
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            g->pid = 0;
            fprintf(stderr, "elm-bench serve: %s exited before it served %s\n", exe, model);
            return -ECHILD;
        }
        nanosleep(&(struct timespec){.tv_nsec = 100000000}, NULL);
    }
    fprintf(stderr, "elm-bench serve: %s did not become healthy in 120 s\n", exe);
    bench_gateway_stop(g);
    return -ETIMEDOUT;
}
