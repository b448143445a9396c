/* bench_ipc.c — `elm-bench ipc`: round-trip latency of one small record each way through elm's
 * shared-memory rings (the data plane) against a ZeroMQ ipc:// request/reply (the control
 * plane), measured in the same run, alternating blocks of A and B, between two processes.
 *
 * The ring side uses the rings' own waiting (a short spin, then a futex sleep), exactly as a
 * client and the daemon do; ZeroMQ uses a REQ/REP pair over a Unix socket in a private
 * temporary directory. Percentiles are over all round trips of all blocks.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "bench/bench.h"
#include "ipc/ring.h"

#define RING_CAP 4096u
#define MSG_LEN  16

struct pair {
    struct elm_ring_hdr *ping, *pong; /* parent -> child, child -> parent */
};

static int ring_echo_child(struct pair *p, int n)
{
    struct elm_ring in, out;
    if (elm_ring_attach(&in, p->ping, RING_CAP, ELM_RING_CONSUMER) ||
        elm_ring_attach(&out, p->pong, RING_CAP, ELM_RING_PRODUCER))
        return 1;
    char buf[64];
    for (int i = 0; i < n; i++) {
        struct elm_ring_rec rec;
        int rc;
        while ((rc = elm_ring_pop(&in, &rec, buf, sizeof buf)) == -EAGAIN)
            if (elm_ring_wait_data(&in, 1000) == -EPIPE)
                return 0;
        if (rc || elm_ring_push(&out, 1, buf, rec.len))
            return 1;
    }
    return 0;
}

static int zmq_echo_child(const char *endpoint, int n)
{
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_REP);
    int rc = zmq_bind(s, endpoint);
    char buf[64];
    for (int i = 0; i < n && rc == 0; i++) {
        int len = zmq_recv(s, buf, sizeof buf, 0);
        if (len < 0 || zmq_send(s, buf, (size_t)len, 0) < 0)
            rc = -1;
    }
    zmq_close(s);
    zmq_ctx_term(ctx);
    return rc ? 1 : 0;
}

/* Runs n ring round trips, writing each one's time in microseconds to us[]. */
static int ring_block(struct pair *p, int n, double *us)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(ring_echo_child(p, n));
    struct elm_ring out, in;
    int rc = elm_ring_attach(&out, p->ping, RING_CAP, ELM_RING_PRODUCER) ||
             elm_ring_attach(&in, p->pong, RING_CAP, ELM_RING_CONSUMER);
    char msg[MSG_LEN] = "ping", buf[64];
    for (int i = 0; i < n && !rc; i++) {
        double t0 = bench_now();
        struct elm_ring_rec rec;
        rc = elm_ring_push(&out, 1, msg, MSG_LEN);
        while (!rc && (rc = elm_ring_pop(&in, &rec, buf, sizeof buf)) == -EAGAIN)
            rc = elm_ring_wait_data(&in, 1000);
        us[i] = (bench_now() - t0) * 1e6;
    }
    int st;
    if (rc)
        kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return rc || !WIFEXITED(st) || WEXITSTATUS(st) ? -1 : 0;
}

static int zmq_block(const char *endpoint, int n, double *us)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(zmq_echo_child(endpoint, n));
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_REQ);
    int rc = zmq_connect(s, endpoint);
    char msg[MSG_LEN] = "ping", buf[64];
    for (int i = 0; i < n && rc == 0; i++) {
        double t0 = bench_now();
        if (zmq_send(s, msg, MSG_LEN, 0) < 0 || zmq_recv(s, buf, sizeof buf, 0) < 0)
            rc = -1;
        us[i] = (bench_now() - t0) * 1e6;
    }
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(s);
    zmq_ctx_term(ctx);
    int st;
    if (rc)
        kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return rc || !WIFEXITED(st) || WEXITSTATUS(st) ? -1 : 0;
}

static void report(const struct bench_opts *o, const char *what, double *v, int n, double p50_ref)
{
    struct bench_stat s = bench_stats(v, n);
    double p50 = s.median, p99 = bench_percentile(v, n, 99);
    struct bench_cell cells[] = {
        {"path", what, 0, 0},
        {"round trips", NULL, n, 0},
        {"p50 us", NULL, p50, 2},
        {"p99 us", NULL, p99, 2},
        {"min us", NULL, s.min, 2},
        {"max us", NULL, s.max, 1},
        {"p50 vs ring", NULL, p50_ref > 0 ? p50 / p50_ref : 1.0, 2},
    };
    bench_row(o, "ipc", cells, (int)(sizeof cells / sizeof *cells));
}

int bench_ipc(const struct bench_opts *o, int argc, char **argv)
{
    static const struct option lo[] = {
        {"count", required_argument, 0, 'n'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int per_block = o->quick ? 500 : 20000, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "n:h", lo, NULL)) != -1) {
        if (c == 'n') {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 10 || v > 10000000) {
                fprintf(stderr, "elm-bench ipc: --count expects 10..10000000, got '%s'\n", optarg);
                return 2;
            }
            per_block = (int)v;
        } else if (c == 'h') {
            printf("usage: elm-bench ipc [--count N]\nRound trips of a %d-byte record through a "
                   "shared-memory ring pair vs a ZeroMQ ipc:// REQ/REP pair, N per block, "
                   "blocks alternated (--reps of each).\n", MSG_LEN);
            return 0;
        } else {
            return 2;
        }
    }
    size_t one = elm_ring_region_size(RING_CAP);
    void *region = mmap(NULL, 2 * one, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    char dir[] = "/tmp/elm-bench-ipc-XXXXXX";
    if (region == MAP_FAILED || !mkdtemp(dir)) {
        perror("elm-bench ipc");
        return 1;
    }
    char endpoint[128];
    snprintf(endpoint, sizeof endpoint, "ipc://%s/rr", dir);
    struct pair p = {region, (struct elm_ring_hdr *)((char *)region + one)};
    int total = per_block * o->reps;
    double *ring_us = malloc((size_t)total * sizeof *ring_us);
    double *zmq_us = malloc((size_t)total * sizeof *zmq_us);
    int rc = ring_us && zmq_us ? 0 : -1;
    bench_print_header(o, "ipc");
    for (int b = -1; b < o->reps && !rc; b++) { /* b = -1: warm-up block of each */
        bench_progress("ipc block %d/%d", b + 1, o->reps);
        double *ru = ring_us + (b < 0 ? 0 : b * per_block);
        double *zu = zmq_us + (b < 0 ? 0 : b * per_block);
        memset(region, 0, 2 * one);
        if (elm_ring_init(p.ping, RING_CAP) || elm_ring_init(p.pong, RING_CAP))
            rc = -1;
        rc = rc ? rc : ring_block(&p, per_block, ru);
        rc = rc ? rc : zmq_block(endpoint, per_block, zu);
    }
    bench_progress(NULL);
    if (!rc) {
        double ring_p50 = bench_stats(ring_us, total).median; /* sorts ring_us in place */
        report(o, "shm ring", ring_us, total, ring_p50);
        report(o, "zeromq ipc", zmq_us, total, ring_p50);
        bench_end_table(o);
    } else {
        fprintf(stderr, "elm-bench ipc: a round trip failed\n");
    }
    free(ring_us);
    free(zmq_us);
    munmap(region, 2 * one);
    char sock[256];
    snprintf(sock, sizeof sock, "%s/rr", dir);
    unlink(sock);
    rmdir(dir);
    return rc ? 1 : 0;
}
