/* httpd_main.c — elm-httpd: the HTTP front door to elmd (docs/httpd.md). Parses the command
 * line, reads the API key, starts the server (server.c) and waits for SIGINT/SIGTERM; signal
 * handlers only set a flag. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "elm/version.h"
#include "httpd/server.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void usage(FILE *f)
{
    fprintf(
        f, "usage: elm-httpd [OPTIONS]\n"
           "Serves elmd's model over HTTP: OpenAI-compatible /v1/models, /v1/completions;\n"
           "Ollama-compatible /api/generate, /api/tags, /api/ps, /api/show, /api/version;\n"
           "GET /health. A client of elmd like any other (libelmclient); elmd itself never\n"
           "listens on a network.\n\n"
           "  --listen ADDR:PORT     where to listen (default 127.0.0.1:8080; [::1]:PORT for\n"
           "                         IPv6; port 0: any free port, printed when ready)\n"
           "  --runtime-dir DIR      elmd's runtime directory (default: $ELM_RUNTIME_DIR, else\n"
           "                         elmctl's default)\n"
           "  --api-key-file FILE    require \"Authorization: Bearer KEY\" (KEY: the file's first\n"
           "                         line) on every endpoint but /health\n"
           "  --cors ORIGIN          allow browsers on ORIGIN (or *) to call; default: CORS off\n"
           "  --max-body BYTES       largest request body (default 1048576; 413 above)\n"
           "  --max-header BYTES     memory for a request's line and headers (default 32768)\n"
           "  --max-connections N    connections served at once (default 64)\n"
           "  --idle-timeout S       close a connection silent this long (default 30)\n"
           "  --version, --help\n"
           "Once listening it prints \"elm-httpd: listening on http://ADDR:PORT\" on stdout.\n");
}

/* A positive number option, or 0 after a message. */
static unsigned long long number(const char *opt, const char *s, unsigned long long max)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v == 0 || v > max) {
        fprintf(stderr, "elm-httpd: %s expects a number from 1 to %llu\n", opt, max);
        return 0;
    }
    return v;
}

/* The key: the file's first line without its newline. */
static int read_key(struct httpd *h, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "elm-httpd: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *ok = fgets(h->key, sizeof h->key, f);
    fclose(f);
    h->key_len = ok ? strcspn(h->key, "\r\n") : 0;
    h->key[h->key_len] = 0;
    if (!h->key_len) {
        fprintf(stderr, "elm-httpd: %s: no key on its first line\n", path);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static struct httpd h;
    h.o = (struct httpd_opts){.listen = "127.0.0.1:8080",
                              .max_body = 1u << 20,
                              .max_header = 32u << 10,
                              .max_conns = 64,
                              .idle_s = 30};
    static const struct option opts[] = {{"listen", required_argument, 0, 'l'},
                                         {"runtime-dir", required_argument, 0, 'r'},
                                         {"api-key-file", required_argument, 0, 'k'},
                                         {"cors", required_argument, 0, 'c'},
                                         {"max-body", required_argument, 0, 'b'},
                                         {"max-header", required_argument, 0, 'H'},
                                         {"max-connections", required_argument, 0, 'n'},
                                         {"idle-timeout", required_argument, 0, 't'},
                                         {"version", no_argument, 0, 'V'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int c;
    unsigned long long v = 1;
    while (v && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            h.o.listen = optarg;
            break;
        case 'r':
            h.o.runtime_dir = optarg;
            break;
        case 'k':
            h.o.key_file = optarg;
            break;
        case 'c':
            h.o.cors = optarg;
            break;
        case 'b':
            h.o.max_body = v = number("--max-body", optarg, 32u << 20);
            break;
        case 'H':
            h.o.max_header = v = number("--max-header", optarg, 1u << 20);
            break;
        case 'n':
            h.o.max_conns = (unsigned)(v = number("--max-connections", optarg, 4096));
            break;
        case 't':
            h.o.idle_s = (unsigned)(v = number("--idle-timeout", optarg, 86400));
            break;
        case 'V':
            printf("elm-httpd %s\n", ELM_VERSION_STRING);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!v)
        return 2;
    if (optind < argc) {
        fprintf(stderr, "elm-httpd: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!h.o.runtime_dir) {
        const char *env = getenv("ELM_RUNTIME_DIR");
        h.o.runtime_dir = env && *env ? env : NULL;
    }
    if (h.o.key_file && read_key(&h, h.o.key_file))
        return 1;

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client gone mid-reply is an error return, not a death */
    /* Blocked here, and so in the server's threads, which inherit the mask: only the main
     * thread takes the signals, in sigsuspend, where a flag cannot be missed. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);

    if (httpd_start(&h))
        return 1;
    const char *colon = strrchr(h.o.listen, ':');
    printf("elm-httpd: listening on http://%.*s:%u\n", (int)(colon - h.o.listen), h.o.listen,
           (unsigned)h.port);
    fflush(stdout);
    while (!stop)
        sigsuspend(&old);
    httpd_stop(&h);
    return 0;
}
