/* test_elmd_owner.c — issue 17 items 6 and 10, rerun with real processes, sockets and shared
 * memory: each attack ends with a clear error for the attacker, and a well-behaved stream
 * running meanwhile stays identical to the engine in this process.
 *
 * - Item 6: another process cancels or closes a session it did not open (-EPERM now), and fills
 *   every session slot with sessions that claim someone else's pid (1): they are the opener's,
 *   whatever it claims, and go when it exits.
 * - Item 10: a stopped elmd (SIGSTOP) left a streaming client waiting forever; now the session's
 *   heartbeat stops, and the client gives up with ELM_EDAEMON after its stall timeout.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "elm/client.h"
#include "ipc/schema.h"
#include "tests/common/elmd_fixture.h"

#define PROMPT   "Once upon a time"
#define N_TOKENS 300
#define STALL_MS 1500 /* the victim's stall timeout in the SIGSTOP test */

static int setup(void **state)
{
    return fx_start(state, NULL);
}

/* CANCEL or CLOSE_SESSION of session id on c: the reply's status. */
static int session_cmd(struct tc *c, uint16_t cmd, uint64_t id)
{
    elm_proto_put_u64(tc_begin(c, cmd), ELM_TAG_SESSION_ID, id);
    return tc_call(c, 10000);
}

/* What the attacker saw. */
struct attack {
    int cancel_rc, close_rc; /* of the victim's session */
    int n_opened;            /* sessions it opened claiming pid 1 */
    int full_rc;             /* the OPEN_SESSION that found no slot */
    int own_cancel_rc;       /* CANCEL of one of its own sessions */
};

/* The attacker, in a child process: its own connection, pid 1 claimed. Reports on out, then
 * waits for a byte (or the parent's end) on in before it exits. */
static int attacker(const char *dir, uint64_t victim, int in, int out)
{
    struct tc c;
    struct attack a = {0};
    uint64_t first = 0;
    alarm(60);
    if (tc_open_path(&c, dir))
        return 2;
    a.cancel_rc = session_cmd(&c, ELM_CMD_CANCEL, victim);
    a.close_rc = session_cmd(&c, ELM_CMD_CLOSE_SESSION, victim);
    for (int i = 0; i < 64; i++) {
        elm_proto_put_u64(tc_begin(&c, ELM_CMD_OPEN_SESSION), ELM_TAG_PID, 1);
        a.full_rc = tc_call(&c, 10000);
        if (a.full_rc)
            break;
        if (!a.n_opened++)
            first = tc_u64(&c, ELM_TAG_SESSION_ID);
    }
    a.own_cancel_rc = first ? session_cmd(&c, ELM_CMD_CANCEL, first) : -1;
    if (write(out, &a, sizeof a) != sizeof a)
        return 3;
    char b;
    if (read(in, &b, 1) < 0)
        return 4;
    tc_close(&c);
    return 0; /* its sessions stay open: the daemon must notice the exit */
}

/* Open sessions, from STATUS. */
static uint64_t n_sessions(struct tc *c)
{
    assert_int_equal(tc_simple(c, ELM_CMD_STATUS), 0);
    return tc_u64(c, ELM_TAG_N_SESSIONS);
}

/* Issue 17 item 6. */
static void test_sessions_belong_to_their_opener(void **state)
{
    struct fx *f = *state;
    REQUIRE_DAEMON(f);
    static struct ts_result want, got;
    local_greedy(elm_test_model_path(TD_MODEL), PROMPT, N_TOKENS, &want);
    struct ts good;
    assert_int_equal(ts_open(&f->c, &good, getpid(), 0), 0);
    assert_int_equal(ts_prompt(&good, 1, PROMPT, N_TOKENS, 0, 1), 0);

    int to_child[2], from_child[2];
    assert_int_equal(pipe(to_child), 0);
    assert_int_equal(pipe(from_child), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(to_child[1]);
        close(from_child[0]);
        _exit(attacker(f->t.dir, good.id, to_child[0], from_child[1]));
    }
    close(to_child[0]);
    close(from_child[1]);
    struct attack a = {0};
    struct pollfd p = {.fd = from_child[0], .events = POLLIN};
    assert_int_equal(poll(&p, 1, 60000), 1);
    assert_int_equal(read(from_child[0], &a, sizeof a), (ssize_t)sizeof a);
    print_message("attacker: cancel %d, close %d, %d sessions opened claiming pid 1, then %d\n",
                  a.cancel_rc, a.close_rc, a.n_opened, a.full_rc);
    assert_int_equal(a.cancel_rc, -EPERM);
    assert_int_equal(a.close_rc, -EPERM);
    assert_true(a.n_opened > 0);
    assert_int_equal(a.full_rc, ELM_EBUSY);
    assert_int_equal(a.own_cancel_rc, 0); /* its own: allowed */

    /* The victim's stream went on, untouched. */
    assert_int_equal(ts_collect(&good, &got, 30000), 0);
    assert_same(&got, &want);

    /* The slots are the attacker's while it lives, and free once it exits (pid 1 lives on). */
    assert_int_equal(n_sessions(&f->c), (uint64_t)a.n_opened + 1);
    assert_int_equal(write(to_child[1], "x", 1), 1);
    int st = td_wait(pid, 30000);
    assert_true(st != -1 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    int64_t end = td_now_ms() + 30000;
    while (n_sessions(&f->c) != 1 && td_now_ms() < end)
        td_sleep_ms(20);
    assert_int_equal(n_sessions(&f->c), 1);
    close(to_child[1]);
    close(from_child[0]);

    struct ts more;
    assert_int_equal(ts_open(&f->c, &more, getpid(), 0), 0);
    assert_int_equal(ts_prompt(&more, 1, PROMPT, N_TOKENS, 0, 1), 0);
    assert_int_equal(ts_collect(&more, &got, 30000), 0);
    assert_same(&got, &want);
    /* The opener may still cancel and close its own. */
    assert_int_equal(session_cmd(&f->c, ELM_CMD_CANCEL, good.id), 0);
    assert_int_equal(ts_close(&f->c, &more), 0);
    assert_int_equal(ts_close(&f->c, &good), 0);
}

/* Reads s's events to the end into res: 0, or the error of elm_session_next. */
static int client_collect(elm_session *s, struct ts_result *res)
{
    struct elm_event ev;
    *res = (struct ts_result){0};
    for (;;) {
        int rc = elm_session_next(s, &ev, -1);
        if (rc)
            return rc;
        if (ev.type == ELM_EVENT_TOKEN) {
            if (res->n_ids < (int)(sizeof res->ids / sizeof *res->ids))
                res->ids[res->n_ids++] = ev.token;
            if (res->text_len + ev.text_len < sizeof res->text) {
                memcpy(res->text + res->text_len, ev.text, ev.text_len);
                res->text_len += ev.text_len;
            }
            continue;
        }
        res->done = ev.type == ELM_EVENT_DONE;
        res->error = ev.type == ELM_EVENT_ERROR;
        return 0;
    }
}

/* Issue 17 item 10. */
static void test_stopped_daemon_is_reported(void **state)
{
    struct fx *f = *state;
    REQUIRE_DAEMON(f);
    static struct ts_result want, got;
    local_greedy(elm_test_model_path(TD_MODEL), PROMPT, N_TOKENS, &want);
    elm_client *victim = NULL, *bystander = NULL;
    elm_session *vs = NULL, *bs = NULL;
    assert_int_equal(elm_client_connect(f->t.dir, &victim), 0);
    assert_int_equal(elm_client_connect(f->t.dir, &bystander), 0);
    assert_int_equal(elm_client_set_stall_timeout(victim, -1), -EINVAL);
    assert_int_equal(elm_client_set_stall_timeout(victim, STALL_MS), 0);
    assert_int_equal(elm_client_set_stall_timeout(bystander, 0), 0); /* waits for ever */
    assert_int_equal(elm_session_open(victim, &vs), 0);
    assert_int_equal(elm_session_open(bystander, &bs), 0);
    struct elm_request r;
    elm_request_init(&r);
    r.prompt = PROMPT;
    r.n_predict = N_TOKENS;
    r.temp = 0;
    r.seed = 1;

    /* Stopped before the requests, so neither can have been answered yet. */
    assert_int_equal(kill(f->t.pid, SIGSTOP), 0);
    assert_int_equal(elm_session_submit(vs, &r), 0);
    assert_int_equal(elm_session_submit(bs, &r), 0);
    struct elm_event ev;
    int64_t t0 = td_now_ms();
    int rc = elm_session_next(vs, &ev, -1);
    int64_t waited = td_now_ms() - t0;
    print_message("victim: %d (%s) after %lld ms: %s\n", rc, elm_strerror(rc), (long long)waited,
                  elm_session_last_message(vs));
    assert_int_equal(rc, ELM_EDAEMON);
    assert_non_null(strstr(elm_session_last_message(vs), "made no progress"));
    assert_int_equal(elm_session_next(vs, &ev, 0), ELM_EDAEMON); /* sticky */

    /* Resumed, the daemon finishes the bystander's stream exactly. */
    assert_int_equal(kill(f->t.pid, SIGCONT), 0);
    assert_int_equal(client_collect(bs, &got), 0);
    assert_true(got.done);
    assert_int_equal(got.n_ids, want.n_ids);
    assert_memory_equal(got.ids, want.ids, sizeof *want.ids * (size_t)want.n_ids);
    assert_int_equal(got.text_len, want.text_len);
    assert_memory_equal(got.text, want.text, want.text_len);
    elm_session_close(&vs);
    elm_session_close(&bs);
    elm_client_close(&victim);
    elm_client_close(&bystander);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    alarm(300); /* a hang fails the test instead of stalling the suite */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sessions_belong_to_their_opener, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_stopped_daemon_is_reported, setup, fx_teardown),
    };
    if (getenv("ELMD_TEST_FILTER"))
        cmocka_set_test_filter(getenv("ELMD_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
