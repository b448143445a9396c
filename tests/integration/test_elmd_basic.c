/* test_elmd_basic.c — elmd as a process: one daemon per runtime directory, the permissions of
 * what it creates, greedy output identical to the in-process engine (alone and batched with
 * another session), start-up in the background with a readiness wait, `-t`, SIGTERM draining
 * and SIGHUP reloading (an invalid file keeps the running configuration).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/common/elmd_fixture.h"

static int teardown(void **state)
{
    struct td *t = *state;
    if (t) {
        int rc = td_cleanup(t);
        free(t);
        return rc;
    }
    return 0;
}

static struct td *start(void **state, const char *const *extra)
{
    ELM_REQUIRE_MODEL(model, TD_MODEL);
    struct td *t = calloc(1, sizeof *t);
    *state = t;
    int rc = td_start(t, model, extra);
    if (rc) {
        td_dump_log(t);
        fail_msg("elmd did not start: %s", elm_strerror(rc));
    }
    return t;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_second_daemon_refused(void **state)
{
    struct td *t = start(state, NULL);
    struct td t2 = *t;
    snprintf(t2.log, sizeof t2.log, "%s/second.log", t->base);
    const char *args[] = {"--foreground", "--runtime-dir", t->dir, NULL};
    pid_t pid = td_exec(&t2, args);
    int st = td_wait(pid, 10000);
    assert_true(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1);
    char want[256], *log = elm_test_read_file(t2.log, NULL);
    snprintf(want, sizeof want, "elmd: another elmd (pid %ld) already serves %s", (long)t->pid,
             t->dir);
    if (!log || !strstr(log, want))
        fail_msg("expected '%s', got '%s'", want, log ? log : "(nothing)");
    free(log);
    struct tc c; /* and the first one still serves */
    tc_open_path(&c, t->dir);
    assert_int_equal(tc_simple(&c, ELM_CMD_STATUS), 0);
    tc_close(&c);
}

static void test_permissions(void **state)
{
    struct td *t = start(state, NULL);
    struct stat st;
    char p[4200];
    assert_int_equal(stat(t->dir, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    snprintf(p, sizeof p, "%s/control", t->dir);
    assert_int_equal(stat(p, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    snprintf(p, sizeof p, "%s/elmd.pid", t->dir);
    char *pid = elm_test_read_file(p, NULL);
    assert_non_null(pid);
    assert_int_equal(atol(pid), t->pid);
    free(pid);

    snprintf(p, sizeof p, "%s/regions", t->dir);
    assert_int_equal(stat(p, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);

    /* The session's region: announced as that socket and a token, and fetched from it. */
    struct tc c;
    tc_open_path(&c, t->dir);
    elm_proto_put_u64(tc_begin(&c, ELM_CMD_OPEN_SESSION), ELM_TAG_PID, (uint64_t)getpid());
    assert_int_equal(tc_call(&c, 10000), 0);
    assert_string_equal(tc_str(&c, ELM_TAG_REGION_SOCKET), p);
    int fd;
    assert_int_equal(tc_fetch_region(&c, &fd), 0);
    assert_int_equal(fstat(fd, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal((uint64_t)st.st_size, tc_u64(&c, ELM_TAG_SHM_SIZE));
    close(fd);
    tc_close(&c);
}

static void test_output_matches_engine(void **state)
{
    ELM_REQUIRE_MODEL(model, TD_MODEL);
    struct td *t = start(state, NULL);
    static const char *prompts[2] = {"Once upon a time", "The little dog ran to the park"};
    static struct ts_result want[2], got[2];
    for (int i = 0; i < 2; i++)
        local_greedy(model, prompts[i], 120, &want[i]);

    struct tc c;
    struct ts s[2];
    tc_open_path(&c, t->dir);
    for (int i = 0; i < 2; i++)
        assert_int_equal(ts_open(&c, &s[i], getpid(), 0), 0);
    /* Alone first, then both at once: batching must not change a single token. */
    assert_int_equal(ts_prompt(&s[0], 1, prompts[0], 120, 0, 1), 0);
    assert_int_equal(ts_collect(&s[0], &got[0], 20000), 0);
    assert_same(&got[0], &want[0]);
    assert_int_equal(got[0].dn.reason, ELM_DONE_LENGTH);
    assert_int_equal(got[0].dn.n_gen, 120);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 2; i++)
            assert_int_equal(ts_prompt(&s[i], 10 + i, prompts[i], 120, 0, 1), 0);
        for (int i = 0; i < 2; i++) {
            assert_int_equal(ts_collect(&s[i], &got[i], 20000), 0);
            assert_int_equal(got[i].req_id, 10 + i);
            assert_same(&got[i], &want[i]);
        }
    }
    assert_int_equal(tc_simple(&c, ELM_CMD_STATS), 0);
    assert_true(tc_u64(&c, ELM_TAG_N_GEN_TOKENS) >= 7 * 120);
    assert_true(tc_u64(&c, ELM_TAG_TTFT_P50_NS) > 0);
    assert_true(tc_u64(&c, ELM_TAG_ITL_P99_NS) >= tc_u64(&c, ELM_TAG_ITL_P50_NS));
    for (int i = 0; i < 2; i++)
        assert_int_equal(ts_close(&c, &s[i]), 0);
    tc_close(&c);
}

static void test_background_start(void **state)
{
    ELM_REQUIRE_MODEL(model, TD_MODEL);
    struct td *t = calloc(1, sizeof *t);
    *state = t;
    assert_int_equal(td_mkbase(t), 0);
    const char *args[] = {"--runtime-dir", t->dir, "--model", model, NULL};
    pid_t pid = td_exec(t, args);
    int st = td_wait(pid, 30000);
    assert_true(st != -1 && WIFEXITED(st));
    if (WEXITSTATUS(st) != 0) {
        td_dump_log(t);
        fail_msg("elmd exited %d", WEXITSTATUS(st));
    }
    /* It returned only once ready: the model answers at once. */
    struct tc c;
    tc_open_path(&c, t->dir);
    assert_int_equal(tc_simple(&c, ELM_CMD_STATUS), 0);
    assert_string_equal(tc_str(&c, ELM_TAG_PATH), model);
    long dpid = (long)tc_u64(&c, ELM_TAG_PID);
    tc_close(&c);
    assert_true(dpid > 0 && dpid != pid);
    assert_int_equal(kill((pid_t)dpid, SIGTERM), 0);
    int64_t end = td_now_ms() + 10000;
    while (kill((pid_t)dpid, 0) == 0 && td_now_ms() < end)
        td_sleep_ms(20);
    assert_int_not_equal(kill((pid_t)dpid, 0), 0);
    char p[256];
    snprintf(p, sizeof p, "%s/elmd.pid", t->dir);
    assert_int_not_equal(access(p, F_OK), 0);

    /* A background start that fails says why and exits 1. */
    const char *bad[] = {"--runtime-dir", t->dir, "--model", "/nonexistent.gguf", NULL};
    st = td_wait(td_exec(t, bad), 30000);
    assert_true(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1);
    char *log = elm_test_read_file(t->log, NULL);
    assert_non_null(strstr(log, "nonexistent.gguf"));
    free(log);
}

static void test_check_config(void **state)
{
    ELM_REQUIRE_MODEL(model, TD_MODEL);
    struct td *t = calloc(1, sizeof *t);
    *state = t;
    assert_int_equal(td_mkbase(t), 0);
    char cfg[160];
    snprintf(cfg, sizeof cfg, "%s/elmd.conf", t->base);
    FILE *f = fopen(cfg, "w");
    fprintf(f, "# test\nmodel = %s\nthreads = 1\nctx = 256\nkv_type = f32\n", model);
    fclose(f);
    const char *ok[] = {"-t", "--config", cfg, NULL};
    int st = td_wait(td_exec(t, ok), 20000);
    assert_true(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    f = fopen(cfg, "a");
    fprintf(f, "max_sesions = 4\n");
    fclose(f);
    st = td_wait(td_exec(t, ok), 20000);
    assert_true(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1);
    char *log = elm_test_read_file(t->log, NULL);
    assert_non_null(strstr(log, ":6: unknown key 'max_sesions'"));
    free(log);
    const char *badmodel[] = {"-t", "--model", cfg, NULL}; /* a text file is no model */
    st = td_wait(td_exec(t, badmodel), 20000);
    assert_true(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1);
}

static void test_sigterm_drains(void **state)
{
    struct td *t = calloc(1, sizeof *t);
    *state = t;
    ELM_REQUIRE_MODEL(model, TD_MODEL);
    char cfg[160];
    assert_int_equal(td_mkbase(t), 0);
    snprintf(cfg, sizeof cfg, "%s/elmd.conf", t->base);
    FILE *f = fopen(cfg, "w");
    fprintf(f, "drain_ms = 300\n");
    fclose(f);
    const char *extra[] = {"--config", cfg, NULL};
    int rc = td_start(t, model, extra);
    if (rc)
        fail_msg("start: %s", elm_strerror(rc));

    /* A session that does not read its events: its request cannot finish (the 16 KiB ring fills
     * long before the 2048-token context, and the session pauses), so the drain time runs out
     * and it ends with ERROR(ESHUTDOWN) — which still fits: a step is planned only when a
     * token and a final record both fit. */
    struct tc c;
    struct ts s;
    tc_open_path(&c, t->dir);
    struct elm_proto_buf *b = tc_begin(&c, ELM_CMD_OPEN_SESSION);
    elm_proto_put_u64(b, ELM_TAG_PID, (uint64_t)getpid());
    elm_proto_put_u64(b, ELM_TAG_EVT_RING_SIZE, 16384);
    assert_int_equal(tc_call(&c, 10000), 0);
    int fd;
    memset(&s, 0, sizeof s);
    assert_int_equal(tc_fetch_region(&c, &fd), 0);
    assert_int_equal(elm_shm_adopt(&s.shm, fd, tc_u64(&c, ELM_TAG_SHM_SIZE)), 0);
    assert_int_equal(elm_session_shm_attach(s.shm.base, s.shm.size,
                                            (uint32_t)tc_u64(&c, ELM_TAG_REQ_RING_SIZE), 16384,
                                            ELM_SESSION_CLIENT, &s.r),
                     0);
    assert_int_equal(ts_prompt(&s, 7, "Once upon a time", 0, 0.8f, 42), 0);
    td_sleep_ms(300); /* the ring fills, or, on a busy machine, the request still runs */
    assert_int_equal(kill(t->pid, SIGTERM), 0);
    struct ts_result *res = calloc(1, sizeof *res);
    assert_int_equal(ts_collect(&s, res, 10000), 0);
    assert_true(res->error);
    assert_int_equal(res->err_code, ELM_ESHUTDOWN);
    assert_int_equal(res->req_id, 7);
    int st = td_wait(t->pid, 10000);
    assert_true(st != -1);
    t->pid = 0;
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    /* It let the request run out the drain time, then ended it (the daemon's log says so;
     * how long that took is not asserted) */
    char *log = elm_test_read_file(t->log, NULL);
    assert_non_null(log);
    assert_non_null(strstr(log, "draining ("));
    assert_non_null(strstr(log, "drain time is up: ending 1 request(s)"));
    free(log);
    char p[256];
    snprintf(p, sizeof p, "%s/control", t->dir);
    assert_int_not_equal(access(p, F_OK), 0);
    snprintf(p, sizeof p, "%s/elmd.pid", t->dir);
    assert_int_not_equal(access(p, F_OK), 0);
    /* The daemon closed the session's rings on its way out. */
    struct elm_ring_rec rec;
    assert_int_equal(elm_ring_peek(&s.r.evt, &rec), -EPIPE);
    elm_shm_close(&s.shm);
    tc_close(&c);
    free(res);
}

static void test_sighup(void **state)
{
    struct td *t = calloc(1, sizeof *t);
    *state = t;
    ELM_REQUIRE_MODEL(model, TD_MODEL);
    char cfg[160];
    assert_int_equal(td_mkbase(t), 0);
    snprintf(cfg, sizeof cfg, "%s/elmd.conf", t->base);
    FILE *f = fopen(cfg, "w");
    fprintf(f, "max_sessions = 5\n");
    fclose(f);
    const char *extra[] = {"--config", cfg, NULL};
    assert_int_equal(td_start(t, model, extra), 0);
    struct tc c;
    tc_open_path(&c, t->dir);
    assert_int_equal(tc_simple(&c, ELM_CMD_STATUS), 0);
    assert_int_equal(tc_u64(&c, ELM_TAG_MAX_SESSIONS), 5);

    f = fopen(cfg, "w");
    fprintf(f, "max_sessions = 7\nthis is not a setting\n");
    fclose(f);
    assert_int_equal(kill(t->pid, SIGHUP), 0);
    char *log = NULL;
    int64_t end = td_now_ms() + 5000;
    while (td_now_ms() < end) {
        free(log);
        log = elm_test_read_file(t->log, NULL);
        if (log && strstr(log, "keeping the current configuration"))
            break;
        td_sleep_ms(20);
    }
    assert_non_null(strstr(log, "keeping the current configuration"));
    free(log);
    assert_int_equal(tc_simple(&c, ELM_CMD_STATUS), 0);
    assert_int_equal(tc_u64(&c, ELM_TAG_MAX_SESSIONS), 5);
    assert_string_equal(tc_str(&c, ELM_TAG_PATH), model);

    f = fopen(cfg, "w");
    fprintf(f, "max_sessions = 7\n");
    fclose(f);
    assert_int_equal(kill(t->pid, SIGHUP), 0);
    end = td_now_ms() + 5000;
    while (td_now_ms() < end) {
        assert_int_equal(tc_simple(&c, ELM_CMD_STATUS), 0);
        if (tc_u64(&c, ELM_TAG_MAX_SESSIONS) == 7)
            break;
        td_sleep_ms(20);
    }
    assert_int_equal(tc_u64(&c, ELM_TAG_MAX_SESSIONS), 7);
    tc_close(&c);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    alarm(300); /* the whole file; each wait below has its own shorter deadline */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_second_daemon_refused, teardown),
        cmocka_unit_test_teardown(test_permissions, teardown),
        cmocka_unit_test_teardown(test_output_matches_engine, teardown),
        cmocka_unit_test_teardown(test_background_start, teardown),
        cmocka_unit_test_teardown(test_check_config, teardown),
        cmocka_unit_test_teardown(test_sigterm_drains, teardown),
        cmocka_unit_test_teardown(test_sighup, teardown),
    };
    if (getenv("ELMD_TEST_FILTER")) /* e.g. ELMD_TEST_FILTER='*cancel*' */
        cmocka_set_test_filter(getenv("ELMD_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
