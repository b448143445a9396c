/* test_install.c — `cmake --install BUILD --prefix P` into a private prefix, used as a user
 * would: the docs' example built with pkg-config against P and run without LD_LIBRARY_PATH
 * (the RPATH elmclient.pc gives) against P's elmd; the systemd user unit names P's elmd and
 * passes `systemd-analyze verify`; the sample elmd.conf is valid; every man page renders with
 * `man -l` and names every option the --help of its program and subcommands prints (and
 * libelmclient(3) every exported function, elmd.conf(5) and the sample every key of
 * docs/daemon.md's configuration table).
 */
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/common/elm_test.h"
#include "tests/common/install_check.h"

#define TEST_ALARM_S 240

static char work[64];   /* the test's directory */
static char prefix[96]; /* work/P, the install prefix */
static char bindir[128];

static int setup(void **state)
{
    snprintf(work, sizeof work, "/tmp/elm-install-XXXXXX");
    if (!mkdtemp(work))
        return -1;
    snprintf(prefix, sizeof prefix, "%s/P", work);
    snprintf(bindir, sizeof bindir, "%s/bin", prefix);
    alarm(TEST_ALARM_S);
    static char out[65536];
    return install_sh(out, sizeof out, work, "'%s' --install '%s' --prefix '%s'", ELM_CMAKE_COMMAND,
                      elm_test_build_dir(), prefix) == 0
               ? 0
               : -1;
}

static int teardown(void **state)
{
    char cmd[256];
    /* a daemon a failed check left running: only ours (its command line names work) */
    snprintf(cmd, sizeof cmd, "%s/run/elmd.pid", work);
    char *pid = elm_test_read_file(cmd, NULL);
    if (pid) {
        elm_test_signal_if_ours(strtol(pid, NULL, 10), work, SIGKILL);
        free(pid);
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", work);
    alarm(0);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_example(void **state)
{
    ELM_REQUIRE_MODEL(model, "stories260K.gguf");
    char pc[256];
    snprintf(pc, sizeof pc, "%s/lib/pkgconfig", prefix);
    install_check_example(bindir, pc, work, model);
}

static void test_unit(void **state)
{
    char unit[256], man[256];
    snprintf(unit, sizeof unit, "%s/lib/systemd/user/elmd.service", prefix);
    snprintf(man, sizeof man, "%s/share/man", prefix);
    install_check_unit(unit, bindir, man, work);
    /* elm-httpd's unit: it runs the installed gateway, and systemd accepts it */
    snprintf(unit, sizeof unit, "%s/lib/systemd/user/elm-httpd.service", prefix);
    char *text = elm_test_read_file(unit, NULL);
    assert_non_null(text);
    char want[600];
    snprintf(want, sizeof want, "\nExecStart=%s/elm-httpd --listen 127.0.0.1:8080", bindir);
    assert_non_null(strstr(text, want));
    free(text);
    static char out[16384];
    if (install_sh(out, sizeof out, work, "command -v systemd-analyze") == 0 &&
        install_sh(out, sizeof out, work,
                   "mkdir -p -m 700 '%s/xdg' && XDG_RUNTIME_DIR='%s/xdg' MANPATH='%s': "
                   "systemd-analyze --user verify '%s' 2>&1",
                   work, work, man, unit) != 0)
        fail_msg("systemd-analyze verify %s: %s", unit, out);
}

static void test_sample_config(void **state)
{
    ELM_REQUIRE_MODEL(model, "stories260K.gguf");
    static char out[16384];
    const char *conf = "share/doc/elm/examples/elmd.conf";
    assert_int_equal(install_sh(out, sizeof out, work, "'%s/elmd' -t -c '%s/%s' -m '%s'", bindir,
                                prefix, conf, model),
                     0);
    /* every setting uncommented (but those naming this machine's paths and groups) */
    assert_int_equal(install_sh(out, sizeof out, work,
                                "sed -n 's/^#\\([a-z_]* = \\)/\\1/p' '%s/%s' | grep -v "
                                "'^\\(model\\|group\\|runtime_dir\\|kernel\\) ' > '%s/all.conf' && "
                                "test $(wc -l < '%s/all.conf') -ge 20 && "
                                "'%s/elmd' -t -c '%s/all.conf' -m '%s'",
                                prefix, conf, work, work, bindir, work, model),
                     0);
}

/* ---- man pages ------------------------------------------------------------------------------ */

static char *render(const char *page)
{
    static char text[1 << 18];
    /* C locale: plain '-' in options; wide lines: no option broken by a hyphenation */
    assert_int_equal(install_sh(text, sizeof text, work,
                                "LC_ALL=C MANWIDTH=1000 man -l '%s/share/man/%s' 2>&1", prefix,
                                page),
                     0);
    assert_non_null(strstr(text, "NAME"));
    return strdup(text);
}

/* Is opt (an option such as "--ctx" or "-t") in text as a word of its own? */
static int has_option(const char *text, const char *opt)
{
    size_t n = strlen(opt);
    for (const char *p = strstr(text, opt); p; p = strstr(p + 1, opt)) {
        char before = p == text ? ' ' : p[-1], after = p[n];
        if (!isalnum((unsigned char)before) && before != '-' && !isalnum((unsigned char)after) &&
            after != '-')
            return 1;
    }
    return 0;
}

/* Asserts that page names every option of `cmd --help`: "--long" and "-x" tokens that start
 * a word. Returns how many it checked. */
static int check_options(const char *page, const char *name, const char *cmd)
{
    static char help[65536];
    assert_int_equal(install_sh(help, sizeof help, work, "%s --help", cmd), 0);
    int n = 0;
    for (const char *p = help; *p; p++) {
        if (*p != '-' || (p > help && (isalnum((unsigned char)p[-1]) || p[-1] == '-')))
            continue;
        size_t len = 0;
        if (p[1] == '-' && isalpha((unsigned char)p[2])) {
            len = 2;
            while (isalnum((unsigned char)p[len]) || p[len] == '-')
                len++;
        } else if (isalpha((unsigned char)p[1]) && !isalnum((unsigned char)p[2]) && p[2] != '-') {
            len = 2;
        }
        if (!len)
            continue;
        char opt[64];
        snprintf(opt, sizeof opt, "%.*s", (int)(len < sizeof opt ? len : sizeof opt - 1), p);
        if (!has_option(page, opt))
            fail_msg("%s does not mention %s (from '%s --help')", name, opt, cmd);
        n++;
        p += len - 1;
    }
    return n;
}

/* The subcommands that `prog --help` lists under "commands:"/"subcommands:", checked too. */
static int check_program(const char *page_file, const char *prog)
{
    char *page = render(page_file);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "'%s/%s'", bindir, prog);
    int n = check_options(page, page_file, cmd);
    static char list[65536];
    assert_int_equal(install_sh(list, sizeof list, work,
                                "'%s/%s' --help | awk '/^(sub)?commands:$/ {f = 1; next} "
                                "f && /^  [a-z]/ {print $1; next} f {exit}'",
                                bindir, prog),
                     0);
    int n_sub = 0;
    for (char *save = NULL, *sub = strtok_r(list, "\n", &save); sub;
         sub = strtok_r(NULL, "\n", &save)) {
        if (!has_option(page, sub))
            fail_msg("%s does not mention the subcommand %s", page_file, sub);
        snprintf(cmd, sizeof cmd, "'%s/%s' %s", bindir, prog, sub);
        n += check_options(page, page_file, cmd);
        n_sub++;
    }
    free(page);
    print_message("%s: %d options of %s and its %d subcommands found\n", page_file, n, prog, n_sub);
    return n_sub;
}

static void test_man_programs(void **state)
{
    assert_int_equal(check_program("man8/elmd.8", "elmd"), 0);
    assert_int_equal(check_program("man1/elmctl.1", "elmctl"), 18);
    assert_int_equal(check_program("man1/elm-bench.1", "elm-bench"), 7);
    assert_int_equal(check_program("man1/elm-httpd.1", "elm-httpd"), 0);
}

/* Every word matching a sed pattern in file is in page. */
static void check_words(const char *page_file, const char *file, const char *sed)
{
    char *page = render(page_file);
    static char words[65536];
    assert_int_equal(install_sh(words, sizeof words, work, "sed -n '%s' '%s' | sort -u", sed, file),
                     0);
    int n = 0;
    for (char *save = NULL, *w = strtok_r(words, "\n", &save); w; w = strtok_r(NULL, "\n", &save)) {
        if (!has_option(page, w))
            fail_msg("%s does not mention %s (from %s)", page_file, w, file);
        n++;
    }
    assert_true(n >= 20);
    free(page);
}

static void test_man_library_and_config(void **state)
{
    char path[512];
    snprintf(path, sizeof path, "%s/libclient/elm.map", ELM_SOURCE_DIR);
    check_words("man3/libelmclient.3", path, "s/^ *\\(elm_[a-z_]*\\);$/\\1/p");
    snprintf(path, sizeof path, "%s/share/doc/elm/examples/elmd.conf", prefix);
    check_words("man5/elmd.conf.5", path, "s/^#\\([a-z_]*\\) = .*/\\1/p");
    /* the keys docs/daemon.md's configuration table lists: in the page and in the sample */
    char doc[512];
    snprintf(doc, sizeof doc, "%s/docs/daemon.md", ELM_SOURCE_DIR);
    const char *keys = "/^## Configuration/,/^## /s/^| `\\([a-z_]*\\)` |.*/\\1/p";
    check_words("man5/elmd.conf.5", doc, keys);
    static char missing[4096];
    assert_int_equal(install_sh(missing, sizeof missing, work,
                                "for k in $(sed -n '%s' '%s'); do grep -q \"^#$k = \" '%s' || "
                                "echo $k; done",
                                keys, doc, path),
                     0);
    if (missing[0])
        fail_msg("the sample elmd.conf lacks: %s", missing);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_example, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sample_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_man_programs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_man_library_and_config, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
