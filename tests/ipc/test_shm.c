/* test_shm.c — sealed session memory (ipc/shm.h) and its handover socket (ipc/region.h).
 *
 * A created region is a memfd sealed against shrinking and growing, so nobody holding its
 * descriptor can truncate it under the daemon's mapping (issue 17, item 2): ftruncate to 0, to
 * a smaller and to a larger size all fail with EPERM, the seals cannot be changed, and every
 * page stays readable. It has no name in /dev/shm. The client's adopt refuses an unsealed file,
 * a wrong size or a non-file, and always consumes the descriptor. The handover socket carries
 * exactly one descriptor to a client that checks the daemon's uid; refusals come back as the
 * daemon's status, and malformed packets are ELM_EPROTO on either side.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "elm/status.h"
#include "ipc/region.h"
#include "ipc/session_shm.h"
#include "ipc/shm.h"
#include "tests/common/elm_test.h"

static bool fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

static void test_shm_sealed(void **state)
{
    (void)state;
    struct elm_shm a;
    assert_int_equal(elm_shm_create(&a, 3 * 4096), 0);
    assert_true(a.fd >= 0);
    assert_true(fcntl(a.fd, F_GETFD) & FD_CLOEXEC);
    int seals = fcntl(a.fd, F_GET_SEALS);
    assert_int_equal(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
                     F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
    assert_int_equal(seals & F_SEAL_WRITE, 0); /* the rings are written, of course */

    /* What a hostile client would do with its copy of the descriptor. */
    int theirs = dup(a.fd);
    static const off_t sizes[] = {0, 4096, 4 * 4096, 1 << 30};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        errno = 0;
        assert_int_equal(ftruncate(theirs, sizes[i]), -1);
        assert_int_equal(errno, EPERM);
    }
    assert_int_equal(fcntl(theirs, F_ADD_SEALS, F_SEAL_WRITE), -1); /* F_SEAL_SEAL */
    assert_int_equal(fallocate(theirs, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096), 0);
    volatile unsigned char *p = a.base; /* a hole reads as zeros: no fault either */
    for (size_t off = 0; off < a.size; off += 4096)
        assert_int_equal(p[off], 0);
    p[a.size - 1] = 7;

    /* The client's mapping is another address onto the same bytes. */
    struct elm_shm c;
    assert_int_equal(elm_shm_adopt(&c, theirs, a.size), 0);
    assert_false(fd_is_open(theirs));
    assert_int_equal(c.fd, -1);
    assert_ptr_not_equal(c.base, a.base);
    assert_int_equal(((unsigned char *)c.base)[a.size - 1], 7);

    elm_shm_drop_fd(&a);
    assert_int_equal(a.fd, -1);
    elm_shm_drop_fd(&a); /* idempotent; the mapping stays */
    assert_int_equal(((unsigned char *)a.base)[a.size - 1], 7);
    elm_shm_close(&c);
    elm_shm_close(&a);
    elm_shm_close(&a);
    elm_shm_close(NULL);
    assert_int_equal(elm_shm_create(&a, 0), -EINVAL);
}

/* An unsealed file, a wrong size or something else than a file is refused, and consumed. */
static void test_shm_adopt_rejects(void **state)
{
    (void)state;
    struct elm_shm c;
    int fd = memfd_create("unsealed", MFD_CLOEXEC);
    assert_int_equal(ftruncate(fd, 8192), 0);
    assert_int_equal(elm_shm_adopt(&c, fd, 8192), -EACCES);
    assert_false(fd_is_open(fd));

    struct elm_shm a;
    assert_int_equal(elm_shm_create(&a, 8192), 0);
    fd = dup(a.fd);
    assert_int_equal(elm_shm_adopt(&c, fd, 4096), -EINVAL);
    assert_false(fd_is_open(fd));
    fd = dup(a.fd);
    assert_int_equal(elm_shm_adopt(&c, fd, 8192 + 4096), -EINVAL);
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    assert_int_equal(elm_shm_adopt(&c, pfd[0], 8192), -EINVAL);
    assert_false(fd_is_open(pfd[0]));
    close(pfd[1]);
    assert_int_equal(elm_shm_adopt(&c, -1, 8192), -EINVAL);
    elm_shm_close(&a);

    /* The right region attaches; wrong expected capacities or a damaged header do not. */
    size_t size;
    assert_int_equal(elm_session_shm_size(4096, 4096, &size), 0);
    assert_int_equal(elm_shm_create(&a, size), 0);
    assert_int_equal(elm_session_shm_init(a.base, a.size, 4096, 4096), 0);
    assert_int_equal(elm_shm_adopt(&c, dup(a.fd), size), 0);
    struct elm_session_rings r;
    assert_int_equal(elm_session_shm_attach(c.base, c.size, 4096, 4096, ELM_SESSION_CLIENT, &r), 0);
    assert_int_equal(r.req.role, ELM_RING_PRODUCER);
    assert_int_equal(r.evt.role, ELM_RING_CONSUMER);
    assert_int_equal(elm_session_shm_attach(c.base, c.size, 4096, 8192, ELM_SESSION_CLIENT, &r),
                     -EINVAL); /* the size does not match those capacities */
    ((struct elm_session_shm *)a.base)->req_capacity = 2048; /* the peer lies about the split */
    assert_int_equal(elm_session_shm_attach(c.base, c.size, 4096, 4096, ELM_SESSION_CLIENT, &r),
                     ELM_ERING);
    ((struct elm_session_shm *)a.base)->req_capacity = 4096;
    ((struct elm_session_shm *)a.base)->layout_version = 99;
    assert_int_equal(elm_session_shm_attach(c.base, c.size, 4096, 4096, ELM_SESSION_CLIENT, &r),
                     ELM_ERING);
    elm_shm_close(&c);
    elm_shm_close(&a);
}

/* ---- the handover socket: a server thread answering one connection per round -------------- */

enum serve_mode { SERVE_FD, SERVE_REFUSE, SERVE_NO_FD };

struct server {
    int lfd;
    enum serve_mode mode;
    int fd;      /* handed over in SERVE_FD */
    int read_rc; /* what elm_region_read_request said */
    uint64_t id; /* what it read */
    uint8_t token[ELM_REGION_TOKEN_LEN];
    pid_t pid;
    uid_t uid;
};

static void *serve_one(void *arg)
{
    struct server *sv = arg;
    int conn;
    while (elm_region_accept(sv->lfd, &conn) == -EAGAIN)
        usleep(1000);
    while ((sv->read_rc = elm_region_read_request(conn, &sv->id, sv->token, &sv->pid, &sv->uid)) ==
           -EAGAIN)
        usleep(1000);
    if (sv->read_rc == 0) {
        if (sv->mode == SERVE_FD)
            elm_region_reply(conn, 0, sv->fd);
        else if (sv->mode == SERVE_REFUSE)
            elm_region_reply(conn, -EPERM, -1);
        else /* status 0 and no descriptor: a broken daemon */
            send(conn, "\0\0\0\0\0\0\0\0", ELM_REGION_REP_LEN, 0);
    }
    close(conn);
    return NULL;
}

static void test_region_handover(void **state)
{
    (void)state;
    char dir[] = "/tmp/elm-region-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/" ELM_REGION_SOCKET, dir);
    struct server sv = {.fd = -1};
    assert_int_equal(elm_region_listen(path, &sv.lfd), 0);
    uint8_t token[ELM_REGION_TOKEN_LEN], other[ELM_REGION_TOKEN_LEN];
    assert_int_equal(elm_region_token_new(token), 0);
    assert_int_equal(elm_region_token_new(other), 0);
    assert_false(elm_region_token_equal(token, other));
    assert_true(elm_region_token_equal(token, token));

    struct elm_shm a;
    assert_int_equal(elm_shm_create(&a, 4096), 0);
    memcpy(a.base, "region", 7);
    sv.fd = a.fd;
    pthread_t th;
    int fd = -1;
    /* Handed over: the request arrives intact with our credentials, the descriptor works. */
    sv.mode = SERVE_FD;
    pthread_create(&th, NULL, serve_one, &sv);
    assert_int_equal(elm_region_fetch(path, geteuid(), 42, token, 5000, &fd), 0);
    pthread_join(th, NULL);
    assert_int_equal(sv.read_rc, 0);
    assert_int_equal(sv.id, 42);
    assert_memory_equal(sv.token, token, sizeof token);
    assert_int_equal(sv.pid, getpid());
    assert_int_equal(sv.uid, geteuid());
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    struct elm_shm c;
    assert_int_equal(elm_shm_adopt(&c, fd, 4096), 0);
    assert_string_equal(c.base, "region");
    elm_shm_close(&c);

    /* Refused: the daemon's status comes back, no descriptor. */
    sv.mode = SERVE_REFUSE;
    pthread_create(&th, NULL, serve_one, &sv);
    assert_int_equal(elm_region_fetch(path, geteuid(), 42, token, 5000, &fd), -EPERM);
    pthread_join(th, NULL);
    /* Status 0 without a descriptor is a protocol error. */
    sv.mode = SERVE_NO_FD;
    pthread_create(&th, NULL, serve_one, &sv);
    assert_int_equal(elm_region_fetch(path, geteuid(), 42, token, 5000, &fd), ELM_EPROTO);
    pthread_join(th, NULL);
    /* A socket whose peer is not the uid we expect the daemon to be: never asked. */
    assert_int_equal(elm_region_fetch(path, geteuid() + 1, 42, token, 5000, &fd), -EACCES);
    int stray;
    assert_int_equal(elm_region_accept(sv.lfd, &stray), 0); /* that connection, unanswered */
    close(stray);
    /* A malformed request: ELM_EPROTO on the daemon's side. */
    pthread_create(&th, NULL, serve_one, &sv);
    int s = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(send(s, "short", 5, 0), 5);
    pthread_join(th, NULL);
    assert_int_equal(sv.read_rc, ELM_EPROTO);
    close(s);
    /* No daemon there. */
    assert_int_equal(elm_region_fetch("/nonexistent/regions", geteuid(), 1, token, 100, &fd),
                     -ENOENT);

    elm_shm_close(&a);
    close(sv.lfd);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shm_sealed),
        cmocka_unit_test(test_shm_adopt_rejects),
        cmocka_unit_test(test_region_handover),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
