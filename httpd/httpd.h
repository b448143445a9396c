/* httpd.h — elm-httpd's shared types: its options, the process's state, and the request a
 * handler sees (server.c fills it; reply.c and the api_*.c files use it). */
#ifndef ELM_HTTPD_HTTPD_H
#define ELM_HTTPD_HTTPD_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "httpd/gateway.h"

struct httpd_opts {
    const char *listen;      /* "ADDR:PORT" (IPv4) or "[ADDR]:PORT"; default 127.0.0.1:8080 */
    const char *runtime_dir; /* elmd's; NULL: libelmclient's default */
    const char *cors;        /* the origin allowed to call from a browser; NULL: CORS off */
    const char *key_file;    /* --api-key-file; NULL: no key asked */
    size_t max_body;         /* bytes of a request body (413 above) */
    size_t max_header;       /* bytes of a request's line and headers (431 above) */
    unsigned max_conns;      /* connections served at once (more are refused) */
    unsigned idle_s;         /* a connection silent this long is closed */
};

struct httpd {
    struct httpd_opts o;
    char key[512]; /* the API key; key_len 0: none */
    size_t key_len;
    struct gw gw;
    struct MHD_Daemon *mhd;
    uint16_t port; /* the port bound (the one asked, or the kernel's choice for 0) */
    bool loopback; /* listening on 127.0.0.0/8 or ::1: only local Host names are served */
};

/* Which API an endpoint belongs to: its errors take that API's shape. */
enum api { API_PLAIN, API_OPENAI, API_OLLAMA };

struct hreq {
    struct httpd *h;
    const char *endpoint; /* the route's path ("other" when none): the metrics' label */
    struct MHD_Connection *conn;
    enum api api;
    const char *body; /* the request body, NUL-terminated (not counted in body_len) */
    size_t body_len;
    int fd; /* the client's socket: a generation watches it for a hang-up */
};

#endif
