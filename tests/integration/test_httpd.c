/* test_httpd.c — elm-httpd, the HTTP gateway, driven with curl against a real elmd on
 * stories260K, as a user would reach it: started by `elmctl start --http`.
 *
 *   - Greedy text through /v1/completions (one document and server-sent events) and Ollama's
 *     /api/generate (one document and JSON lines) equals `elmctl generate --local`'s.
 *   - A second resident model is listed, chosen by a request's "model", and unloaded; Ollama's
 *     requests without a prompt load (it stays) or, with keep_alive 0, unload it.
 *   - The official openai and ollama npm clients (tests/http/clients.mjs) get the same text.
 *   - The SSE framing: every event "data: JSON\n\n", chunks of one id, finish_reason on the
 *     last, the usage chunk when asked, then "data: [DONE]".
 *   - Hostile and malformed requests get a 4xx with a message (bad JSON, wrong types, unknown
 *     model, n > 1, an unsupported penalty, an oversized body or header, a wrong method, path
 *     traversal), and the daemon keeps serving the same greedy text afterwards.
 *   - A client that hangs up mid-stream has its session freed (seen in `elmctl sessions`).
 *   - /metrics counts the requests, tokens and latencies of the tests before it.
 *   - elmd gone: 503; elmd back: the gateway serves again without a restart.
 *   - --api-key-file (401 without the key) and --cors (off by default; preflight when on).
 *   - elmd stopped for longer than --idle-timeout before a first token: the reply is whole.
 *   - A client that never reads its stream is dropped after --idle-timeout, its session freed,
 *     while another stream through the same gateway completes with the greedy text.
 * No assertion is about time: the waits have deadlines only to turn a hang into a failure.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/common/elm_test.h"
#include "tests/common/json.h"

#define TEST_ALARM_S 300
#define MODEL        "stories260K.gguf"
#define PROMPT       "Once upon a time"
#define N_GEN        32

static char elmctl[4096], httpd[4096];
static char rundir[64], errfile[96];
static const char *model;
static char url[128];    /* the gateway elmctl started */
static char local[4096]; /* elmctl generate --local's greedy text of PROMPT, without its newline */

static int run(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = elm_test_vsh(out, cap, errfile, fmt, ap);
    va_end(ap);
    return rc;
}

static bool have_curl(void)
{
    static char out[256];
    return run(out, sizeof out, "command -v curl") == 0;
}

static int setup(void **state)
{
    (void)state;
    snprintf(elmctl, sizeof elmctl, "%s/cli/elmctl", elm_test_build_dir());
    snprintf(httpd, sizeof httpd, "%s/httpd/elm-httpd", elm_test_build_dir());
    snprintf(rundir, sizeof rundir, "/tmp/elm-httpd-XXXXXX");
    if (!mkdtemp(rundir))
        return -1;
    snprintf(errfile, sizeof errfile, "%s.err", rundir);
    model = elm_test_model_path(MODEL);
    if (!model || !have_curl() || access(httpd, X_OK))
        return 0; /* each test skips with the reason */
    static char out[8192];
    alarm(TEST_ALARM_S);
    if (run(out, sizeof out, "%s --runtime-dir %s start --json --http 127.0.0.1:0 --model '%s'",
            elmctl, rundir, model)) {
        print_message("elmctl start --http failed: %s %s\n", out, elm_test_file_text(errfile));
        return -1;
    }
    json_t *j = elm_test_json(out);
    const char *u = elm_test_jstr(j, "http");
    snprintf(url, sizeof url, "%s", u ? u : "");
    json_decref(j);
    if (!*url)
        return -1;
    if (run(local, sizeof local, "%s generate --local '%s' --threads 1 --temp 0 -n %d '%s'", elmctl,
            model, N_GEN, PROMPT))
        return -1;
    local[strcspn(local, "\n")] = 0;
    return 0;
}

/* Ends what a test left running: the gateway and the daemon, through elmctl stop, and by their
 * pid files if a process with this test's runtime directory on its command line survives. */
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
    /* the gateways' own errors are not this test's stderr: a sanitizer report in their logs
     * (read after they exited, so their leak checks ran) fails the test */
    int bad = 0;
    const char *logs[] = {"elm-httpd.log", "gw2.out"};
    for (size_t i = 0; i < 2; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", rundir, logs[i]);
        const char *text = elm_test_file_text(path);
        if (strstr(text, "Sanitizer") || strstr(text, "runtime error:")) {
            print_message("%s:\n%s\n", path, text);
            bad = 1;
        }
    }
    snprintf(out, sizeof out, "rm -rf %s %s", rundir, errfile);
    alarm(0);
    return system(out) == 0 && !bad ? 0 : -1;
}

static void require_gateway(void)
{
    if (!model) {
        print_message("SKIP: model file %s/%s not found\n", elm_test_models_dir(), MODEL);
        skip();
    }
    if (!have_curl()) {
        print_message("SKIP: curl is not installed (scripts/deps.sh installs it)\n");
        skip();
    }
    if (access(httpd, X_OK)) {
        print_message("SKIP: %s is not built\n", httpd);
        skip();
    }
    assert_true(*url);
}

/* ---------------------------------------------------------------------------------------------
 * Greedy text through each API equals elmctl generate --local
 */

/* The completion's text of a /v1/completions document, checked for its shape. */
static void check_completion(const char *body, const char *want)
{
    json_t *j = elm_test_json(body);
    if (!j)
        fail_msg("not JSON: %s", body);
    assert_string_equal(elm_test_jstr(j, "object"), "text_completion");
    assert_string_equal(elm_test_jstr(j, "model"), "stories260K");
    const json_t *c = json_array_get(json_object_get(j, "choices"), 0);
    assert_string_equal(elm_test_jstr(c, "text"), want);
    assert_string_equal(elm_test_jstr(c, "finish_reason"), "length");
    const json_t *u = json_object_get(j, "usage");
    assert_true(elm_test_jnum(u, "completion_tokens") == N_GEN);
    assert_true(elm_test_jnum(u, "prompt_tokens") == 5); /* BOS + 4 */
    assert_true(elm_test_jnum(u, "total_tokens") == N_GEN + 5);
    json_decref(j);
}

/* The events of an SSE body: each "data: X\n\n"; the texts of the chunks concatenated into
 * text; the last event must be [DONE]. Returns the number of JSON events. */
static int parse_sse(char *body, char *text, size_t cap, bool want_usage)
{
    size_t len = 0;
    int n = 0;
    bool done = false, finished = false, usage = false;
    char id[64] = "";
    for (char *p = body; *p;) {
        assert_false(done); /* nothing after [DONE] */
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
        if (!j)
            fail_msg("event is not JSON: %s", data);
        n++;
        if (!*id)
            snprintf(id, sizeof id, "%s", elm_test_jstr(j, "id"));
        assert_string_equal(elm_test_jstr(j, "id"), id);
        assert_string_equal(elm_test_jstr(j, "object"), "text_completion");
        const json_t *ch = json_object_get(j, "choices");
        if (json_array_size(ch) == 0) { /* the usage chunk, after the last choice */
            assert_true(finished);
            const json_t *u = json_object_get(j, "usage");
            assert_true(elm_test_jnum(u, "completion_tokens") == N_GEN);
            usage = true;
        } else {
            assert_false(finished);
            const json_t *c = json_array_get(ch, 0);
            const char *t = elm_test_jstr(c, "text");
            assert_non_null(t);
            assert_true(len + strlen(t) < cap);
            memcpy(text + len, t, strlen(t));
            len += strlen(t);
            const char *fr = elm_test_jstr(c, "finish_reason");
            if (fr) {
                assert_string_equal(fr, "length");
                finished = true;
            }
        }
        json_decref(j);
    }
    text[len] = 0;
    assert_true(done && finished);
    assert_int_equal(usage, want_usage);
    return n;
}

static void test_greedy_openai(void **state)
{
    (void)state;
    require_gateway();
    static char out[65536], text[8192];
    const char *req = "-d '{\"model\":\"stories260K\",\"prompt\":\"" PROMPT "\",\"max_tokens\":32,"
                      "\"temperature\":0%s}' %s/v1/completions";
    assert_int_equal(elm_test_curl(out, sizeof out, errfile, req, "", url), 200);
    check_completion(out, local);
    char args[1024];
    snprintf(args, sizeof args, req, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}",
             url);
    assert_int_equal(elm_test_curl(out, sizeof out, errfile, "-N %s", args), 200);
    assert_true(parse_sse(out, text, sizeof text, true) >= 2);
    assert_string_equal(text, local);
    /* without include_usage: no usage chunk */
    snprintf(args, sizeof args, req, ",\"stream\":true", url);
    assert_int_equal(elm_test_curl(out, sizeof out, errfile, "-N %s", args), 200);
    parse_sse(out, text, sizeof text, false);
    assert_string_equal(text, local);
}

static void test_greedy_ollama(void **state)
{
    (void)state;
    require_gateway();
    static char out[65536], text[8192];
    const char *req = "-d '{\"model\":\"stories260K\",\"prompt\":\"" PROMPT "\",\"stream\":%s,"
                      "\"options\":{\"num_predict\":32,\"temperature\":0}}' %s/api/generate";
    assert_int_equal(elm_test_curl(out, sizeof out, errfile, req, "false", url), 200);
    json_t *j = elm_test_json(out);
    assert_non_null(j);
    assert_string_equal(elm_test_jstr(j, "response"), local);
    assert_true(json_is_true(json_object_get(j, "done")));
    assert_string_equal(elm_test_jstr(j, "done_reason"), "length");
    assert_true(elm_test_jnum(j, "eval_count") == N_GEN);
    json_decref(j);
    /* streamed: one JSON document per line, the last one done */
    assert_int_equal(elm_test_curl(out, sizeof out, errfile, req, "true", url), 200);
    json_t *lines = elm_test_json_lines(out);
    assert_non_null(lines);
    size_t n = json_array_size(lines), len = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *l = json_array_get(lines, i);
        assert_int_equal(json_is_true(json_object_get(l, "done")), i + 1 == n);
        const char *t = elm_test_jstr(l, "response");
        assert_non_null(t);
        memcpy(text + len, t, strlen(t));
        len += strlen(t);
    }
    text[len] = 0;
    assert_string_equal(text, local);
    assert_true(elm_test_jnum(json_array_get(lines, n - 1), "eval_count") == N_GEN);
    json_decref(lines);
}

/* The model listings name the loaded model the way each API's clients look for it. */
static void test_listings(void **state)
{
    (void)state;
    require_gateway();
    static char out[16384];
    assert_int_equal(elm_test_curl(out, sizeof out, errfile, "%s/health", url), 200);
    assert_int_equal(elm_test_curl(out, sizeof out, errfile, "%s/v1/models", url), 200);
    json_t *j = elm_test_json(out);
    assert_string_equal(elm_test_jstr(json_array_get(json_object_get(j, "data"), 0), "id"),
                        "stories260K");
    json_decref(j);
    assert_int_equal(elm_test_curl(out, sizeof out, errfile, "%s/api/tags", url), 200);
    j = elm_test_json(out);
    assert_string_equal(elm_test_jstr(json_array_get(json_object_get(j, "models"), 0), "name"),
                        "stories260K:latest");
    json_decref(j);
    assert_int_equal(elm_test_curl(out, sizeof out, errfile, "%s/api/ps", url), 200);
    assert_int_equal(elm_test_curl(out, sizeof out, errfile,
                                   "-d '{\"model\":\"stories260K\"}' %s/api/show", url),
                     200);
    j = elm_test_json(out);
    assert_string_equal(elm_test_jstr(json_object_get(j, "details"), "family"), "llama");
    json_decref(j);
    assert_int_equal(elm_test_curl(out, sizeof out, errfile, "%s/api/version", url), 200);
    assert_non_null(strstr(out, "\"version\""));
}

/* A second resident model (the same file under another name, so its greedy text is the same):
 * the listings name both, a request's "model" picks it (with or without ":latest"), and the
 * reply names it; after it is unloaded it is gone from the listings and a 404. */
static void test_second_model(void **state)
{
    (void)state;
    require_gateway();
    static char out[65536];
    assert_int_equal(
        run(out, sizeof out, "%s --runtime-dir %s load --as second '%s'", elmctl, rundir, model),
        0);
    assert_int_equal(elm_test_curl(out, sizeof out, errfile, "%s/v1/models", url), 200);
    json_t *j = elm_test_json(out);
    const json_t *data = json_object_get(j, "data");
    assert_int_equal(json_array_size(data), 2);
    assert_string_equal(elm_test_jstr(json_array_get(data, 0), "id"), "stories260K");
    assert_string_equal(elm_test_jstr(json_array_get(data, 1), "id"), "second");
    json_decref(j);
    assert_int_equal(elm_test_curl(out, sizeof out, errfile, "%s/api/ps", url), 200);
    j = elm_test_json(out);
    assert_string_equal(elm_test_jstr(json_array_get(json_object_get(j, "models"), 1), "name"),
                        "second:latest");
    json_decref(j);
    const char *names[] = {"second", "second:latest"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(elm_test_curl(out, sizeof out, errfile,
                                       "-d '{\"model\":\"%s\",\"prompt\":\"" PROMPT
                                       "\",\"stream\":false,\"options\":{\"num_predict\":32,"
                                       "\"temperature\":0}}' %s/api/generate",
                                       names[i], url),
                         200);
        j = elm_test_json(out);
        assert_string_equal(elm_test_jstr(j, "response"), local);
        json_decref(j);
    }
    assert_int_equal(elm_test_curl(out, sizeof out, errfile,
                                   "-d '{\"model\":\"second\",\"prompt\":\"" PROMPT
                                   "\",\"max_tokens\":32,\"temperature\":0}' %s/v1/completions",
                                   url),
                     200);
    j = elm_test_json(out);
    assert_string_equal(elm_test_jstr(j, "model"), "second");
    assert_string_equal(elm_test_jstr(json_array_get(json_object_get(j, "choices"), 0), "text"),
                        local);
    json_decref(j);
    assert_int_equal(
        run(out, sizeof out, "%s --runtime-dir %s unload --model second", elmctl, rundir), 0);
    assert_int_equal(elm_test_curl(out, sizeof out, errfile, "%s/v1/models", url), 200);
    j = elm_test_json(out);
    assert_int_equal(json_array_size(json_object_get(j, "data")), 1);
    json_decref(j);
    assert_int_equal(elm_test_curl(out, sizeof out, errfile,
                                   "-d '{\"model\":\"second\",\"prompt\":\"hi\"}' "
                                   "%s/api/generate",
                                   url),
                     404);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void openai_error(const char *body, const char *param);

/* The number of resident models, as /api/ps lists them. */
static int ps_count(void)
{
    static char out[65536];
    assert_int_equal(elm_test_curl(out, sizeof out, errfile, "%s/api/ps", url), 200);
    json_t *j = elm_test_json(out);
    int n = (int)json_array_size(json_object_get(j, "models"));
    json_decref(j);
    return n;
}

/* A request's keep_alive goes to elmd with its session: 0 unloads the model once the request
 * is done (the gateway's idle sessions of that model closed too), through Ollama's API (a
 * number of seconds) and the OpenAI body (a duration string, elm's extension). The reply is
 * the same text as without. */
static void test_keep_alive(void **state)
{
    (void)state;
    require_gateway();
    static char out[65536];
    const char *bodies[] = {
        "-d '{\"model\":\"second\",\"prompt\":\"" PROMPT "\",\"stream\":false,"
        "\"keep_alive\":0,\"options\":{\"num_predict\":32,\"temperature\":0}}' %s/api/generate",
        "-d '{\"model\":\"second\",\"prompt\":\"" PROMPT "\",\"max_tokens\":32,"
        "\"temperature\":0,\"keep_alive\":\"0s\"}' %s/v1/completions"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(run(out, sizeof out, "%s --runtime-dir %s load --as second '%s'", elmctl,
                             rundir, model),
                         0);
        /* a request without keep_alive first: the gateway then keeps a session of it ready */
        assert_int_equal(elm_test_curl(out, sizeof out, errfile,
                                       "-d '{\"model\":\"second\",\"prompt\":\"x\","
                                       "\"max_tokens\":2}' %s/v1/completions",
                                       url),
                         200);
        assert_int_equal(ps_count(), 2);
        assert_int_equal(elm_test_curl(out, sizeof out, errfile, bodies[i], url), 200);
        json_t *j = elm_test_json(out);
        const char *text =
            i ? elm_test_jstr(json_array_get(json_object_get(j, "choices"), 0), "text")
              : elm_test_jstr(j, "response");
        assert_string_equal(text, local);
        json_decref(j);
        int64_t end = now_ms() + 30000; /* a hang catcher: elmd unloads at its next step */
        while (ps_count() != 1 && now_ms() < end)
            usleep(20 * 1000);
        assert_int_equal(ps_count(), 1); /* only the default model is left */
    }
    /* a keep_alive elmd cannot read is its 400, naming the reason */
    assert_int_equal(elm_test_curl(out, sizeof out, errfile,
                                   "-d '{\"prompt\":\"x\",\"keep_alive\":\"soon\"}' "
                                   "%s/v1/completions",
                                   url),
                     400);
    assert_int_equal(elm_test_curl(out, sizeof out, errfile,
                                   "-d '{\"prompt\":\"x\",\"keep_alive\":[1]}' "
                                   "%s/v1/completions",
                                   url),
                     400);
    openai_error(out, "keep_alive");
}

/* Ollama's load and unload requests: /api/generate without a prompt and /api/chat without
 * messages answer done_reason "load" (the model stays, /api/ps lists it); with keep_alive 0
 * "unload", and the model leaves /api/ps. */
static void test_ollama_load_unload(void **state)
{
    (void)state;
    require_gateway();
    static char out[65536];
    const char *unload[] = {"{\"model\":\"second\",\"prompt\":\"\",\"keep_alive\":0}",
                            "{\"model\":\"second:latest\",\"messages\":[],\"keep_alive\":\"0s\"}"};
    for (int i = 0; i < 2; i++) {
        const char *ep = i ? "chat" : "generate";
        assert_int_equal(run(out, sizeof out, "%s --runtime-dir %s load --as second '%s'", elmctl,
                             rundir, model),
                         0);
        const char *load[] = {"{\"model\":\"second\"}", "{\"model\":\"second\",\"messages\":[]}"};
        assert_int_equal(
            elm_test_curl(out, sizeof out, errfile, "-d '%s' %s/api/%s", load[i], url, ep), 200);
        json_t *j = elm_test_json(out);
        assert_string_equal(elm_test_jstr(j, "done_reason"), "load");
        assert_true(json_is_true(json_object_get(j, "done")));
        if (i) /* chat: an empty assistant message, as ollama's */
            assert_string_equal(elm_test_jstr(json_object_get(j, "message"), "content"), "");
        json_decref(j);
        assert_int_equal(ps_count(), 2);
        assert_int_equal(
            elm_test_curl(out, sizeof out, errfile, "-d '%s' %s/api/%s", unload[i], url, ep), 200);
        j = elm_test_json(out);
        assert_string_equal(elm_test_jstr(j, "done_reason"), "unload");
        json_decref(j);
        int64_t end = now_ms() + 30000; /* a hang catcher: elmd unloads at its next step */
        while (ps_count() != 1 && now_ms() < end)
            usleep(20 * 1000);
        assert_int_equal(ps_count(), 1); /* only the default model is left */
    }
    /* a model that is not resident is not "loaded" */
    assert_int_equal(
        elm_test_curl(out, sizeof out, errfile, "-d '{\"model\":\"second\"}' %s/api/generate", url),
        404);
}

/* The number after "name " on a line of a Prometheus exposition, -1 when absent. */
static double metric(const char *text, const char *name)
{
    char key[256];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = strstr(text, key);
    return p ? strtod(p + strlen(key), NULL) : -1;
}

/* /metrics counts what the tests before it did: 3 greedy completions of 32 tokens (document,
 * SSE with usage, SSE) and 2 generations (document, lines), of 5 prompt tokens each. */
static void test_metrics(void **state)
{
    (void)state;
    require_gateway();
    static char out[65536];
    assert_int_equal(elm_test_curl(out, sizeof out, errfile, "%s/metrics", url), 200);
    assert_true(
        metric(out, "elm_http_requests_total{endpoint=\"/v1/completions\",status=\"200\"}") == 3);
    assert_true(metric(out, "elm_http_requests_total{endpoint=\"/api/generate\",status=\"200\"}") ==
                2);
    assert_true(metric(out, "elm_http_generated_tokens_total{model=\"stories260K\"}") == 5 * N_GEN);
    assert_true(metric(out, "elm_http_prompt_tokens_total{model=\"stories260K\"}") == 5 * 5);
    assert_true(metric(out, "elm_http_ttft_seconds_count{model=\"stories260K\"}") == 5);
    assert_true(metric(out, "elm_http_inter_token_seconds_count{model=\"stories260K\"}") ==
                5 * (N_GEN - 1));
    assert_true(metric(out, "elm_http_ttft_seconds_bucket{model=\"stories260K\",le=\"+Inf\"}") ==
                5);
    assert_true(metric(out, "elm_up") == 1);
    assert_true(metric(out, "elm_kv_pages{model=\"stories260K\"}") > 0);
    /* no session open but those the gateway keeps ready (its pool thread may be between two
     * steps of replacing one: look again) */
    int64_t end = now_ms() + 30000;
    while (metric(out, "elm_sessions{model=\"stories260K\"}") !=
               metric(out, "elm_http_ready_sessions") &&
           now_ms() < end) {
        usleep(20 * 1000);
        assert_int_equal(elm_test_curl(out, sizeof out, errfile, "%s/metrics", url), 200);
    }
    assert_true(metric(out, "elm_sessions{model=\"stories260K\"}") ==
                metric(out, "elm_http_ready_sessions"));
    /* one request at a time so far: no more than the warm-up, min(16 / 2, 4) */
    assert_true(metric(out, "elm_http_ready_sessions") <= 4);
}

/* The official openai and ollama npm clients, unchanged, against the gateway (clients.mjs). */
static void test_npm_clients(void **state)
{
    (void)state;
    require_gateway();
    static char out[16384];
    if (run(out, sizeof out, "command -v node")) {
        print_message("SKIP: node is not installed (scripts/deps.sh installs nodejs)\n");
        skip();
    }
    if (access(ELM_HTTP_CLIENTS_DIR "/node_modules/openai", R_OK) ||
        access(ELM_HTTP_CLIENTS_DIR "/node_modules/ollama", R_OK)) {
        print_message("SKIP: the npm clients are not installed in %s (scripts/test.sh installs "
                      "them with scripts/npm-clients.sh)\n",
                      ELM_HTTP_CLIENTS_DIR);
        skip();
    }
    char expected[128];
    snprintf(expected, sizeof expected, "%s/expected.txt", rundir);
    FILE *f = fopen(expected, "w");
    assert_non_null(f);
    fputs(local, f);
    fclose(f);
    int rc = run(out, sizeof out, "node %s/clients.mjs %s %s stories260K %d '%s' %s 2>&1",
                 ELM_HTTP_CLIENTS_SRC, ELM_HTTP_CLIENTS_DIR, url, N_GEN, PROMPT, expected);
    print_message("%s", out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "ok ollama generate stream"));
}

/* ---------------------------------------------------------------------------------------------
 * Hostile and malformed requests: a 4xx with a message, and the daemon keeps serving
 */

/* The OpenAI error document of a reply: message non-empty, param as given (NULL: any). */
static void openai_error(const char *body, const char *param)
{
    json_t *j = elm_test_json(body);
    if (!j)
        fail_msg("error reply is not JSON: %s", body);
    const json_t *e = json_object_get(j, "error");
    assert_true(elm_test_jstr(e, "message") && *elm_test_jstr(e, "message"));
    assert_non_null(elm_test_jstr(e, "type"));
    if (param)
        assert_string_equal(elm_test_jstr(e, "param"), param);
    json_decref(j);
}

static void test_bad_requests(void **state)
{
    (void)state;
    require_gateway();
    static char out[65536];
    static const struct {
        const char *body;
        int status;
        const char *param;
    } cases[] = {
        {"{", 400, NULL},
        {"[1,2]", 400, NULL},
        {"{\"prompt\":\"a\",\"prompt\":\"b\"}", 400, NULL}, /* a duplicate key */
        {"{\"prompt\":5}", 400, "prompt"},
        {"{\"prompt\":\"x\",\"max_tokens\":\"many\"}", 400, "max_tokens"},
        {"{\"prompt\":\"x\",\"max_tokens\":-2}", 400, "max_tokens"},
        {"{\"prompt\":\"x\",\"temperature\":\"hot\"}", 400, "temperature"},
        {"{\"prompt\":\"x\",\"temperature\":-1}", 400, "temperature"},
        {"{\"prompt\":\"x\",\"top_p\":2}", 400, "top_p"},
        {"{\"prompt\":\"x\",\"stream\":\"yes\"}", 400, "stream"},
        {"{\"prompt\":\"x\",\"stop\":[1]}", 400, "stop"},
        {"{\"prompt\":\"x\",\"seed\":1.5}", 400, "seed"},
        {"{\"prompt\":\"x\",\"n\":2}", 400, "n"},
        {"{\"prompt\":\"x\",\"presence_penalty\":0.5}", 400, "presence_penalty"},
        {"{\"prompt\":\"x\",\"frequency_penalty\":1}", 400, "frequency_penalty"},
        {"{\"prompt\":\"x\",\"logprobs\":2}", 400, "logprobs"},
        {"{\"prompt\":\"x\",\"model\":\"gpt-4\"}", 404, "model"},
        {"{\"prompt\":\"x\",\"model\":7}", 400, "model"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int st = elm_test_curl(out, sizeof out, errfile, "-d '%s' %s/v1/completions", cases[i].body,
                               url);
        if (st != cases[i].status)
            fail_msg("%s: HTTP %d, expected %d: %s", cases[i].body, st, cases[i].status, out);
        openai_error(out, cases[i].param);
    }
    /* Ollama's errors are {"error":S} */
    assert_int_equal(elm_test_curl(out, sizeof out, errfile,
                                   "-d '{\"model\":\"nope\",\"prompt\":\"x\"}' %s/api/generate",
                                   url),
                     404);
    assert_non_null(strstr(out, "{\"error\":\"model 'nope' not found\"}"));
    assert_int_equal(elm_test_curl(out, sizeof out, errfile,
                                   "-d '{\"model\":\"stories260K\",\"prompt\":\"x\",\"options\":"
                                   "{\"temperature\":\"x\"}}' %s/api/generate",
                                   url),
                     400);
    assert_int_equal(
        elm_test_curl(out, sizeof out, errfile, "-d '{\"prompt\":\"x\"}' %s/api/generate", url),
        400);
    /* wrong methods */
    assert_int_equal(elm_test_curl(out, sizeof out, errfile, "-X POST %s/v1/models", url), 405);
    assert_int_equal(elm_test_curl(out, sizeof out, errfile, "%s/v1/completions", url), 405);
    assert_int_equal(elm_test_curl(out, sizeof out, errfile, "-X DELETE %s/api/tags", url), 405);
    /* nothing maps a URL onto files ("/" is the chat page, built in: test_httpd_chat) */
    const char *paths[] = {"/index.html",          "/chat.html",
                           "/../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd",
                           "/v1/../../etc/passwd", "/api/..%2f..%2fetc%2fpasswd",
                           "//etc/passwd"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        int st = elm_test_curl(out, sizeof out, errfile, "--path-as-is '%s%s'", url, paths[i]);
        if (st != 404)
            fail_msg("%s: HTTP %d: %s", paths[i], st, out);
        assert_null(strstr(out, "root:"));
    }
    /* a body over the limit (1 MiB by default), declared: 413 before it is read */
    char big[256];
    snprintf(big, sizeof big, "%s/big.json", rundir);
    FILE *f = fopen(big, "w");
    assert_non_null(f);
    fputs("{\"prompt\":\"", f);
    for (int i = 0; i < (2 << 20) / 64; i++)
        fputs("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", f);
    fputs("\"}", f);
    fclose(f);
    assert_int_equal(
        elm_test_curl(out, sizeof out, errfile, "--data-binary @%s %s/v1/completions", big, url),
        413);
    openai_error(out, NULL);
    /* ... and chunked, without a length: the connection is closed (no 2xx) */
    int st = elm_test_curl(out, sizeof out, errfile,
                           "-H 'Transfer-Encoding: chunked' --data-binary @%s "
                           "%s/v1/completions",
                           big, url);
    assert_true(st != 200 && (st == 0 || st == 100 || (st >= 400 && st < 500)));
    /* a header past the connection's memory: 431 */
    char hdr[256];
    snprintf(hdr, sizeof hdr, "%s/hdr.txt", rundir);
    f = fopen(hdr, "w");
    assert_non_null(f);
    fputs("X-Big: ", f);
    for (int i = 0; i < 64 << 10; i++)
        fputc('x', f);
    fputc('\n', f);
    fclose(f);
    assert_int_equal(elm_test_curl(out, sizeof out, errfile, "-H @%s %s/health", hdr, url), 431);

    /* the daemon and the gateway still serve the same greedy text */
    assert_int_equal(elm_test_curl(out, sizeof out, errfile,
                                   "-d '{\"prompt\":\"" PROMPT
                                   "\",\"max_tokens\":32,\"temperature\":0}' "
                                   "%s/v1/completions",
                                   url),
                     200);
    check_completion(out, local);
    static char status[16384];
    assert_int_equal(run(status, sizeof status, "%s --runtime-dir %s --json stats", elmctl, rundir),
                     0);
    json_t *j = elm_test_json(status);
    assert_true(elm_test_jnum(j, "n_errors") == 0);
    json_decref(j);
}

/* ---------------------------------------------------------------------------------------------
 * Hang-ups, a daemon that goes away, keys and CORS
 */

/* The number of sessions elmd has open that have run a request: the gateway also keeps idle
 * sessions ready (httpd/pool.c), which have run nothing and are never given a second request. */
static int n_sessions(void)
{
    static char out[65536];
    assert_int_equal(run(out, sizeof out, "%s --runtime-dir %s sessions --json", elmctl, rundir),
                     0);
    json_t *j = elm_test_json(out);
    assert_true(json_is_array(j));
    int n = 0;
    for (size_t i = 0; i < json_array_size(j); i++) {
        json_t *s = json_array_get(j, i);
        const char *state = json_string_value(json_object_get(s, "state"));
        n += !state || strcmp(state, "idle") ||
             json_integer_value(json_object_get(s, "n_prompt_tokens")) ||
             json_integer_value(json_object_get(s, "n_gen_tokens")) ||
             json_integer_value(json_object_get(s, "n_requests_session"));
    }
    json_decref(j);
    return n;
}

/* Waits (deadline: 30 s, a hang catcher) until elmd has want sessions open. */
static void wait_sessions(int want)
{
    int64_t end = now_ms() + 30000;
    int n;
    while ((n = n_sessions()) != want && now_ms() < end)
        usleep(20 * 1000);
    if (n != want)
        fail_msg("elmd has %d sessions open, expected %d", n, want);
}

static void test_hangup_cancels(void **state)
{
    (void)state;
    require_gateway();
    static char out[4096];
    assert_int_equal(n_sessions(), 0);
    /* A stream that would run until the context is full (2048 tokens), in the background;
     * its pid comes back on stdout. */
    char pidfile[128];
    snprintf(pidfile, sizeof pidfile, "%s/curl.pid", rundir);
    assert_int_equal(run(out, sizeof out,
                         "curl -sN -d '{\"prompt\":\"Once\",\"stream\":true,\"temperature\":1,"
                         "\"seed\":7}' %s/v1/completions >/dev/null 2>&1 & echo $! >%s",
                         url, pidfile),
                     0);
    long pid = atol(elm_test_file_text(pidfile));
    assert_true(pid > 1);
    wait_sessions(1);
    assert_int_equal(kill((pid_t)pid, SIGKILL), 0);
    wait_sessions(0); /* closing the session cancelled the request */
    /* the same for a request that was not streamed */
    assert_int_equal(run(out, sizeof out,
                         "curl -s -d '{\"prompt\":\"Once\",\"temperature\":1,\"seed\":7}' "
                         "%s/v1/completions >/dev/null 2>&1 & echo $! >%s",
                         url, pidfile),
                     0);
    pid = atol(elm_test_file_text(pidfile));
    wait_sessions(1);
    assert_int_equal(kill((pid_t)pid, SIGKILL), 0);
    wait_sessions(0);
}

static void test_daemon_restart(void **state)
{
    (void)state;
    require_gateway();
    static char out[8192];
    char pidpath[128];
    snprintf(pidpath, sizeof pidpath, "%s/elmd.pid", rundir);
    long pid = atol(elm_test_file_text(pidpath));
    assert_int_equal(elm_test_signal_if_ours(pid, rundir, SIGTERM), 0);
    int64_t end = now_ms() + 30000;
    while (kill((pid_t)pid, 0) == 0 && now_ms() < end)
        usleep(20 * 1000);
    assert_int_equal(elm_test_curl(out, sizeof out, errfile, "%s/health", url), 503);
    assert_int_equal(
        elm_test_curl(out, sizeof out, errfile, "-d '{\"prompt\":\"x\"}' %s/v1/completions", url),
        503);
    openai_error(out, NULL);
    assert_int_equal(elm_test_curl(out, sizeof out, errfile,
                                   "-d '{\"model\":\"stories260K\",\"prompt\":\"x\"}' "
                                   "%s/api/generate",
                                   url),
                     503);
    /* elmd back (the gateway is kept): served again, same text */
    assert_int_equal(
        run(out, sizeof out, "%s --runtime-dir %s start --model '%s'", elmctl, rundir, model), 0);
    assert_int_equal(elm_test_curl(out, sizeof out, errfile, "%s/health", url), 200);
    assert_int_equal(elm_test_curl(out, sizeof out, errfile,
                                   "-d '{\"prompt\":\"" PROMPT
                                   "\",\"max_tokens\":32,\"temperature\":0}' "
                                   "%s/v1/completions",
                                   url),
                     200);
    check_completion(out, local);
}

/* A second gateway on the same daemon with extra options; returns its URL in u. */
static long start_gateway(const char *extra, char *u, size_t cap)
{
    static char out[4096];
    char log[128];
    snprintf(log, sizeof log, "%s/gw2.out", rundir);
    assert_int_equal(run(out, sizeof out,
                         "%s --listen 127.0.0.1:0 --runtime-dir %s %s >%s 2>&1 & echo $!", httpd,
                         rundir, extra, log),
                     0);
    long pid = atol(out);
    int64_t end = now_ms() + 30000;
    const char *at;
    while (!(at = strstr(elm_test_file_text(log), "http://")) && now_ms() < end)
        usleep(20 * 1000);
    assert_non_null(at);
    snprintf(u, cap, "%.*s", (int)strcspn(at, "\n"), at);
    return pid;
}

static void stop_gateway(long pid)
{
    assert_int_equal(elm_test_signal_if_ours(pid, rundir, SIGTERM), 0);
    int64_t end = now_ms() + 30000;
    while (kill((pid_t)pid, 0) == 0 && now_ms() < end) {
        waitpid((pid_t)pid, NULL, WNOHANG);
        usleep(20 * 1000);
    }
}

/* The gateway's ready sessions, from its /metrics (u: its URL). */
static int ready_sessions(const char *u)
{
    static char out[65536];
    assert_int_equal(elm_test_curl(out, sizeof out, errfile, "%s/metrics", u), 200);
    return (int)metric(out, "elm_http_ready_sessions");
}

/* Waits (a hang catcher: 30 s) until the gateway at u has n sessions ready. */
static void wait_ready(const char *u, int n)
{
    int64_t end = now_ms() + 30000;
    while (ready_sessions(u) != n && now_ms() < end)
        usleep(20 * 1000);
    assert_int_equal(ready_sessions(u), n);
}

/* One request (curl ARGS) sent while elmd is stopped (SIGSTOP) for twice the gateway's idle
 * timeout, then continued: curl's exit code is 0 (a cut reply is its 18) and its output comes
 * back in out. */
static void while_stopped(char *out, size_t cap, const char *args)
{
    char pidpath[128], path[128];
    snprintf(pidpath, sizeof pidpath, "%s/elmd.pid", rundir);
    snprintf(path, sizeof path, "%s/stopped", rundir);
    long pid = atol(elm_test_file_text(pidpath));
    assert_int_equal(elm_test_signal_if_ours(pid, rundir, SIGSTOP), 0);
    /* curl's exit code goes to PATH.rc once it is over, renamed into place whole */
    assert_int_equal(run(out, cap,
                         "rm -f %s.rc; (curl -sS -o %s.out %s; echo $? >%s.tmp; mv %s.tmp %s.rc) "
                         ">/dev/null 2>&1 &",
                         path, path, args, path, path, path),
                     0);
    usleep(2000 * 1000); /* > --idle-timeout 1: what used to cut the reply */
    assert_int_equal(elm_test_signal_if_ours(pid, rundir, SIGCONT), 0);
    char f[160];
    snprintf(f, sizeof f, "%s.rc", path);
    int64_t end = now_ms() + 60000; /* a hang catcher */
    while (access(f, R_OK) && now_ms() < end)
        usleep(20 * 1000);
    assert_string_equal(elm_test_file_text(f), "0\n");
    snprintf(f, sizeof f, "%s.out", path);
    snprintf(out, cap, "%s", elm_test_file_text(f));
}

/* --idle-timeout is the client's: elmd stopped (SIGSTOP) for longer than it, before the first
 * token of a reply not streamed (the gateway waits in the handler) and of a streamed one on a
 * ready session (it waits inside the stream), does not cut either: once elmd continues both
 * replies are whole and equal the greedy reference. */
static void test_slow_daemon(void **state)
{
    (void)state;
    require_gateway();
    static char out[65536];
    char u[128], args[1024];
    long gw = start_gateway("--idle-timeout 1", u, sizeof u);
    /* its warm-up, min(16 / 2, 4) sessions, opened (with elmd stopped mid-open a region's
     * hand-over could lapse): the request's wait for elmd is then in its handler */
    wait_ready(u, 4);
    snprintf(args, sizeof args,
             "-d '{\"model\":\"stories260K\",\"prompt\":\"" PROMPT "\",\"stream\":false,"
             "\"options\":{\"num_predict\":%d,\"temperature\":0}}' %s/api/generate",
             N_GEN, u);
    while_stopped(out, sizeof out, args);
    json_t *j = elm_test_json(out);
    assert_string_equal(elm_test_jstr(j, "response"), local);
    assert_string_equal(elm_test_jstr(j, "done_reason"), "length");
    json_decref(j);
    /* the used session replaced, a ready one (and a fresh status) for the next request: its
     * wait for elmd is inside the stream */
    wait_ready(u, 4);
    snprintf(args, sizeof args,
             "-N -d '{\"prompt\":\"" PROMPT "\",\"max_tokens\":%d,\"temperature\":0,"
             "\"stream\":true}' %s/v1/completions",
             N_GEN, u);
    while_stopped(out, sizeof out, args);
    static char text[8192];
    parse_sse(out, text, sizeof text, false);
    assert_string_equal(text, local);
    stop_gateway(gw);
}

/* A client that asks for a stream and never reads it holds neither a thread nor a session for
 * long: with its receive buffer small, the gateway's writes stall once the two sockets' buffers
 * are full, its idle timeout (--idle-timeout 1) drops the connection, which cancels the request
 * and frees the session (elmctl sessions); meanwhile a well-formed stream through the same
 * gateway completes with the greedy text. */
static void test_stalled_reader(void **state)
{
    (void)state;
    require_gateway();
    char u[128];
    long gw = start_gateway("--idle-timeout 1", u, sizeof u);
    assert_int_equal(n_sessions(), 0);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int small = 1024; /* before connect: the window it advertises stays small */
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)atoi(strrchr(u, ':') + 1))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    /* no max_tokens: it would run to the end of the context (2048 tokens, ~300 KB of events) */
    const char *body = "{\"prompt\":\"Once\",\"stream\":true,\"temperature\":1,\"seed\":7}";
    char req[512];
    int n = snprintf(req, sizeof req,
                     "POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                     "application/json\r\nContent-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
    assert_int_equal(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
    wait_sessions(1); /* its request runs */

    static char out[65536], text[8192];
    assert_int_equal(elm_test_curl(out, sizeof out, errfile,
                                   "-N -d '{\"prompt\":\"" PROMPT "\",\"max_tokens\":%d,"
                                   "\"temperature\":0,\"stream\":true}' %s/v1/completions",
                                   N_GEN, u),
                     200);
    parse_sse(out, text, sizeof text, false);
    assert_string_equal(text, local);

    wait_sessions(0); /* the silent client's request cancelled, its session closed */
    /* dropped, not finished: what reached its socket ends without the stream's [DONE] (a
     * 30 s receive deadline catches a gateway that never closes) */
    struct timeval tv = {.tv_sec = 30};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    static char got[1 << 20];
    size_t len = 0;
    ssize_t k;
    while (len < sizeof got - 1 && (k = recv(fd, got + len, sizeof got - 1 - len, 0)) > 0)
        len += (size_t)k;
    got[len] = 0;
    if (k < 0 && errno != ECONNRESET)
        fail_msg("the gateway did not close the connection: %s", strerror(errno));
    assert_true(len < sizeof got - 1);
    assert_memory_equal(got, "HTTP/1.1 200", 12);
    assert_null(strstr(got, "data: [DONE]"));
    close(fd);
    stop_gateway(gw);
}

static void test_key_and_cors(void **state)
{
    (void)state;
    require_gateway();
    static char out[8192];
    char u[128], key[128], extra[512];
    /* by default: no CORS header, no preflight */
    assert_int_equal(elm_test_curl(out, sizeof out, errfile,
                                   "-i -H 'Origin: http://evil.example' %s/v1/models", url),
                     200);
    assert_null(strcasestr(out, "Access-Control-Allow-Origin"));
    assert_int_equal(elm_test_curl(out, sizeof out, errfile, "-X OPTIONS %s/v1/models", url), 405);
    /* a page whose DNS name was rebound to 127.0.0.1 keeps its own Host: refused */
    assert_int_equal(
        elm_test_curl(out, sizeof out, errfile, "-H 'Host: evil.example' %s/v1/models", url), 403);
    assert_int_equal(
        elm_test_curl(out, sizeof out, errfile, "-H 'Host: localhost:1234' %s/v1/models", url),
        200);

    snprintf(key, sizeof key, "%s/key", rundir);
    FILE *f = fopen(key, "w");
    assert_non_null(f);
    fputs("s3cret-key\n", f);
    fclose(f);
    snprintf(extra, sizeof extra, "--api-key-file %s --cors http://app.example", key);
    long pid = start_gateway(extra, u, sizeof u);
    assert_int_equal(elm_test_curl(out, sizeof out, errfile, "%s/v1/models", u), 401);
    openai_error(out, NULL);
    assert_int_equal(elm_test_curl(out, sizeof out, errfile,
                                   "-H 'Authorization: Bearer s3cret-kez' %s/v1/models", u),
                     401);
    assert_int_equal(elm_test_curl(out, sizeof out, errfile,
                                   "-H 'Authorization: Bearer s3cret-key2' %s/v1/models", u),
                     401);
    assert_int_equal(elm_test_curl(out, sizeof out, errfile,
                                   "-H 'Authorization: Bearer s3cret-key' %s/v1/models", u),
                     200);
    assert_int_equal(elm_test_curl(out, sizeof out, errfile, "%s/health", u),
                     200); /* no key needed */
    assert_int_equal(elm_test_curl(out, sizeof out, errfile,
                                   "-i -X OPTIONS -H 'Origin: http://app.example' "
                                   "%s/v1/completions",
                                   u),
                     204);
    assert_non_null(strcasestr(out, "Access-Control-Allow-Origin: http://app.example"));
    assert_non_null(strcasestr(out, "Access-Control-Allow-Headers: Authorization"));
    stop_gateway(pid);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_openai),
        cmocka_unit_test(test_greedy_ollama),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_listings),
        cmocka_unit_test(test_second_model),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_ollama_load_unload),
        cmocka_unit_test(test_npm_clients),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_hangup_cancels),
        cmocka_unit_test(test_daemon_restart),
        cmocka_unit_test(test_key_and_cors),
        cmocka_unit_test(test_slow_daemon),
        cmocka_unit_test(test_stalled_reader),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
