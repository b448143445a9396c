/* test_elmd_clients.c — elmd as a user meets it, and as the arm64 pass runs it under qemu-user:
 * a daemon started on a model, TWO elmctl processes started together and generating at the same
 * time (each its own session; each answer must be the engine's greedy continuation of its prompt
 * alone), then `elmctl status` reporting the kernel variant the daemon computes with and how it
 * read the model: io_uring, or the pread fallback where io_uring is refused (always under
 * qemu-user, which has no io_uring, so there the fallback and its note are required).
 *
 * Every program is exec'd directly, through ELM_TEST_EMULATOR when it is set (the host kernel
 * cannot exec a foreign binary without binfmt_misc), never through a shell: this is the test of
 * the daemon and its command-line client that runs in the emulated pass (scripts/test-arm64.sh).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "tests/common/elmd_fixture.h"
#include "tests/common/json.h"

#define N_PREDICT 40
#define WAIT_MS   120000 /* a hang bound only (scaled under emulation: td_deadline) */

static const char *const prompts[2] = {"Once upon a time", "The little dog"};

static int setup(void **state)
{
    const char *extra[] = {"--threads", "1", NULL};
    return fx_start(state, extra);
}

/* Starts build/cli/elmctl --runtime-dir DIR args... with stdout and stderr in out. */
static pid_t elmctl(const struct td *t, const char *out, const char *const *args)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        _exit(126);
    dup2(fd, 1);
    dup2(fd, 2);
    static char path[4096];
    snprintf(path, sizeof path, "%s/cli/elmctl", elm_test_build_dir());
    const char *emu = getenv("ELM_TEST_EMULATOR");
    const char *argv[24] = {0};
    int a = 0;
    if (emu && *emu)
        argv[a++] = emu;
    argv[a++] = path;
    argv[a++] = "--runtime-dir";
    argv[a++] = t->dir;
    for (int i = 0; args[i] && a < 23; i++)
        argv[a++] = args[i];
    execv(argv[0], (char *const *)argv);
    _exit(127);
}

/* Waits for pid; its output must parse as JSON lines (the caller frees the array). */
static json_t *finish(pid_t pid, const char *out)
{
    int st = td_wait(pid, WAIT_MS);
    const char *text = elm_test_file_text(out);
    if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("elmctl (%s) failed, status %d:\n%s", out, st, text);
    json_t *j = elm_test_json_lines(text);
    if (!j)
        fail_msg("elmctl (%s): not JSON lines:\n%s", out, text);
    return j;
}

static void test_two_clients_and_status(void **state)
{
    struct fx *f = *state;
    REQUIRE_DAEMON(f);
    const char *model = elm_test_model_path(TD_MODEL);

    /* both clients run before either is waited for: two processes, two sessions at once */
    char out[2][192];
    pid_t pid[2];
    for (int i = 0; i < 2; i++) {
        snprintf(out[i], sizeof out[i], "%s/client%d.out", f->t.base, i);
        const char *args[] = {"generate", "--json", "--temp", "0", "-n", "40", prompts[i], NULL};
        pid[i] = elmctl(&f->t, out[i], args);
        assert_true(pid[i] > 0);
    }
    for (int i = 0; i < 2; i++) {
        static struct ts_result want;
        local_greedy(model, prompts[i], N_PREDICT, &want);
        json_t *j = finish(pid[i], out[i]);
        assert_int_equal(json_array_size(j), (size_t)want.n_ids + 1); /* the tokens, then "done" */
        for (int k = 0; k < want.n_ids; k++)
            assert_int_equal(
                (int)json_number_value(json_object_get(json_array_get(j, (size_t)k), "token")),
                want.ids[k]);
        const json_t *done = json_array_get(j, (size_t)want.n_ids);
        assert_string_equal(json_string_value(json_object_get(done, "reason")), "length");
        json_decref(j);
    }
    assert_int_equal(stat_u64(&f->c, ELM_TAG_N_REQUESTS), 2);

    char sout[192];
    snprintf(sout, sizeof sout, "%s/status.out", f->t.base);
    const char *args[] = {"--json", "status", NULL};
    json_t *j = finish(elmctl(&f->t, sout, args), sout);
    const json_t *s = json_array_get(j, 0);
    /* the daemon's variant is the one this process's probe picks: same CPU, same ELM_KERNEL */
    assert_string_equal(json_string_value(json_object_get(s, "kernel")),
                        elm_kernels_active()->name);
    const json_t *ju = json_object_get(s, "io_uring");
    const bool uring = json_is_true(ju) || json_number_value(ju) != 0;
    const char *notes = json_string_value(json_object_get(s, "load_notes"));
    const char *emu = getenv("ELM_TEST_EMULATOR");
    print_message("elmd: kernel %s, io_uring %s; load notes: %s\n",
                  json_string_value(json_object_get(s, "kernel")), uring ? "yes" : "no", notes);
    if (emu && *emu)
        assert_false(uring); /* qemu-user: io_uring_setup is ENOSYS */
    if (!uring)              /* a fallback is reported, whatever refused io_uring */
        assert_non_null(strstr(notes, "io_uring"));
    json_decref(j);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    td_alarm(300);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_two_clients_and_status, setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
