/* test_config.c — elmd's configuration (daemon/config.c) in-process: defaults, single settings,
 * the key = value file, the command line over the file, and what a SIGHUP reload may change.
 *
 * Every test points XDG_CONFIG_HOME and HOME at an empty directory first, so a config file of
 * the machine's user is never read.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/config.h"
#include "elm/status.h"
#include "tests/common/elm_test.h"

struct fix {
    char dir[64];
    char file[PATH_MAX];
    struct elmd_config a, b;
};

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/elm-test-config-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->file, sizeof f->file, "%s/elmd.conf", f->dir);
    setenv("XDG_CONFIG_HOME", f->dir, 1); /* holds no elm/elmd.conf */
    setenv("HOME", f->dir, 1);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    unlink(f->file);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void write_file(const struct fix *f, const char *text)
{
    FILE *fp = fopen(f->file, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void test_defaults(void **state)
{
    (void)state;
    struct elmd_config c;
    elmd_config_defaults(&c);
    assert_string_equal(c.model, "");
    assert_int_equal(c.max_sessions, 16);
    assert_int_equal(c.kv_type, ELM_TYPE_F16);
    assert_int_equal(c.hugepages, ELM_HUGE_AUTO);
    assert_int_equal(c.prefill_chunk, 64);
    assert_int_equal(c.step_ms, 100);
    assert_int_equal(c.max_queued, 16);
    assert_int_equal(c.queue_timeout_ms, 30000);
    assert_true(c.mlock && c.direct_io);
    assert_int_equal(c.io_chunk_kib, 2048);
    /* the pool: a quarter of every session at full context, at least 4 full contexts */
    assert_int_equal(elmd_kv_pool_default(16, 4096), 16 * 4096 / 4);
    assert_int_equal(elmd_kv_pool_default(2, 4096), 4 * 4096);
}

static void test_set(void **state)
{
    (void)state;
    struct elmd_config c;
    char err[256];
    elmd_config_defaults(&c);
    assert_int_equal(elmd_config_set(&c, "max_sessions", "60", err, sizeof err), 0);
    assert_int_equal(c.max_sessions, 60);
    assert_int_equal(elmd_config_set(&c, "max_sessions", "61", err, sizeof err), ELM_EFORMAT);
    assert_string_equal(err, "invalid value '61' for 'max_sessions'");
    assert_int_equal(c.max_sessions, 60);
    assert_int_equal(elmd_config_set(&c, "kv_type", "Q8_0", err, sizeof err), 0);
    assert_int_equal(c.kv_type, ELM_TYPE_Q8_0);
    assert_int_equal(elmd_config_set(&c, "hugepages", "thp", err, sizeof err), 0);
    assert_int_equal(c.hugepages, ELM_HUGE_THP);
    assert_int_equal(elmd_config_set(&c, "wait", "active", err, sizeof err), 0);
    assert_int_equal(c.wait, ELM_WAIT_ACTIVE);
    assert_int_equal(elmd_config_set(&c, "wait", "spin", err, sizeof err), ELM_EFORMAT);
    assert_int_equal(c.wait, ELM_WAIT_ACTIVE);
    assert_int_equal(elmd_config_set(&c, "mlock", "off", err, sizeof err), 0);
    assert_false(c.mlock);
    /* O_DIRECT reads stay aligned: KiB counts that are not multiples of 4 are refused */
    assert_int_equal(elmd_config_set(&c, "io_chunk_kib", "6", err, sizeof err), ELM_EFORMAT);
    /* the protocol has no authentication: loopback only */
    assert_int_equal(elmd_config_set(&c, "endpoint", "tcp://0.0.0.0:5555", err, sizeof err),
                     ELM_EFORMAT);
    assert_int_equal(elmd_config_set(&c, "endpoint", "tcp://127.0.0.1:5555", err, sizeof err), 0);
    assert_int_equal(elmd_config_set(&c, "colour", "blue", err, sizeof err), ELM_EFORMAT);
    assert_string_equal(err, "unknown key 'colour'");
    /* several models: keep_alive as ollama reads it, max_resident_bytes with a suffix */
    assert_int_equal(c.keep_alive_ms, -1); /* the default: never */
    const struct {
        const char *v;
        int64_t ms;
    } ka[] = {{"5m", 300000}, {"1h30m", 5400000}, {"1.5s", 1500}, {"300", 300000},
              {"250ms", 250}, {"0", 0},           {"-1", -1},     {"-5m", -2}};
    for (size_t i = 0; i < sizeof ka / sizeof ka[0]; i++) {
        int rc = elmd_config_set(&c, "keep_alive", ka[i].v, err, sizeof err);
        assert_int_equal(rc, ka[i].ms == -2 ? ELM_EFORMAT : 0);
        if (!rc)
            assert_int_equal(c.keep_alive_ms, ka[i].ms);
    }
    assert_int_equal(elmd_config_set(&c, "keep_alive", "5 minutes", err, sizeof err), ELM_EFORMAT);
    assert_int_equal(elmd_config_set(&c, "max_resident_bytes", "8G", err, sizeof err), 0);
    assert_int_equal(c.max_resident_bytes, 8ull << 30);
    assert_int_equal(elmd_config_set(&c, "max_resident_bytes", "512MiB", err, sizeof err), 0);
    assert_int_equal(c.max_resident_bytes, 512ull << 20);
    assert_int_equal(elmd_config_set(&c, "max_resident_bytes", "-1", err, sizeof err), ELM_EFORMAT);
    assert_int_equal(elmd_config_set(&c, "max_resident_bytes", "3X", err, sizeof err), ELM_EFORMAT);
    assert_true(elmd_resident_default() > 0);
}

static void test_file(void **state)
{
    struct fix *f = *state;
    char err[512], want[PATH_MAX + 64], cwd[PATH_MAX];
    write_file(f, "# elmd settings\n"
                  "\n"
                  "  ctx = 2048  \n"
                  "model = models/a model.gguf\n"
                  "kv_pool_tokens=8192\n");
    elmd_config_defaults(&f->a);
    assert_int_equal(elmd_config_load_file(&f->a, f->file, err, sizeof err), 0);
    assert_int_equal(f->a.ctx, 2048);
    assert_int_equal(f->a.kv_pool_tokens, 8192);
    /* paths become absolute at parse time (in the background the daemon runs in "/") and may
     * hold spaces */
    assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(want, sizeof want, "%s/models/a model.gguf", cwd);
    assert_string_equal(f->a.model, want);
    assert_string_equal(f->a.config_path, f->file);

    write_file(f, "ctx = 1024\nthis line has no equals sign\n");
    assert_int_equal(elmd_config_load_file(&f->a, f->file, err, sizeof err), ELM_EFORMAT);
    snprintf(want, sizeof want, "%s:2: expected 'key = value'", f->file);
    assert_string_equal(err, want);

    write_file(f, "ctx = lots\n");
    assert_int_equal(elmd_config_load_file(&f->a, f->file, err, sizeof err), ELM_EFORMAT);
    snprintf(want, sizeof want, "%s:1: invalid value 'lots' for 'ctx'", f->file);
    assert_string_equal(err, want);
}

/* The file first, then the options, whatever their order: the command line wins. */
static void test_command_line_over_file(void **state)
{
    struct fix *f = *state;
    char err[512];
    write_file(f, "ctx = 2048\nmax_sessions = 4\n");
    char *argv[] = {"elmd", "--ctx", "1024", "--config", f->file, "-f", NULL};
    assert_int_equal(elmd_config_from_args(&f->a, 6, argv, err, sizeof err), 0);
    assert_int_equal(f->a.ctx, 1024);
    assert_int_equal(f->a.max_sessions, 4);
    assert_true(f->a.foreground);

    char *bad[] = {"elmd", "--ctx", "-3", NULL};
    assert_int_equal(elmd_config_from_args(&f->a, 3, bad, err, sizeof err), ELM_EFORMAT);
    assert_string_equal(err, "invalid value '-3' for 'ctx'");
    char *extra[] = {"elmd", "stray", NULL};
    assert_int_equal(elmd_config_from_args(&f->a, 2, extra, err, sizeof err), ELM_EFORMAT);
    char *version[] = {"elmd", "--version", NULL};
    assert_int_equal(elmd_config_from_args(&f->a, 2, version, err, sizeof err), 1);
}

/* SIGHUP: the file is read again; the directory, sockets and where logs go stay as started. */
static void test_reload(void **state)
{
    struct fix *f = *state;
    char err[512];
    bool restart_only = true;
    write_file(f, "ctx = 2048\nruntime_dir = /tmp/elm-a\n");
    char *argv[] = {"elmd", "--config", f->file, "--foreground", "--syslog", NULL};
    assert_int_equal(elmd_config_from_args(&f->a, 5, argv, err, sizeof err), 0);
    assert_int_equal(elmd_config_reload(&f->a, 5, argv, &f->b, &restart_only, err, sizeof err), 0);
    assert_false(restart_only);
    assert_memory_equal(&f->a, &f->b, sizeof f->a); /* nothing changed: the same value */

    write_file(f, "ctx = 512\nprefill_chunk = 16\nruntime_dir = /tmp/elm-b\n"
                  "endpoint = tcp://127.0.0.1:7000\n");
    assert_int_equal(elmd_config_reload(&f->a, 5, argv, &f->b, &restart_only, err, sizeof err), 0);
    assert_true(restart_only);
    assert_int_equal(f->b.ctx, 512);
    assert_int_equal(f->b.prefill_chunk, 16);
    assert_string_equal(f->b.runtime_dir, "/tmp/elm-a");
    assert_string_equal(f->b.endpoint, "");
    assert_true(f->b.foreground && f->b.use_syslog);

    /* an invalid file: an error naming the line, and nothing to install */
    write_file(f, "ctx = 512\nprefill_chunk = 0\n");
    assert_int_equal(elmd_config_reload(&f->a, 5, argv, &f->b, &restart_only, err, sizeof err),
                     ELM_EFORMAT);
    assert_non_null(strstr(err, ":2: invalid value '0' for 'prefill_chunk'"));
    assert_int_equal(f->a.ctx, 2048);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_set),
        cmocka_unit_test_setup_teardown(test_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_line_over_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
