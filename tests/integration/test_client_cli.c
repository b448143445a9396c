/* test_client_cli.c — elmctl's daemon subcommands as a user runs them: start, status, sessions,
 * stats, load, unload, generate through the daemon, stop; --json (every subcommand's output and
 * errors, parsed); --help; exit codes; the prompt from stdin; a 1 MB prompt; and the message
 * when no daemon runs. The central promise: `elmctl generate` through elmd prints the same
 * bytes as `elmctl generate --local` for a greedy request (and for a seeded one). Runs the real
 * binaries from the build tree; each test runs under an alarm; a daemon left behind by a failed
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
#include "tests/common/json.h"

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
    /* Under --json the same error is a JSON document on stdout, with the same exit code. */
    const char *all[] = {"status", "sessions", "stats", "unload", "load /dev/null", "generate hi"};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        assert_int_equal(
            run(out, sizeof out, "%s --runtime-dir %s %s --json", elmctl, rundir, all[i]), 1);
        if (!elm_test_json_is_error(out, 1, "elmd is not running"))
            fail_msg("%s --json: '%s'", all[i], out);
        assert_string_equal(err_text(), msg);
    }
    /* A wrong command line is a usage error (2), JSON too. */
    const char *bad[] = {"status extra", "sessions --bogus", "stats --runtime-dir", "unload x",
                         "load",         "stop x",           "generate --temp x hi"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(run(out, sizeof out, "%s --json %s", elmctl, bad[i]), 2);
        if (!elm_test_json_is_error(out, 2, NULL))
            fail_msg("%s: '%s'", bad[i], out);
    }
    /* Stopping what does not run is not a failure: the goal is reached. */
    assert_int_equal(run(out, sizeof out, "%s --runtime-dir %s stop", elmctl, rundir), 0);
    assert_non_null(strstr(err_text(), "elmd is not running"));
    assert_int_equal(run(out, sizeof out, "%s --runtime-dir %s stop --json", elmctl, rundir), 0);
    assert_string_equal(out, "{\"running\":false}\n");
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

/* Through the daemon: the prompt from stdin, --json streams, a 1 MB prompt from a file. */
static void conventions(const char *model)
{
    static char want[65536], out[65536], text[65536];
    assert_int_equal(run(want, sizeof want,
                         "%s --runtime-dir %s generate --temp 0 -n 8 'Once upon a time'", elmctl,
                         rundir),
                     0);
    assert_int_equal(run(out, sizeof out,
                         "printf 'Once upon a time' | %s --runtime-dir %s generate --temp 0 -n 8",
                         elmctl, rundir),
                     0);
    assert_string_equal(out, want);
    assert_string_equal(out, ", there was a little girl\n");
    /* --json: a line per token whose texts make the same text, then the final record */
    assert_int_equal(run(out, sizeof out,
                         "%s --runtime-dir %s generate --json --temp 0 -n 8 'Once upon a time'",
                         elmctl, rundir),
                     0);
    assert_true(elm_test_json_is_stream(out, "length", 8, text, sizeof text));
    assert_string_equal(text, ", there was a little girl");
    /* 1 MiB of prompt: refused with the numbers, the same way --local refuses it */
    char file[128];
    snprintf(file, sizeof file, "%s/big.txt", rundir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    for (int i = 0; i < 1 << 16; i++)
        fputs("Once upon a time", f);
    fclose(f);
    assert_int_equal(
        run(out, sizeof out, "%s --runtime-dir %s generate -n 4 -f %s", elmctl, rundir, file), 1);
    assert_non_null(strstr(err_text(), "the prompt has "));
    assert_non_null(strstr(err_text(), " tokens but the session's context holds 2048"));
    assert_int_equal(run(out, sizeof out, "%s --runtime-dir %s generate --json -n 4 -f %s", elmctl,
                         rundir, file),
                     1);
    assert_true(elm_test_json_is_error(out, 1, "context holds 2048"));
    unlink(file);
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
    /* Another model while it runs: a failure naming both, never a silent "running". */
    const char *other = elm_test_model_path("tinyllamas-stories-260k-f32.gguf");
    if (other) {
        assert_int_equal(
            run(out, sizeof out, "%s --runtime-dir %s start --model '%s'", elmctl, rundir, other),
            1);
        assert_string_equal(out, "");
        assert_non_null(strstr(err_text(), "elmd is already running (pid "));
        assert_non_null(strstr(err_text(), model));
        assert_non_null(strstr(err_text(), other));
    } else {
        print_message("(tinyllamas-stories-260k-f32.gguf not found: start with another model "
                      "not checked)\n");
    }
    assert_int_equal(run(out, sizeof out, "%s --runtime-dir %s start --json --model '%s'", elmctl,
                         rundir, model),
                     0);
    json_t *j = elm_test_json(out);
    assert_true(json_is_true(json_object_get(j, "running")));
    assert_true(elm_test_jnum(j, "pid") > 1);
    json_decref(j);

    assert_int_equal(run(out, sizeof out, "%s status --runtime-dir %s", elmctl, rundir), 0);
    assert_non_null(strstr(out, model));
    assert_non_null(strstr(out, "vocabulary 512"));
    assert_int_equal(run(out, sizeof out, "%s --json --runtime-dir %s status", elmctl, rundir), 0);
    assert_non_null(j = elm_test_json(out));
    assert_true(json_is_true(json_object_get(j, "model_loaded")));
    assert_int_equal((int)elm_test_jnum(j, "n_vocab"), 512);
    json_decref(j);

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
    assert_non_null(j = elm_test_json(out));
    assert_int_equal((int)elm_test_jnum(j, "n_requests"), 8);
    assert_int_equal((int)elm_test_jnum(j, "n_sessions_opened"), 8);
    json_decref(j);

    conventions(model);

    assert_int_equal(run(out, sizeof out, "%s unload --json --runtime-dir %s", elmctl, rundir), 0);
    assert_string_equal(out, "{\"unloaded\":true}\n");
    assert_int_equal(run(out, sizeof out, "%s --runtime-dir %s generate hi", elmctl, rundir), 1);
    assert_non_null(strstr(err_text(), "elmd has no model loaded"));
    assert_int_equal(
        run(out, sizeof out, "%s load --runtime-dir %s /nonexistent.gguf", elmctl, rundir), 1);
    assert_non_null(strstr(err_text(), "cannot load /nonexistent.gguf"));
    /* A file the engine rejects: its message names the path, elmctl does not repeat it. */
    assert_int_equal(
        run(out, sizeof out, "%s load --runtime-dir %s /dev/null --json", elmctl, rundir), 1);
    assert_true(elm_test_json_is_error(out, 1, "/dev/null"));
    const char *at = strstr(err_text(), "/dev/null");
    assert_non_null(at);
    assert_null(strstr(at + 1, "/dev/null"));
    assert_int_equal(
        run(out, sizeof out, "%s load --json --runtime-dir %s '%s'", elmctl, rundir, model), 0);
    assert_non_null(j = elm_test_json(out));
    assert_string_equal(elm_test_jstr(j, "model_path"), model);
    json_decref(j);
    same_as_local(model, "--temp 0 -n 20", "Once upon a time");

    assert_int_equal(run(out, sizeof out, "%s --runtime-dir %s stop --json", elmctl, rundir), 0);
    assert_non_null(j = elm_test_json(out));
    assert_true(json_is_false(json_object_get(j, "running")));
    assert_true(elm_test_jnum(j, "pid") > 1);
    json_decref(j);
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
    /* under --json the failure is a JSON document on stdout too, same exit code */
    assert_int_equal(run(out, sizeof out,
                         "%s --runtime-dir %s start --json --model /nonexistent.gguf", elmctl,
                         rundir),
                     1);
    assert_true(elm_test_json_is_error(out, 1, "elmd failed to start"));
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
