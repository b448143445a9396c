/* test_client_daemon.c — libelmclient against the real elmd, with real processes.
 *
 * The daemon runs from the build tree (daemon/elmd --foreground --runtime-dir <fresh dir>
 * --model stories260K.gguf --threads 1: single-threaded, it keeps its pace when other tests
 * share the CPUs). Client processes are forked from this one; each test runs under an
 * alarm. What is checked:
 *   - four client processes with two sessions each stream greedy completions of eight different
 *     prompts at once (one session read with elm_session_next, the other from a second thread
 *     with elm_session_generate), and every stream equals the engine's in-process output for its
 *     prompt, byte for byte;
 *   - a client killed with SIGKILL mid-stream: the daemon frees its session by itself, and the
 *     streams of the other clients complete unchanged;
 *   - unloading the model ends a running request with ELM_ENOMODEL and closes its session;
 *   - another user cannot connect (a child that becomes uid 54321; needs root);
 *   - with `group = users`, a member of the group streams like the owner (needs root).
 * Skips with a message when elmd is not built or the model file is missing.
 */
#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "elm/client.h"
#include "engine/seq.h"
#include "tests/common/elm_test.h"

#define N_PREDICT        80  /* tokens per stream */
#define N_PREDICT_MID    400 /* the kill test's survivors: still generating when the victim dies */
#define N_PREDICT_VICTIM 1000
#define TEST_ALARM_S     300

static const char *const prompts[8] = {
    "Once upon a time",    "The little dog",         "Lily and Ben went to the park", "",
    "One day, a big bird", "Tom had a red ball. He", "The sun was shining and",       "Mom said",
};

/* ---------------------------------------------------------------------------------------------
 * The daemon
 */

struct daemon {
    char dir[64];
    pid_t pid;
};

/* What a failed assertion leaves running, for teardown to kill: the daemon and the clients.
 * Static, not on a test's stack: teardown runs after the test function has gone. Teardown kills
 * only these children and only while they are unreaped (a pid that waitpid already collected
 * may belong to anybody by now). */
static struct daemon g_daemon;
static pid_t g_kids[8];
static int g_n_kids;

/* Kills child pid if it is still an unreaped child of this process, and reaps it. */
static void kill_child(pid_t pid)
{
    if (pid > 0 && waitpid(pid, NULL, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}

/* In a forked child: die with the test (so a failed or timed-out test leaves nothing behind),
 * and keep only the descriptors it was given, so that a pipe reaches end-of-file when the
 * process that should write it dies. */
static void child_setup(int keep1, int keep2)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (int fd = 3; fd < 1024; fd++)
        if (fd != keep1 && fd != keep2)
            close(fd);
}

static pid_t fork_child(int keep1, int keep2)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        child_setup(keep1, keep2);
    else if (g_n_kids < (int)(sizeof g_kids / sizeof *g_kids))
        g_kids[g_n_kids++] = pid;
    return pid;
}

/* Starts elmd (with the config file conf when not NULL) and waits until it answers; skips the
 * test when elmd or the model is missing. The daemon is g_daemon. */
static struct daemon *daemon_start_conf(const char *model, const char *conf)
{
    struct daemon *d = &g_daemon;
    char elmd[4096], log[128];
    snprintf(elmd, sizeof elmd, "%s/daemon/elmd", elm_test_build_dir());
    if (access(elmd, X_OK) != 0) {
        print_message("SKIP: %s is not built yet\n", elmd);
        skip();
    }
    snprintf(d->dir, sizeof d->dir, "/tmp/elm-clt-XXXXXX");
    assert_non_null(mkdtemp(d->dir));
    snprintf(log, sizeof log, "%s.log", d->dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        child_setup(-1, -1);
        FILE *f = freopen(log, "w", stderr);
        (void)f;
        if (conf)
            execl(elmd, "elmd", "--foreground", "--config", conf, "--runtime-dir", d->dir,
                  "--model", model, "--threads", "1", (char *)NULL);
        else
            execl(elmd, "elmd", "--foreground", "--runtime-dir", d->dir, "--model", model,
                  "--threads", "1", (char *)NULL);
        _exit(127);
    }
    d->pid = pid;
    /* a hang here is caught by the test's alarm */
    for (;;) {
        elm_client *c;
        struct elm_daemon_status st;
        /* The socket answers before the start-up model is in place: wait for that too. */
        if (elm_client_connect(d->dir, &c) == 0) {
            bool ready = elm_client_status(c, &st) == 0 && st.model_loaded && !st.loading;
            elm_client_close(&c);
            if (ready)
                return d;
        }
        if (waitpid(d->pid, NULL, WNOHANG) != 0) {
            d->pid = 0;
            fail_msg("elmd exited before it answered (see %s)", log);
        }
        usleep(20000);
    }
}

static struct daemon *daemon_start(const char *model)
{
    return daemon_start_conf(model, NULL);
}

/* Stops the daemon (SIGTERM: it drains and exits 0) and removes its files; with kill9, after
 * a failure, just makes sure it is gone and keeps the log. Does nothing when it is not running
 * (never started, or already stopped). */
static void daemon_stop(struct daemon *d, bool kill9)
{
    char cmd[160];
    int st;
    pid_t pid = d->pid;
    d->pid = 0;
    if (pid <= 0)
        return;
    if (kill9) {
        kill_child(pid);
    } else {
        kill(pid, SIGTERM); /* still our unreaped child: nobody else has its pid */
        assert_int_equal(waitpid(pid, &st, 0), pid);
    }
    snprintf(cmd, sizeof cmd, kill9 ? "rm -rf %s" : "rm -rf %s %s.log", d->dir, d->dir);
    assert_int_equal(system(cmd), 0);
    assert_true(kill9 || (WIFEXITED(st) && WEXITSTATUS(st) == 0));
}

static int teardown(void **state)
{
    for (int i = 0; i < g_n_kids; i++)
        kill_child(g_kids[i]);
    g_n_kids = 0;
    if (g_daemon.pid > 0) {
        print_message("elmd's log: %s.log\n", g_daemon.dir);
        daemon_stop(&g_daemon, true);
    }
    alarm(0);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Expected outputs, computed in this process with the engine
 */

struct text {
    char buf[8192];
    size_t len;
};

static int collect_local(void *user, const struct elm_seq_out *out)
{
    struct text *t = user;
    if (out->text_len && t->len + out->text_len < sizeof t->buf) {
        memcpy(t->buf + t->len, out->text, out->text_len);
        t->len += out->text_len;
    }
    return 0;
}

static void expected(const char *model, int n, const char *const *ps, int n_predict,
                     struct text *out)
{
    char err[256];
    /* One thread: OpenMP's spinning barriers crawl when other tests share the CPUs, and the
     * output does not depend on the thread count. */
    struct elm_model_params mp = {.n_threads = 1};
    struct elm_model *m = NULL;
    assert_int_equal(elm_model_load(model, &mp, &m, err, sizeof err), 0);
    int32_t n_ctx = m->hp.n_ctx_train < 4096 ? m->hp.n_ctx_train : 4096;
    for (int i = 0; i < n; i++) {
        struct elm_gen_params gp;
        elm_gen_params_default(&gp);
        gp.sampling.temp = 0;
        gp.n_predict = n_predict;
        int32_t *ids, n_ids;
        struct elm_seq *s;
        struct elm_work *w;
        assert_int_equal(elm_prompt_tokenize(m, ps[i], strlen(ps[i]), false, &ids, &n_ids), 0);
        assert_int_equal(elm_seq_create(m, n_ctx, ELM_TYPE_F16, &s), 0);
        assert_int_equal(elm_work_create(m, 256, n_ctx, &w), 0);
        assert_int_equal(elm_seq_start(s, ids, n_ids, &gp), 0);
        out[i].len = 0;
        assert_int_equal(elm_seq_run(s, w, collect_local, &out[i]), 0);
        assert_true(out[i].len > 0);
        free(ids);
        elm_seq_destroy(&s);
        elm_work_destroy(&w);
    }
    elm_model_destroy(&m);
}

/* ---------------------------------------------------------------------------------------------
 * Client processes
 */

/* In a client process: says what failed, returns the exit status. */
static int child_fail(int status, const char *what, int rc)
{
    fprintf(stderr, "client %d: %s: %s\n", (int)getpid(), what, elm_strerror(rc));
    return status;
}

static void greedy(struct elm_request *r, const char *prompt, int n_predict)
{
    elm_request_init(r);
    r->prompt = prompt;
    r->temp = 0;
    r->n_predict = n_predict;
}

/* Reads one event of s into t; returns 1 when the request ended, 0 when not yet, or an error
 * code (child processes exit with it). */
static int step(elm_session *s, struct text *t, int timeout_ms)
{
    struct elm_event ev;
    int rc = elm_session_next(s, &ev, timeout_ms);
    if (rc == -ETIMEDOUT)
        return 0;
    if (rc < 0)
        return rc;
    if (ev.type == ELM_EVENT_ERROR)
        return ev.error;
    if (ev.type == ELM_EVENT_DONE)
        return 1;
    if (t->len + ev.text_len < sizeof t->buf) {
        memcpy(t->buf + t->len, ev.text, ev.text_len);
        t->len += ev.text_len;
    }
    return 0;
}

struct gen_arg {
    elm_session *s;
    struct elm_request req;
    struct text out;
    int rc;
};

static int collect_remote(void *user, const struct elm_event *ev)
{
    struct text *t = user;
    if (ev->type == ELM_EVENT_TOKEN && t->len + ev->text_len < sizeof t->buf) {
        memcpy(t->buf + t->len, ev->text, ev->text_len);
        t->len += ev->text_len;
    }
    return 0;
}

static void *gen_thread(void *p)
{
    struct gen_arg *a = p;
    a->rc = elm_session_generate(a->s, &a->req, collect_remote, &a->out);
    return NULL;
}

/* One client process: prompts i and i+1 on two sessions at once, the first read here, the
 * second by elm_session_generate in another thread. Writes both texts (NUL-separated) to fd.
 * Returns the process exit status. */
static int client_two_sessions(const char *dir, int i, int fd)
{
    elm_client *c;
    elm_session *s1, *s2;
    static struct text t1;
    static struct gen_arg a2;
    struct elm_request r1;
    int rc;
    if ((rc = elm_client_connect(dir, &c)) || (rc = elm_session_open(c, &s1)) ||
        (rc = elm_session_open(c, &s2)))
        return child_fail(10, "connect/open", rc);
    greedy(&r1, prompts[i], N_PREDICT);
    greedy(&a2.req, prompts[i + 1], N_PREDICT);
    a2.s = s2;
    pthread_t th;
    if ((rc = elm_session_submit(s1, &r1)) || pthread_create(&th, NULL, gen_thread, &a2))
        return child_fail(11, "submit", rc);
    while ((rc = step(s1, &t1, 5)) == 0)
        ;
    pthread_join(th, NULL);
    if (rc != 1 || a2.rc != 0)
        return child_fail(12, "stream", rc != 1 ? rc : a2.rc);
    if (write(fd, t1.buf, t1.len) < 0 || write(fd, "", 1) < 0 ||
        write(fd, a2.out.buf, a2.out.len) < 0 || write(fd, "", 1) < 0)
        return 13;
    elm_session_close(&s1);
    elm_session_close(&s2);
    elm_client_close(&c);
    return 0;
}

static pid_t spawn_client(int (*fn)(const char *, int, int, int), const char *dir, int i,
                          int fd_out, int fd_in)
{
    pid_t pid = fork_child(fd_out, fd_in);
    if (pid == 0)
        _exit(fn(dir, i, fd_out, fd_in));
    return pid;
}

static int run_two_sessions(const char *dir, int i, int fd_out, int fd_in)
{
    return client_two_sessions(dir, i, fd_out);
}

/* Reads everything from fd into buf (NUL-terminated). */
static size_t read_all(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    ssize_t r;
    while (n < cap - 1 && (r = read(fd, buf + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = 0;
    return n;
}

static void wait_ok(pid_t pid)
{
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("client %d ended with status %d", (int)pid, st);
}

/* Reads a client_two_sessions child's two texts from fd, waits for it, and compares them with
 * want[0] and want[1]. */
static void expect_two_texts(int fd, pid_t pid, const struct text *want)
{
    static char got[2 * sizeof want[0].buf + 2];
    size_t n = read_all(fd, got, sizeof got);
    close(fd);
    wait_ok(pid);
    size_t l1 = strlen(got);
    assert_true(l1 < n);
    assert_int_equal(l1, want[0].len);
    assert_memory_equal(got, want[0].buf, l1);
    assert_int_equal(strlen(got + l1 + 1), want[1].len);
    assert_memory_equal(got + l1 + 1, want[1].buf, want[1].len);
}

/* A child that becomes uid 54321, in no group, is refused by the daemon at dir. */
static void expect_stranger_refused(const char *dir)
{
    pid_t pid = fork_child(-1, -1);
    if (pid == 0) {
        elm_client *c = NULL;
        if (setgroups(0, NULL) || setresgid(54321, 54321, 54321) || setresuid(54321, 54321, 54321))
            _exit(3);
        int rc = elm_client_connect(dir, &c);
        _exit(rc == -EACCES && !c ? 0 : 1);
    }
    wait_ok(pid);
}

static void test_four_clients_eight_streams(void **state)
{
    ELM_REQUIRE_MODEL(model, "stories260K.gguf");
    alarm(TEST_ALARM_S);
    static struct text want[8];
    expected(model, 8, prompts, N_PREDICT, want);
    struct daemon *d = daemon_start(model);
    int fds[4][2];
    pid_t pids[4];
    for (int k = 0; k < 4; k++) {
        assert_int_equal(pipe(fds[k]), 0);
        pids[k] = spawn_client(run_two_sessions, d->dir, 2 * k, fds[k][1], -1);
        close(fds[k][1]);
    }
    for (int k = 0; k < 4; k++)
        expect_two_texts(fds[k][0], pids[k], &want[2 * k]);
    daemon_stop(d, false);
}

/* ---------------------------------------------------------------------------------------------
 * kill -9 mid-stream
 */

/* A client that reads a few tokens, tells the parent (one byte on fd_out), waits for the
 * parent's go (one byte on fd_in), then reads the rest and writes its text to fd_out. */
static int client_paused(const char *dir, int i, int fd_out, int fd_in)
{
    elm_client *c;
    elm_session *s;
    static struct text t;
    struct elm_request r;
    char b;
    int rc;
    if ((rc = elm_client_connect(dir, &c)) || (rc = elm_session_open(c, &s)))
        return child_fail(10, "connect/open", rc);
    greedy(&r, prompts[i], N_PREDICT_MID);
    if ((rc = elm_session_submit(s, &r)))
        return child_fail(11, "submit", rc);
    while (t.len < 8 && (rc = step(s, &t, 1000)) == 0)
        ;
    if (rc != 0)
        return child_fail(12, "stream", rc);
    if (write(fd_out, "m", 1) != 1 || read(fd_in, &b, 1) != 1)
        return 13;
    while ((rc = step(s, &t, 1000)) == 0)
        ;
    if (rc != 1)
        return child_fail(14, "stream", rc);
    if (write(fd_out, t.buf, t.len) < 0)
        return 15;
    elm_session_close(&s);
    elm_client_close(&c);
    return 0;
}

/* The victim: streams a long request, slowly, until killed. */
static int client_victim(const char *dir, int i, int fd_out, int fd_in)
{
    elm_client *c;
    elm_session *s;
    struct text t = {.len = 0};
    struct elm_request r;
    int rc;
    if ((rc = elm_client_connect(dir, &c)) || (rc = elm_session_open(c, &s)))
        return child_fail(10, "connect/open", rc);
    elm_request_init(&r);
    r.prompt = prompts[i];
    r.n_predict = N_PREDICT_VICTIM;
    if ((rc = elm_session_submit(s, &r)))
        return child_fail(11, "submit", rc);
    for (int n = 0;; n++) {
        rc = step(s, &t, 1000);
        if (rc < 0)
            return child_fail(12, "stream", rc);
        if (rc == 1)
            pause(); /* the model ended the text: stay, session open, until killed */
        if (n == 1 && write(fd_out, "v", 1) != 1)
            return 13;
        usleep(2000);
    }
}

static bool session_of(elm_client *c, pid_t pid)
{
    struct elm_session_info *list;
    size_t n;
    assert_int_equal(elm_client_sessions(c, &list, &n), 0);
    bool found = false;
    for (size_t i = 0; i < n; i++)
        found |= list[i].pid == pid;
    free(list);
    return found;
}

static void test_kill_client_mid_stream(void **state)
{
    ELM_REQUIRE_MODEL(model, "stories260K.gguf");
    alarm(TEST_ALARM_S);
    static struct text want[2];
    const char *ps[2] = {prompts[0], prompts[2]};
    expected(model, 2, ps, N_PREDICT_MID, want);
    struct daemon *d = daemon_start(model);
    int up[3][2], down[3][2];
    pid_t pids[3];
    char b;
    for (int k = 0; k < 3; k++) {
        assert_int_equal(pipe(up[k]), 0);
        assert_int_equal(pipe(down[k]), 0);
        pids[k] = spawn_client(k == 2 ? client_victim : client_paused, d->dir, k == 2 ? 5 : 2 * k,
                               up[k][1], down[k][0]);
        close(up[k][1]);
        close(down[k][0]);
    }
    for (int k = 0; k < 3; k++)
        assert_int_equal(read(up[k][0], &b, 1), 1); /* everyone is mid-stream */

    elm_client *c;
    assert_int_equal(elm_client_connect(d->dir, &c), 0);
    assert_true(session_of(c, pids[2]));
    kill(pids[2], SIGKILL);
    waitpid(pids[2], NULL, 0);
    /* The daemon frees it by itself; how soon is not asserted (the test's alarm catches a
     * daemon that never does). */
    while (session_of(c, pids[2]))
        usleep(10000);
    assert_true(session_of(c, pids[0]) && session_of(c, pids[1]));
    elm_client_close(&c);

    for (int k = 0; k < 2; k++) {
        static char got[sizeof want[0].buf];
        assert_int_equal(write(down[k][1], "g", 1), 1);
        size_t n = read_all(up[k][0], got, sizeof got);
        wait_ok(pids[k]);
        assert_int_equal(n, want[k].len);
        assert_memory_equal(got, want[k].buf, n);
    }
    for (int k = 0; k < 3; k++) {
        close(up[k][0]);
        close(down[k][1]);
    }
    daemon_stop(d, false);
}

/* ---------------------------------------------------------------------------------------------
 * Unloading under a running request
 */

static void test_unload_ends_sessions(void **state)
{
    ELM_REQUIRE_MODEL(model, "stories260K.gguf");
    alarm(TEST_ALARM_S);
    struct daemon *d = daemon_start(model);
    elm_client *c;
    elm_session *s;
    struct elm_request r;
    struct elm_event ev;
    assert_int_equal(elm_client_connect(d->dir, &c), 0);
    assert_int_equal(elm_session_open(c, &s), 0);
    greedy(&r, prompts[0], 2000);
    assert_int_equal(elm_session_submit(s, &r), 0);
    assert_int_equal(elm_session_next(s, &ev, 5000), 0);
    assert_int_equal(ev.type, ELM_EVENT_TOKEN);
    assert_int_equal(elm_client_unload(c), 0);
    int rc;
    while ((rc = elm_session_next(s, &ev, 5000)) == 0 && ev.type == ELM_EVENT_TOKEN)
        ;
    assert_int_equal(rc, 0);
    assert_int_equal(ev.type, ELM_EVENT_ERROR);
    assert_int_equal(ev.error, ELM_ENOMODEL);
    print_message("the running request ended with: %s\n", ev.message);
    /* The session is gone; so is the model, for new sessions. */
    assert_int_equal(elm_session_submit(s, &r), ELM_ESESSION);
    elm_session_close(&s);
    assert_int_equal(elm_session_open(c, &s), ELM_ENOMODEL);
    elm_client_close(&c);
    daemon_stop(d, false);
}

/* ---------------------------------------------------------------------------------------------
 * Another user
 */

static void test_other_user_cannot_connect(void **state)
{
    ELM_REQUIRE_MODEL(model, "stories260K.gguf");
    if (geteuid() != 0) {
        print_message("SKIP: needs root to become another user (uid 54321)\n");
        skip();
    }
    alarm(TEST_ALARM_S);
    struct daemon *d = daemon_start(model);
    /* Even a runtime directory that others may enter keeps them out: the socket is 0600. */
    assert_int_equal(chmod(d->dir, 0755), 0);
    for (int open_dir = 0; open_dir < 2; open_dir++) {
        if (!open_dir)
            assert_int_equal(chmod(d->dir, 0700), 0);
        expect_stranger_refused(d->dir);
    }
    daemon_stop(d, false);
}

/* With `group = users`, a member of that group (another uid) streams through the daemon exactly
 * as its owner does — control socket, session region and all — and a non-member is refused. */
static void test_group_member_can_stream(void **state)
{
    ELM_REQUIRE_MODEL(model, "stories260K.gguf");
    const struct group *g = getgrnam("users");
    if (geteuid() != 0 || !g) {
        print_message("SKIP: needs root and a group 'users' to become a member (uid 54321)\n");
        skip();
    }
    const gid_t gid = g->gr_gid;
    alarm(TEST_ALARM_S);
    static struct text want[2];
    expected(model, 2, prompts, N_PREDICT, want);
    char conf[] = "/tmp/elm-clt-conf-XXXXXX";
    int cfd = mkstemp(conf);
    assert_true(cfd >= 0);
    assert_true(write(cfd, "group = users\n", 14) == 14);
    close(cfd);
    struct daemon *d = daemon_start_conf(model, conf);
    unlink(conf);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t member = fork_child(fds[1], -1);
    if (member == 0) {
        if (setgroups(1, &gid) || setresgid(gid, gid, gid) || setresuid(54321, 54321, 54321))
            _exit(3);
        _exit(client_two_sessions(d->dir, 0, fds[1]));
    }
    close(fds[1]);
    expect_two_texts(fds[0], member, want);
    expect_stranger_refused(d->dir);
    daemon_stop(d, false);
}

int main(void)
{
    /* A client whose daemon died must not take the test with it through SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_four_clients_eight_streams, teardown),
        cmocka_unit_test_teardown(test_kill_client_mid_stream, teardown),
        cmocka_unit_test_teardown(test_unload_ends_sessions, teardown),
        cmocka_unit_test_teardown(test_other_user_cannot_connect, teardown),
        cmocka_unit_test_teardown(test_group_member_can_stream, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
