/* bench_http.c — `elm-bench serve --http`'s HTTP client and gateway (bench_http.h).
 *
 * The client speaks just enough HTTP/1.1 for one streamed completion on a fresh connection
 * (Connection: close): the status line, the headers, a body that is chunked or runs to the
 * end of the connection, and in it server-sent events "data: JSON\n\n" ending with
 * "data: [DONE]". An event whose choice carries text is one token's arrival; a server that
 * holds back part of a character (elm-httpd does, as OpenAI's API needs valid UTF-8) sends
 * that token with the next, so such a token counts with the next one. Only lengths the
 * server sent are trusted after checks: a chunk size is parsed and bounded, a line must fit
 * the buffer.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/bench_http.h"

/* ---- the gateway ------------------------------------------------------------------------- */

int bench_gateway_start(const char *runtime_dir, int max_conns, struct bench_gateway *g)
{
    char self[PATH_MAX], exe[PATH_MAX + 32], conns[16];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = 0;
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = 0;
    snprintf(exe, sizeof exe, "%.3000s/../httpd/elm-httpd", self);
    if (access(exe, X_OK) != 0)
        snprintf(exe, sizeof exe, "%.3000s/elm-httpd", self);
    if (access(exe, X_OK) != 0) {
        fprintf(stderr, "elm-bench serve: cannot run %s\n", exe);
        return -ENOENT;
    }
    snprintf(conns, sizeof conns, "%d", max_conns);
    int p[2];
    if (pipe(p))
        return -errno;
    /* its default --idle-timeout: that counts only the client's time, never a slow first token
     * (docs/httpd.md) */
    char *argv[] = {
        exe,   "--listen", "127.0.0.1:0", "--runtime-dir", (char *)runtime_dir, "--max-connections",
        conns, NULL};
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        return -e;
    }
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execv(exe, argv);
        _exit(127);
    }
    close(p[1]);
    *g = (struct bench_gateway){.pid = pid, .out_fd = p[0]};
    /* "elm-httpd: listening on http://ADDR:PORT\n" once it accepts connections */
    char line[256];
    size_t len = 0;
    while (len < sizeof line - 1) {
        ssize_t r = read(p[0], line + len, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || line[len] == '\n')
            break;
        len++;
    }
    line[len] = 0;
    const char *u = strstr(line, "http://");
    if (!u || strlen(u) >= sizeof g->url) {
        fprintf(stderr, "elm-bench serve: elm-httpd did not start (%s)\n", line);
        bench_gateway_stop(g);
        return -EPROTO;
    }
    snprintf(g->url, sizeof g->url, "%s", u);
    return 0;
}

void bench_gateway_stop(struct bench_gateway *g)
{
    if (g->pid > 0) {
        kill(g->pid, SIGTERM);
        while (waitpid(g->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    if (g->out_fd > 0)
        close(g->out_fd);
    g->pid = 0;
    g->out_fd = -1;
}

/* ---- the client -------------------------------------------------------------------------- */

/* host and port of "http://HOST:PORT[/...]"; 0 or -EINVAL. */
static int parse_url(const char *url, struct sockaddr_in *sa, char *hostport, size_t cap)
{
    if (strncmp(url, "http://", 7))
        return -EINVAL;
    const char *h = url + 7, *colon = strchr(h, ':');
    char host[64];
    if (!colon || (size_t)(colon - h) >= sizeof host)
        return -EINVAL;
    memcpy(host, h, (size_t)(colon - h));
    host[colon - h] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (port < 1 || port > 65535 || (*end && *end != '/'))
        return -EINVAL;
    *sa = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, strcmp(host, "localhost") ? host : "127.0.0.1", &sa->sin_addr) != 1)
        return -EINVAL;
    snprintf(hostport, cap, "%s:%ld", host, port);
    return 0;
}

int bench_http_connect(const char *url)
{
    struct sockaddr_in sa;
    char hp[96];
    if (parse_url(url, &sa, hp, sizeof hp))
        return -EINVAL;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

/* A buffered reader over the socket. */
struct rd {
    int fd;
    char buf[65536];
    size_t off, len;
};

/* At least one more byte in the buffer (compacting it first). 0, -ECONNRESET at the end. */
static int fill(struct rd *r)
{
    if (r->off) {
        memmove(r->buf, r->buf + r->off, r->len - r->off);
        r->len -= r->off;
        r->off = 0;
    }
    if (r->len == sizeof r->buf)
        return -EMSGSIZE;
    for (;;) {
        ssize_t n = recv(r->fd, r->buf + r->len, sizeof r->buf - r->len, 0);
        if (n > 0) {
            r->len += (size_t)n;
            return 0;
        }
        if (n == 0)
            return -ECONNRESET;
        if (errno != EINTR)
            return -errno;
    }
}

/* The next line (without CRLF), NUL-terminated in place. */
static int line(struct rd *r, char **out)
{
    for (;;) {
        char *nl = memchr(r->buf + r->off, '\n', r->len - r->off);
        if (nl) {
            *out = r->buf + r->off;
            r->off = (size_t)(nl - r->buf) + 1;
            *nl = 0;
            if (nl > *out && nl[-1] == '\r')
                nl[-1] = 0;
            return 0;
        }
        int rc = fill(r);
        if (rc)
            return rc;
    }
}

/* The SSE state: body bytes gathered until an event's blank line. */
struct sse {
    char ev[65536];
    size_t len;
    double *t;
    int cap, n, n_prompt;
    bool done;
};

/* One event "data: X": a token when its first choice has text; [DONE] ends the stream. */
static void event(struct sse *s, const char *data)
{
    if (strncmp(data, "data: ", 6))
        return;
    data += 6;
    if (!strcmp(data, "[DONE]")) {
        s->done = true;
        return;
    }
    json_t *j = json_loads(data, 0, NULL);
    const char *text = json_string_value(
        json_object_get(json_array_get(json_object_get(j, "choices"), 0), "text"));
    if (text && *text && s->n < s->cap)
        s->t[s->n++] = bench_now();
    json_t *u = json_object_get(json_object_get(j, "usage"), "prompt_tokens");
    if (json_is_integer(u))
        s->n_prompt = (int)json_integer_value(u);
    json_decref(j);
}

/* Body bytes: split into events at each blank line. */
static int feed(struct sse *s, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s->len == sizeof s->ev - 1)
            return -EMSGSIZE;
        s->ev[s->len++] = p[i];
        if (s->len >= 2 && s->ev[s->len - 1] == '\n' && s->ev[s->len - 2] == '\n') {
            s->ev[s->len - 2] = 0;
            event(s, s->ev);
            s->len = 0;
        }
    }
    return 0;
}

int bench_http_completion(int fd, const char *url, const char *prompt, int n_predict,
                          double *t_submit, double *t, int cap, int *n, int *n_prompt)
{
    struct sockaddr_in sa;
    char hp[96];
    static struct rd r; /* one request per client process */
    static struct sse s;
    int rc = parse_url(url, &sa, hp, sizeof hp) ? -EINVAL : 0;
    /* cache_prompt false: llama-server would otherwise reuse the previous round's identical
     * prompt from its slot and skip the prefill every other server does (elm-httpd ignores it) */
    json_t *b =
        json_pack("{sssisisbs{sb}sb}", "prompt", prompt, "max_tokens", n_predict, "temperature", 0,
                  "stream", 1, "stream_options", "include_usage", 1, "cache_prompt", 0);
    char *body = b ? json_dumps(b, JSON_COMPACT) : NULL;
    json_decref(b);
    /* the request in one send(): a second small segment could wait on the first's ACK */
    size_t bl = body ? strlen(body) : 0;
    char *req = malloc(512 + bl);
    int hn = req ? snprintf(req, 512,
                            "POST /v1/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: "
                            "application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                            hp, bl)
                 : 0;
    if (req && body)
        memcpy(req + hn, body, bl);
    r = (struct rd){.fd = fd};
    s = (struct sse){.t = t, .cap = cap};
    *t_submit = bench_now();
    if (!rc && (!body || !req))
        rc = -ENOMEM;
    if (!rc && send(fd, req, (size_t)hn + bl, MSG_NOSIGNAL) != (ssize_t)((size_t)hn + bl))
        rc = -EPIPE;
    free(req);
    free(body);
    char *l;
    bool chunked = false;
    if (!rc && !(rc = line(&r, &l)) && strncmp(l, "HTTP/1.1 200", 12) &&
        strncmp(l, "HTTP/1.0 200", 12))
        rc = -EPROTO;
    while (!rc && !(rc = line(&r, &l)) && *l)
        if (!strncasecmp(l, "Transfer-Encoding:", 18) && strstr(l + 18, "chunked"))
            chunked = true;
    while (!rc && !s.done) {
        if (!chunked) { /* to the end of the connection */
            if (r.off == r.len && (rc = fill(&r)))
                break;
            rc = feed(&s, r.buf + r.off, r.len - r.off);
            r.off = r.len;
            continue;
        }
        if ((rc = line(&r, &l)))
            break;
        char *end;
        unsigned long size = strtoul(l, &end, 16);
        if (end == l || size > 1u << 24) {
            rc = -EPROTO;
            break;
        }
        if (size == 0)
            break;
        while (size && !rc) {
            if (r.off == r.len && (rc = fill(&r)))
                break;
            size_t take = r.len - r.off < size ? r.len - r.off : size;
            rc = feed(&s, r.buf + r.off, take);
            r.off += take;
            size -= take;
        }
        if (!rc)
            rc = line(&r, &l); /* the chunk's CRLF */
    }
    close(fd);
    *n = s.n;
    *n_prompt = s.n_prompt;
    return rc ? rc : s.done ? 0 : -EPROTO;
}

/* ---- the gateway's own cost -------------------------------------------------------------- */

/* The value of the exposition line that starts with name (a whole series, labels included). */
static bool metric(const char *text, const char *name, double *out)
{
    size_t n = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, name, n) && p[n] == ' ') {
            char *end;
            *out = strtod(p + n + 1, &end);
            return end != p + n + 1;
        }
    return false;
}

int bench_http_gateway_usage(const char *url, struct bench_usage *u)
{
    struct sockaddr_in sa;
    char hp[96];
    if (parse_url(url, &sa, hp, sizeof hp))
        return -EINVAL;
    int fd = bench_http_connect(url);
    if (fd < 0)
        return fd;
    char req[256];
    int hn = snprintf(req, sizeof req,
                      "GET /metrics HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", hp);
    static struct rd r; /* 64 KiB: off the stack */
    r = (struct rd){.fd = fd};
    int rc = send(fd, req, (size_t)hn, MSG_NOSIGNAL) == hn ? 0 : -EPIPE;
    while (!rc && (rc = fill(&r)) == 0)
        ;
    close(fd);
    if (rc != -ECONNRESET) /* the reply runs to the end of the connection */
        return rc ? rc : -EPROTO;
    r.buf[r.len < sizeof r.buf ? r.len : sizeof r.buf - 1] = 0;
    double cpu, vol, invol;
    if (strncmp(r.buf, "HTTP/1.1 200", 12) || !metric(r.buf, "process_cpu_seconds_total", &cpu) ||
        !metric(r.buf, "elm_http_context_switches_total{kind=\"voluntary\"}", &vol) ||
        !metric(r.buf, "elm_http_context_switches_total{kind=\"involuntary\"}", &invol))
        return -EPROTO;
    *u = (struct bench_usage){.cpu_s = cpu, .switches = vol + invol};
    return 0;
}
