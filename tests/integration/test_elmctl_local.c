/* test_elmctl_local.c — elmctl's in-process commands as a user runs them: generate --local
 * (text and --ids), tokenize (argument and stdin, --special), quantize, inspect, and the
 * errors for bad input. Runs the real binary from the build tree. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "elm/version.h"
#include "tests/common/elm_test.h"

/* Runs a shell command, captures stdout (and stderr when merged by the caller) into out.
 * Returns the exit status. */
static int run(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = elm_test_vsh(out, cap, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

static char elmctl[1024];

static void test_generate_ids_and_text(void **state)
{
    ELM_REQUIRE_MODEL(m, "stories260K.gguf");
    static char out[65536];
    assert_int_equal(run(out, sizeof out, "%s generate --local '%s' --temp 0 -n 20 --ids ''",
                         elmctl, m),
                     0);
    assert_string_equal(out, "403 407 261 378 432 383 286 261 376 298 315 421 395 317 426 338 "
                             "401 396 267 337\n");
    assert_int_equal(run(out, sizeof out, "%s generate --local '%s' --temp 0 -n 15 ''", elmctl, m),
                     0);
    assert_string_equal(out, "Once upon a time, there was a little girl named Lily.\n");
    /* the same seed reproduces a sampled run */
    static char again[65536];
    assert_int_equal(run(out, sizeof out, "%s generate --local '%s' --seed 7 -n 40 'Once'",
                         elmctl, m), 0);
    assert_int_equal(run(again, sizeof again, "%s generate --local '%s' --seed 7 -n 40 'Once'",
                         elmctl, m), 0);
    assert_string_equal(out, again);
    /* a stop string ends the text before it */
    assert_int_equal(run(out, sizeof out,
                         "%s generate --local '%s' --temp 0 -n 60 --stop ' girl' ''", elmctl, m),
                     0);
    assert_string_equal(out, "Once upon a time, there was a little\n");
}

static void test_tokenize(void **state)
{
    ELM_REQUIRE_MODEL(m, "stories260K.gguf");
    static char out[65536];
    assert_int_equal(run(out, sizeof out, "printf 'Hi <s>' | %s tokenize --local '%s' --ids -",
                         elmctl, m),
                     0);
    assert_null(strstr(out, " 1 ")); /* "<s>" stays text: no BOS id after the first */
    assert_memory_equal(out, "1 ", 2);
    assert_int_equal(run(out, sizeof out,
                         "printf 'Hi <s>' | %s tokenize --local '%s' --special --ids -", elmctl, m),
                     0);
    size_t len = strlen(out);
    assert_true(len > 3 && !strcmp(out + len - 3, " 1\n"));
    assert_int_equal(run(out, sizeof out, "%s tokenize --local '%s' --no-bos --ids 'Once'",
                         elmctl, m),
                     0);
    assert_string_equal(out, "403\n");
}

static void test_quantize_and_inspect(void **state)
{
    ELM_REQUIRE_MODEL(m, "stories260K.gguf");
    char dir[] = "/tmp/elm-cli-XXXXXX";
    assert_non_null(mkdtemp(dir));
    static char out[65536];
    assert_int_equal(run(out, sizeof out, "%s quantize '%s' %s/q8.gguf q8_0", elmctl, m, dir), 0);
    assert_non_null(strstr(out, "32 tensors quantized, 16 kept in F32"));
    assert_int_equal(run(out, sizeof out, "%s inspect %s/q8.gguf", elmctl, dir), 0);
    assert_non_null(strstr(out, "architecture: llama"));
    assert_non_null(strstr(out, "q8_0"));
    assert_non_null(strstr(out, "general.file_type"));
    assert_int_equal(run(out, sizeof out, "%s generate --local %s/q8.gguf --temp 0 -n 15 ''",
                         elmctl, dir),
                     0);
    assert_string_equal(out, "Once upon a time, there was a little girl named Lily.\n");
    assert_int_equal(run(out, sizeof out, "%s quantize '%s' %s/x.gguf q9_9 2>&1", elmctl, m, dir),
                     1);
    assert_non_null(strstr(out, "unknown type 'q9_9'"));
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_errors(void **state)
{
    static char out[65536];
    assert_int_equal(run(out, sizeof out, "%s generate --local /nonexistent.gguf hi 2>&1", elmctl),
                     1);
    assert_non_null(strstr(out, "elmctl: /nonexistent.gguf: cannot open"));
    assert_int_equal(run(out, sizeof out, "%s generate --local x --temp abc hi 2>&1", elmctl), 2);
    assert_non_null(strstr(out, "--temp expects a number"));
    assert_int_equal(run(out, sizeof out, "%s frobnicate 2>&1", elmctl), 2);
    assert_non_null(strstr(out, "unknown command 'frobnicate'"));
    const char *subs[] = {"generate", "tokenize", "inspect", "quantize"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(run(out, sizeof out, "%s %s --help", elmctl, subs[i]), 0);
        assert_non_null(strstr(out, "usage: elmctl"));
    }
    const char *v1 = elm_test_model_path("tinyllamas-stories-260k-f32.gguf");
    if (v1) {
        assert_int_equal(run(out, sizeof out, "%s generate --local '%s' hi 2>&1", elmctl, v1), 1);
        assert_non_null(strstr(out, "unsupported GGUF v1"));
    }
}

static int setup(void **state)
{
    snprintf(elmctl, sizeof elmctl, "%s/cli/elmctl", elm_test_build_dir());
    return access(elmctl, X_OK);
}

/* The version is the project's (elm/version.h, generated by CMake from project()). */
static void test_version(void **state)
{
    static char out[256];
    assert_int_equal(run(out, sizeof out, "%s --version", elmctl), 0);
    assert_string_equal(out, "elmctl " ELM_VERSION_STRING "\n");
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", ELM_VERSION_MAJOR, ELM_VERSION_MINOR,
             ELM_VERSION_PATCH);
    assert_string_equal(want, ELM_VERSION_STRING);
    assert_string_equal(elm_version(), ELM_VERSION_STRING);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_ids_and_text),
        cmocka_unit_test(test_tokenize),
        cmocka_unit_test(test_quantize_and_inspect),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_version),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
