/* test_client_cli.c — elmctl's daemon subcommands as a user runs them: start, status, sessions,
 * stats, load, unload, generate through the daemon, stop; --json; --help; and the message when
 * no daemon runs. The central promise: `elmctl generate` through elmd prints the same bytes as
 * `elmctl generate --local` for a greedy request (and for a seeded one). Runs the real binaries
 * from the build tree; each test runs under an alarm; a daemon left behind by a failed
 * assertion is killed through its pid file, if that pid still runs with this test's runtime
 * directory on its command line.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/common/elm_test.h"

#define TEST_ALARM_S 300

static char elmctl[4096];
static char rundir[64];
static char errfile[96];

/* Runs a shell command with stdout captured into out and stderr into errfile. Returns the exit
 * status. */
static int run(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = elm_test_vsh(out, cap, errfile, fmt, ap);
    va_end(ap);
    return rc;
}

/* What the last run() wrote to stderr. */
static const char *err_text(void)
{
    return elm_test_file_text(errfile);
}

static void require_elmd(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/daemon/elmd", elm_test_build_dir());
    if (access(path, X_OK) != 0) {
        print_message("SKIP: %s is not built yet\n", path);
        skip();
    }
}

static int setup(void **state)
{
    snprintf(elmctl, sizeof elmctl, "%s/cli/elmctl", elm_test_build_dir());
    snprintf(rundir, sizeof rundir, "/tmp/elm-cli-XXXXXX");
    assert_non_null(mkdtemp(rundir));
    snprintf(errfile, sizeof errfile, "%s.err", rundir);
    alarm(TEST_ALARM_S);
    return 0;
}

/* Kills a daemon that a failed test left running, then removes the directory. The pid file
 * outlives a daemon that did not exit cleanly and its pid may be anybody's by now: the signal
 * goes only to a process whose command line holds this test's own runtime directory. */
static int teardown(void **state)
{
    char path[256], buf[32] = {0};
    snprintf(path, sizeof path, "%s/elmd.pid", rundir);
    FILE *f = fopen(path, "r");
    if (f) {
        long pid = fgets(buf, sizeof buf, f) ? strtol(buf, NULL, 10) : 0;
        fclose(f);
        if (elm_test_signal_if_ours(pid, rundir, SIGKILL) == 0)
            print_message("killed the elmd (pid %ld) a failed test left behind\n", pid);
    }
    snprintf(path, sizeof path, "rm -rf %s %s", rundir, errfile);
    alarm(0);
    return system(path) == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------------------------------------
 * No daemon
 */

static void test_no_daemon(void **state)
{
    static const char msg[] =
        "elmctl: elmd is not running (start it with 'elmctl start --model FILE')\n";
    static char out[4096];
    assert_int_equal(
        run(out, sizeof out, "%s --runtime-dir %s generate --temp 0 'Once'", elmctl, rundir), 1);
    assert_string_equal(out, "");
    assert_string_equal(err_text(), msg);
    /* The environment variable names the directory as well as the option does. */
    assert_int_equal(run(out, sizeof out, "ELM_RUNTIME_DIR=%s %s generate hi", rundir, elmctl), 1);
    assert_string_equal(err_text(), msg);
    const char *cmds[] = {"status", "sessions", "stats", "unload", "load /dev/null"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        assert_int_equal(run(out, sizeof out, "%s %s --runtime-dir %s", elmctl, cmds[i], rundir),
                         1);
        assert_string_equal(err_text(), msg);
    }
    /* Stopping what does not run is not a failure: the goal is reached. */
    assert_int_equal(run(out, sizeof out, "%s --runtime-dir %s stop", elmctl, rundir), 0);
    assert_non_null(strstr(err_text(), "elmd is not running"));
}

static void test_help(void **state)
{
    static char out[8192];
    const char *cmds[] = {"start",  "stop",     "status", "load",
                          "unload", "sessions", "stats",  "generate"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        assert_int_equal(run(out, sizeof out, "%s %s --help", elmctl, cmds[i]), 0);
        assert_non_null(strstr(out, "usage: elmctl"));
    }
    assert_int_equal(run(out, sizeof out, "%s --help", elmctl), 0);
    assert_non_null(strstr(out, "--runtime-dir DIR"));
    assert_non_null(strstr(out, "sessions"));
}

/* ---------------------------------------------------------------------------------------------
 * A whole life: start, ask, generate, unload, load, stop
 */

/* elmctl generate through the daemon and with --local print the same bytes. */
static void same_as_local(const char *model, const char *opts, const char *prompt)
{
    static char remote[65536], local[65536];
    assert_int_equal(run(remote, sizeof remote, "%s --runtime-dir %s generate %s '%s'", elmctl,
                         rundir, opts, prompt),
                     0);
    assert_int_equal(run(local, sizeof local, "%s generate --local '%s' --threads 1 %s '%s'",
                         elmctl, model, opts, prompt),
                     0);
    if (strcmp(remote, local))
        fail_msg("generate %s '%s':\n  elmd:  '%s'\n  local: '%s'", opts, prompt, remote, local);
    assert_true(strlen(remote) > 1);
}

static void test_start_generate_stop(void **state)
{
    ELM_REQUIRE_MODEL(model, "stories260K.gguf");
    require_elmd();
    static char out[65536];
    assert_int_equal(run(out, sizeof out, "%s --runtime-dir %s start --model '%s' --threads 1",
                         elmctl, rundir, model),
                     0);
    assert_non_null(strstr(out, "elmd is running (pid "));
    assert_int_equal(
        run(out, sizeof out, "%s --runtime-dir %s start --model '%s'", elmctl, rundir, model), 0);
    assert_non_null(strstr(out, "already running"));

    assert_int_equal(run(out, sizeof out, "%s status --runtime-dir %s", elmctl, rundir), 0);
    assert_non_null(strstr(out, model));
    assert_non_null(strstr(out, "vocabulary 512"));
    assert_int_equal(run(out, sizeof out, "%s --json --runtime-dir %s status", elmctl, rundir), 0);
    assert_non_null(strstr(out, "\"model_loaded\":true"));
    assert_non_null(strstr(out, "\"n_vocab\":512"));

    same_as_local(model, "--temp 0 -n 60", "Once upon a time");
    same_as_local(model, "--temp 0 -n 40", "");
    same_as_local(model, "--temp 0 -n 30 --ids", "The little dog");
    same_as_local(model, "--temp 0 -n 80 --stop ' girl' --stop 'park'", "");
    same_as_local(model, "--temp 0 -n 1", "Lily");
    same_as_local(model, "--temp 0 -n 50 --repeat-penalty 1.3", "Tom had a red ball.");
    same_as_local(model, "--seed 7 -n 60", "Once");
    same_as_local(model, "--seed 11 --temp 1.2 --top-k 0 --top-p 0.9 -n 60", "One day");

    /* The last generate closed its session; the daemon frees it between two steps. */
    for (int i = 0; i < 100; i++) {
        assert_int_equal(run(out, sizeof out, "%s sessions --runtime-dir %s", elmctl, rundir), 0);
        if (!strcmp(out, "no sessions\n"))
            break;
        assert_non_null(strstr(out, "closing"));
        usleep(20000);
    }
    assert_string_equal(out, "no sessions\n");
    assert_int_equal(run(out, sizeof out, "%s sessions --json --runtime-dir %s", elmctl, rundir),
                     0);
    assert_string_equal(out, "[]\n");
    assert_int_equal(run(out, sizeof out, "%s stats --runtime-dir %s", elmctl, rundir), 0);
    assert_non_null(strstr(out, "requests          8 (0 failed)"));
    assert_non_null(strstr(out, "sessions opened   8\n")); /* one per generate */
    assert_int_equal(run(out, sizeof out, "%s stats --json --runtime-dir %s", elmctl, rundir), 0);
    assert_non_null(strstr(out, "\"n_requests\":8"));
    assert_non_null(strstr(out, "\"n_sessions_opened\":8"));

    assert_int_equal(run(out, sizeof out, "%s unload --runtime-dir %s", elmctl, rundir), 0);
    assert_int_equal(run(out, sizeof out, "%s --runtime-dir %s generate hi", elmctl, rundir), 1);
    assert_non_null(strstr(err_text(), "elmd has no model loaded"));
    assert_int_equal(
        run(out, sizeof out, "%s load --runtime-dir %s /nonexistent.gguf", elmctl, rundir), 1);
    assert_non_null(strstr(err_text(), "cannot load /nonexistent.gguf"));
    assert_int_equal(run(out, sizeof out, "%s load --runtime-dir %s '%s'", elmctl, rundir, model),
                     0);
    assert_non_null(strstr(out, "loaded"));
    same_as_local(model, "--temp 0 -n 20", "Once upon a time");

    assert_int_equal(run(out, sizeof out, "%s --runtime-dir %s stop", elmctl, rundir), 0);
    assert_non_null(strstr(out, "elmd stopped"));
    assert_int_equal(run(out, sizeof out, "%s --runtime-dir %s status", elmctl, rundir), 1);
    assert_non_null(strstr(err_text(), "elmd is not running"));
}

static void test_start_failure(void **state)
{
    require_elmd();
    static char out[4096];
    assert_int_equal(
        run(out, sizeof out, "%s --runtime-dir %s start --model /nonexistent.gguf", elmctl, rundir),
        1);
    assert_non_null(strstr(err_text(), "elmctl: elmd failed to start"));
    assert_non_null(strstr(err_text(), "/nonexistent.gguf")); /* elmd's own explanation */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_daemon, setup, teardown),
        cmocka_unit_test_setup_teardown(test_help, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_generate_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_failure, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
