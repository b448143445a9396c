/* test_elmd_regions.c — issue 17 items 2, 9 and 11, rerun with real processes: the session
 * region is sealed memory elmd hands only to the session's opener (ipc/shm.h, ipc/region.h).
 *
 * - Item 2: a client truncated its region to 0 while elmd wrote into it: SIGBUS killed elmd.
 *   Now ftruncate to 0, to a smaller and to a larger size fail with EPERM mid-stream, both
 *   streams finish exactly; punching holes into the whole region ends at most that session.
 * - Item 11: in group mode another member could open a session by its /dev/shm name. Now there
 *   is no name: the region socket refuses every process but the opener (-EPERM), another uid
 *   included, and hands a region over once; idle connections cannot block it.
 * - Item 9: a killed elmd left objects in /dev/shm. Now it maps none (only memfds), so nothing
 *   outlives it, and a client's mapping of a dead daemon's region still reads without a fault.
 * Each time a well-behaved stream runs meanwhile and must equal the engine in this process.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ipc/region.h"
#include "ipc/schema.h"
#include "tests/common/elmd_fixture.h"

#define PROMPT   "Once upon a time"
#define N_TOKENS 300
#define MEMBER   54321 /* the group member's uid (as in test_client_daemon) */
#define N_IDLE   24    /* idle region connections: more than elmd keeps waiting (16) */

static int setup(void **state)
{
    return fx_start(state, NULL);
}

/* With root and a group "users", a daemon that shares its sockets with that group. */
static bool can_test_group(void)
{
    return geteuid() == 0 && getgrnam("users");
}

static int setup_group(void **state)
{
    return can_test_group() ? fx_start_conf(state, "group = users\n") : fx_start(state, NULL);
}

/* What OPEN_SESSION announced, kept for fetching later (tc_fetch_region reads the last reply). */
struct raw {
    uint64_t id, size;
    uint32_t req_cap, evt_cap;
    char path[128];
    uint8_t token[ELM_REGION_TOKEN_LEN];
};

static void open_raw(struct tc *c, struct raw *r)
{
    elm_proto_put_u64(tc_begin(c, ELM_CMD_OPEN_SESSION), ELM_TAG_PID, (uint64_t)getpid());
    assert_int_equal(tc_call(c, 10000), 0);
    const void *tok;
    uint32_t len;
    assert_int_equal(elm_proto_get_bytes(&c->rep.body, ELM_TAG_REGION_TOKEN, &tok, &len), 0);
    assert_int_equal(len, ELM_REGION_TOKEN_LEN);
    memcpy(r->token, tok, len);
    assert_int_equal(
        elm_proto_copy_str(&c->rep.body, ELM_TAG_REGION_SOCKET, r->path, sizeof r->path), 0);
    r->id = tc_u64(c, ELM_TAG_SESSION_ID);
    r->size = tc_u64(c, ELM_TAG_SHM_SIZE);
    r->req_cap = (uint32_t)tc_u64(c, ELM_TAG_REQ_RING_SIZE);
    r->evt_cap = (uint32_t)tc_u64(c, ELM_TAG_EVT_RING_SIZE);
}

static int fetch(const struct raw *r, uid_t owner, int *fd)
{
    return elm_region_fetch(r->path, owner, r->id, r->token, 10000, fd);
}

/* Maps the region behind fd (a duplicate: fd stays the caller's) as session r's client side. */
static void map_raw(const struct raw *r, int fd, struct ts *s)
{
    memset(s, 0, sizeof *s);
    s->id = r->id;
    assert_int_equal(elm_shm_adopt(&s->shm, dup(fd), r->size), 0);
    assert_int_equal(elm_session_shm_attach(s->shm.base, s->shm.size, r->req_cap, r->evt_cap,
                                            ELM_SESSION_CLIENT, &s->r),
                     0);
}

/* Reads s's events into res (not cleared: it may hold the first ones) until DONE or ERROR. */
static int finish(struct ts *s, struct ts_result *res, int timeout_ms)
{
    int rc;
    while ((rc = ts_next(s, res, timeout_ms, NULL)) == 0) {
    }
    return rc == 1 ? 0 : rc;
}

/* Lines of /proc/pid/maps that contain what. */
static int maps_count(pid_t pid, const char *what)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    int n = 0;
    while (fgets(line, sizeof line, fp))
        n += strstr(line, what) != NULL;
    fclose(fp);
    return n;
}

/* Issue 17 item 2. */
static void test_truncate_while_streaming(void **state)
{
    struct fx *f = *state;
    REQUIRE_DAEMON(f);
    static struct ts_result want, got, bad_got;
    local_greedy(elm_test_model_path(TD_MODEL), PROMPT, N_TOKENS, &want);
    struct ts good, bad;
    struct raw r;
    int fd;
    assert_int_equal(ts_open(&f->c, &good, getpid(), 0), 0);
    open_raw(&f->c, &r);
    assert_int_equal(fetch(&r, geteuid(), &fd), 0); /* the attacker keeps its descriptor */
    map_raw(&r, fd, &bad);
    assert_int_equal(ts_prompt(&good, 1, PROMPT, N_TOKENS, 0, 1), 0);
    assert_int_equal(ts_prompt(&bad, 2, PROMPT, N_TOKENS, 0, 1), 0);
    memset(&bad_got, 0, sizeof bad_got);
    assert_int_equal(ts_next(&bad, &bad_got, 30000, NULL), 0); /* elmd is writing into it */

    const off_t sizes[] = {0, (off_t)r.size / 2, (off_t)r.size * 2};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        errno = 0;
        assert_int_equal(ftruncate(fd, sizes[i]), -1);
        assert_int_equal(errno, EPERM);
    }
    assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), -1); /* nor can it seal it shut */
    print_message("ftruncate to 0, %llu and %llu bytes mid-stream: EPERM\n",
                  (unsigned long long)sizes[1], (unsigned long long)sizes[2]);
    assert_int_equal(ts_collect(&good, &got, 30000), 0);
    assert_same(&got, &want);
    assert_int_equal(finish(&bad, &bad_got, 30000), 0); /* the attack changed nothing at all */
    assert_same(&bad_got, &want);

    /* What the seals allow: punching holes, i.e. zeroing every page, rings and header, while
     * both stream. At most the attacker's session ends; elmd and the bystander go on. */
    assert_int_equal(ts_prompt(&good, 3, PROMPT, N_TOKENS, 0, 1), 0);
    assert_int_equal(ts_prompt(&bad, 4, PROMPT, N_TOKENS, 0, 1), 0);
    memset(&bad_got, 0, sizeof bad_got);
    assert_int_equal(ts_next(&bad, &bad_got, 30000, NULL), 0);
    assert_int_equal(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)r.size),
                     0);
    assert_int_equal(ts_collect(&good, &got, 30000), 0);
    assert_same(&got, &want);
    assert_int_equal(kill(f->t.pid, 0), 0);
    assert_int_equal(tc_simple(&f->c, ELM_CMD_STATUS), 0);
    elm_proto_put_u64(tc_begin(&f->c, ELM_CMD_CLOSE_SESSION), ELM_TAG_SESSION_ID, r.id);
    int rc = tc_call(&f->c, 10000);
    print_message("after the hole punch: the attacker's CLOSE_SESSION %d (0, or the session "
                  "already ended)\n",
                  rc);
    assert_true(rc == 0 || rc == ELM_ESESSION);
    elm_shm_close(&bad.shm);
    close(fd);

    /* And the daemon serves a new session exactly. */
    assert_int_equal(ts_prompt(&good, 5, PROMPT, N_TOKENS, 0, 1), 0);
    assert_int_equal(ts_collect(&good, &got, 30000), 0);
    assert_same(&got, &want);
    assert_int_equal(ts_close(&f->c, &good), 0);
}

/* The status another process gets for r's region: run in a child, as uid (0: ours), which
 * expects the daemon to run as owner. */
static int fetch_from_child(const struct raw *r, uid_t uid, gid_t gid, uid_t owner)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(30);
        if (uid && (setgroups(1, &gid) || setresgid(gid, gid, gid) || setresuid(uid, uid, uid)))
            _exit(3);
        int fd = -1, rc = fetch(r, owner, &fd);
        _exit(write(p[1], &rc, sizeof rc) == sizeof rc ? 0 : 4);
    }
    close(p[1]);
    int rc = 1;
    assert_int_equal(read(p[0], &rc, sizeof rc), (ssize_t)sizeof rc);
    close(p[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return rc;
}

/* Items 11 and 9, same-user part: only the opener gets the region, once. */
static void test_region_only_for_its_opener(void **state)
{
    struct fx *f = *state;
    REQUIRE_DAEMON(f);
    static struct ts_result want, got;
    local_greedy(elm_test_model_path(TD_MODEL), PROMPT, N_TOKENS, &want);
    struct ts good;
    assert_int_equal(ts_open(&f->c, &good, getpid(), 0), 0);
    assert_int_equal(ts_prompt(&good, 1, PROMPT, N_TOKENS, 0, 1), 0);

    struct stat st;
    char sock[160];
    snprintf(sock, sizeof sock, "%s/" ELM_REGION_SOCKET, f->t.dir);
    assert_int_equal(stat(sock, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);

    struct raw r;
    int fd;
    open_raw(&f->c, &r);
    assert_string_equal(r.path, sock);
    /* Another process of the same user, with the right id and token: refused. */
    assert_int_equal(fetch_from_child(&r, 0, 0, geteuid()), -EPERM);
    /* Connections that say nothing (more than elmd keeps waiting) do not block the opener. */
    int idle[N_IDLE];
    for (int i = 0; i < N_IDLE; i++) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        assert_true(strlen(sock) < sizeof sa.sun_path);
        memcpy(sa.sun_path, sock, strlen(sock) + 1);
        idle[i] = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        assert_int_equal(connect(idle[i], (struct sockaddr *)&sa, sizeof sa), 0);
    }
    /* The opener with a wrong token, or for an unknown session: refused. */
    struct raw wrong = r;
    wrong.token[0] ^= 1;
    assert_int_equal(fetch(&wrong, geteuid(), &fd), -EPERM);
    wrong = r;
    wrong.id += 1000;
    assert_int_equal(fetch(&wrong, geteuid(), &fd), ELM_ESESSION);
    /* The opener: its region, sealed; once only. */
    assert_int_equal(fetch(&r, geteuid(), &fd), 0);
    assert_int_equal(fcntl(fd, F_GET_SEALS) & (F_SEAL_SHRINK | F_SEAL_GROW),
                     F_SEAL_SHRINK | F_SEAL_GROW);
    close(fd);
    assert_int_equal(fetch(&r, geteuid(), &fd), -EALREADY);
    for (int i = 0; i < N_IDLE; i++)
        close(idle[i]);

    /* Nothing of elmd's lives in /dev/shm: its regions are memfds. */
    assert_int_equal(maps_count(f->t.pid, "/dev/shm/"), 0);
    assert_true(maps_count(f->t.pid, "memfd:elm-session") >= 2);
    assert_int_equal(ts_collect(&good, &got, 30000), 0);
    assert_same(&got, &want);
    assert_int_equal(ts_close(&f->c, &good), 0);
}

/* Item 11: in group mode a member (another uid) reaches the region socket, and is refused. */
static void test_group_member_cannot_fetch(void **state)
{
    struct fx *f = *state;
    REQUIRE_DAEMON(f);
    if (!can_test_group()) {
        print_message("SKIP: needs root and a group 'users' to become a member (uid %d)\n", MEMBER);
        skip();
    }
    gid_t gid = getgrnam("users")->gr_gid;
    assert_int_equal(chmod(f->t.base, 0711), 0); /* the member may reach the runtime dir */
    static struct ts_result want, got;
    local_greedy(elm_test_model_path(TD_MODEL), PROMPT, N_TOKENS, &want);
    struct ts good;
    assert_int_equal(ts_open(&f->c, &good, getpid(), 0), 0);
    assert_int_equal(ts_prompt(&good, 1, PROMPT, N_TOKENS, 0, 1), 0);

    struct stat st;
    struct raw r;
    open_raw(&f->c, &r);
    assert_int_equal(stat(r.path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0660);
    assert_int_equal(st.st_gid, gid);
    /* -EPERM is elmd's answer: the member connected, showed the right id and token, and was
     * not the opener. (A member that could not connect would get -EACCES.) */
    int rc = fetch_from_child(&r, MEMBER, gid, geteuid());
    print_message("a group member asking for another's region: %d\n", rc);
    assert_int_equal(rc, -EPERM);
    int fd;
    assert_int_equal(fetch(&r, geteuid(), &fd), 0);
    close(fd);
    assert_int_equal(maps_count(f->t.pid, "/dev/shm/"), 0);
    assert_int_equal(ts_collect(&good, &got, 30000), 0);
    assert_same(&got, &want);
    assert_int_equal(ts_close(&f->c, &good), 0);
}

/* Item 9: elmd killed with sessions open, one never fetched. */
static void test_killed_elmd_leaves_nothing(void **state)
{
    struct fx *f = *state;
    REQUIRE_DAEMON(f);
    const char *model = elm_test_model_path(TD_MODEL);
    static struct ts_result want, got;
    local_greedy(model, PROMPT, N_TOKENS, &want);
    struct ts s;
    struct raw r;
    assert_int_equal(ts_open(&f->c, &s, getpid(), 0), 0);
    assert_int_equal(ts_prompt(&s, 1, PROMPT, N_TOKENS, 0, 1), 0);
    open_raw(&f->c, &r); /* never fetched */
    assert_int_equal(maps_count(f->t.pid, "/dev/shm/"), 0);
    assert_true(maps_count(f->t.pid, "memfd:elm-session") >= 2);
    assert_true(WIFSIGNALED(td_stop(&f->t, SIGKILL, 10000)));
    tc_close(&f->c);
    /* Our mapping outlives the daemon, every byte readable (no fault, nothing to clean). */
    unsigned sum = 0;
    for (size_t i = 0; i < s.shm.size; i += 4096)
        sum += ((volatile unsigned char *)s.shm.base)[i];
    (void)sum;
    elm_shm_close(&s.shm);

    assert_int_equal(td_start(&f->t, model, NULL), 0);
    tc_open_path(&f->c, f->t.dir);
    assert_int_equal(ts_open(&f->c, &s, getpid(), 0), 0);
    assert_int_equal(ts_prompt(&s, 1, PROMPT, N_TOKENS, 0, 1), 0);
    assert_int_equal(ts_collect(&s, &got, 30000), 0);
    assert_same(&got, &want);
    assert_int_equal(ts_close(&f->c, &s), 0);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    alarm(300); /* a hang fails the test instead of stalling the suite */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_truncate_while_streaming, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_region_only_for_its_opener, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_group_member_cannot_fetch, setup_group, fx_teardown),
        cmocka_unit_test_setup_teardown(test_killed_elmd_leaves_nothing, setup, fx_teardown),
    };
    if (getenv("ELMD_TEST_FILTER"))
        cmocka_set_test_filter(getenv("ELMD_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
