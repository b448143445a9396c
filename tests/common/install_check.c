/* install_check.c — the checks that the install-prefix test and the package test share
 * (install_check.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/common/elm_test.h"
#include "tests/common/install_check.h"

int install_sh(char *out, size_t cap, const char *workdir, const char *fmt, ...)
{
    char err[4096];
    snprintf(err, sizeof err, "%s/err", workdir);
    va_list ap;
    va_start(ap, fmt);
    int rc = elm_test_vsh(out, cap, err, fmt, ap);
    va_end(ap);
    if (rc != 0) {
        print_message("stderr: %s\n", elm_test_file_text(err));
    }
    return rc;
}

void install_check_example(const char *bindir, const char *pkgconfig_path, const char *workdir,
                           const char *model)
{
    static char out[65536], ref[65536];
    char pc_env[4200] = "";
    if (pkgconfig_path)
        snprintf(pc_env, sizeof pc_env, "PKG_CONFIG_PATH='%s' ", pkgconfig_path);
    /* the example exactly as docs/client.md prints it: the first ```c block */
    assert_int_equal(install_sh(out, sizeof out, workdir,
                                "awk '/^```c$/ {f = 1; next} /^```$/ {if (f) exit} f' "
                                "'%s/docs/client.md' > '%s/complete.c' && test -s '%s/complete.c'",
                                ELM_SOURCE_DIR, workdir, workdir),
                     0);
    assert_int_equal(
        install_sh(out, sizeof out, workdir,
                   "cd '%s' && cc complete.c $(%spkg-config --cflags --libs elmclient) "
                   "-o complete",
                   workdir, pc_env),
        0);
    assert_int_equal(install_sh(out, sizeof out, workdir,
                                "env -u LD_LIBRARY_PATH '%s/elmd' --runtime-dir '%s/run' "
                                "--model '%s' --threads 1",
                                bindir, workdir, model),
                     0);
    int rc = install_sh(out, sizeof out, workdir,
                        "env -u LD_LIBRARY_PATH ELM_RUNTIME_DIR='%s/run' '%s/complete' "
                        "'Once upon a time'",
                        workdir, workdir);
    char stop_out[4096];
    assert_int_equal(install_sh(stop_out, sizeof stop_out, workdir,
                                "'%s/elmctl' --runtime-dir '%s/run' stop", bindir, workdir),
                     0);
    assert_int_equal(rc, 0);
    assert_int_equal(install_sh(ref, sizeof ref, workdir,
                                "'%s/elmctl' generate --local '%s' --temp 0 -n 64 --threads 1 "
                                "'Once upon a time'",
                                bindir, model),
                     0);
    /* elmctl prints the text and a newline; the example the text, a newline and its summary */
    size_t n = strlen(ref);
    assert_true(n > 1);
    if (strncmp(out, ref, n) != 0)
        fail_msg("example printed '%s', elmctl '%s'", out, ref);
    assert_non_null(strstr(out + n, "[length after 64 tokens]"));
}

void install_check_unit(const char *unit, const char *bindir, const char *manpath,
                        const char *workdir)
{
    size_t len;
    char *text = elm_test_read_file(unit, &len);
    assert_non_null(text);
    char want[4200];
    snprintf(want, sizeof want, "\nExecStart=%s/elmd ", bindir);
    if (!strstr(text, want))
        fail_msg("%s does not run %s/elmd:\n%s", unit, bindir, text);
    assert_null(strstr(text, "\nLimitMEMLOCK="));
    assert_non_null(strstr(text, "\nDocumentation=man:elmd(8)"));
    free(text);
    static char out[16384];
    if (install_sh(out, sizeof out, workdir, "command -v systemd-analyze") != 0) {
        print_message(
            "SKIP: systemd-analyze is not installed (scripts/deps.sh installs systemd)\n");
        skip();
    }
    /* a user manager's view, in a private runtime directory; Documentation= pages are looked up
     * with man, so MANPATH names the installed ones (the trailing ':' keeps the system's) */
    assert_int_equal(install_sh(out, sizeof out, workdir,
                                "mkdir -p -m 700 '%s/xdg' && XDG_RUNTIME_DIR='%s/xdg' "
                                "MANPATH='%s': systemd-analyze --user verify '%s' 2>&1",
                                workdir, workdir, manpath, unit),
                     0);
}
