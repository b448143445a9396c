/* bench_http.h — the HTTP side of `elm-bench serve --http` (bench_http.c): elm-httpd started
 * beside elmd, and one streamed OpenAI completion read the way an HTTP client reads it, each
 * token's arrival timestamped. */
#ifndef ELM_BENCH_HTTP_H
#define ELM_BENCH_HTTP_H

#include <stdbool.h>
#include <sys/types.h>

/* An elm-httpd elm-bench started: its pid and base URL ("http://127.0.0.1:PORT"). */
struct bench_gateway {
    pid_t pid;
    int out_fd; /* its stdout, kept open so it never writes into a closed pipe */
    char url[128];
};

/* Starts elm-httpd (beside elm-bench in the build tree, or in its bin directory) on a free
 * loopback port for the daemon in runtime_dir and waits until it listens. 0 or -errno. */
int bench_gateway_start(const char *runtime_dir, int max_conns, struct bench_gateway *g);
/* SIGTERM, then waits for it. Also stops a server bench_llama_server_start() started. */
void bench_gateway_stop(struct bench_gateway *g);

/* Starts llama-server (exe) on model on a free loopback port with threads threads and
 * n_parallel slots of ctx positions each, and waits until its /health answers 200
 * (bench_llama.c). g->out_fd is -1. 0 or -errno. */
int bench_llama_server_start(const char *exe, const char *model, int threads, int n_parallel,
                             int ctx, struct bench_gateway *g);

/* A TCP connection to url's host:port ("http://HOST:PORT", IPv4). The socket or -errno. */
int bench_http_connect(const char *url);
/* On fd (connected to url), POSTs /v1/completions {prompt, max_tokens n_predict, temperature
 * 0, stream, stream_options.include_usage} and reads the server-sent events: *t_submit is when
 * the request was sent, t[i] when the i-th event with text arrived (at most cap), *n their
 * count, *n_prompt the usage chunk's prompt_tokens (0 without one). Returns 0 once [DONE]
 * came, else -errno (-EPROTO: not a 200 or not SSE). Closes fd. */
int bench_http_completion(int fd, const char *url, const char *prompt, int n_predict,
                          double *t_submit, double *t, int cap, int *n, int *n_prompt);

/* CPU time and context switches (voluntary + involuntary) a process has spent so far. */
struct bench_usage {
    double cpu_s;
    double switches;
};
/* The gateway's own (its /metrics: getrusage, so connection threads that ended count too); the
 * scrape itself costs it one short request. 0 or -errno (-EPROTO: not elm-httpd). */
int bench_http_gateway_usage(const char *url, struct bench_usage *u);

#endif
