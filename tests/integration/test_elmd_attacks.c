/* test_elmd_attacks.c — attacks of issue 17 that used to work, rerun with real processes: each
 * ends with a clear error for the attacker (or nothing left of it), and a well-behaved stream
 * running meanwhile stays byte-identical to the engine in this process.
 *
 * - a LOAD of a FIFO (open() waited for a writer forever: later loads were refused and SIGTERM
 *   never completed);
 * - connections beyond elmd's soft open-file limit (libzmq aborted it on EMFILE).
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "ipc/schema.h"
#include "tests/common/elmd_fixture.h"

#define PROMPT     "Once upon a time"
#define LOW_NOFILE 128 /* elmd's soft open-file limit in the connections test */
#define N_CONNS    300 /* connections it gets: well beyond LOW_NOFILE */
#define MAX_CONNS  40  /* max_connections in the limit test */

static int setup(void **state)
{
    return fx_start(state, NULL);
}

static int setup_max_conns(void **state)
{
    char text[64];
    snprintf(text, sizeof text, "max_connections = %d\n", MAX_CONNS);
    return fx_start_conf(state, text);
}

/* LOAD path; its reply's status (the message, if any, in msg). */
static int load(struct tc *c, const char *path, char *msg, size_t cap)
{
    elm_proto_put_str(tc_begin(c, ELM_CMD_LOAD), ELM_TAG_PATH, path);
    int rc = tc_call(c, 60000);
    snprintf(msg, cap, "%s", tc_str(c, ELM_TAG_MESSAGE));
    return rc;
}

/* Issue 17 item 4. */
static void test_fifo_load_is_refused(void **state)
{
    struct fx *f = *state;
    REQUIRE_DAEMON(f);
    const char *model = elm_test_model_path(TD_MODEL);
    static struct ts_result want, got;
    struct ts good;
    char fifo[200], msg[ELM_PROTO_MAX_STR + 1];
    local_greedy(model, PROMPT, 300, &want);
    assert_int_equal(ts_open(&f->c, &good, getpid(), 0), 0);
    assert_int_equal(ts_prompt(&good, 1, PROMPT, 300, 0, 1), 0);

    snprintf(fifo, sizeof fifo, "%s/model.fifo", f->t.base);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    int rc = load(&f->c, fifo, msg, sizeof msg);
    print_message("LOAD of a FIFO: %d '%s'\n", rc, msg);
    assert_int_not_equal(rc, -ETIMEDOUT); /* the hang this test is about */
    assert_int_equal(rc, -EINVAL);
    assert_non_null(strstr(msg, "not a regular file"));
    assert_non_null(strstr(msg, fifo));

    assert_int_equal(ts_collect(&good, &got, 30000), 0);
    assert_same(&got, &want);
    assert_int_equal(ts_close(&f->c, &good), 0);

    /* The loader is free: a real model loads ... */
    assert_int_equal(load(&f->c, model, msg, sizeof msg), 0);
    assert_int_equal(ts_open(&f->c, &good, getpid(), 0), 0);
    assert_int_equal(ts_prompt(&good, 2, PROMPT, 300, 0, 1), 0);
    assert_int_equal(ts_collect(&good, &got, 30000), 0);
    assert_same(&got, &want);
    assert_int_equal(ts_close(&f->c, &good), 0);
    /* ... and SIGTERM ends the daemon (the bound only catches a hang). */
    int st = td_stop(&f->t, SIGTERM, 30000);
    assert_int_not_equal(st, -1);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    unlink(fifo);
}

/* A daemon started with a small soft open-file limit (its hard limit is the test's). */
static int setup_low_nofile(void **state)
{
    struct rlimit orig, low;
    if (getrlimit(RLIMIT_NOFILE, &orig) < 0)
        return -1;
    low = orig;
    low.rlim_cur = LOW_NOFILE < orig.rlim_cur ? LOW_NOFILE : orig.rlim_cur;
    if (setrlimit(RLIMIT_NOFILE, &low) < 0)
        return -1;
    int rc = fx_start(state, NULL);
    return setrlimit(RLIMIT_NOFILE, &orig) < 0 ? -1 : rc;
}

/* "Max open files" of pid from /proc: soft and hard (UINT64_MAX for unlimited). */
static void nofile_of(pid_t pid, uint64_t *soft, uint64_t *hard)
{
    char path[64], line[256], a[32] = "", b[32] = "";
    snprintf(path, sizeof path, "/proc/%d/limits", (int)pid);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    while (fgets(line, sizeof line, fp))
        if (sscanf(line, "Max open files %31s %31s", a, b) == 2)
            break;
    fclose(fp);
    *soft = strcmp(a, "unlimited") ? strtoull(a, NULL, 10) : UINT64_MAX;
    *hard = strcmp(b, "unlimited") ? strtoull(b, NULL, 10) : UINT64_MAX;
}

/* 1 when sock gets a successful reply by the deadline end (td_now_ms), else 0. */
static int answer(void *sock, int64_t end)
{
    zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLIN};
    int64_t left = end - td_now_ms();
    static unsigned char in[ELM_PROTO_MAX_FRAME];
    struct elm_proto_msg rep;
    if (zmq_poll(&it, 1, left > 0 ? (long)left : 0) != 1)
        return 0;
    int got = zmq_recv(sock, in, sizeof in, 0);
    return got > 0 && elm_proto_decode(in, (size_t)got, &rep, NULL) == 0 && rep.status == 0;
}

/* n connections of one context (each costs elmd a descriptor), each asking STATUS: how many
 * were answered within wait_ms (one bound for all, so that a daemon that died, or refused
 * connections, cost one wait, not n). one_by_one: each waits for its answer before the next
 * connects (the daemon sees every connection before the next one). The sockets stay open, in
 * socks. */
static int storm(const char *dir, void *ctx, void **socks, int n, int wait_ms, bool one_by_one)
{
    struct elm_proto_buf b;
    const void *frame;
    size_t len;
    char ep[200];
    int zero = 0, answered = 0;
    elm_proto_buf_init(&b);
    elm_proto_begin(&b, ELM_PROTO_VERSION_MAX, ELM_CMD_STATUS, 0, 1);
    assert_int_equal(elm_proto_finish(&b, &frame, &len), 0);
    snprintf(ep, sizeof ep, "ipc://%s/control", dir);
    int64_t end = td_now_ms() + wait_ms;
    for (int i = 0; i < n; i++) {
        socks[i] = zmq_socket(ctx, ZMQ_DEALER);
        assert_non_null(socks[i]);
        zmq_setsockopt(socks[i], ZMQ_LINGER, &zero, sizeof zero);
        assert_int_equal(zmq_connect(socks[i], ep), 0);
        assert_int_equal(zmq_send(socks[i], frame, len, 0), (int)len);
        if (one_by_one)
            answered += answer(socks[i], end);
    }
    for (int i = 0; i < n && !one_by_one; i++)
        answered += answer(socks[i], end);
    elm_proto_buf_fini(&b);
    return answered;
}

/* Issue 17 item 1: elmd takes its hard open-file limit, so connections beyond the soft limit it
 * was started with no longer abort it (libzmq's EMFILE assertion). */
static void test_connections_beyond_soft_limit(void **state)
{
    struct fx *f = *state;
    REQUIRE_DAEMON(f);
    uint64_t soft, hard;
    nofile_of(f->t.pid, &soft, &hard);
    print_message("elmd's open-file limit: soft %llu, hard %llu (started with soft %d)\n",
                  (unsigned long long)soft, (unsigned long long)hard, LOW_NOFILE);
    assert_true(soft == hard);
    if (hard < 2 * N_CONNS) {
        print_message("SKIP: the hard limit %llu is too small for %d connections\n",
                      (unsigned long long)hard, N_CONNS);
        skip();
    }
    const char *model = elm_test_model_path(TD_MODEL);
    static struct ts_result want, got;
    struct ts good;
    local_greedy(model, PROMPT, 300, &want);
    assert_int_equal(ts_open(&f->c, &good, getpid(), 0), 0);
    assert_int_equal(ts_prompt(&good, 1, PROMPT, 300, 0, 1), 0);

    void *ctx = zmq_ctx_new();
    static void *socks[N_CONNS];
    int answered = storm(f->t.dir, ctx, socks, N_CONNS, 60000, false);
    int st = td_wait(f->t.pid, 0);
    print_message("%d of %d connections answered; elmd %s (wait status %d)\n", answered, N_CONNS,
                  st == -1 ? "alive" : "exited", st);
    assert_int_equal(st, -1); /* alive */
    assert_int_equal(answered, N_CONNS);
    assert_int_equal(ts_collect(&good, &got, 30000), 0);
    assert_same(&got, &want);
    assert_int_equal(ts_close(&f->c, &good), 0);
    for (int i = 0; i < N_CONNS; i++)
        zmq_close(socks[i]);
    zmq_ctx_term(ctx);
}

/* Issue 17 item 1: at max_connections elmd refuses new connections (their connect finds no
 * socket) instead of running out of descriptors; the open ones, and a stream, go on; once
 * connections close, new ones are accepted again. */
static void test_connection_limit(void **state)
{
    struct fx *f = *state;
    REQUIRE_DAEMON(f);
    const char *model = elm_test_model_path(TD_MODEL);
    static struct ts_result want, got;
    struct ts good;
    local_greedy(model, PROMPT, 300, &want);
    assert_int_equal(ts_open(&f->c, &good, getpid(), 0), 0);
    assert_int_equal(ts_prompt(&good, 1, PROMPT, 300, 0, 1), 0);

    void *ctx = zmq_ctx_new();
    static void *socks[2 * MAX_CONNS];
    int answered = storm(f->t.dir, ctx, socks, 2 * MAX_CONNS, 10000, true);
    int st = td_wait(f->t.pid, 0);
    print_message("max_connections %d: %d of %d new connections answered; elmd %s\n", MAX_CONNS,
                  answered, 2 * MAX_CONNS, st == -1 ? "alive" : "exited");
    assert_int_equal(st, -1);
    /* one by one, the daemon sees each before the next: none beyond the limit (which counts
     * the fixture's own connection) is answered */
    assert_true(answered <= MAX_CONNS);
    assert_true(answered >= MAX_CONNS / 2);
    /* the connection the test had before still works, and so does the stream */
    assert_int_equal(tc_simple(&f->c, ELM_CMD_STATUS), 0);
    assert_int_equal(ts_collect(&good, &got, 30000), 0);
    assert_same(&got, &want);
    assert_int_equal(ts_close(&f->c, &good), 0);

    for (int i = 0; i < 2 * MAX_CONNS; i++)
        zmq_close(socks[i]);
    zmq_ctx_term(ctx);
    /* closed: a new connection is accepted again (the bound only catches a daemon that never
     * takes the socket back) */
    struct tc c;
    tc_open_path(&c, f->t.dir);
    assert_int_equal(tc_simple(&c, ELM_CMD_STATUS), 0);
    tc_close(&c);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    alarm(300); /* a hang fails the test instead of stalling the suite */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fifo_load_is_refused, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_connections_beyond_soft_limit, setup_low_nofile,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_connection_limit, setup_max_conns, fx_teardown),
    };
    if (getenv("ELMD_TEST_FILTER"))
        cmocka_set_test_filter(getenv("ELMD_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
