/* test_shm.c — shared-memory objects (ipc/shm.h) and the session region check on open.
 *
 * A created object has an unguessable, well-formed name and mode 0600 whatever the umask; the
 * client's mapping sees the same bytes at another address; malformed names are refused before
 * any system call; and a session region opened with the wrong size, owner (name or st_uid),
 * mode, or layout is rejected. The foreign-owner case needs root to fchown (skipped otherwise).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "elm/status.h"
#include "ipc/session_shm.h"
#include "ipc/shm.h"
#include "tests/common/elm_test.h"

static void test_shm_create_mode(void **state)
{
    (void)state;
    mode_t old = umask(0277); /* would strip the owner's write bit from a plain 0600 create */
    struct elm_shm a, b;
    int rc = elm_shm_create(&a, 8192);
    umask(old);
    assert_int_equal(rc, 0);
    assert_int_equal(elm_shm_create(&b, 8192), 0);
    assert_true(elm_shm_name_is_valid(a.name));
    assert_string_not_equal(a.name, b.name);
    assert_int_equal(strlen(a.name),
                     strlen("/elm--") + 32 + (size_t)snprintf(NULL, 0, "%u", (unsigned)geteuid()));

    int fd = shm_open(a.name, O_RDONLY, 0);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    close(fd);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_uid, geteuid());
    assert_int_equal(st.st_size, 8192);

    /* The client's mapping is a different address onto the same bytes. */
    struct elm_shm c;
    assert_int_equal(elm_shm_open(&c, a.name, 8192, geteuid()), 0);
    assert_ptr_not_equal(c.base, a.base);
    memcpy(a.base, "shared", 7);
    assert_string_equal(c.base, "shared");
    elm_shm_close(&c);
    elm_shm_close(&c); /* idempotent */
    elm_shm_close(NULL);

    assert_int_equal(elm_shm_unlink(a.name), 0);
    assert_int_equal(elm_shm_open(&c, a.name, 8192, geteuid()), -ENOENT);
    assert_int_equal(elm_shm_unlink(a.name), -ENOENT);
    assert_int_equal(elm_shm_unlink(b.name), 0);
    elm_shm_close(&a);
    elm_shm_close(&b);
    assert_int_equal(elm_shm_create(&a, 0), -EINVAL);
}

static void test_shm_names(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "/",
        "elm-0-00000000000000000000000000000000",
        "/elm-0-0000000000000000000000000000000",
        "/elm-0-000000000000000000000000000000000",
        "/elm-0-0000000000000000000000000000000A",
        "/elm--00000000000000000000000000000000",
        "/elm-00000000000-00000000000000000000000000000000",
        "/elm-0-0000000000000000/000000000000000",
        "/elm-0/../00000000000000000000000000000000",
        "/elm-x-00000000000000000000000000000000",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_false(elm_shm_name_is_valid(bad[i]));
        struct elm_shm s;
        assert_int_equal(elm_shm_open(&s, bad[i], 4096, geteuid()), -EINVAL);
        assert_int_equal(elm_shm_unlink(bad[i]), -EINVAL);
    }
    assert_true(elm_shm_name_is_valid("/elm-1000-0123456789abcdef0123456789abcdef"));
    assert_false(elm_shm_name_is_valid(NULL));
}

/* A session region opened with the wrong size, owner or mode is refused. */
static void test_shm_reject(void **state)
{
    (void)state;
    size_t size;
    assert_int_equal(elm_session_shm_size(4096, 4096, &size), 0);
    struct elm_shm a, c;
    assert_int_equal(elm_shm_create(&a, size), 0);
    assert_int_equal(elm_session_shm_init(a.base, a.size, 4096, 4096), 0);

    assert_int_equal(elm_shm_open(&c, a.name, size - 64, geteuid()), -EINVAL);
    assert_int_equal(elm_shm_open(&c, a.name, size + 4096, geteuid()), -EINVAL);
    assert_int_equal(elm_shm_open(&c, a.name, size, geteuid() + 1), -EACCES); /* name's uid */

    int fd = shm_open(a.name, O_RDWR, 0);
    assert_true(fd >= 0);
    static const mode_t bad_modes[] = {0604, 0602, 0700, 0670, 04600, 01600};
    for (size_t i = 0; i < sizeof bad_modes / sizeof *bad_modes; i++) {
        assert_int_equal(fchmod(fd, bad_modes[i]), 0);
        assert_int_equal(elm_shm_open(&c, a.name, size, geteuid()), -EACCES);
    }
    /* shared with a group (elm_shm_share): still ours to open */
    assert_int_equal(elm_shm_share(&a, getegid()), 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0660);
    assert_int_equal(elm_shm_open(&c, a.name, size, geteuid()), 0);
    elm_shm_close(&c);
    assert_int_equal(fchmod(fd, 0600), 0);
    if (geteuid() == 0) { /* only root can give an object away */
        assert_int_equal(fchown(fd, 4242, (gid_t)-1), 0);
        assert_int_equal(elm_shm_open(&c, a.name, size, geteuid()), -EACCES);
        assert_int_equal(fchown(fd, 0, (gid_t)-1), 0);
    } else {
        print_message("not root: the foreign-owner case is covered only via the name check\n");
    }
    close(fd);

    /* Right object: attaches; wrong expected capacities or a damaged header do not. */
    assert_int_equal(elm_shm_open(&c, a.name, size, geteuid()), 0);
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
    assert_int_equal(elm_shm_unlink(a.name), 0);
    elm_shm_close(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shm_create_mode),
        cmocka_unit_test(test_shm_names),
        cmocka_unit_test(test_shm_reject),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
