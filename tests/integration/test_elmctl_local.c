/* test_elmctl_local.c — elmctl's in-process commands as a user runs them: generate --local
 * (text and --ids), tokenize (argument and stdin, --special), quantize, inspect, and the
 * errors for bad input, chat with the conversation on stdin; the conventions every command follows:
 * --json output (parsed) and errors, the prompt from an argument, '-', stdin or -f FILE, exit codes
 * 0/1/2, a file named once in an error, --version. Runs the real binaries from the build tree. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "elm/version.h"
#include "tests/common/elm_test.h"
#include "tests/common/json.h"

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
    assert_int_equal(
        run(out, sizeof out, "%s generate --local '%s' --temp 0 -n 20 --ids ''", elmctl, m), 0);
    assert_string_equal(out, "403 407 261 378 432 383 286 261 376 298 315 421 395 317 426 338 "
                             "401 396 267 337\n");
    assert_int_equal(run(out, sizeof out, "%s generate --local '%s' --temp 0 -n 15 ''", elmctl, m),
                     0);
    assert_string_equal(out, "Once upon a time, there was a little girl named Lily.\n");
    /* the same seed reproduces a sampled run */
    static char again[65536];
    assert_int_equal(
        run(out, sizeof out, "%s generate --local '%s' --seed 7 -n 40 'Once'", elmctl, m), 0);
    assert_int_equal(
        run(again, sizeof again, "%s generate --local '%s' --seed 7 -n 40 'Once'", elmctl, m), 0);
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
    assert_int_equal(
        run(out, sizeof out, "printf 'Hi <s>' | %s tokenize --local '%s' --ids -", elmctl, m), 0);
    assert_null(strstr(out, " 1 ")); /* "<s>" stays text: no BOS id after the first */
    assert_memory_equal(out, "1 ", 2);
    assert_int_equal(run(out, sizeof out,
                         "printf 'Hi <s>' | %s tokenize --local '%s' --special --ids -", elmctl, m),
                     0);
    size_t len = strlen(out);
    assert_true(len > 3 && !strcmp(out + len - 3, " 1\n"));
    assert_int_equal(
        run(out, sizeof out, "%s tokenize --local '%s' --no-bos --ids 'Once'", elmctl, m), 0);
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
    assert_int_equal(
        run(out, sizeof out, "%s generate --local %s/q8.gguf --temp 0 -n 15 ''", elmctl, dir), 0);
    assert_string_equal(out, "Once upon a time, there was a little girl named Lily.\n");
    /* A wrong TYPE is a usage error (2), as every other wrong command line. */
    assert_int_equal(run(out, sizeof out, "%s quantize '%s' %s/x.gguf q9_9 2>&1", elmctl, m, dir),
                     2);
    assert_non_null(strstr(out, "unknown type 'q9_9'"));
    assert_int_equal(run(out, sizeof out, "%s quantize --bogus 2>&1", elmctl), 2);
    assert_int_equal(run(out, sizeof out, "%s quantize '%s' %s/x.gguf Q4_K 2>&1", elmctl,
                         "/nonexistent.gguf", dir),
                     1);
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
    /* elmd answers --version the same way */
    char elmd[1100];
    snprintf(elmd, sizeof elmd, "%s/daemon/elmd", elm_test_build_dir());
    if (access(elmd, X_OK) == 0) {
        assert_int_equal(run(out, sizeof out, "%s --version", elmd), 0);
        assert_string_equal(out, "elmd " ELM_VERSION_STRING "\n");
    }
}

/* --json on every local command: a parsed document on success, an error document with the same
 * exit code on failure (stdout, as a script reads it; the text still goes to stderr). */
static void test_json(void **state)
{
    ELM_REQUIRE_MODEL(m, "stories260K.gguf");
    static char out[1 << 20], text[65536];
    assert_int_equal(
        run(out, sizeof out, "%s generate --local '%s' --temp 0 -n 15 --json ''", elmctl, m), 0);
    assert_true(elm_test_json_is_stream(out, "length", 15, text, sizeof text));
    assert_string_equal(text, "Once upon a time, there was a little girl named Lily.");
    assert_int_equal(
        run(out, sizeof out, "%s --json generate --local /nonexistent.gguf hi 2>/dev/null", elmctl),
        1);
    assert_true(elm_test_json_is_error(out, 1, "/nonexistent.gguf: cannot open"));
    assert_int_equal(
        run(out, sizeof out, "%s generate --json --local x --temp abc hi 2>/dev/null", elmctl), 2);
    assert_true(elm_test_json_is_error(out, 2, "--temp expects a number"));

    assert_int_equal(run(out, sizeof out, "%s tokenize --json --local '%s' 'Once upon'", elmctl, m),
                     0);
    json_t *j = elm_test_json(out);
    assert_non_null(j);
    assert_int_equal((int)elm_test_jnum(j, "n_tokens"), 3);
    const json_t *toks = json_object_get(j, "tokens");
    assert_int_equal(json_array_size(toks), 3);
    assert_int_equal((int)elm_test_jnum(json_array_get(toks, 0), "id"), 1);
    assert_int_equal((int)elm_test_jnum(json_array_get(toks, 1), "id"), 403);
    json_decref(j);
    assert_int_equal(run(out, sizeof out, "%s tokenize --json 'x' 2>/dev/null", elmctl), 2);
    assert_true(elm_test_json_is_error(out, 2, "--local MODEL"));

    assert_int_equal(run(out, sizeof out, "%s inspect --json '%s'", elmctl, m), 0);
    assert_non_null(j = elm_test_json(out));
    assert_string_equal(elm_test_jstr(json_object_get(j, "model"), "architecture"), "llama");
    assert_int_equal((int)elm_test_jnum(json_object_get(j, "model"), "n_vocab"), 512);
    assert_true(json_is_array(json_object_get(j, "tensors")));
    assert_true(json_array_size(json_object_get(j, "tensors")) > 0);
    assert_string_equal(elm_test_jstr(json_object_get(j, "metadata"), "general.architecture"),
                        "llama");
    json_decref(j);
    assert_int_equal(
        run(out, sizeof out, "%s inspect --json /nonexistent.gguf 2>/dev/null", elmctl), 1);
    assert_true(elm_test_json_is_error(out, 1, "/nonexistent.gguf"));

    char dir[] = "/tmp/elm-cli-XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(
        run(out, sizeof out, "%s --json quantize '%s' %s/q8.gguf q8_0", elmctl, m, dir), 0);
    assert_non_null(j = elm_test_json(out));
    assert_int_equal((int)elm_test_jnum(j, "n_quantized"), 32);
    assert_int_equal((int)elm_test_jnum(j, "n_kept"), 16);
    json_decref(j);
    assert_int_equal(
        run(out, sizeof out, "%s quantize --json '%s' %s/x.gguf q9_9 2>/dev/null", elmctl, m, dir),
        2);
    assert_true(elm_test_json_is_error(out, 2, "unknown type 'q9_9'"));
    assert_int_equal(run(out, sizeof out, "rm -rf %s", dir), 0);

    /* Usage errors found by the dispatcher answer in JSON too. */
    assert_int_equal(run(out, sizeof out, "%s --json frobnicate 2>/dev/null", elmctl), 2);
    assert_true(elm_test_json_is_error(out, 2, "unknown command 'frobnicate'"));
    assert_int_equal(run(out, sizeof out, "%s --json --version", elmctl), 0);
    assert_string_equal(out, "{\"version\":\"" ELM_VERSION_STRING "\"}\n");
}

/* --json on the commands added since test_json was written (chat, embed and the evaluation
 * commands): an unreadable model is an error document with exit code 1, a wrong command line
 * one with exit code 2, and distill-data's success is a parsed document. */
static void test_json_newer(void **state)
{
    ELM_REQUIRE_MODEL(m, "stories260K.gguf");
    ELM_REQUIRE_MODEL(text, "corpus/tinystories-sample-30k.txt");
    static char out[1 << 16];
    const char *fail[] = {
        "chat --local /nonexistent.gguf </dev/null",
        "embed --local /nonexistent.gguf hi",
        "perplexity /nonexistent.gguf /nonexistent.txt",
        "kld --teacher /nonexistent.gguf --student /nonexistent.gguf /nonexistent.txt",
        "imatrix /nonexistent.gguf /nonexistent.txt -o /tmp/elm-never-written",
        "distill-data /nonexistent.gguf /nonexistent.txt -o /tmp/elm-never-written",
        "prune /nonexistent.gguf -o /tmp/elm-never-written --drop 0",
    };
    for (size_t i = 0; i < sizeof fail / sizeof *fail; i++) {
        int rc = run(out, sizeof out, "%s --json %s 2>/dev/null", elmctl, fail[i]);
        if (rc != 1 || !elm_test_json_is_error(out, 1, "/nonexistent"))
            fail_msg("%s: exit %d, '%s'", fail[i], rc, out);
    }
    const char *usage[] = {
        "chat --temp x", "embed --threads 0 --local x hi",  "perplexity",  "kld --teacher a",
        "imatrix a b",   "distill-data a b --top-k 0 -o c", "prune a -o b"};
    for (size_t i = 0; i < sizeof usage / sizeof *usage; i++) {
        int rc = run(out, sizeof out, "%s --json %s </dev/null 2>/dev/null", elmctl, usage[i]);
        if (rc != 2 || !elm_test_json_is_error(out, 2, NULL))
            fail_msg("%s: exit %d, '%s'", usage[i], rc, out);
    }
    char dir[] = "/tmp/elm-cli-XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(run(out, sizeof out,
                         "%s --json distill-data '%s' '%s' -o %s/d --ctx 64 --chunks 2 --top-k 4 "
                         "2>/dev/null",
                         elmctl, m, text, dir),
                     0);
    json_t *j = elm_test_json(out);
    assert_non_null(j);
    assert_int_equal((int)elm_test_jnum(j, "positions"), 128);
    assert_int_equal((int)elm_test_jnum(j, "top_k"), 4);
    json_decref(j);
    assert_int_equal(run(out, sizeof out, "rm -rf %s", dir), 0);
}

/* The prompt from stdin (no argument, or '-') and from -f FILE prints what the argument does. */
static void test_prompt_sources(void **state)
{
    ELM_REQUIRE_MODEL(m, "stories260K.gguf");
    static char want[65536], out[65536];
    assert_int_equal(run(want, sizeof want,
                         "%s generate --local '%s' --temp 0 -n 8 "
                         "'Once upon a time'",
                         elmctl, m),
                     0);
    assert_string_equal(want, ", there was a little girl\n");
    assert_int_equal(run(out, sizeof out,
                         "printf 'Once upon a time' | %s generate --local '%s' "
                         "--temp 0 -n 8",
                         elmctl, m),
                     0);
    assert_string_equal(out, want);
    assert_int_equal(run(out, sizeof out,
                         "printf 'Once upon a time' | %s generate --local '%s' "
                         "--temp 0 -n 8 -",
                         elmctl, m),
                     0);
    assert_string_equal(out, want);
    char file[] = "/tmp/elm-cli-prompt-XXXXXX";
    int fd = mkstemp(file);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "Once upon a time", 16), 16);
    close(fd);
    assert_int_equal(run(out, sizeof out, "%s generate --local '%s' --temp 0 -n 8 -f %s </dev/null",
                         elmctl, m, file),
                     0);
    assert_string_equal(out, want);
    assert_int_equal(
        run(out, sizeof out, "%s tokenize --local '%s' --ids --file %s", elmctl, m, file), 0);
    static char ids[4096];
    assert_int_equal(
        run(ids, sizeof ids, "%s tokenize --local '%s' --ids 'Once upon a time'", elmctl, m), 0);
    assert_string_equal(out, ids);
    /* Two sources is a usage error; a missing file a failure that names it once. */
    assert_int_equal(
        run(out, sizeof out, "%s generate --local '%s' -f %s hi 2>&1", elmctl, m, file), 2);
    assert_non_null(strstr(out, "not both"));
    unlink(file);
    assert_int_equal(run(out, sizeof out, "%s generate --local '%s' -f %s 2>&1", elmctl, m, file),
                     1);
    const char *at = strstr(out, file);
    assert_non_null(at);
    assert_null(strstr(at + 1, file));
    assert_non_null(strstr(out, "No such file"));
}

/* A 1 MB prompt from a file: refused with the token count and the context size, not a crash. */
static void test_huge_prompt(void **state)
{
    ELM_REQUIRE_MODEL(m, "stories260K.gguf");
    char file[] = "/tmp/elm-cli-big-XXXXXX";
    int fd = mkstemp(file);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    for (int i = 0; i < 1 << 16; i++)
        fputs("Once upon a time", f); /* 16 bytes: 1 MiB */
    fclose(f);
    static char out[65536];
    assert_int_equal(
        run(out, sizeof out, "%s generate --local '%s' -n 4 -f %s 2>&1", elmctl, m, file), 1);
    assert_non_null(strstr(out, "elmctl: the prompt has "));
    assert_non_null(strstr(out, " tokens but the context holds 2048"));
    assert_int_equal(run(out, sizeof out, "%s generate --json --local '%s' -n 4 -f %s 2>/dev/null",
                         elmctl, m, file),
                     1);
    assert_true(elm_test_json_is_error(out, 1, "context holds 2048"));
    unlink(file);
}

/* elmctl chat with the conversation on stdin: the reply is llama.cpp's greedy text for the zoo2
 * llama3 system entry (all its margins are >= 0.1, zoo2/README.md), as text and in --json; bad
 * input and template names are usage errors. */
static void test_chat(void **state)
{
    ELM_REQUIRE_MODEL(m, "zoo2/zoo-llama3.gguf");
    ELM_REQUIRE_MODEL(refp, "zoo2/zoo-llama3.ref.json");
    char *rtext = elm_test_read_file(refp, NULL);
    json_t *ref = elm_test_json(rtext);
    free(rtext);
    const json_t *e = json_array_get(json_object_get(ref, "chat"), 0);
    assert_string_equal(json_string_value(json_object_get(e, "kind")), "system");
    const char *conv = "[{\"role\":\"system\",\"content\":\"You are a concise assistant. "
                       "Reply with one word.\"},\n {\"role\":\"user\",\"content\":\"What "
                       "colour is the sky on a clear day?\"}]";
    char file[] = "/tmp/elm-cli-chat-XXXXXX";
    int fd = mkstemp(file);
    assert_true(fd >= 0);
    assert_true(write(fd, conv, strlen(conv)) == (ssize_t)strlen(conv));
    close(fd);
    static char out[65536];
    /* the reply's bytes (greedy_text has U+FFFD where a token ends inside a character) */
    const char *hex = json_string_value(json_object_get(e, "greedy_text_hex"));
    char want[256];
    size_t n_want = strlen(hex) / 2;
    assert_true(n_want < sizeof want);
    for (size_t i = 0; i < n_want; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        want[i] = (char)v;
    }
    assert_int_equal(run(out, sizeof out,
                         "%s chat --local '%s' --temp 0 -n 32 --kv-type f32 < %s 2>/dev/null",
                         elmctl, m, file),
                     0);
    assert_int_equal(strlen(out), n_want + 1); /* and the line's end */
    assert_memory_equal(out, want, n_want);
    assert_int_equal(run(out, sizeof out,
                         "%s chat --json --local '%s' --temp 0 -n 32 --kv-type f32 < %s", elmctl, m,
                         file),
                     0);
    json_t *j = elm_test_json(out);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "role")), "assistant");
    assert_string_equal(json_string_value(json_object_get(j, "reason")), "length");
    assert_int_equal((int)json_number_value(json_object_get(j, "n_gen")), 32);
    assert_int_equal((int)json_number_value(json_object_get(j, "n_prompt")),
                     (int)json_array_size(json_object_get(e, "prompt_ids")));
    json_decref(j);
    json_decref(ref);
    unlink(file);
    assert_int_equal(run(out, sizeof out,
                         "echo '[{\"role\":\"user\"}]' | %s chat --json "
                         "--local '%s'",
                         elmctl, m),
                     2);
    assert_true(elm_test_json_is_error(out, 2, "\"content\""));
    assert_int_equal(run(out, sizeof out,
                         "echo '[]' | %s chat --local '%s' --chat-template nope "
                         "2>&1",
                         elmctl, m),
                     2);
    assert_non_null(strstr(out, "unknown --chat-template 'nope'"));

    /* inspect: the template as recognised, special and EOG tokens, size and quantization
     * (zoo2/README.md: parameters, EOG ids, the Q4_K_M mix) */
    ELM_REQUIRE_MODEL(q, "zoo2/zoo-qwen25-q4_k_m.gguf");
    assert_int_equal(run(out, sizeof out, "%s inspect --json '%s'", elmctl, q), 0);
    j = elm_test_json(out);
    assert_non_null(j);
    assert_int_equal((int)json_number_value(json_object_get(j, "n_params")), 1345792);
    assert_string_equal(json_string_value(json_object_get(j, "file_type_name")), "q4_k_m");
    assert_int_equal(
        (int)json_number_value(json_object_get(json_object_get(j, "tensor_types"), "q6_k")), 3);
    const json_t *mo = json_object_get(j, "model"), *eog = json_object_get(mo, "eog");
    assert_string_equal(json_string_value(json_object_get(mo, "chat_template")), "chatml");
    assert_int_equal((int)json_array_size(eog), 2);
    assert_true(json_number_value(json_array_get(eog, 0)) +
                    json_number_value(json_array_get(eog, 1)) ==
                632 + 634);
    json_decref(j);
    assert_int_equal(run(out, sizeof out, "%s inspect '%s'", elmctl, m), 0);
    assert_non_null(strstr(out, "\nchat template: llama3\n"));
    assert_non_null(strstr(out, "\nend of generation: 639 \"<|eot_id|>\"\n"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_ids_and_text),
        cmocka_unit_test(test_tokenize),
        cmocka_unit_test(test_quantize_and_inspect),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_json_newer),
        cmocka_unit_test(test_prompt_sources),
        cmocka_unit_test(test_huge_prompt),
        cmocka_unit_test(test_chat),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
