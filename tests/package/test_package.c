/* test_package.c — the Debian packages as a user gets them: scripts/package.sh builds elm,
 * libelmclient0 and libelmclient-dev; their control data is checked (names, sonames, shlibs,
 * Depends); `apt-get install` of the three .deb files installs them into this machine; the
 * docs' example is built with the system's `pkg-config elmclient` and run against /usr/bin/elmd;
 * the man pages and the user unit are found where Debian looks; then the packages are purged
 * (with any dependency the install pulled in) and every package the install touched must be as
 * it was before. Only those: other engineers' apt runs may change the rest of a shared machine.
 *
 * Needs root (the CI machine runs as root); skips otherwise, and when one of the packages is
 * already installed (it is not ours to remove). A lock file serialises concurrent runs.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "tests/common/elm_test.h"
#include "tests/common/install_check.h"

#define TEST_ALARM_S 540
#define PACKAGES     "elm libelmclient0 libelmclient-dev"
#define APT          "DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300"

static char work[64];
static char debs[4096];
static int lock_fd = -1;
static int installed; /* the packages are in; teardown purges them */

/* The state of each package named in DIR/touched: "NAME VERSION" when installed, else
 * "NAME absent" (a purged package and one never seen look the same). */
#define STATE                                                                                      \
    "while read p; do v=$(dpkg-query -W -f '${Status} ${Version}' \"$p\" 2>/dev/null); "           \
    "case \"$v\" in 'install ok installed '*) echo \"$p ${v#install ok installed }\" ;; "          \
    "*) echo \"$p absent\" ;; esac; done < '%s/touched'"

/* Purges what the install added: every package that work/before lists as absent (our three,
 * and the dependencies it pulled in). Returns the exit status. */
static int purge_added(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "%s purge $(awk '$2 == \"absent\" {print $1}' '%s/before') >/dev/null", APT, work);
    return system(cmd);
}

static int sh(char *out, size_t cap, const char *fmt, ...);

static int setup(void **state)
{
    snprintf(work, sizeof work, "/tmp/elm-package-XXXXXX");
    if (!mkdtemp(work))
        return -1;
    alarm(TEST_ALARM_S);
    return 0;
}

static int teardown(void **state)
{
    char cmd[512];
    if (installed) {
        if (purge_added() != 0)
            print_message("purging " PACKAGES " failed: remove them by hand\n");
        installed = 0;
    }
    if (lock_fd >= 0)
        close(lock_fd);
    lock_fd = -1;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", work);
    alarm(0);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_packages(void **state)
{
    ELM_REQUIRE_MODEL(model, "stories260K.gguf");
    if (geteuid() != 0) {
        print_message(
            "SKIP: installing packages needs root (the test command runs as root in CI)\n");
        skip();
    }
    static char out[65536];
    if (sh(out, sizeof out, "command -v apt-get dpkg-deb cpack") != 0) {
        print_message("SKIP: apt-get, dpkg-deb or cpack is missing\n");
        skip();
    }
    lock_fd = open("/tmp/elm-package-test.lock", O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    assert_true(lock_fd >= 0);
    assert_int_equal(flock(lock_fd, LOCK_EX), 0);
    if (sh(out, sizeof out,
           "dpkg-query -W -f '${Package} ${Status}\\n' " PACKAGES
           " 2>/dev/null | grep ' installed$'") == 0) {
        print_message("SKIP: already installed here (not ours to remove): %s\n", out);
        skip();
    }

    /* build: scripts/package.sh's own build directory, build/package beside this build tree
     * (not inside it: scripts/check-layers.sh reads every object there), so a rerun, or a run
     * after the user's own package.sh, is incremental */
    snprintf(debs, sizeof debs, "%s/../package/debs", elm_test_build_dir());
    assert_int_equal(sh(out, sizeof out, "'%s/scripts/package.sh' -B '%s/../package' -o '%s'",
                        ELM_SOURCE_DIR, elm_test_build_dir(), debs),
                     0);
    /* control data: names, Depends from dpkg-shlibdeps, the library's shlibs and soname */
    assert_int_equal(sh(out, sizeof out, "dpkg-deb -f %s/elm_*.deb Depends", debs), 0);
    assert_non_null(strstr(out, "libzmq5"));
    assert_non_null(strstr(out, "libc6"));
    assert_int_equal(sh(out, sizeof out, "dpkg-deb -f %s/libelmclient-dev_*.deb Depends", debs), 0);
    assert_non_null(strstr(out, "libelmclient0 (= "));
    assert_null(strstr(out, "libzmq")); /* libelmclient speaks ZMTP itself (libclient/zmtp.c) */
    assert_int_equal(sh(out, sizeof out,
                        "dpkg-deb --ctrl-tarfile %s/libelmclient0_*.deb | tar -xO ./shlibs", debs),
                     0);
    assert_non_null(strstr(out, "libelmclient 0 libelmclient0 (>= "));
    assert_int_equal(sh(out, sizeof out, "dpkg-deb -c %s/libelmclient0_*.deb", debs), 0);
    assert_non_null(strstr(out, "/libelmclient.so.0 -> libelmclient.so.0."));
    assert_null(strstr(out, "libelmclient.so ")); /* the dev link is the -dev package's */

    /* what the install will touch: our packages and any dependency not installed yet; their
     * state (installed version, or absent) before and after must be the same */
    assert_int_equal(
        sh(out, sizeof out,
           "cd '%s' && apt-get -s install ./elm_*.deb ./libelmclient0_*.deb "
           "./libelmclient-dev_*.deb | awk '/^Inst / {print $2}' | sort -u > '%s/touched' "
           "&& test -s '%s/touched'",
           debs, work, work),
        0);
    assert_int_equal(sh(out, sizeof out, STATE " > '%s/before'", work, work), 0);
    /* install as a user would, then use it */
    installed = 1;
    assert_int_equal(sh(out, sizeof out,
                        "cd '%s' && %s install ./elm_*.deb ./libelmclient0_*.deb "
                        "./libelmclient-dev_*.deb",
                        debs, APT),
                     0);
    assert_int_equal(sh(out, sizeof out, "pkg-config --modversion elmclient"), 0);
    install_check_example("/usr/bin", NULL, work, model);
    assert_int_equal(sh(out, sizeof out,
                        "for p in elmd elmctl elm-bench elmd.conf libelmclient; do "
                        "man -w $p && LC_ALL=C man $p | grep -q NAME || exit 1; done"),
                     0);
    install_check_unit("/usr/lib/systemd/user/elmd.service", "/usr/bin", "/usr/share/man", work);

    /* remove, and the machine is as it was */
    installed = 0;
    assert_int_equal(purge_added(), 0);
    if (sh(out, sizeof out, STATE " > '%s/after' && diff '%s/before' '%s/after'", work, work, work,
           work) != 0)
        fail_msg("the installed packages changed:\n%s", out);
    assert_int_equal(
        sh(out, sizeof out, "test ! -e /usr/bin/elmd && ! pkg-config --exists elmclient"), 0);
}

static int sh(char *out, size_t cap, const char *fmt, ...)
{
    char err[128];
    snprintf(err, sizeof err, "%s/err", work);
    va_list ap;
    va_start(ap, fmt);
    int rc = elm_test_vsh(out, cap, err, fmt, ap);
    va_end(ap);
    if (rc != 0)
        print_message("exit %d; stderr: %s\n", rc, elm_test_file_text(err));
    return rc;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_packages, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
