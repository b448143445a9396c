/* server.c — elm-httpd's HTTP server on libmicrohttpd (server.h).
 *
 * Why libmicrohttpd: a small C library kept in Debian for years (libmicrohttpd-dev) that parses
 * HTTP/1.1 itself (keep-alive, chunked bodies and replies, HEAD) and has the limits a local
 * gateway needs as options: a per-connection memory pool that bounds the request line and
 * headers, a connection cap, an idle timeout. Its thread-per-connection mode fits libelmclient,
 * whose calls block: a generation waits on its session in the connection's own thread, and a
 * slow or silent client holds only its own thread, for at most the idle timeout, which counts
 * only the client's time: it is lifted while the gateway waits on elmd (conn_wait_begin).
 *
 * A request goes through, in order: the route table (404), a Host that is not this machine's
 * when listening on loopback (403), the method (405), CORS preflight, the API key (401), the
 * declared body size (413), then the body is collected (a chunked body that grows past the limit
 * closes the connection) and the route's handler runs.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/trace.h"
#include "httpd/api.h"
#include "httpd/metrics.h"
#include "httpd/reply.h"
#include "httpd/server.h"

/* ---------------------------------------------------------------------------------------------
 * Routes
 */

static enum MHD_Result health(struct hreq *r);
static enum MHD_Result metrics(struct hreq *r);

struct route {
    const char *path;
    const char *method; /* "GET" (HEAD too) or "POST" */
    enum api api;
    enum MHD_Result (*fn)(struct hreq *r);
};

static const struct route routes[] = {
    {"/", "GET", API_PLAIN, page_chat},
    {"/health", "GET", API_PLAIN, health},
    {"/metrics", "GET", API_PLAIN, metrics},
    {"/v1/models", "GET", API_OPENAI, openai_models},
    {"/v1/completions", "POST", API_OPENAI, openai_completions},
    {"/v1/chat/completions", "POST", API_OPENAI, openai_chat},
    {"/v1/embeddings", "POST", API_OPENAI, openai_embeddings},
    {"/api/generate", "POST", API_OLLAMA, ollama_generate},
    {"/api/chat", "POST", API_OLLAMA, ollama_chat},
    {"/api/embed", "POST", API_OLLAMA, ollama_embed},
    {"/api/embeddings", "POST", API_OLLAMA, ollama_embeddings},
    {"/api/tags", "GET", API_OLLAMA, ollama_tags},
    {"/api/ps", "GET", API_OLLAMA, ollama_ps},
    {"/api/show", "POST", API_OLLAMA, ollama_show},
    {"/api/version", "GET", API_OLLAMA, ollama_version},
};

/* Exact paths only: nothing maps a URL onto the file system, so "/../x" or "/%2e%2e/" is just
 * a path that is not in the table. */
static const struct route *find_route(const char *url)
{
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++)
        if (!strcmp(url, routes[i].path))
            return &routes[i];
    return NULL;
}

static bool method_ok(const struct route *rt, const char *method)
{
    return !strcmp(method, rt->method) || (!strcmp(rt->method, "GET") && !strcmp(method, "HEAD"));
}

/* ---------------------------------------------------------------------------------------------
 * /health
 */

static enum MHD_Result health(struct hreq *r)
{
    struct elm_daemon_status *st = malloc(sizeof *st);
    if (!st)
        return MHD_NO;
    int rc = gw_status(&r->h->gw, st);
    const char *state = rc == ELM_EDAEMON   ? "elmd is not running"
                        : rc                ? elm_strerror(rc)
                        : st->loading       ? "loading"
                        : !st->model_loaded ? "no model is loaded"
                                            : "ok";
    bool ok = !strcmp(state, "ok");
    free(st);
    return reply_json(r, ok ? 200 : 503, json_pack("{ss}", "status", state));
}

/* GET /metrics: the gateway's counters and elmd's gauges, in Prometheus' text format. */
static enum MHD_Result metrics(struct hreq *r)
{
    struct elm_daemon_status *st = malloc(sizeof *st);
    if (!st)
        return MHD_NO;
    char id[256] = "";
    bool up = gw_status(&r->h->gw, st) == 0;
    if (up)
        gw_model_id(st, id, sizeof id);
    char *text = metrics_render(up ? st : NULL, id, gw_pool_ready(&r->h->gw.pool));
    free(st);
    if (!text)
        return MHD_NO;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    return reply_queue(r, 200, resp);
}

/* ---------------------------------------------------------------------------------------------
 * The access handler
 */

struct conn_state {
    const struct route *rt;
    char *body;
    size_t len, cap;
};

/* Whether the request carries "Authorization: Bearer <key>". The comparison's time depends only
 * on the key's length, never on how much of it a guess got right. */
static bool authorized(const struct httpd *h, struct MHD_Connection *conn)
{
    if (!h->key_len)
        return true;
    const char *a = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    if (!a || strncasecmp(a, "Bearer ", 7))
        return false;
    a += 7;
    size_t n = strlen(a);
    unsigned char diff = n != h->key_len;
    for (size_t i = 0; i < h->key_len; i++)
        diff |= (unsigned char)h->key[i] ^ (unsigned char)(i < n ? a[i] : 0);
    return diff == 0;
}

/* Whether the Host header names this machine (localhost, 127.x.y.z, [::1], any port). A page on
 * another site that rebinds its DNS name to 127.0.0.1 reaches a loopback gateway under its own
 * Host: such requests are refused. No Host (HTTP/1.0) is local by definition. */
static bool local_host(struct MHD_Connection *conn)
{
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
    if (!h)
        return true;
    size_t n = strlen(h);
    if (h[0] == '[') /* [v6]:port */
        return !strncmp(h, "[::1]", 5) && (h[5] == 0 || h[5] == ':');
    const char *colon = strchr(h, ':');
    if (colon)
        n = (size_t)(colon - h);
    if (n == 9 && !strncasecmp(h, "localhost", 9))
        return true;
    char ip[16];
    struct in_addr a;
    if (n >= sizeof ip)
        return false;
    memcpy(ip, h, n);
    ip[n] = 0;
    return inet_pton(AF_INET, ip, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

static enum MHD_Result preflight(struct hreq *r, const struct route *rt)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Access-Control-Allow-Methods",
                            !strcmp(rt->method, "GET") ? "GET, HEAD, OPTIONS" : "POST, OPTIONS");
    MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Authorization, Content-Type");
    MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    return reply_queue(r, 204, resp);
}

/* The checks made once the headers are in, before any body is read. MHD_YES with *done false:
 * go on and read the body. */
static enum MHD_Result on_headers(struct hreq *r, const char *url, const char *method,
                                  struct conn_state *cs, bool *done)
{
    *done = true;
    const struct route *rt = find_route(url);
    if (!rt) {
        r->api = strncmp(url, "/v1/", 4) ? API_OLLAMA : API_OPENAI;
        return reply_error(r, 404, NULL, "no such endpoint: %s %s", method, url);
    }
    r->api = rt->api;
    r->endpoint = rt->path;
    if (r->h->loopback && !local_host(r->conn))
        return reply_error(r, 403, NULL, "this gateway serves only this machine (Host: localhost)");
    if (!strcmp(method, "OPTIONS") && r->h->o.cors)
        return preflight(r, rt);
    if (!method_ok(rt, method))
        return reply_error(r, 405, NULL, "%s takes %s, not %s", rt->path, rt->method, method);
    /* /health and the page itself hold nothing to protect; the page's own requests need it */
    if (rt->fn != health && rt->fn != page_chat && !authorized(r->h, r->conn))
        return reply_error(r, 401, NULL, "a valid API key is required (Authorization: Bearer)");
    const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Length");
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno || end == cl || *end || n > r->h->o.max_body)
            return reply_error(r, 413, NULL, "the body is larger than %zu bytes", r->h->o.max_body);
    }
    cs->rt = rt;
    *done = false;
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    struct httpd *h = cls;
    struct hreq r = {.h = h, .conn = conn, .api = API_PLAIN, .fd = -1};
    struct conn_state *cs = *con_cls;
    if (!cs) {
        elm_trace("h_headers");
        cs = calloc(1, sizeof *cs);
        if (!cs)
            return MHD_NO;
        *con_cls = cs;
        bool done;
        enum MHD_Result res = on_headers(&r, url, method, cs, &done);
        if (done)
            cs->rt = NULL;
        return res;
    }
    if (!cs->rt)
        return MHD_YES; /* a reply was queued at the headers: the body is discarded */
    r.api = cs->rt->api;
    r.endpoint = cs->rt->path;
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        if (n > h->o.max_body - cs->len)
            return MHD_NO; /* a chunked body past the limit: close the connection */
        if (cs->len + n + 1 > cs->cap) {
            size_t cap = cs->len + n + 1 > cs->cap * 2 ? cs->len + n + 1 : cs->cap * 2;
            char *b = realloc(cs->body, cap);
            if (!b)
                return MHD_NO;
            cs->body = b;
            cs->cap = cap;
        }
        memcpy(cs->body + cs->len, upload_data, n);
        cs->len += n;
        *upload_data_size = 0;
        return MHD_YES;
    }
    elm_trace("h_body");
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    r.fd = ci ? ci->connect_fd : -1;
    r.body = cs->body ? cs->body : "";
    r.body_len = cs->len;
    if (cs->body)
        cs->body[cs->len] = 0;
    const struct route *rt = cs->rt;
    cs->rt = NULL;
    conn_wait_begin(conn); /* the handler may wait on elmd (a reply not streamed) */
    enum MHD_Result res = rt->fn(&r);
    conn_wait_end(conn, h->o.idle_s);
    return res;
}

/* The request is over (replied, or the connection dropped): its collected body goes. */
static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)conn, (void)toe;
    struct conn_state *cs = *con_cls;
    if (cs)
        free(cs->body);
    free(cs);
    *con_cls = NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Start and stop
 */

#define SEND_BUFFER (64 << 10) /* a connection's SO_SNDBUF (the kernel doubles it) */

/* "ADDR:PORT" or "[ADDR6]:PORT" into *ss. */
static int parse_listen(const char *s, struct sockaddr_storage *ss, bool *v6, bool *loopback)
{
    char host[128];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof host)
        return -EINVAL;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || port > 65535)
        return -EINVAL;
    memset(ss, 0, sizeof *ss);
    size_t hl = strlen(host);
    *v6 = hl >= 2 && host[0] == '[' && host[hl - 1] == ']';
    if (*v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        host[hl - 1] = 0;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) != 1)
            return -EINVAL;
        *loopback = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
        return 0;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
        return -EINVAL;
    *loopback = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    return 0;
}

int httpd_start(struct httpd *h)
{
    struct sockaddr_storage ss;
    bool v6;
    if (parse_listen(h->o.listen, &ss, &v6, &h->loopback)) {
        fprintf(stderr, "elm-httpd: --listen %s: expected ADDR:PORT or [ADDR6]:PORT\n",
                h->o.listen);
        return -EINVAL;
    }
    gw_init(&h->gw, h->o.runtime_dir, (uint32_t)h->o.max_body);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    /* clang-format off */
    h->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h,
                              MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)h->o.max_conns,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)h->o.idle_s,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, h->o.max_header,
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                              /* HTTP/1.1 without Host, spaces in the URL: 400 */
                              MHD_OPTION_STRICT_FOR_CLIENT, (int)1,
                              MHD_OPTION_END);
    /* clang-format on */
    if (!h->mhd) {
        int e = errno ? errno : EADDRINUSE;
        fprintf(stderr, "elm-httpd: cannot listen on %s: %s\n", h->o.listen, strerror(e));
        gw_fini(&h->gw);
        return -e;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : 0;
    /* A bounded send buffer for every connection (accepted sockets inherit the listener's):
     * left to the kernel's autotuning it grows to megabytes, which hold a whole stream, so a
     * client that never reads would keep its request generating to the end of the context
     * instead of stalling the writes, which the idle timeout then ends (and with it the
     * request). A stream's events are small: this is many of them. */
    const union MHD_DaemonInfo *li = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_LISTEN_FD);
    int sndbuf = SEND_BUFFER;
    if (li)
        setsockopt(li->listen_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    return 0;
}

void httpd_stop(struct httpd *h)
{
    if (h->mhd)
        MHD_stop_daemon(h->mhd);
    h->mhd = NULL;
    gw_fini(&h->gw);
}
