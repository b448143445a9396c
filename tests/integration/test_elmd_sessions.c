/* test_elmd_sessions.c — sessions under stress: garbage in one session's request ring closes
 * that session alone while another keeps streaming bit-identical output; a client killed with
 * SIGKILL is noticed by the daemon itself; a client that stops reading pauses only itself; cancel
 * (by record and by control command); the context limit; the session list and limit.
 */
#include <linux/futex.h>
#include <sys/syscall.h>

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "tests/common/elmd_fixture.h"

static int setup(void **state)
{
    const char *extra[] = {"--max-sessions", "4", NULL};
    return fx_start(state, extra);
}

/* Open sessions whose pid is pid (any pid when 0), from SESSIONS. */
static int count_sessions(struct tc *c, long pid)
{
    assert_int_equal(tc_simple(c, ELM_CMD_SESSIONS), 0);
    struct elm_proto_view g;
    uint32_t cur = 0;
    int n = 0;
    while (elm_proto_next_group(&c->rep.body, ELM_TAG_SESSION, &cur, &g) == 0) {
        uint64_t p = 0;
        elm_proto_get_u64(&g, ELM_TAG_PID, &p);
        n += !pid || (long)p == pid;
    }
    return n;
}

/* Publishes bytes the producer never wrote: a head that is not 8-aligned over random data. */
static void scribble_ring(struct elm_ring *r)
{
    unsigned seed = 12345;
    for (uint32_t i = 0; i < 256; i++)
        r->data[i] = (unsigned char)rand_r(&seed);
    atomic_store_explicit(&r->hdr->head, 77, memory_order_release);
    atomic_fetch_add(&r->hdr->data_seq, 1);
    syscall(SYS_futex, &r->hdr->data_seq, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static void test_garbage_closes_only_that_session(void **state)
{
    struct fx *f = *state;
    REQUIRE_DAEMON(f);
    const char *model = elm_test_model_path(TD_MODEL);
    struct ts good, bad_ring, bad_rec;
    static struct ts_result want, got, r1, r2;
    local_greedy(model, "Once upon a time", 300, &want);
    assert_int_equal(ts_open(&f->c, &good, getpid(), 0), 0);
    assert_int_equal(ts_open(&f->c, &bad_ring, getpid(), 0), 0);
    assert_int_equal(ts_open(&f->c, &bad_rec, getpid(), 0), 0);
    assert_int_equal(ts_prompt(&good, 1, "Once upon a time", 300, 0, 1), 0);

    /* Ring-level garbage, and a well-framed PROMPT record whose payload is random bytes. */
    scribble_ring(&bad_ring.r.req);
    unsigned char junk[100];
    unsigned seed = 99;
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)rand_r(&seed);
    assert_int_equal(elm_ring_push(&bad_rec.r.req, ELM_REC_PROMPT, junk, sizeof junk), 0);

    assert_int_equal(ts_collect(&bad_ring, &r1, 10000), 0);
    assert_true(r1.error);
    assert_int_equal(r1.err_code, ELM_ERING);
    assert_int_equal(ts_collect(&bad_rec, &r2, 10000), 0);
    assert_true(r2.error);
    assert_int_equal(r2.err_code, ELM_EPROTO);
    print_message("errors: '%s' / '%s'\n", r1.err_msg, r2.err_msg);
    /* Both are closed: nothing more, ever. */
    assert_int_equal(ts_collect(&bad_ring, &r1, 5000), -EPIPE);
    assert_int_equal(ts_collect(&bad_rec, &r2, 5000), -EPIPE);

    assert_int_equal(ts_collect(&good, &got, 20000), 0);
    assert_same(&got, &want);
    /* ... and keeps serving. */
    assert_int_equal(ts_prompt(&good, 2, "Once upon a time", 300, 0, 1), 0);
    assert_int_equal(ts_collect(&good, &got, 20000), 0);
    assert_same(&got, &want);

    int64_t end = td_deadline(5000);
    while (count_sessions(&f->c, 0) != 1 && td_now_ms() < end)
        td_sleep_ms(20);
    assert_int_equal(count_sessions(&f->c, 0), 1);
    assert_int_equal(stat_u64(&f->c, ELM_TAG_N_RING_ERRORS), 2);
    assert_int_equal(ts_close(&f->c, &good), 0);
    ts_close(NULL, &bad_ring);
    ts_close(NULL, &bad_rec);
    /* The closed ones are unknown now. */
    elm_proto_put_u64(tc_begin(&f->c, ELM_CMD_CLOSE_SESSION), ELM_TAG_SESSION_ID, bad_rec.id);
    assert_int_equal(tc_call(&f->c, 10000), ELM_ESESSION);
}

/* A client killed mid-stream: the daemon notices the death by itself (the session goes and
 * N_CLIENT_DEATHS counts it) with no word from anyone. How soon is not asserted: the wait has a
 * generous bound that only catches a daemon that never notices. */
static void test_killed_client_is_noticed(void **state)
{
    struct fx *f = *state;
    REQUIRE_DAEMON(f);
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t child = fork();
    assert_true(child >= 0); /* never kill(-1) below */
    if (child == 0) {
        /* A client of its own: its own ZeroMQ context, its own session; it dies with the test. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(p[0]);
        struct tc c;
        struct ts s;
        static struct ts_result r;
        tc_open_path(&c, f->t.dir);
        if (ts_open(&c, &s, getpid(), 0) || ts_prompt(&s, 1, "Once upon a time", 0, 0.8f, 7))
            _exit(1);
        ts_collect(&s, &r, 200); /* read some, then stop reading, mid-stream */
        if (write(p[1], "x", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    /* Only the child holds the write end now: if it dies before writing, read() sees EOF
     * instead of waiting forever. */
    close(p[1]);
    char x;
    ssize_t got = read(p[0], &x, 1);
    close(p[0]);
    if (got != 1) {
        int st = td_wait(child, 10000);
        fail_msg("the client child died before its session streamed (wait status %d)", st);
    }
    assert_int_equal(count_sessions(&f->c, child), 1);
    assert_int_equal(kill(child, SIGKILL), 0);
    assert_true(td_wait(child, 10000) != -1);
    int64_t end = td_deadline(30000);
    while (count_sessions(&f->c, child) != 0 && td_now_ms() < end)
        td_sleep_ms(10);
    assert_int_equal(count_sessions(&f->c, child), 0);
    assert_int_equal(stat_u64(&f->c, ELM_TAG_N_CLIENT_DEATHS), 1);
}

static void test_slow_reader_pauses_only_itself(void **state)
{
    struct fx *f = *state;
    REQUIRE_DAEMON(f);
    const char *model = elm_test_model_path(TD_MODEL);
    static struct ts_result want, got;
    local_greedy(model, "The cat sat", 400, &want);
    struct ts slow, fast;
    struct elm_proto_buf *b = tc_begin(&f->c, ELM_CMD_OPEN_SESSION);
    elm_proto_put_u64(b, ELM_TAG_PID, (uint64_t)getpid());
    elm_proto_put_u64(b, ELM_TAG_EVT_RING_SIZE, 16384);
    assert_int_equal(tc_call(&f->c, 10000), 0);
    int fd;
    memset(&slow, 0, sizeof slow);
    slow.id = tc_u64(&f->c, ELM_TAG_SESSION_ID);
    assert_int_equal(tc_fetch_region(&f->c, &fd), 0);
    assert_int_equal(elm_shm_adopt(&slow.shm, fd, tc_u64(&f->c, ELM_TAG_SHM_SIZE)), 0);
    assert_int_equal(elm_session_shm_attach(slow.shm.base, slow.shm.size,
                                            (uint32_t)tc_u64(&f->c, ELM_TAG_REQ_RING_SIZE), 16384,
                                            ELM_SESSION_CLIENT, &slow.r),
                     0);
    assert_int_equal(ts_prompt(&slow, 1, "Once upon a time", 0, 0.8f, 3), 0);
    assert_int_equal(ts_open(&f->c, &fast, getpid(), 0), 0);
    td_sleep_ms(100);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ts_prompt(&fast, 10 + i, "The cat sat", 400, 0, 1), 0);
        assert_int_equal(ts_collect(&fast, &got, 20000), 0);
        assert_same(&got, &want);
    }
    /* The slow one is still there, still running, with a full ring. */
    assert_int_equal(tc_simple(&f->c, ELM_CMD_SESSIONS), 0);
    struct elm_proto_view g;
    uint32_t cur = 0;
    bool seen = false;
    while (elm_proto_next_group(&f->c.rep.body, ELM_TAG_SESSION, &cur, &g) == 0) {
        uint64_t id = 0, st = 0;
        elm_proto_get_u64(&g, ELM_TAG_SESSION_ID, &id);
        elm_proto_get_u64(&g, ELM_TAG_STATE, &st);
        if (id == slow.id) {
            seen = true;
            assert_int_equal(st, ELM_SESSION_STATE_RUNNING);
        }
    }
    assert_true(seen);
    /* Reading now lets it go on; cancel it and it ends with DONE/CANCEL. */
    assert_int_equal(elm_rec_cancel_push(&slow.r.req, 1), 0);
    static struct ts_result r;
    assert_int_equal(ts_collect(&slow, &r, 10000), 0);
    assert_true(r.done);
    assert_int_equal(r.dn.reason, ELM_DONE_CANCEL);
    assert_true(r.n_ids > 100);
    assert_int_equal(ts_close(&f->c, &slow), 0);
    assert_int_equal(ts_close(&f->c, &fast), 0);
}

static void test_cancel_and_context(void **state)
{
    struct fx *f = *state;
    REQUIRE_DAEMON(f);
    struct ts s;
    static struct ts_result r;
    assert_int_equal(ts_open(&f->c, &s, getpid(), 48), 0);
    assert_int_equal(s.n_ctx, 48);
    /* The control command cancels whatever runs. */
    assert_int_equal(ts_prompt(&s, 1, "Once", 0, 0.8f, 5), 0);
    elm_proto_put_u64(tc_begin(&f->c, ELM_CMD_CANCEL), ELM_TAG_SESSION_ID, s.id);
    assert_int_equal(tc_call(&f->c, 10000), 0);
    int rc = ts_collect(&s, &r, 10000);
    if (rc)
        td_dump_log(&f->t);
    assert_int_equal(rc, 0);
    assert_true(r.done);
    /* (On a fast machine the request may have filled its context first.) */
    assert_true(r.dn.reason == ELM_DONE_CANCEL || r.dn.reason == ELM_DONE_LENGTH);
    /* A prompt longer than the context: ERROR before any work. */
    char long_prompt[600];
    memset(long_prompt, 0, sizeof long_prompt);
    for (int i = 0; i < 40; i++)
        strcat(long_prompt, "the dog ");
    assert_int_equal(ts_prompt(&s, 2, long_prompt, 10, 0, 1), 0);
    assert_int_equal(ts_collect(&s, &r, 10000), 0);
    assert_true(r.error);
    assert_int_equal(r.err_code, ELM_ECONTEXT);
    assert_int_equal(r.req_id, 2);
    assert_int_equal(r.n_ids, 0);
    /* Generation that reaches the end of the context. */
    uint64_t reused0 = stat_u64(&f->c, ELM_TAG_N_PROMPT_REUSED);
    assert_int_equal(ts_prompt(&s, 3, "Once upon a time", 0, 0, 1), 0);
    rc = ts_collect(&s, &r, 10000);
    if (rc)
        td_dump_log(&f->t);
    assert_int_equal(rc, 0);
    assert_true(r.done);
    if (r.dn.reason != ELM_DONE_EOS) { /* greedy from this prompt does not end before 48 */
        /* the context is full: reason LENGTH, as for n_predict (there is no other limit) */
        assert_int_equal(r.dn.reason, ELM_DONE_LENGTH);
        /* 48 positions evaluated (DONE's n_prompt leaves out the prefix kept from request 1:
         * the same BOS and "Once"), and the token sampled from the last one is still sent */
        uint64_t reused = stat_u64(&f->c, ELM_TAG_N_PROMPT_REUSED) - reused0;
        assert_true(reused > 0);
        assert_int_equal(reused + r.dn.n_prompt + r.dn.n_gen, 49);
    }
    assert_int_equal(ts_close(&f->c, &s), 0);

    /* Asking for more context than the daemon grants. */
    elm_proto_put_u64(tc_begin(&f->c, ELM_CMD_OPEN_SESSION), ELM_TAG_N_CTX, 1u << 20);
    assert_int_equal(tc_call(&f->c, 10000), ELM_ECONTEXT);
}

static void test_list_and_limit(void **state)
{
    struct fx *f = *state;
    REQUIRE_DAEMON(f);
    struct ts s[4];
    static struct ts_result r;
    for (int i = 0; i < 4; i++)
        assert_int_equal(ts_open(&f->c, &s[i], getpid(), 0), 0);
    assert_int_equal(tc_simple(&f->c, ELM_CMD_OPEN_SESSION), ELM_EBUSY);
    assert_int_equal(ts_prompt(&s[2], 5, "Once upon a time", 20, 0, 1), 0);
    assert_int_equal(ts_collect(&s[2], &r, 10000), 0);
    assert_int_equal(tc_simple(&f->c, ELM_CMD_SESSIONS), 0);
    struct elm_proto_view g;
    uint32_t cur = 0;
    int n = 0;
    while (elm_proto_next_group(&f->c.rep.body, ELM_TAG_SESSION, &cur, &g) == 0) {
        uint64_t id = 0, pid = 0, in = 0, out = 0, age = 0, st = 0;
        elm_proto_get_u64(&g, ELM_TAG_SESSION_ID, &id);
        elm_proto_get_u64(&g, ELM_TAG_PID, &pid);
        elm_proto_get_u64(&g, ELM_TAG_STATE, &st);
        elm_proto_get_u64(&g, ELM_TAG_N_PROMPT_TOKENS, &in);
        elm_proto_get_u64(&g, ELM_TAG_N_GEN_TOKENS, &out);
        elm_proto_get_u64(&g, ELM_TAG_AGE_NS, &age);
        assert_int_equal(pid, getpid());
        assert_int_equal(st, ELM_SESSION_STATE_IDLE);
        assert_true(age > 0);
        if (id == s[2].id) {
            assert_int_equal(out, 20);
            assert_true(in >= 4);
        }
        n++;
    }
    assert_int_equal(n, 4);
    assert_int_equal(tc_simple(&f->c, ELM_CMD_STATUS), 0);
    assert_int_equal(tc_u64(&f->c, ELM_TAG_N_SESSIONS), 4);
    /* One pool for all sessions: by default max(max_sessions x ctx / 4, 4 x ctx) positions. */
    uint64_t pages = tc_u64(&f->c, ELM_TAG_KV_PAGES);
    assert_int_equal(pages, (4 * s[0].n_ctx + 31) / 32);
    assert_int_equal(tc_u64(&f->c, ELM_TAG_KV_CAPACITY), pages * 32);
    assert_int_equal(tc_u64(&f->c, ELM_TAG_KV_BYTES), pages * tc_u64(&f->c, ELM_TAG_KV_PAGE_BYTES));
    /* s[2]'s 20-token answer keeps its history's pages; the others hold none */
    assert_true(tc_u64(&f->c, ELM_TAG_KV_TOKENS) >= 20);
    assert_true(tc_u64(&f->c, ELM_TAG_KV_PAGES_FREE) < pages);
    for (int i = 0; i < 4; i++)
        assert_int_equal(ts_close(&f->c, &s[i]), 0);
    int64_t end = td_deadline(5000);
    while (count_sessions(&f->c, 0) && td_now_ms() < end)
        td_sleep_ms(10);
    assert_int_equal(count_sessions(&f->c, 0), 0);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    td_alarm(300);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_garbage_closes_only_that_session, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_killed_client_is_noticed, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_slow_reader_pauses_only_itself, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_and_context, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_list_and_limit, setup, fx_teardown),
    };
    if (getenv("ELMD_TEST_FILTER")) /* e.g. ELMD_TEST_FILTER='*cancel*' */
        cmocka_set_test_filter(getenv("ELMD_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
