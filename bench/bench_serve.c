/* bench_serve.c — `elm-bench serve`: what the daemon delivers to N programs at once.
 *
 * For each client count N (default 1, 2, 4, 8, 16) N client processes (fork; each links
 * libelmclient and connects on its own) open a session, wait at a barrier, and are released
 * together: each submits the same prompt (greedy, n_predict G) and timestamps every token event
 * with CLOCK_MONOTONIC, which all processes share. From one round of N clients:
 *   - aggregate decode tokens/s: the tokens every client received after its own first token,
 *     over the window from the earliest first token to the latest last token (prefill and
 *     session set-up are outside it);
 *   - time to first token (from each client's submit) p50 and p99 over the N clients;
 *   - inter-token latency p50 and p99 over every gap between consecutive tokens of all clients.
 * A repetition runs one round of every N in turn, so a noisy neighbour hits every N alike, and
 * the ratios (aggregate at N / at the first N, ITL p99 at N / at the first N) are taken within
 * each repetition; each cell is the median over repetitions, after one warm-up repetition
 * (none on a running daemon, --runtime-dir, with nothing of elm-bench's own beside it: that
 * daemon is as warm as its users keep it, and scripts/bench-wait.sh spends the time on rounds).
 * A second table, serve-scaling, repeats per client count the aggregate, ITL p99 and both
 * ratios, and for 8 clients over 1 says whether they meet issue 18's batching targets
 * (aggregate >= 4x with AVX-512 kernels, >= 3x otherwise; ITL p99 <= 2.5x).
 *
 * elm-bench starts its own elmd from the build tree (private runtime directory, a config file
 * of its own so the user's elmd.conf does not leak in) with max_sessions = the largest N, or
 * uses a running daemon with --runtime-dir DIR.
 *
 * --http also starts elm-httpd on that daemon, and each round of N clients runs twice in a row:
 * through libelmclient and through HTTP (each client its own connection, a streamed
 * /v1/completions, bench_http.c), taking turns at going first, so the two share the machine's
 * mood and their ratio within a repetition is the gateway's overhead; a closing table gives the
 * median of those pairs with their range (overhead_table). As throughput pairs differ by a few
 * per cent from noise alone, every round also reads what it cost per token received, in CPU
 * time and context switches: the gateway's (its /metrics: getrusage), the client processes'
 * (RUSAGE_CHILDREN) and elmd's (its CPU clock, its threads' /proc status); the overhead table
 * gives the HTTP round's minus the libelmclient round's, and serve-cost each round's own. On a
 * machine whose cores elmd's compute threads fill, each such microsecond is taken from them.
 * --vs-llama-server adds a third round
 * against llama-server's /v1/completions: a running one at a URL (its own model: load the same file
 * there), or the program at a path, which elm-bench starts on each model file with elmd's settings
 * (bench_llama.c).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/bench_http.h"
#include "bench/bench_svg.h"
#include "elm/client.h"

#define MAX_MODELS       4
#define MAX_CLIENTS      60 /* elmd's max_sessions limit */
#define MAX_NS           8  /* client counts in one sweep */
#define MAX_REPS         1000
#define MAX_CONF         16
#define EVENT_TIMEOUT_MS 120000 /* a client that hears nothing this long gives up */

/* Short, so that the clients' prompts (evaluated together when they are released) take little of
 * the window next to their decode: 26 tokens with the synthetic models' byte-level vocabulary. */
static const char default_prompt[] = "Once upon a time";

struct serve_cfg {
    const char *models[MAX_MODELS]; /* GGUF paths; none with --runtime-dir: the loaded model */
    int n_models;
    int ns[MAX_NS], n_ns; /* client counts */
    int n_predict;        /* G */
    int ctx;              /* context per session of the self-started daemon */
    const char *prompt;
    const char *runtime_dir;    /* a running daemon, or NULL */
    const char *conf[MAX_CONF]; /* extra KEY=VALUE lines for the self-started daemon */
    int n_conf;
    bool http;             /* also through elm-httpd */
    const char *llama_url; /* also through this llama-server, or NULL */
    const char *llama_exe; /* also through a llama-server started from this program, or NULL */
};

/* The ways a round's clients reach the model. */
enum via { VIA_ELM, VIA_HTTP, VIA_LLAMA, N_VIA };
static const char *const via_name[N_VIA] = {"libelmclient", "elm-httpd", "llama-server"};

/* One client's record in the shared result area; written by the client, read by the parent
 * after the client has exited. */
struct slot {
    int err;         /* 0 or the failing call's code */
    int stage;       /* where it failed: 1 connect, 2 open, 3 submit, 4 events */
    int n;           /* token timestamps in t[] */
    int n_prompt;    /* prompt tokens, as the daemon counted them (DONE) */
    double t_submit; /* seconds, CLOCK_MONOTONIC */
    double t[];      /* [n_predict] token arrival times */
};

/* Who pays for a round: the HTTP gateway, the bench's client processes, the daemon. */
enum party { P_GATEWAY, P_CLIENTS, P_ELMD, N_PARTY };

/* Where a round's costs are read: the gateway's /metrics (NULL: none runs), elmd's pid (0:
 * unknown). */
struct meter {
    const char *gw_url;
    pid_t elmd;
};

/* Statistics of one round of N clients. */
struct round {
    double agg;     /* aggregate decode tokens/s */
    double tokens;  /* tokens received by all clients */
    double prompt;  /* prompt tokens of one client (the largest) */
    double ttft[2]; /* p50, p99 ms */
    double itl[2];  /* p50, p99 ms */
    /* What the round cost each party per token received: CPU microseconds and context
     * switches of the gateway (while one runs), of the round's client processes, of elmd. */
    double cpu[N_PARTY], sw[N_PARTY];
};

static size_t slot_size(const struct serve_cfg *c)
{
    return (sizeof(struct slot) + (size_t)c->n_predict * sizeof(double) + 63) & ~(size_t)63;
}

/* ---- one client process --------------------------------------------------------------------- */

/* One client through HTTP at url: connected before the barrier, its request after. */
static int http_client_main(const struct serve_cfg *c, const char *url, int ready_fd, int go_fd,
                            struct slot *s)
{
    s->stage = 1;
    int fd = bench_http_connect(url), rc = fd < 0 ? fd : 0;
    char b = rc ? 'e' : 'r', g;
    if (write(ready_fd, &b, 1) != 1)
        rc = rc ? rc : -EPIPE;
    close(ready_fd);
    while (read(go_fd, &g, 1) < 0 && errno == EINTR)
        ;
    if (!rc) {
        s->stage = 4;
        rc = bench_http_completion(fd, url, c->prompt, c->n_predict, &s->t_submit, s->t,
                                   c->n_predict, &s->n, &s->n_prompt);
    } else if (fd >= 0)
        close(fd);
    s->err = rc;
    return rc ? 1 : 0;
}

static int client_main(const struct serve_cfg *c, const char *dir, int ready_fd, int go_fd,
                       struct slot *s)
{
    elm_client *cl = NULL;
    elm_session *se = NULL;
    int rc = elm_client_connect(dir, &cl);
    s->stage = 1;
    /* a session may still be closing from the previous round (the gateway's, when it went
     * first: its thread closes them one by one, slowly on a loaded machine): EBUSY is worth
     * retries, for up to 30 s, before the barrier so outside every timing */
    if (!rc) {
        s->stage = 2;
        for (int tries = 1; (rc = elm_session_open(cl, &se)) == ELM_EBUSY && tries < 1500; tries++)
            nanosleep(&(struct timespec){0, 20 * 1000000}, NULL);
    }
    char b = rc ? 'e' : 'r', g;
    if (write(ready_fd, &b, 1) != 1)
        rc = rc ? rc : -EPIPE;
    close(ready_fd);
    while (read(go_fd, &g, 1) < 0 && errno == EINTR) /* EOF: the parent released everyone */
        ;
    if (!rc) {
        struct elm_request r;
        elm_request_init(&r);
        r.prompt = c->prompt;
        r.n_predict = c->n_predict;
        r.temp = 0;
        s->stage = 3;
        s->t_submit = bench_now();
        rc = elm_session_submit(se, &r);
        s->stage = 4;
        for (bool done = false; !rc && !done;) {
            struct elm_event ev;
            rc = elm_session_next(se, &ev, EVENT_TIMEOUT_MS);
            if (rc == -EINTR) {
                rc = 0;
                continue;
            }
            if (rc)
                break;
            if (ev.type == ELM_EVENT_TOKEN) {
                if (s->n < c->n_predict)
                    s->t[s->n++] = bench_now();
            } else if (ev.type == ELM_EVENT_DONE) {
                s->n_prompt = (int)ev.n_prompt;
                done = true;
            } else if (ev.type == ELM_EVENT_ERROR) {
                rc = ev.error ? ev.error : ELM_EPROTO;
            }
        }
    }
    s->err = rc;
    elm_session_close(&se);
    elm_client_close(&cl);
    return rc ? 1 : 0;
}

/* ---- one round: N clients released together ------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int summarise(const struct serve_cfg *c, uint8_t *area, int n, struct round *out)
{
    size_t ss = slot_size(c), n_gaps = 0;
    double *ttft = malloc((size_t)n * sizeof *ttft);
    double *gaps = malloc((size_t)n * (size_t)c->n_predict * sizeof *gaps);
    if (!ttft || !gaps) {
        free(ttft);
        free(gaps);
        return -ENOMEM;
    }
    double first = INFINITY, last = -INFINITY, decoded = 0, tokens = 0, prompt = 0;
    for (int i = 0; i < n; i++) {
        const struct slot *s = (const struct slot *)(area + ss * (size_t)i);
        ttft[i] = (s->t[0] - s->t_submit) * 1e3;
        first = s->t[0] < first ? s->t[0] : first;
        last = s->t[s->n - 1] > last ? s->t[s->n - 1] : last;
        decoded += s->n - 1;
        tokens += s->n;
        prompt = s->n_prompt > prompt ? s->n_prompt : prompt;
        for (int k = 1; k < s->n; k++)
            gaps[n_gaps++] = (s->t[k] - s->t[k - 1]) * 1e3;
    }
    qsort(ttft, (size_t)n, sizeof *ttft, cmp_double);
    qsort(gaps, n_gaps, sizeof *gaps, cmp_double);
    *out = (struct round){
        /* NAN: the span cannot hold that many tokens (bench_span_resolved): excluded */
        .agg = last > first && bench_span_resolved(last - first, decoded) ? decoded / (last - first)
                                                                          : NAN,
        .tokens = tokens,
        .prompt = prompt,
        .ttft = {bench_percentile(ttft, n, 50), bench_percentile(ttft, n, 99)},
        .itl = {bench_percentile(gaps, (int)n_gaps, 50), bench_percentile(gaps, (int)n_gaps, 99)},
    };
    free(ttft);
    free(gaps);
    return 0;
}

/* ---- what a round costs ---------------------------------------------------------------------- */

/* A process's CPU time (its CPU clock: exact, threads that ended included) and its live threads'
 * context switches (/proc/PID/task/N/status: elmd's threads live as long as it does). */
static int proc_usage(pid_t pid, struct bench_usage *u)
{
    clockid_t clk;
    struct timespec ts;
    if (clock_getcpuclockid(pid, &clk) || clock_gettime(clk, &ts))
        return -ESRCH;
    *u = (struct bench_usage){.cpu_s = (double)ts.tv_sec + ts.tv_nsec * 1e-9};
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/task", (long)pid);
    DIR *d = opendir(path);
    if (!d)
        return -errno;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' || strlen(e->d_name) > 16)
            continue;
        char p[96], l[128];
        snprintf(p, sizeof p, "%s/%s/status", path, e->d_name);
        FILE *f = fopen(p, "r");
        long v;
        while (f && fgets(l, sizeof l, f))
            if (sscanf(l, "voluntary_ctxt_switches: %ld", &v) == 1 ||
                sscanf(l, "nonvoluntary_ctxt_switches: %ld", &v) == 1)
                u->switches += (double)v;
        if (f)
            fclose(f);
    }
    closedir(d);
    return 0;
}

/* The three parties' usage now (a party that cannot be read: NAN). The children's is of the
 * client processes waited for so far (the daemons elm-bench starts are waited for only when
 * they stop, and elmd's starter before any round). */
static void usage_now(const struct meter *m, struct bench_usage u[N_PARTY])
{
    for (int p = 0; p < N_PARTY; p++)
        u[p] = (struct bench_usage){NAN, NAN};
    if (m->gw_url && bench_http_gateway_usage(m->gw_url, &u[P_GATEWAY]))
        u[P_GATEWAY] = (struct bench_usage){NAN, NAN};
    struct rusage ru;
    if (getrusage(RUSAGE_CHILDREN, &ru) == 0)
        u[P_CLIENTS] = (struct bench_usage){(double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                                                (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6,
                                            (double)(ru.ru_nvcsw + ru.ru_nivcsw)};
    if (m->elmd > 0 && proc_usage(m->elmd, &u[P_ELMD]))
        u[P_ELMD] = (struct bench_usage){NAN, NAN};
}

static const char *stage_name(int stage)
{
    static const char *const names[] = {"?", "connect", "open a session", "submit", "read events"};
    return stage >= 1 && stage <= 4 ? names[stage] : names[0];
}

/* url: the round goes through HTTP there; NULL: through libelmclient to the daemon in dir. */
static int run_round(const struct serve_cfg *c, const char *dir, const char *url,
                     const struct meter *m, uint8_t *area, int n, struct round *out)
{
    const size_t ss = slot_size(c);
    struct bench_usage u0[N_PARTY], u1[N_PARTY];
    usage_now(m, u0);
    memset(area, 0, ss * (size_t)n);
    int ready[2], go[2];
    if (pipe(ready))
        return -errno;
    if (pipe(go)) {
        int e = errno;
        close(ready[0]);
        close(ready[1]);
        return -e;
    }
    fflush(NULL);
    pid_t pids[MAX_CLIENTS];
    int started = 0;
    for (; started < n; started++) {
        pid_t pid = fork();
        if (pid < 0)
            break;
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            close(ready[0]);
            close(go[1]);
            struct slot *s = (struct slot *)(area + ss * (size_t)started);
            _exit(url ? http_client_main(c, url, ready[1], go[0], s)
                      : client_main(c, dir, ready[1], go[0], s));
        }
        pids[started] = pid;
    }
    close(ready[1]);
    close(go[0]);
    /* every client says it has its session (or failed) before any is released */
    char b;
    for (int got = 0; got < started;) {
        ssize_t r = read(ready[0], &b, 1);
        if (r == 1)
            got++;
        else if (r == 0 || errno != EINTR)
            break; /* every client is gone */
    }
    close(ready[0]);
    close(go[1]); /* the release: every client's read() sees EOF at once */
    int rc = started < n ? -EAGAIN : 0;
    for (int i = 0; i < started; i++) {
        int st;
        while (waitpid(pids[i], &st, 0) < 0 && errno == EINTR)
            ;
        const struct slot *s = (const struct slot *)(area + ss * (size_t)i);
        if (!rc && (s->err || !WIFEXITED(st) || WEXITSTATUS(st))) {
            rc = s->err ? s->err : -ECHILD;
            fprintf(stderr, "\nelm-bench serve: client %d of %d%s%s could not %s: %s%s\n", i + 1, n,
                    url ? " of " : "", url ? url : "", stage_name(s->stage), elm_strerror(rc),
                    rc == ELM_EBUSY ? " (the daemon has no room: raise max_sessions or its KV "
                                      "pool, e.g. --elmd-conf kv_pool_tokens=N)"
                                    : "");
        } else if (!rc && s->n < 2) {
            rc = -ENODATA;
            fprintf(stderr,
                    "\nelm-bench serve: client %d received %d token(s): the model ended the text "
                    "at once; aggregate decode needs at least 2 per client\n",
                    i + 1, s->n);
        }
    }
    usage_now(m, u1);
    if (rc || (rc = summarise(c, area, n, out)))
        return rc;
    for (int p = 0; p < N_PARTY; p++) {
        out->cpu[p] = (u1[p].cpu_s - u0[p].cpu_s) * 1e6 / out->tokens;
        out->sw[p] = (u1[p].switches - u0[p].switches) / out->tokens;
    }
    return 0;
}

/* ---- the daemon ------------------------------------------------------------------------------ */

struct daemon {
    char base[64]; /* mkdtemp directory holding elmd.conf and run/ */
    char dir[96];  /* runtime directory */
    bool ours;     /* started here: stop it at the end */
};

/* elmd next to elm-bench in the build tree (bench/../daemon/elmd), or in the same bin dir. */
static void find_elmd(char *out, size_t cap)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = 0;
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = 0;
    snprintf(out, cap, "%.3000s/../daemon/elmd", self);
    if (access(out, X_OK) != 0)
        snprintf(out, cap, "%.3000s/elmd", self);
}

static int daemon_start(const struct bench_opts *o, const struct serve_cfg *c, const char *model,
                        struct daemon *d)
{
    char elmd[PATH_MAX], conf[128];
    find_elmd(elmd, sizeof elmd);
    snprintf(d->base, sizeof d->base, "/tmp/elm-bench-serve-XXXXXX");
    if (access(elmd, X_OK) != 0 || !mkdtemp(d->base)) {
        fprintf(stderr, "elm-bench serve: cannot run %s\n", elmd);
        return -ENOENT;
    }
    snprintf(d->dir, sizeof d->dir, "%s/run", d->base);
    snprintf(conf, sizeof conf, "%s/elmd.conf", d->base);
    int max_n = 1;
    for (int i = 0; i < c->n_ns; i++)
        max_n = c->ns[i] > max_n ? c->ns[i] : max_n;
    FILE *f = fopen(conf, "w");
    if (!f)
        return -errno;
    /* through HTTP the gateway keeps a round's worth of sessions ready (its pool) while the
     * libelmclient round opens its own: room for both and one more, so elmd never reads full
     * (the gateway then gives its ready sessions up, docs/httpd.md) and no request waits for a
     * slot being freed */
    if (c->http)
        max_n = 2 * max_n + 1 < MAX_CLIENTS ? 2 * max_n + 1 : MAX_CLIENTS;
    fprintf(f, "# written by elm-bench serve\nmax_sessions = %d\nctx = %d\nthreads = %d\n", max_n,
            c->ctx, o->threads);
    for (int i = 0; i < c->n_conf; i++) {
        const char *eq = strchr(c->conf[i], '=');
        fprintf(f, "%.*s = %s\n", (int)(eq - c->conf[i]), c->conf[i], eq + 1);
    }
    if (fclose(f))
        return -errno;
    /* in the background elmd returns once it serves the model (or has failed to) */
    char *argv[] = {elmd,          "--config",      conf,   "--model",
                    (char *)model, "--runtime-dir", d->dir, NULL};
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1); /* results on our stdout only; elmd's errors still reach stderr */
        execv(elmd, argv);
        _exit(127);
    }
    int st = 0;
    while (pid > 0 && waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (pid < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) {
        fprintf(stderr, "elm-bench serve: elmd did not start on %s (config %s)\n", model, conf);
        return ELM_EDAEMON;
    }
    d->ours = true;
    return 0;
}

/* The pid in DIR/elmd.pid, or 0. */
static pid_t elmd_pid(const char *dir)
{
    char path[160];
    snprintf(path, sizeof path, "%s/elmd.pid", dir);
    FILE *f = fopen(path, "r");
    long pid = 0;
    if (f && fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    if (f)
        fclose(f);
    return pid > 1 ? (pid_t)pid : 0;
}

/* Asks our elmd to stop; if it does not answer (it died, or hangs), its pid file in our private
 * directory names the process to terminate. Then removes the directory and what elmd left. */
static void daemon_stop(struct daemon *d)
{
    if (!d->ours)
        return;
    elm_client *c = NULL;
    bool stopped = false;
    if (elm_client_connect(d->dir, &c) == 0) {
        stopped = elm_client_shutdown(c, 20000) == 0;
        elm_client_close(&c);
    }
    char path[160];
    pid_t pid = stopped ? 0 : elmd_pid(d->dir);
    if (pid && kill(pid, SIGTERM) == 0) {
        fprintf(stderr, "elm-bench serve: elmd (pid %ld) did not answer; sent it SIGTERM\n",
                (long)pid);
        for (int i = 0; i < 100 && kill(pid, 0) == 0; i++)
            nanosleep(&(struct timespec){0, 50 * 1000000}, NULL);
    }
    static const char *const left[] = {"elmd.pid", "elmd.lock", "control"};
    for (size_t i = 0; i < sizeof left / sizeof *left; i++) {
        snprintf(path, sizeof path, "%s/%s", d->dir, left[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/elmd.conf", d->base);
    unlink(path);
    rmdir(d->dir);
    rmdir(d->base);
    d->ours = false;
}

/* The running daemon's model name (or loads path in it); *name gets a display name. */
static int daemon_use(const char *dir, const char *path, char *name, size_t cap)
{
    elm_client *c = NULL;
    int rc = elm_client_connect(dir, &c);
    if (rc) {
        fprintf(stderr, "elm-bench serve: no daemon in %s: %s\n", dir, elm_strerror(rc));
        return rc;
    }
    if (path && (rc = elm_client_load(c, path, 0, 0, NULL)))
        fprintf(stderr, "elm-bench serve: loading %s: %s %s\n", path, elm_strerror(rc),
                elm_client_last_message(c));
    struct elm_daemon_status *st = rc ? NULL : malloc(sizeof *st);
    if (!rc && !st)
        rc = -ENOMEM;
    if (!rc && !(rc = elm_client_status(c, st)) && !st->model_loaded) {
        fprintf(stderr, "elm-bench serve: the daemon in %s has no model loaded\n", dir);
        rc = ELM_ENOMODEL;
    }
    if (!rc) {
        const char *p = st->model_path, *b = strrchr(p, '/');
        snprintf(name, cap, "%.200s", b ? b + 1 : p);
    }
    free(st);
    elm_client_close(&c);
    return rc;
}

/* ---- the sweep ------------------------------------------------------------------------------- */

/* elmd's compute-thread counters now (all zero when it cannot tell): the rows show what the
 * wait policy did during their rounds. A connection of its own each time, so that no client
 * is open in elm-bench while it forks the round's clients. */
static void pool_snapshot(const char *dir, struct elm_pool_stats *ps)
{
    memset(ps, 0, sizeof *ps);
    elm_client *cl = NULL;
    struct elm_daemon_stats st = {0};
    if (elm_client_connect(dir, &cl) == 0 && elm_client_stats(cl, &st) == 0) {
        ps->n_busy = st.n_pool_busy;
        ps->n_samples = st.n_pool_samples;
        ps->n_sleeps = st.n_pool_sleeps;
        ps->n_spin_sleeps = st.n_pool_spin_sleeps;
        ps->n_probes = st.n_pool_probes;
        ps->n_probes_free = st.n_pool_probes_free;
        memcpy(ps->delay_hist, st.pool_delay, sizeof ps->delay_hist);
        memcpy(ps->gap_hist, st.pool_gaps, sizeof ps->gap_hist);
    }
    elm_client_close(&cl);
}

/* Per model: medians over repetitions for each client count, kept for the plot, and each other
 * way's pairs against libelmclient's round of the same repetition, for the overhead table. */
struct sweep {
    char name[256];
    struct bench_stat agg[MAX_NS], itl99[MAX_NS];
    double ragg[MAX_NS], ri99[MAX_NS]; /* median ratios to the first N (libelmclient) */
    int n_via;
    enum via vias[N_VIA];
    struct bench_stat vagg[N_VIA][MAX_NS], vt50[N_VIA][MAX_NS];
    /* each way's cost per token minus libelmclient's in the same repetition, per party */
    struct bench_stat vcpu[N_VIA][MAX_NS][N_PARTY], vsw[N_VIA][MAX_NS][N_PARTY];
    struct bench_stat cpu[N_VIA][MAX_NS][N_PARTY], sw[N_VIA][MAX_NS][N_PARTY]; /* as measured */
};

static int run_model(const struct bench_opts *o, const struct serve_cfg *c, const char *path,
                     struct sweep *sw)
{
    struct daemon d = {0};
    int rc;
    if (c->runtime_dir) {
        snprintf(d.dir, sizeof d.dir, "%s", c->runtime_dir);
        rc = daemon_use(c->runtime_dir, path, sw->name, sizeof sw->name);
    } else {
        const char *b = strrchr(path, '/');
        snprintf(sw->name, sizeof sw->name, "%s", b ? b + 1 : path);
        rc = daemon_start(o, c, path, &d);
    }
    if (rc)
        return rc;
    const int R = o->reps;
    int max_n = 1;
    for (int i = 0; i < c->n_ns; i++)
        max_n = c->ns[i] > max_n ? c->ns[i] : max_n;
    /* the ways this sweep reaches the model, and each one's URL (NULL: libelmclient) */
    struct bench_gateway gw = {.out_fd = -1};
    const char *urls[N_VIA] = {NULL};
    enum via vias[N_VIA] = {VIA_ELM};
    int n_via = 1;
    if (c->http) {
        if ((rc = bench_gateway_start(d.dir, max_n + 4, &gw))) {
            daemon_stop(&d);
            return rc;
        }
        urls[n_via] = gw.url;
        vias[n_via++] = VIA_HTTP;
    }
    struct meter meter = {c->http ? gw.url : NULL, elmd_pid(d.dir)};
    struct bench_gateway llama = {.out_fd = -1};
    if (c->llama_exe &&
        (rc = bench_llama_server_start(c->llama_exe, path, o->threads, max_n, c->ctx, &llama))) {
        bench_gateway_stop(&gw);
        daemon_stop(&d);
        return rc;
    }
    if (c->llama_url || c->llama_exe) {
        urls[n_via] = c->llama_exe ? llama.url : c->llama_url;
        vias[n_via++] = VIA_LLAMA;
    }
    uint8_t *area = mmap(NULL, slot_size(c) * (size_t)max_n, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    /* [via][n][rep] series: agg, tokens, ttft p50/p99, itl p50/p99, ratios agg and itl p99 to
     * the first N's, agg and TTFT p50 against libelmclient's at the same N; then per party
     * CPU us and switches per token, and both against libelmclient's */
    /* clang-format off */
    enum { AGG, TOK, PRM, T50, T99, I50, I99, RAGG, RI99, VAGG, VT50, CPU,
           SW = CPU + N_PARTY, DCPU = SW + N_PARTY, DSW = DCPU + N_PARTY, NV = DSW + N_PARTY };
    /* clang-format on */
    double *v = malloc(sizeof(double) * NV * N_VIA * MAX_NS * (size_t)R);
    if (area == MAP_FAILED || !v) {
        rc = -ENOMEM;
        goto out;
    }
#define V(k, t, ni, r)                                                                             \
    v[(((size_t)(k)*N_VIA + (size_t)(t)) * MAX_NS + (size_t)(ni)) * (size_t)R + (size_t)(r)]
    /* per client count: what elmd's compute threads did in the measured libelmclient rounds */
    struct elm_pool_stats pool[MAX_NS] = {0};
    /* r = -1: warm-up (the gateway's pool fills too) */
    const int first = c->runtime_dir && n_via == 1 ? 0 : -1;
    for (int r = first; r < R && !rc; r++) {
        struct round base[N_VIA] = {0};
        for (int ni = 0; ni < c->n_ns && !rc; ni++) {
            struct round rds[N_VIA] = {0};
            /* the ways take turns at going first, repetition by repetition: the one after
             * another inherits its closing sessions and warm caches, and over the pairs that
             * favour falls to each alike */
            for (int k = 0; k < n_via && !rc; k++) {
                int t = (k + (r > 0 ? r : 0)) % n_via;
                bench_progress("serve %s: rep %d/%d, %d client%s via %s", sw->name, r + 1, R,
                               c->ns[ni], c->ns[ni] > 1 ? "s" : "", via_name[vias[t]]);
                struct elm_pool_stats p0, p1;
                if (t == 0)
                    pool_snapshot(d.dir, &p0);
                rc = run_round(c, d.dir, urls[t], &meter, area, c->ns[ni], &rds[t]);
                if (!rc && t == 0 && r >= 0) {
                    pool_snapshot(d.dir, &p1);
                    elm_pool_stats_add(&pool[ni], &p0, &p1);
                }
            }
            for (int t = 0; t < n_via && !rc && r >= 0; t++) {
                const struct round rd = rds[t], elm = rds[0];
                if (ni == 0)
                    base[t] = rd;
                V(AGG, t, ni, r) = rd.agg;
                V(TOK, t, ni, r) = rd.tokens;
                V(PRM, t, ni, r) = rd.prompt;
                V(T50, t, ni, r) = rd.ttft[0];
                V(T99, t, ni, r) = rd.ttft[1];
                V(I50, t, ni, r) = rd.itl[0];
                V(I99, t, ni, r) = rd.itl[1];
                V(RAGG, t, ni, r) = base[t].agg > 0 ? rd.agg / base[t].agg : NAN; /* NAN stays */
                V(RI99, t, ni, r) = base[t].itl[1] > 0 ? rd.itl[1] / base[t].itl[1] : 0;
                V(VAGG, t, ni, r) = elm.agg > 0 ? rd.agg / elm.agg : NAN;
                V(VT50, t, ni, r) = rd.ttft[0] - elm.ttft[0];
                for (int p = 0; p < N_PARTY; p++) {
                    V(CPU + p, t, ni, r) = rd.cpu[p];
                    V(SW + p, t, ni, r) = rd.sw[p];
                    V(DCPU + p, t, ni, r) = rd.cpu[p] - elm.cpu[p];
                    V(DSW + p, t, ni, r) = rd.sw[p] - elm.sw[p];
                }
            }
        }
    }
    bench_progress(NULL);
    if (rc) {
        fprintf(stderr, "elm-bench serve: %s: %s\n", sw->name, elm_strerror(rc));
        goto out;
    }
    sw->n_via = n_via;
    memcpy(sw->vias, vias, sizeof vias);
    char ragg[32], ri99[40];
    snprintf(ragg, sizeof ragg, "agg/agg(%d)", c->ns[0]);
    snprintf(ri99, sizeof ri99, "ITL p99/ITL p99(%d)", c->ns[0]);
    for (int ni = 0; ni < c->n_ns; ni++)
        for (int t = 0; t < n_via; t++) {
            struct bench_stat s[NV];
            int kept = R, kept_ratio = R; /* the ratios lose the same repetitions */
            for (int k = 0; k < NV; k++) {
                int kept_cost; /* NAN: a party that could not be read (no gateway) */
                s[k] = k == AGG ? bench_stats_finite(&V(k, t, ni, 0), R, &kept)
                       : k == RAGG || k == VAGG
                           ? bench_stats_finite(&V(k, t, ni, 0), R, &kept_ratio)
                       : k >= CPU ? bench_stats_finite(&V(k, t, ni, 0), R, &kept_cost)
                                  : bench_stats(&V(k, t, ni, 0), R);
                if (k >= CPU && !kept_cost)
                    s[k] = (struct bench_stat){NAN, NAN, NAN};
            }
            char check[96] = "ok";
            if (kept < R)
                snprintf(check, sizeof check, "aggregate of %d of %d reps excluded (below timer)",
                         R - kept, R);
            (void)kept_ratio;
            if (t == 0) {
                sw->agg[ni] = s[AGG];
                sw->itl99[ni] = s[I99];
                sw->ragg[ni] = s[RAGG].median;
                sw->ri99[ni] = s[RI99].median;
            }
            char waits[256];
            elm_pool_stats_describe(&pool[ni], waits, sizeof waits);
            sw->vagg[t][ni] = s[VAGG];
            sw->vt50[t][ni] = s[VT50];
            for (int p = 0; p < N_PARTY; p++) {
                sw->cpu[t][ni][p] = s[CPU + p];
                sw->sw[t][ni][p] = s[SW + p];
                sw->vcpu[t][ni][p] = s[DCPU + p];
                sw->vsw[t][ni][p] = s[DSW + p];
            }
            struct bench_cell cells[] = {
                {"model", sw->name, 0, 0},
                {"via", via_name[vias[t]], 0, 0},
                {"clients", NULL, c->ns[ni], 0},
                {"prompt tokens", NULL, s[PRM].median, 0},
                {"tokens", NULL, s[TOK].median, 0},
                {"agg t/s", NULL, s[AGG].median, 1},
                {"agg min", NULL, s[AGG].min, 1},
                {"agg max", NULL, s[AGG].max, 1},
                {"t/s per client", NULL, s[AGG].median / c->ns[ni], 1},
                {"TTFT p50 ms", NULL, s[T50].median, 1},
                {"TTFT p99 ms", NULL, s[T99].median, 1},
                {"ITL p50 ms", NULL, s[I50].median, 2},
                {"ITL p99 ms", NULL, s[I99].median, 2},
                {"ITL p99 min", NULL, s[I99].min, 2},
                {"ITL p99 max", NULL, s[I99].max, 2},
                {"elmd threads' waiting (libelmclient rounds)", waits, 0, 0},
                {ragg, NULL, s[RAGG].median, 2},
                {ri99, NULL, s[RI99].median, 2},
                {"agg/libelmclient", NULL, s[VAGG].median, 3},
                {"TTFT p50 - libelmclient ms", NULL, s[VT50].median, 2},
                {"check", check, 0, 0},
            };
            /* the comparison columns only when there is something to compare */
            int nc = (int)(sizeof cells / sizeof *cells);
            if (n_via == 1) {
                memmove(&cells[1], &cells[2], sizeof cells[0] * (size_t)(nc - 2)); /* no "via" */
                cells[nc - 4] = cells[nc - 2];                                     /* check */
                nc -= 3;
            }
            bench_row(o, "serve", cells, nc);
        }
#undef V
out:
    free(v);
    if (area != MAP_FAILED)
        munmap(area, slot_size(c) * (size_t)max_n);
    bench_gateway_stop(&llama);
    bench_gateway_stop(&gw);
    daemon_stop(&d);
    return rc;
}

/* Issue 18's batching targets, for 8 clients over 1: aggregate decode >= 4x with AVX-512
 * kernels (>= 3x otherwise), ITL p99 <= 2.5x. */
#define TARGET_AGG_AVX512 4.0
#define TARGET_AGG_OTHER  3.0
#define TARGET_ITL99      2.5

/* The scaling table: per model and client count, ITL p99 and the two ratios to the first client
 * count (libelmclient), and at 8 clients over 1 whether they meet issue 18's targets. */
static void print_scaling(const struct bench_opts *o, const struct serve_cfg *c,
                          const struct sweep *sw, int n)
{
    struct bench_machine mach;
    bench_machine(&mach);
    const double agg_target = !strcmp(mach.kernel, "avx512") ? TARGET_AGG_AVX512 : TARGET_AGG_OTHER;
    char ragg[32], ri99[40];
    snprintf(ragg, sizeof ragg, "agg/agg(%d)", c->ns[0]);
    snprintf(ri99, sizeof ri99, "ITL p99/ITL p99(%d)", c->ns[0]);
    for (int m = 0; m < n; m++)
        for (int ni = 0; ni < c->n_ns; ni++) {
            char target[128] = "-";
            if (c->ns[0] == 1 && c->ns[ni] == 8)
                snprintf(target, sizeof target,
                         "agg >= %.0fx (%s kernels): %s; ITL p99 <= %.1fx: %s", agg_target,
                         mach.kernel, sw[m].ragg[ni] >= agg_target ? "met" : "missed", TARGET_ITL99,
                         sw[m].ri99[ni] <= TARGET_ITL99 ? "met" : "missed");
            struct bench_cell cells[] = {
                {"model", sw[m].name, 0, 0},
                {"clients", NULL, c->ns[ni], 0},
                {"agg t/s", NULL, sw[m].agg[ni].median, 1},
                {"ITL p99 ms", NULL, sw[m].itl99[ni].median, 2},
                {ragg, NULL, sw[m].ragg[ni], 2},
                {ri99, NULL, sw[m].ri99[ni], 2},
                {"issue 18 target (8 over 1)", target, 0, 0},
            };
            bench_row(o, "serve-scaling", cells, (int)(sizeof cells / sizeof *cells));
        }
}

/* The closing table of --http / --vs-llama-server: per model and client count, each way's
 * aggregate over libelmclient's and what it adds to TTFT p50, as the median of the repetitions'
 * own pairs (each pair ran back to back, so the machine's mood cancels) with their range, and
 * whether elm-httpd meets issue 12's goals: within 3 % of the aggregate, under 1 ms of TTFT. */
static void overhead_table(const struct bench_opts *o, const struct serve_cfg *c,
                           const struct sweep *sw, int n)
{
    for (int m = 0; m < n; m++)
        for (int t = 1; t < sw[m].n_via; t++)
            for (int ni = 0; ni < c->n_ns; ni++) {
                const struct bench_stat *a = &sw[m].vagg[t][ni], *f = &sw[m].vt50[t][ni];
                const struct bench_stat *dc = sw[m].vcpu[t][ni], *ds = sw[m].vsw[t][ni];
                bool http = sw[m].vias[t] == VIA_HTTP;
                /* what the HTTP path costs on top of libelmclient: the gateway's cost over its
                 * idle one, and what its clients spent beyond libelmclient's (medians of the
                 * repetitions' pairs, each party's apart). elmd's difference is shown but not
                 * added: its compute threads' own CPU time moves with the machine's load by far
                 * more than a gateway could make it. */
                double path_cpu = dc[P_GATEWAY].median + dc[P_CLIENTS].median;
                const char *goal = !http                                  ? "-"
                                   : a->median >= 0.97 && f->median < 1.0 ? "met"
                                                                          : "not met";
                struct bench_cell cells[] = {
                    {"model", sw[m].name, 0, 0},
                    {"via", via_name[sw[m].vias[t]], 0, 0},
                    {"clients", NULL, c->ns[ni], 0},
                    {"reps", NULL, o->reps, 0},
                    {"agg/libelmclient", NULL, a->median, 3},
                    {"min", NULL, a->min, 3},
                    {"max", NULL, a->max, 3},
                    {"TTFT p50 - libelmclient ms", NULL, f->median, 2},
                    {"min ms", NULL, f->min, 2},
                    {"max ms", NULL, f->max, 2},
                    {"goal (>= 0.97, < 1 ms)", goal, 0, 0},
                    {"gateway CPU us/token", NULL, dc[P_GATEWAY].median, 1},
                    {"gateway switches/token", NULL, ds[P_GATEWAY].median, 2},
                    {"clients CPU us/token +", NULL, dc[P_CLIENTS].median, 1},
                    {"clients switches/token +", NULL, ds[P_CLIENTS].median, 2},
                    {"elmd CPU us/token +", NULL, dc[P_ELMD].median, 1},
                    {"elmd switches/token +", NULL, ds[P_ELMD].median, 2},
                    {"path CPU us/token", NULL, path_cpu, 1},
                };
                bench_row(o, "serve-overhead", cells, (int)(sizeof cells / sizeof *cells));
            }
    bench_end_table(o);
}

/* Beside the overhead table: each round's own cost per token received, per party (medians over
 * the repetitions), so the libelmclient round's figures the differences start from are shown. */
static void cost_table(const struct bench_opts *o, const struct serve_cfg *c,
                       const struct sweep *sw, int n)
{
    for (int m = 0; m < n; m++)
        for (int ni = 0; ni < c->n_ns; ni++)
            for (int t = 0; t < sw[m].n_via; t++) {
                const struct bench_stat *cp = sw[m].cpu[t][ni], *sp = sw[m].sw[t][ni];
                /* the gateway's in the other ways' rounds: what it spends idle */
                struct bench_cell cells[] = {
                    {"model", sw[m].name, 0, 0},
                    {"via", via_name[sw[m].vias[t]], 0, 0},
                    {"clients", NULL, c->ns[ni], 0},
                    {"gateway CPU us/token", NULL, cp[P_GATEWAY].median, 1},
                    {"gateway switches/token", NULL, sp[P_GATEWAY].median, 2},
                    {"clients CPU us/token", NULL, cp[P_CLIENTS].median, 1},
                    {"clients switches/token", NULL, sp[P_CLIENTS].median, 2},
                    {"elmd CPU us/token", NULL, cp[P_ELMD].median, 1},
                    {"elmd switches/token", NULL, sp[P_ELMD].median, 2},
                };
                bench_row(o, "serve-cost", cells, (int)(sizeof cells / sizeof *cells));
            }
    bench_end_table(o);
}

static int plot(const struct bench_opts *o, const struct serve_cfg *c, const struct sweep *sw,
                int n)
{
    static struct svg_chart ch[2];
    memset(ch, 0, sizeof ch);
    static char cats[MAX_NS][16];
    ch[0] = (struct svg_chart){.title = "elm-bench serve: aggregate decode throughput",
                               .xlabel = "concurrent clients",
                               .ylabel = "tokens/s (all clients)"};
    ch[1] = (struct svg_chart){.title = "elm-bench serve: inter-token latency p99",
                               .xlabel = "concurrent clients",
                               .ylabel = "ms"};
    for (int k = 0; k < 2; k++) {
        ch[k].n_cats = c->n_ns;
        ch[k].n_series = n;
        for (int i = 0; i < c->n_ns; i++) {
            snprintf(cats[i], sizeof cats[i], "%d", c->ns[i]);
            ch[k].cats[i] = cats[i];
        }
        for (int m = 0; m < n; m++) {
            struct svg_series *se = &ch[k].series[m];
            se->name = sw[m].name;
            se->has_range = true;
            for (int i = 0; i < c->n_ns; i++) {
                const struct bench_stat *s = k == 0 ? &sw[m].agg[i] : &sw[m].itl99[i];
                se->y[i] = s->median;
                se->lo[i] = s->min;
                se->hi[i] = s->max;
            }
        }
    }
    char err[512];
    if (svg_write(o->plot, ch, 2, err, sizeof err)) {
        fprintf(stderr, "elm-bench serve: %s\n", err);
        return 1;
    }
    return 0;
}

/* ---- the command
 * ----------------------------------------------------------------------------- */

static void usage(void)
{
    printf("usage: elm-bench serve [--model FILE | --synth SHAPE:TYPE]... [--clients N,...] "
           "[--n-predict G]\n"
           "                       [--ctx N] [--prompt TEXT] [--elmd-conf KEY=VALUE]... "
           "[--runtime-dir DIR]\n"
           "                       [--plot FILE.svg] [--http] [--vs-llama-server URL|PATH]\n"
           "N client processes (default 1,2,4,8,16; --quick 1,2) released together through "
           "elmd, each a greedy\nrequest of G tokens (default 64; --quick 8): aggregate decode "
           "tokens/s, time to first token and\ninter-token latency p50/p99, ratios to the first "
           "client count of the same repetition.\nelm-bench starts elmd from the build tree "
           "(max_sessions = largest N, --ctx per session, default\n256; --elmd-conf adds config "
           "lines) unless --runtime-dir names a running one (which then\nserves its loaded "
           "model, or loads each --model; no warm-up round then unless --http or\n"
           "--vs-llama-server starts something of its own). --plot FILE.svg draws both sweeps.\n"
           "--http: also start elm-httpd and run every round a second time through it (streamed\n"
           "/v1/completions, a connection per client): columns agg/libelmclient and TTFT p50 -\n"
           "libelmclient are the gateway's cost. --vs-llama-server http://HOST:PORT: a third "
           "round\n"
           "against that server (serving the same model file); --vs-llama-server PATH: elm-bench\n"
           "starts that llama-server on each model (same threads, -np largest N, ctx per "
           "slot).\n");
}

static int parse_int(const char *opt, const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "elm-bench serve: %s expects %d..%d, got '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int bench_serve(const struct bench_opts *go, int argc, char **argv)
{
    struct bench_opts opts = *go, *o = &opts; /* --plot may also follow the subcommand */
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'},
        {"synth", required_argument, 0, 's'},
        {"clients", required_argument, 0, 'N'},
        {"n-predict", required_argument, 0, 'n'},
        {"ctx", required_argument, 0, 'C'},
        {"prompt", required_argument, 0, 'p'},
        {"elmd-conf", required_argument, 0, 'E'},
        {"runtime-dir", required_argument, 0, 'R'},
        {"plot", required_argument, 0, 'P'},
        {"http", no_argument, 0, 'H'},
        {"vs-llama-server", required_argument, 0, 'L'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    static char synth_paths[MAX_MODELS][512];
    struct serve_cfg c = {.n_predict = o->quick ? 8 : 64, .ctx = 0, .prompt = default_prompt};
    static const int def_ns[] = {1, 2, 4, 8, 16}, quick_ns[] = {1, 2};
    c.n_ns = o->quick ? 2 : 5;
    memcpy(c.ns, o->quick ? quick_ns : def_ns, sizeof(int) * (size_t)c.n_ns);
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "m:s:N:n:C:p:E:R:P:HL:h", lo, NULL)) != -1) {
        char err[512];
        switch (ch) {
        case 'm':
        case 's':
            if (c.n_models == MAX_MODELS) {
                fprintf(stderr, "elm-bench serve: at most %d models\n", MAX_MODELS);
                return 2;
            }
            if (ch == 's') {
                if (bench_synth(optarg, synth_paths[c.n_models], sizeof synth_paths[0], err,
                                sizeof err)) {
                    fprintf(stderr, "elm-bench serve: --synth: %s\n", err);
                    return 2;
                }
                optarg = synth_paths[c.n_models];
            } else if (access(optarg, R_OK) != 0) {
                fprintf(stderr, "elm-bench serve: --model %s: %s\n", optarg, strerror(errno));
                return 2;
            }
            c.models[c.n_models++] = optarg;
            break;
        case 'N':
            if ((c.n_ns = bench_parse_list(optarg, c.ns, MAX_NS, 1, MAX_CLIENTS)) < 0) {
                fprintf(stderr,
                        "elm-bench serve: --clients expects a list of 1..%d (at most %d), "
                        "got '%s'\n",
                        MAX_CLIENTS, MAX_NS, optarg);
                return 2;
            }
            break;
        case 'n':
            if (parse_int("--n-predict", optarg, 2, 4096, &c.n_predict))
                return 2;
            break;
        case 'C':
            if (parse_int("--ctx", optarg, 16, 65536, &c.ctx))
                return 2;
            break;
        case 'p':
            c.prompt = optarg;
            break;
        case 'E': {
            const char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || strchr(optarg, '\n')) {
                fprintf(stderr, "elm-bench serve: --elmd-conf expects KEY=VALUE, got '%s'\n",
                        optarg);
                return 2;
            }
            if (c.n_conf == MAX_CONF) {
                fprintf(stderr, "elm-bench serve: at most %d --elmd-conf lines\n", MAX_CONF);
                return 2;
            }
            c.conf[c.n_conf++] = optarg;
            break;
        }
        case 'R':
            c.runtime_dir = optarg;
            break;
        case 'P':
            opts.plot = optarg;
            break;
        case 'H':
            c.http = true;
            break;
        case 'L':
            if (!strncmp(optarg, "http://", 7)) {
                c.llama_url = optarg;
            } else if (access(optarg, X_OK) == 0) {
                c.llama_exe = optarg;
            } else {
                fprintf(stderr,
                        "elm-bench serve: --vs-llama-server expects http://HOST:PORT or the "
                        "path of a llama-server program, got '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case 'h':
            usage();
            return 0;
        default:
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "elm-bench serve: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!c.n_models && !c.runtime_dir) {
        fprintf(stderr, "elm-bench serve: give --model FILE, --synth SHAPE:TYPE or "
                        "--runtime-dir DIR (a running elmd)\n");
        return 2;
    }
    if (c.llama_exe && !c.n_models) {
        fprintf(stderr, "elm-bench serve: --vs-llama-server PATH needs --model or --synth: it "
                        "starts that server on the same file\n");
        return 2;
    }
    if (c.runtime_dir && c.n_conf) {
        fprintf(stderr, "elm-bench serve: --elmd-conf applies to the daemon elm-bench starts, "
                        "not to --runtime-dir\n");
        return 2;
    }
    if (o->reps > MAX_REPS)
        return 2;
    if (!c.ctx)
        c.ctx = c.n_predict + 192 > 256 ? c.n_predict + 192 : 256;
    bench_print_header(o, "serve");
    static struct sweep sw[MAX_MODELS];
    const int n_runs = c.n_models ? c.n_models : 1;
    int fails = 0, done = 0;
    for (int i = 0; i < n_runs; i++) {
        if (run_model(o, &c, c.n_models ? c.models[i] : NULL, &sw[done]))
            fails++;
        else
            done++;
    }
    bench_end_table(o);
    if (done) {
        print_scaling(o, &c, sw, done);
        bench_end_table(o);
    }
    if (done && sw[0].n_via > 1) {
        overhead_table(o, &c, sw, done);
        cost_table(o, &c, sw, done);
    }
    if (o->plot && done)
        fails += plot(o, &c, sw, done);
    return fails ? 1 : 0;
}
