/* test_chat_daemon.c — libelmclient's chat call against the real elmd, on the zoo2 files.
 *
 * elmd (F32 KV cache, one thread) loads each generative zoo2 file in turn (F32 and quantized);
 * each chat entry of its reference goes through elm_session_chat as role/content messages, so
 * the daemon renders it with the model's template and tokenizes it. Checked, per
 * shared/models/zoo2/README.md: the first chat of a new session evaluates as many tokens as
 * llama.cpp's prompt ids (the ids themselves are compared in tests/kernel/test_chat.c, which
 * renders with the same engine/chat.c); the greedy ids equal the reference's up to the first
 * position whose margin is < 0.1 (F32 files) or < 0.3 (quantized); and a reply that generated
 * every id of a reference ending at an EOG token ends there with reason EOS. Then a second turn (the conversation, the reply, a new user message)
 * evaluates only what the session had not seen: DONE's n_prompt is at most the conversation's
 * tokens minus the first turn's prompt. Skips when elmd is not built or zoo2 is missing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "elm/client.h"
#include "engine/chat.h"
#include "engine/model.h"
#include "tests/common/elmd_fixture.h"
#include "tests/common/json.h"

#define MAX_TOK 256

static struct td g_td;

static int teardown(void **state)
{
    return td_cleanup(&g_td) ? -1 : 0;
}

struct reply {
    int32_t ids[MAX_TOK];
    int n;
    char text[4096];
    size_t len;
    int reason;
    uint32_t n_prompt;
};

static int on_event(void *user, const struct elm_event *ev)
{
    struct reply *r = user;
    if (ev->type == ELM_EVENT_TOKEN) {
        if (r->n < MAX_TOK)
            r->ids[r->n++] = ev->token;
        if (r->len + ev->text_len < sizeof r->text) {
            memcpy(r->text + r->len, ev->text, ev->text_len);
            r->len += ev->text_len;
            r->text[r->len] = 0;
        }
    } else if (ev->type == ELM_EVENT_DONE) {
        r->reason = ev->reason;
        r->n_prompt = ev->n_prompt;
    }
    return 0;
}

static void chat(elm_session *s, const struct elm_chat_message *m, int n, int n_predict,
                 struct reply *r)
{
    struct elm_request req;
    elm_request_init(&req);
    req.temp = 0;
    req.n_predict = n_predict;
    memset(r, 0, sizeof *r);
    int rc = elm_session_chat(s, &req, m, n, on_event, r);
    if (rc)
        fail_msg("chat: %s", elm_strerror(rc));
}

/* Tokens of the conversation as the daemon renders it (BOS, specials parsed). */
static int n_tokens(const char *path, const struct elm_chat_message *m, int n)
{
    struct elm_model_params mp = {.n_threads = 1};
    struct elm_model *model;
    char err[256], *text;
    assert_int_equal(elm_model_load(path, &mp, &model, err, sizeof err), 0);
    enum elm_chat_tmpl t;
    assert_int_equal(elm_chat_model_template(model, NULL, &t, err, sizeof err), 0);
    struct elm_chat_msg cm[8];
    for (int i = 0; i < n; i++)
        cm[i] =
            (struct elm_chat_msg){m[i].role, strlen(m[i].role), m[i].content, strlen(m[i].content)};
    size_t len;
    assert_int_equal(elm_chat_render_alloc(t, cm, n, true, &text, &len), 0);
    int32_t *ids, k;
    assert_int_equal(elm_prompt_tokenize(model, text, len, true, &ids, &k), 0);
    free(ids);
    free(text);
    elm_model_destroy(&model);
    return k;
}

static void check_file(elm_client *c, const char *name, const char *path, double margin_cut)
{
    char rel[128];
    snprintf(rel, sizeof rel, "zoo2/%s.ref.json", name);
    char *js = elm_test_read_file(elm_test_model_path(rel), NULL);
    json_t *ref = js ? elm_test_json(js) : NULL;
    free(js);
    assert_non_null(ref);
    elm_session *s;
    assert_int_equal(elm_session_open(c, &s), 0);
    const json_t *list = json_object_get(ref, "chat");
    int compared = 0;
    for (size_t e = 0; e < json_array_size(list); e++) {
        const json_t *en = json_array_get(list, e), *msgs = json_object_get(en, "messages"),
                     *gids = json_object_get(en, "greedy_ids"),
                     *margins = json_object_get(en, "logit_margins");
        struct elm_chat_message m[8];
        int n = (int)json_array_size(msgs);
        assert_true(n <= 6);
        for (int i = 0; i < n; i++)
            m[i] = (struct elm_chat_message){
                json_string_value(json_object_get(json_array_get(msgs, (size_t)i), "role")),
                json_string_value(json_object_get(json_array_get(msgs, (size_t)i), "content"))};
        struct reply r;
        chat(s, m, n, (int)json_array_size(gids), &r);
        if (e == 0) /* a new session evaluates the whole rendered prompt: llama.cpp's ids */
            assert_int_equal((int)r.n_prompt,
                             (int)json_array_size(json_object_get(en, "prompt_ids")));
        bool cut = false, same = true; /* same: every reference id generated */
        for (size_t k = 0; k < json_array_size(gids); k++) {
            const int32_t want = (int32_t)json_number_value(json_array_get(gids, k));
            cut = cut || json_number_value(json_array_get(margins, k)) < margin_cut;
            same = same && (int)k < r.n && r.ids[k] == want;
            if (cut)
                continue;
            assert_true((int)k < r.n);
            if (r.ids[k] != want)
                fail_msg("%s chat %zu: id %zu is %d, reference %d", name, e, k, r.ids[k],
                         (int)want);
            compared++;
        }
        if (same && !strcmp(json_string_value(json_object_get(en, "stop_type")), "eos")) {
            assert_int_equal(r.n, (int)json_array_size(gids));
            assert_int_equal(r.reason, ELM_FINISH_EOS);
            print_message("%-11s chat %zu: stopped at EOG id %d as llama.cpp\n", name, e,
                          r.ids[r.n - 1]);
        }
        if (e > 0)
            continue;
        /* a second turn on the same session: only the new part is evaluated */
        uint32_t first = r.n_prompt;
        m[n] = (struct elm_chat_message){"assistant", r.text};
        m[n + 1] = (struct elm_chat_message){"user", "Thanks. And again?"};
        struct reply r2;
        chat(s, m, n + 2, 4, &r2);
        int total = n_tokens(path, m, n + 2);
        print_message("%-11s turn 2: %d prompt tokens, %u evaluated (turn 1: %u)\n", name, total,
                      r2.n_prompt, first);
        assert_true(r2.n_prompt >= 1 && (int)r2.n_prompt <= total - (int)first);
    }
    print_message("%-11s %zu chats through elmd, %d greedy ids equal to llama.cpp's\n", name,
                  json_array_size(list), compared);
    elm_session_close(&s);
    json_decref(ref);
}

static void test_chat_daemon(void **state)
{
    /* every zoo2 generative file: the greedy margin rule is the README's, 0.1 for F32 files and
     * 0.3 for quantized ones */
    static const char *const files[] = {"zoo-llama3",      "zoo-llama3-q4_0", "zoo-llama3-q4_k_m",
                                        "zoo-llama3-q8_0", "zoo-qwen25",      "zoo-qwen25-q4_k_m",
                                        "zoo-qwen25-q8_0", "zoo-phi3",        "zoo-phi3-q4_k_m",
                                        "zoo-phi3-q8_0",   "zoo-gemma2",      "zoo-gemma2-q4_k_m",
                                        "zoo-gemma2-q8_0"};
    enum { N = sizeof files / sizeof *files };
    const char *paths[N];
    for (int i = 0; i < N; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "zoo2/%s.gguf", files[i]);
        const char *p = elm_test_model_path(rel);
        if (!p) {
            print_message("SKIP: %s/%s not found\n", elm_test_models_dir(), rel);
            skip();
        }
        paths[i] = strdup(p);
    }
    const char *extra[] = {"--kv-type", "f32", "--threads", "1", NULL};
    if (td_start(&g_td, paths[0], extra)) {
        print_message("SKIP: elmd could not be started (%s)\n", td_elmd_path());
        skip();
    }
    elm_client *c;
    assert_int_equal(elm_client_connect(g_td.dir, &c), 0);
    for (int i = 0; i < N; i++) {
        if (i)
            /* under the first file's name: it replaces the model the sessions open on */
            assert_int_equal(elm_client_load_as(c, paths[i], files[0], NULL, 0, 0, NULL), 0);
        check_file(c, files[i], paths[i], strstr(files[i], "-q") ? 0.3 : 0.1);
        free((void *)paths[i]);
    }
    elm_client_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_chat_daemon, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
