/* test_httpd_chat.c — elm-httpd's chat and embedding endpoints, driven with curl (and the
 * official npm clients, tests/http/chat.mjs) against a real elmd started by `elmctl start
 * --http`:
 *
 *   - zoo-qwen25 (a chatml model) with the conversations of its ref.json (llama-server's greedy
 *     replies): /v1/chat/completions (one document; server-sent events with the role chunk,
 *     deltas, finish_reason and the usage chunk) and Ollama's /api/chat (one document; JSON
 *     lines) each give the reference reply (its bytes made valid UTF-8 as the gateway sends
 *     them), its token counts and finish reason, and the same text as `elmctl chat` on the
 *     daemon.
 *   - zoo-bert (an embedding model, loaded into the same daemon): /v1/embeddings (floats and
 *     base64), /api/embed and /api/embeddings give exactly `elmctl embed --local`'s vectors.
 *   - The chat page at "/" in Debian's chromium, headless (tests/http/page.mjs, playwright-core):
 *     a typed message's streamed reply equals the API's greedy answer to the same request; a
 *     screenshot is saved as BUILD_DIR/httpd-chat-page.png; Stop ends a reply in flight.
 *   - Asking the wrong kind of model (chat of an embedding model, embeddings of a chat model)
 *     and malformed messages or inputs are 400s naming the field.
 * No assertion is about time.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/utf8.h"
#include "tests/common/elm_test.h"
#include "tests/common/json.h"

#define TEST_ALARM_S 300
#define CHAT_MODEL   "zoo2/zoo-qwen25.gguf"
#define EMBED_MODEL  "zoo2/zoo-bert.gguf"
#define N_PREDICT    32 /* the reference's n_predict */

static char elmctl[4096], httpd[4096];
static char rundir[64], errfile[96];
static const char *chat_model, *embed_model;
static char url[128];
static json_t *ref; /* zoo-qwen25.ref.json */

static int run(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = elm_test_vsh(out, cap, errfile, fmt, ap);
    va_end(ap);
    return rc;
}

/* Writes j (stolen) to rundir/name; the path in path. */
static void write_json(char *path, size_t cap, const char *name, json_t *j)
{
    snprintf(path, cap, "%s/%s", rundir, name);
    assert_int_equal(json_dump_file(j, path, JSON_COMPACT), 0);
    json_decref(j);
}

static int setup(void **state)
{
    (void)state;
    snprintf(elmctl, sizeof elmctl, "%s/cli/elmctl", elm_test_build_dir());
    snprintf(httpd, sizeof httpd, "%s/httpd/elm-httpd", elm_test_build_dir());
    snprintf(rundir, sizeof rundir, "/tmp/elm-httpd-chat-XXXXXX");
    if (!mkdtemp(rundir))
        return -1;
    snprintf(errfile, sizeof errfile, "%s.err", rundir);
    chat_model = elm_test_model_path(CHAT_MODEL);
    embed_model = elm_test_model_path(EMBED_MODEL);
    static char out[8192];
    if (!chat_model || !embed_model || access(httpd, X_OK) ||
        run(out, sizeof out, "command -v curl"))
        return 0; /* each test skips with the reason */
    char refpath[4200];
    snprintf(refpath, sizeof refpath, "%.*s.ref.json", (int)(strlen(chat_model) - 5), chat_model);
    if (!(ref = json_load_file(refpath, 0, NULL)))
        return -1;
    alarm(TEST_ALARM_S);
    if (run(out, sizeof out, "%s --runtime-dir %s start --json --http 127.0.0.1:0 --model '%s'",
            elmctl, rundir, chat_model)) {
        print_message("elmctl start --http failed: %s %s\n", out, elm_test_file_text(errfile));
        return -1;
    }
    json_t *j = elm_test_json(out);
    const char *u = elm_test_jstr(j, "http");
    snprintf(url, sizeof url, "%s", u ? u : "");
    json_decref(j);
    return *url ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    static char out[4096];
    run(out, sizeof out, "%s --runtime-dir %s stop", elmctl, rundir);
    const char *pids[] = {"elmd.pid", "elm-httpd.pid"};
    for (size_t i = 0; i < 2; i++) {
        char path[256], buf[32] = {0};
        snprintf(path, sizeof path, "%s/%s", rundir, pids[i]);
        FILE *f = fopen(path, "r");
        long pid = f && fgets(buf, sizeof buf, f) ? strtol(buf, NULL, 10) : 0;
        if (f)
            fclose(f);
        elm_test_signal_if_ours(pid, rundir, SIGKILL);
    }
    char log[128];
    snprintf(log, sizeof log, "%s/elm-httpd.log", rundir);
    const char *text = elm_test_file_text(log);
    int bad = strstr(text, "Sanitizer") || strstr(text, "runtime error:");
    if (bad)
        print_message("%s:\n%s\n", log, text);
    json_decref(ref);
    snprintf(out, sizeof out, "rm -rf %s %s", rundir, errfile);
    alarm(0);
    return system(out) == 0 && !bad ? 0 : -1;
}

static void require_gateway(void)
{
    if (!chat_model || !embed_model) {
        print_message("SKIP: %s or %s not found in %s\n", CHAT_MODEL, EMBED_MODEL,
                      elm_test_models_dir());
        skip();
    }
    if (access(httpd, X_OK)) {
        print_message("SKIP: %s is not built (or curl is missing)\n", httpd);
        skip();
    }
    assert_true(*url);
}

/* ---------------------------------------------------------------------------------------------
 * Chat: the reference conversations through both APIs
 */

/* A reference conversation's expected reply, as the gateway sends it: the reference's bytes
 * (greedy_text_hex) made valid UTF-8. Caller frees. */
static char *ref_reply(const json_t *c)
{
    const char *hex = elm_test_jstr(c, "greedy_text_hex");
    assert_non_null(hex);
    size_t n = strlen(hex) / 2, len;
    char *bytes = malloc(n + 1);
    assert_non_null(bytes);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        bytes[i] = (char)v;
    }
    char *clean = elm_utf8_clean(bytes, n, &len);
    free(bytes);
    assert_non_null(clean);
    return clean;
}

/* The request body of conversation c for an API: messages and greedy sampling. */
static void chat_request(char *path, size_t cap, const json_t *c, bool ollama, bool stream)
{
    json_t *q = json_pack("{sssOsb}", "model", "zoo-qwen25", "messages",
                          json_object_get(c, "messages"), "stream", stream);
    if (ollama)
        json_object_set_new(q, "options",
                            json_pack("{sisi}", "num_predict", N_PREDICT, "temperature", 0));
    else {
        json_object_set_new(q, "max_tokens", json_integer(N_PREDICT));
        json_object_set_new(q, "temperature", json_integer(0));
        if (stream)
            json_object_set_new(q, "stream_options", json_pack("{sb}", "include_usage", 1));
    }
    write_json(path, cap, "request.json", q);
}

/* The chat's text of the SSE body of /v1/chat/completions, checked for OpenAI's framing: the
 * role chunk first, deltas, the last choice with finish_reason, the usage chunk, [DONE]. */
static void chat_sse(char *body, char *text, size_t cap, const char *finish, const json_t *want_u)
{
    size_t len = 0;
    int n = 0;
    bool done = false, finished = false, usage = false;
    for (char *p = body; *p; n++) {
        assert_false(done);
        assert_memory_equal(p, "data: ", 6);
        char *end = strstr(p, "\n\n");
        assert_non_null(end);
        *end = 0;
        const char *data = p + 6;
        p = end + 2;
        if (!strcmp(data, "[DONE]")) {
            done = true;
            continue;
        }
        json_t *j = elm_test_json(data);
        assert_non_null(j);
        assert_string_equal(elm_test_jstr(j, "object"), "chat.completion.chunk");
        const json_t *ch = json_object_get(j, "choices");
        if (!json_array_size(ch)) {
            assert_true(finished);
            const json_t *u = json_object_get(j, "usage");
            assert_true(json_equal(json_object_get(u, "prompt_tokens"),
                                   json_object_get(want_u, "prompt_tokens")));
            assert_true(json_equal(json_object_get(u, "completion_tokens"),
                                   json_object_get(want_u, "completion_tokens")));
            usage = true;
        } else {
            assert_false(finished);
            const json_t *d = json_object_get(json_array_get(ch, 0), "delta");
            assert_non_null(d);
            if (n == 0)
                assert_string_equal(elm_test_jstr(d, "role"), "assistant");
            const char *t = elm_test_jstr(d, "content");
            if (t) {
                assert_true(len + strlen(t) < cap);
                memcpy(text + len, t, strlen(t));
                len += strlen(t);
            }
            const char *fr = elm_test_jstr(json_array_get(ch, 0), "finish_reason");
            if (fr) {
                assert_string_equal(fr, finish);
                finished = true;
            }
        }
        json_decref(j);
    }
    text[len] = 0;
    assert_true(done && finished && usage);
}

static void test_chat(void **state)
{
    (void)state;
    require_gateway();
    static char out[65536], text[16384], daemon[16384];
    const json_t *chats = json_object_get(ref, "chat");
    assert_true(json_array_size(chats) >= 2);
    for (size_t i = 0; i < json_array_size(chats); i++) {
        const json_t *c = json_array_get(chats, i);
        char *want = ref_reply(c);
        bool eos = !strcmp(elm_test_jstr(c, "stop_type"), "eos");
        const char *finish = eos ? "stop" : "length";
        json_int_t n_prompt = (json_int_t)json_array_size(json_object_get(c, "prompt_ids"));
        json_int_t n_gen = (json_int_t)json_array_size(json_object_get(c, "greedy_ids"));
        json_t *want_u = json_pack("{sIsI}", "prompt_tokens", n_prompt, "completion_tokens", n_gen);
        print_message("conversation %s: %lld + %lld tokens\n", elm_test_jstr(c, "kind"),
                      (long long)n_prompt, (long long)n_gen);

        /* the daemon's own chat call, through elmctl */
        char conv[256], req[256];
        write_json(conv, sizeof conv, "conv.json", json_incref(json_object_get(c, "messages")));
        assert_int_equal(run(daemon, sizeof daemon,
                             "%s --runtime-dir %s chat --temp 0 -n %d --json < %s", elmctl, rundir,
                             N_PREDICT, conv),
                         0);
        json_t *d = elm_test_json(daemon);
        assert_string_equal(elm_test_jstr(d, "content"), want);
        json_decref(d);

        /* OpenAI, one document */
        chat_request(req, sizeof req, c, false, false);
        assert_int_equal(
            elm_test_curl(out, sizeof out, errfile, "-d @%s %s/v1/chat/completions", req, url),
            200);
        json_t *j = elm_test_json(out);
        assert_non_null(j);
        assert_string_equal(elm_test_jstr(j, "object"), "chat.completion");
        const json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
        const json_t *m = json_object_get(ch, "message");
        assert_string_equal(elm_test_jstr(m, "role"), "assistant");
        assert_string_equal(elm_test_jstr(m, "content"), want);
        assert_string_equal(elm_test_jstr(ch, "finish_reason"), finish);
        const json_t *u = json_object_get(j, "usage");
        assert_true(elm_test_jnum(u, "prompt_tokens") == n_prompt);
        assert_true(elm_test_jnum(u, "completion_tokens") == n_gen);
        json_decref(j);

        /* OpenAI, streamed */
        chat_request(req, sizeof req, c, false, true);
        assert_int_equal(
            elm_test_curl(out, sizeof out, errfile, "-N -d @%s %s/v1/chat/completions", req, url),
            200);
        chat_sse(out, text, sizeof text, finish, want_u);
        assert_string_equal(text, want);

        /* Ollama, one document and JSON lines */
        chat_request(req, sizeof req, c, true, false);
        assert_int_equal(elm_test_curl(out, sizeof out, errfile, "-d @%s %s/api/chat", req, url),
                         200);
        j = elm_test_json(out);
        assert_non_null(j);
        assert_string_equal(elm_test_jstr(json_object_get(j, "message"), "content"), want);
        assert_string_equal(elm_test_jstr(j, "done_reason"), finish);
        assert_true(elm_test_jnum(j, "prompt_eval_count") == n_prompt);
        assert_true(elm_test_jnum(j, "eval_count") == n_gen);
        json_decref(j);
        chat_request(req, sizeof req, c, true, true);
        assert_int_equal(elm_test_curl(out, sizeof out, errfile, "-d @%s %s/api/chat", req, url),
                         200);
        json_t *lines = elm_test_json_lines(out);
        assert_non_null(lines);
        size_t len = 0, nl = json_array_size(lines);
        for (size_t k = 0; k < nl; k++) {
            const json_t *l = json_array_get(lines, k);
            assert_int_equal(json_is_true(json_object_get(l, "done")), k + 1 == nl);
            const char *t = elm_test_jstr(json_object_get(l, "message"), "content");
            assert_non_null(t);
            memcpy(text + len, t, strlen(t));
            len += strlen(t);
        }
        text[len] = 0;
        assert_string_equal(text, want);
        assert_string_equal(elm_test_jstr(json_array_get(lines, nl - 1), "done_reason"), finish);
        json_decref(lines);
        json_decref(want_u);
        free(want);
    }
}

/* Wrong shapes are 400s that name the field; embeddings of a chat model are refused. */
static void test_chat_bad_requests(void **state)
{
    (void)state;
    require_gateway();
    static char out[8192];
    const struct {
        const char *path, *body, *param;
    } bad[] = {
        {"/v1/chat/completions", "{\"messages\":[]}", "messages"},
        {"/v1/chat/completions", "{\"messages\":\"hi\"}", "messages"},
        {"/v1/chat/completions", "{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}",
         "messages"},
        {"/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":[]}]}", "messages"},
        {"/v1/chat/completions",
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{}]}", "tools"},
        {"/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2}",
         "n"},
        {"/v1/embeddings", "{\"input\":[]}", "input"},
        {"/v1/embeddings", "{\"input\":[1,2]}", "input"},
        {"/v1/embeddings", "{\"input\":\"x\",\"encoding_format\":\"hex\"}", "encoding_format"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(
            elm_test_curl(out, sizeof out, errfile, "-d '%s' %s%s", bad[i].body, url, bad[i].path),
            400);
        json_t *j = elm_test_json(out);
        assert_string_equal(elm_test_jstr(json_object_get(j, "error"), "param"), bad[i].param);
        json_decref(j);
    }
    assert_int_equal(
        elm_test_curl(out, sizeof out, errfile, "-d '{\"input\":\"x\"}' %s/v1/embeddings", url),
        400);
    assert_int_equal(elm_test_curl(out, sizeof out, errfile,
                                   "-d '{\"model\":\"zoo-qwen25\",\"messages\":[{\"role\":\"user\","
                                   "\"content\":\"x\",\"images\":[\"AA==\"]}]}' %s/api/chat",
                                   url),
                     400);
    assert_int_equal(elm_test_curl(out, sizeof out, errfile,
                                   "-d '{\"model\":\"other\",\"input\":\"x\"}' %s/api/embed", url),
                     404);
}

/* The official npm clients' chat calls (tests/http/chat.mjs) give the reference reply. */
static void test_npm_chat(void **state)
{
    (void)state;
    require_gateway();
    static char out[16384];
    if (run(out, sizeof out, "command -v node") ||
        access(ELM_HTTP_CLIENTS_DIR "/node_modules/openai", R_OK)) {
        print_message("SKIP: node or the npm clients (scripts/npm-clients.sh) are missing\n");
        skip();
    }
    const json_t *c = json_array_get(json_object_get(ref, "chat"), 0);
    char conv[256], expected[256];
    write_json(conv, sizeof conv, "conv.json", json_incref(json_object_get(c, "messages")));
    char *want = ref_reply(c);
    write_json(expected, sizeof expected, "expected.json",
               json_pack("{sssisI}", "content", want, "n_predict", N_PREDICT, "n_gen",
                         (json_int_t)json_array_size(json_object_get(c, "greedy_ids"))));
    free(want);
    int rc = run(out, sizeof out, "node %s/chat.mjs %s %s chat zoo-qwen25 %s %s 2>&1",
                 ELM_HTTP_CLIENTS_SRC, ELM_HTTP_CLIENTS_DIR, url, conv, expected);
    print_message("%s", out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "ok ollama chat stream"));
}

/* The chat page in a real browser (tests/http/page.mjs): the reply it streams equals the API's
 * greedy answer to the same request. */
static void test_page(void **state)
{
    (void)state;
    require_gateway();
    static char out[16384];
    if (access("/usr/bin/chromium", X_OK)) {
        print_message("SKIP: /usr/bin/chromium is not installed (scripts/deps.sh installs it)\n");
        skip();
    }
    if (run(out, sizeof out, "command -v node") ||
        access(ELM_HTTP_CLIENTS_DIR "/node_modules/playwright-core", R_OK)) {
        print_message("SKIP: node or playwright-core (scripts/npm-clients.sh) is missing\n");
        skip();
    }
    const char *msg = "Hello, what is 2 + 2?";
    /* what the page sends: the one message, greedy, 32 tokens (it streams; this does not) */
    char req[256], expected[256];
    write_json(req, sizeof req, "request.json",
               json_pack("{sss[{ssss}]sisi}", "model", "zoo-qwen25", "messages", "role", "user",
                         "content", msg, "temperature", 0, "max_tokens", N_PREDICT));
    assert_int_equal(
        elm_test_curl(out, sizeof out, errfile, "-d @%s %s/v1/chat/completions", req, url), 200);
    json_t *j = elm_test_json(out);
    const char *want = elm_test_jstr(
        json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message"), "content");
    assert_non_null(want);
    snprintf(expected, sizeof expected, "%s/expected.txt", rundir);
    FILE *f = fopen(expected, "w");
    assert_non_null(f);
    fputs(want, f);
    fclose(f);
    json_decref(j);
    int rc = run(
        out, sizeof out,
        "HOME=%s timeout 120 node %s/page.mjs %s %s zoo-qwen25 '%s' %s %s/httpd-chat-page.png 2>&1",
        rundir, ELM_HTTP_CLIENTS_SRC, ELM_HTTP_CLIENTS_DIR, url, msg, expected,
        elm_test_build_dir());
    print_message("%s", out);
    if (rc) { /* what the gateway saw: a failure on CI is otherwise gone with the run dir */
        char log[128];
        snprintf(log, sizeof log, "%s/elm-httpd.log", rundir);
        print_message("%s:\n%s\n", log, elm_test_file_text(log));
    }
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "ok streamed reply equals the API's"));
}

/* ---------------------------------------------------------------------------------------------
 * Embeddings: zoo-bert loaded into the same daemon
 */

/* Whether the vectors of a reply (arrays of numbers) equal elmctl's, as float32. */
static void same_vectors(const json_t *got, const json_t *want_embeddings)
{
    assert_int_equal(json_array_size(got), json_array_size(want_embeddings));
    for (size_t i = 0; i < json_array_size(got); i++) {
        const json_t *g = json_array_get(got, i);
        const json_t *w = json_object_get(json_array_get(want_embeddings, i), "embedding");
        assert_true(json_array_size(w) > 0);
        assert_int_equal(json_array_size(g), json_array_size(w));
        for (size_t k = 0; k < json_array_size(w); k++)
            assert_true((float)json_number_value(json_array_get(g, k)) ==
                        (float)json_number_value(json_array_get(w, k)));
    }
}

static void test_embed(void **state)
{
    (void)state;
    require_gateway();
    static char out[262144], local[262144];
    const char *texts =
        "'hello world' 'The quick brown fox jumps over the lazy dog.' '日本語のテキスト'";
    assert_int_equal(run(local, sizeof local, "%s embed --local '%s' --threads 1 --json %s", elmctl,
                         embed_model, texts),
                     0);
    json_t *want = elm_test_json(local);
    assert_non_null(want);
    const json_t *we = json_object_get(want, "embeddings");
    assert_int_equal(json_array_size(we), 3);
    assert_int_equal(
        run(out, sizeof out, "%s --runtime-dir %s load '%s'", elmctl, rundir, embed_model), 0);
    /* the chat model goes, so the embedding model is the default (the first loaded) */
    char chat_name[128];
    const char *base = strrchr(chat_model, '/');
    snprintf(chat_name, sizeof chat_name, "%.*s", (int)strlen(base + 1) - 5, base + 1);
    assert_int_equal(run(out, sizeof out, "%s --runtime-dir %s unload --model '%s'", elmctl, rundir,
                         chat_name),
                     0);

    const char *input = "[\"hello world\",\"The quick brown fox jumps over the lazy dog.\","
                        "\"日本語のテキスト\"]";
    assert_int_equal(elm_test_curl(out, sizeof out, errfile,
                                   "-d '{\"model\":\"zoo-bert\",\"input\":%s}' %s/v1/embeddings",
                                   input, url),
                     200);
    json_t *j = elm_test_json(out);
    assert_non_null(j);
    assert_string_equal(elm_test_jstr(j, "object"), "list");
    json_t *vecs = json_array();
    size_t n_tok = 0;
    for (size_t i = 0; i < json_array_size(we); i++) {
        const json_t *d = json_array_get(json_object_get(j, "data"), i);
        assert_true(elm_test_jnum(d, "index") == (double)i);
        json_array_append(vecs, json_object_get(d, "embedding"));
        n_tok += (size_t)elm_test_jnum(json_array_get(we, i), "n_tokens");
    }
    same_vectors(vecs, we);
    assert_true(elm_test_jnum(json_object_get(j, "usage"), "prompt_tokens") == (double)n_tok);
    json_decref(vecs);
    json_decref(j);

    assert_int_equal(elm_test_curl(out, sizeof out, errfile,
                                   "-d '{\"model\":\"zoo-bert\",\"input\":%s}' %s/api/embed", input,
                                   url),
                     200);
    j = elm_test_json(out);
    same_vectors(json_object_get(j, "embeddings"), we);
    assert_true(elm_test_jnum(j, "prompt_eval_count") == (double)n_tok);
    json_decref(j);

    /* one text: a string input, and the legacy /api/embeddings */
    json_t *first = json_pack("[O]", json_array_get(we, 0));
    assert_int_equal(elm_test_curl(out, sizeof out, errfile,
                                   "-d '{\"input\":\"hello world\"}' %s/v1/embeddings", url),
                     200);
    j = elm_test_json(out);
    vecs = json_pack("[O]",
                     json_object_get(json_array_get(json_object_get(j, "data"), 0), "embedding"));
    same_vectors(vecs, first);
    json_decref(vecs);
    json_decref(j);
    assert_int_equal(
        elm_test_curl(out, sizeof out, errfile,
                      "-d '{\"model\":\"zoo-bert\",\"prompt\":\"hello world\"}' %s/api/embeddings",
                      url),
        200);
    j = elm_test_json(out);
    vecs = json_pack("[O]", json_object_get(j, "embedding"));
    same_vectors(vecs, first);
    json_decref(vecs);
    json_decref(j);
    json_decref(first);

    /* the npm clients: openai's base64 vectors and ollama's embed */
    if (!run(out, sizeof out, "command -v node") &&
        !access(ELM_HTTP_CLIENTS_DIR "/node_modules/openai", R_OK)) {
        char tx[256], expected[256];
        write_json(tx, sizeof tx, "texts.json", json_loads(input, 0, NULL));
        write_json(expected, sizeof expected, "expected.json", json_incref(want));
        int rc = run(out, sizeof out, "node %s/chat.mjs %s %s embed zoo-bert %s %s 2>&1",
                     ELM_HTTP_CLIENTS_SRC, ELM_HTTP_CLIENTS_DIR, url, tx, expected);
        print_message("%s", out);
        assert_int_equal(rc, 0);
        assert_non_null(strstr(out, "ok ollama embed"));
    } else {
        print_message("(node or the npm clients missing: their embedding calls not run)\n");
    }
    json_decref(want);

    /* a chat request to an embedding model: 400 with the daemon's reason */
    assert_int_equal(elm_test_curl(out, sizeof out, errfile,
                                   "-d '{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}' "
                                   "%s/v1/chat/completions",
                                   url),
                     400);
    assert_non_null(strstr(out, "embedding model"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat),     cmocka_unit_test(test_chat_bad_requests),
        cmocka_unit_test(test_npm_chat), cmocka_unit_test(test_page),
        cmocka_unit_test(test_embed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
