/* test_chat.c — chat templates and end of generation (engine/chat.h, engine/vocab.h).
 *
 * Formats: the built-in renderings against expectations derived from llama.cpp's
 * tests/test-chat-template.cpp (the conversation and expected outputs of its cases for the
 * llama2, mistral, zephyr... families; its fmt_sys cases), and detection on template fragments
 * that carry the substrings llama.cpp looks for.
 * zoo2 (shared/models/zoo2/README.md, "Chat prompts"): every chat entry of every generative
 * file, rendered from its messages, equals prompt_text byte for byte; its ids (BOS per the
 * vocabulary, special tokens parsed, as llama-server) equal prompt_ids; greedy generation
 * through elm_seq (as elmctl --local and elmd run it) equals greedy_ids up to the first
 * position whose margin is < 0.1 (F32) / 0.3 (quantized), and where elm generated every
 * reference id of an entry that ends at an EOG token (qwen25's multi_turn: <|endoftext|>, not
 * its eos_token_id), elm stops there too.
 * EOG: each vocabulary's set equals the eog_token_ids llama.cpp printed, and a sequence stops
 * at each of them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "elm/status.h"
#include "engine/chat.h"
#include "engine/model.h"
#include "engine/seq.h"
#include "tests/common/elm_test.h"
#include "tests/common/json.h"

#define MAX_TOK 256

/* ---- formats ------------------------------------------------------------------------------- */

/* llama.cpp's test conversation */
static const struct elm_chat_msg conv[] = {
#define M(r, c)                                                                                    \
    {                                                                                              \
        r, sizeof r - 1, c, sizeof c - 1                                                           \
    }
    M("system", "You are a helpful assistant"),
    M("user", "Hello"),
    M("assistant", "Hi there"),
    M("user", "Who are you"),
    M("assistant", "   I am an assistant   "),
    M("user", "Another question"),
#undef M
};

static void expect(enum elm_chat_tmpl t, const struct elm_chat_msg *m, int n, bool gen,
                   const char *want)
{
    char buf[1024];
    size_t len;
    assert_int_equal(elm_chat_render(t, m, n, gen, buf, sizeof buf, &len), 0);
    assert_true(len < sizeof buf);
    buf[len] = 0;
    if (strcmp(buf, want))
        fail_msg("%s:\n got  '%s'\n want '%s'", elm_chat_name(t), buf, want);
}

static void test_formats(void **state)
{
    static const struct {
        const char *name, *want;
    } cases[] = {
        {"llama2", "[INST] You are a helpful assistant\nHello [/INST]Hi there</s>[INST] Who are "
                   "you [/INST]   I am an assistant   </s>[INST] Another question [/INST]"},
        {"llama2-sys-bos",
         "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s><s>"
         "[INST] Who are you [/INST]   I am an assistant   </s><s>[INST] Another question "
         "[/INST]"},
        {"llama2-sys-strip",
         "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>"
         "[INST] Who are you [/INST]I am an assistant</s>[INST] Another question [/INST]"},
        {"mistral-v1", " [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s> [INST] "
                       "Who are you [/INST]    I am an assistant   </s> [INST] Another question "
                       "[/INST]"},
        {"mistral-v3", "[INST] You are a helpful assistant\n\nHello[/INST] Hi there</s>[INST] Who "
                       "are you[/INST] I am an assistant</s>[INST] Another question[/INST]"},
        {"mistral-v3-tekken",
         "[INST]You are a helpful assistant\n\nHello[/INST]Hi there</s>[INST]Who are you[/INST]"
         "   I am an assistant   </s>[INST]Another question[/INST]"},
        {"mistral-v7", "[SYSTEM_PROMPT] You are a helpful assistant[/SYSTEM_PROMPT][INST] Hello"
                       "[/INST] Hi there</s>[INST] Who are you[/INST]    I am an assistant   "
                       "</s>[INST] Another question[/INST]"},
        {"gemma", "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n"
                  "<start_of_turn>model\nHi there<end_of_turn>\n<start_of_turn>user\nWho are "
                  "you<end_of_turn>\n<start_of_turn>model\nI am an assistant<end_of_turn>\n"
                  "<start_of_turn>user\nAnother question<end_of_turn>\n<start_of_turn>model\n"},
        {"phi3", "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n"
                 "<|assistant|>\nHi there<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n"
                 "   I am an assistant   <|end|>\n<|user|>\nAnother question<|end|>\n"
                 "<|assistant|>\n"},
        {"llama3", "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant"
                   "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
                   "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|>"
                   "<|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\n"},
        {"monarch", "system\nYou are a helpful assistant</s>\n<s>user\nHello</s>\n<s>assistant\n"
                    "Hi there</s>\n<s>user\nWho are you</s>\n<s>assistant\n   I am an assistant "
                    "  </s>\n<s>user\nAnother question</s>\n<s>assistant\n"},
        {"vicuna", "You are a helpful assistant\n\nUSER: Hello\nASSISTANT: Hi there</s>\nUSER: "
                   "Who are you\nASSISTANT:    I am an assistant   </s>\nUSER: Another question\n"
                   "ASSISTANT:"},
        {"deepseek", "You are a helpful assistant### Instruction:\nHello\n### Response:\nHi there"
                     "\n<|EOT|>\n### Instruction:\nWho are you\n### Response:\n   I am an "
                     "assistant   \n<|EOT|>\n### Instruction:\nAnother question\n### Response:\n"},
        {"openchat", "You are a helpful assistant<|end_of_turn|>GPT4 Correct User: Hello"
                     "<|end_of_turn|>GPT4 Correct Assistant: Hi there<|end_of_turn|>GPT4 Correct "
                     "User: Who are you<|end_of_turn|>GPT4 Correct Assistant:    I am an "
                     "assistant   <|end_of_turn|>GPT4 Correct User: Another question"
                     "<|end_of_turn|>GPT4 Correct Assistant:"},
        {"orion", "Human: You are a helpful assistant\n\nHello\n\nAssistant: </s>Hi there</s>"
                  "Human: Who are you\n\nAssistant: </s>   I am an assistant   </s>Human: "
                  "Another question\n\nAssistant: </s>"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        enum elm_chat_tmpl t = elm_chat_from_name(cases[i].name);
        assert_int_not_equal(t, ELM_CHAT_UNKNOWN);
        expect(t, conv, 6, true, cases[i].want);
    }
    /* zephyr has no case in test-chat-template.cpp; its llama.cpp rendering per message is
     * <|role|>\ncontent<|endoftext|>\n, then <|assistant|>\n */
    expect(ELM_CHAT_ZEPHYR, conv, 2, true,
           "<|system|>\nYou are a helpful assistant<|endoftext|>\n<|user|>\nHello<|endoftext|>\n"
           "<|assistant|>\n");
    /* fmt_sys: one system message, no generation prompt */
    static const struct {
        const char *name, *want;
    } sys[] = {
        {"chatml", "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n"},
        {"mistral-v1", " [INST] You are a helpful assistant\n\n"},
        {"mistral-v3", "[INST] You are a helpful assistant\n\n"},
        {"mistral-v3-tekken", "[INST]You are a helpful assistant\n\n"},
        {"mistral-v7", "[SYSTEM_PROMPT] You are a helpful assistant[/SYSTEM_PROMPT]"},
        {"llama2", "[INST] You are a helpful assistant\n"},
        {"llama2-sys", "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\n"},
        {"mistral", "[INST] You are a helpful assistant\n"}, /* old pre-v1 name: llama2 */
        {"gemma", ""},
        {"llama3", "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful "
                   "assistant<|eot_id|>"},
    };
    for (size_t i = 0; i < sizeof sys / sizeof *sys; i++) {
        enum elm_chat_tmpl t = elm_chat_detect(sys[i].name, strlen(sys[i].name));
        expect(t, conv, 1, false, sys[i].want);
    }
    /* a short buffer: the full length is reported, nothing written past cap */
    char small[8] = "xxxxxxxx";
    size_t len;
    assert_int_equal(elm_chat_render(ELM_CHAT_CHATML, conv, 1, true, small, 4, &len), 0);
    assert_int_equal(len, strlen("<|im_start|>system\nYou are a helpful assistant<|im_end|>\n"
                                 "<|im_start|>assistant\n"));
    assert_memory_equal(small, "<|imxxxx", 8);
    assert_int_equal(elm_chat_render(ELM_CHAT_GRANITE, conv, 1, true, small, 8, &len),
                     ELM_EUNSUPPORTED);
    assert_int_equal(elm_chat_render(ELM_CHAT_CHATML, conv, -1, true, small, 8, &len), -EINVAL);
}

/* Detection on fragments with the marks llama.cpp tests for, in its order. */
static void test_detect(void **state)
{
    static const struct {
        const char *tmpl, *name;
    } cases[] = {
        {"{{'<|im_start|>' + message['role']}}", "chatml"},
        {"<|im_start|>{{role}}<|im_sep|>", "phi4"},
        {"{{ '[INST] ' + message['content'] + ' [/INST]' }}", "llama2"},
        {"{{ '[INST] <<SYS>>\\n' }}[INST]", "llama2-sys"},
        {"{{ bos_token + '[INST] ' }}<<SYS>>", "llama2-sys-bos"},
        {"[INST] <<SYS>> {{ content.strip() }}", "llama2-sys-strip"},
        {"{{ ' [INST] ' + system_message }}", "mistral-v1"},
        {"[AVAILABLE_TOOLS] {{ '[INST] ' }}", "mistral-v3"},
        {"[AVAILABLE_TOOLS] {{ \"[INST]\" }}", "mistral-v3-tekken"},
        {"[SYSTEM_PROMPT] [INST]", "mistral-v7"},
        {"mistral-whatever", "llama2"}, /* starts with "mistral" */
        {"<|user|>\n{{c}}<|end|>\n<|assistant|>", "phi3"},
        {"<|user|>{{c}}</s><|assistant|>", "falcon3"},
        {"<|user|>\n{{c}}<|endoftext|>", "zephyr"},
        {"{{ bos_token + message['role'] }}", "monarch"},
        {"<start_of_turn>user", "gemma"},
        {"<|start_header_id|>user<|end_header_id|>", "llama3"},
        /* earlier families win: ChatML marks before llama3's */
        {"<|im_start|><|start_header_id|><|end_header_id|>", "chatml"},
        {"<|start_of_role|>", "granite"},
        {"llama3", "llama3"}, /* a bare name */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        enum elm_chat_tmpl t = elm_chat_detect(cases[i].tmpl, strlen(cases[i].tmpl));
        if (strcmp(elm_chat_name(t), cases[i].name))
            fail_msg("'%s': detected %s, want %s", cases[i].tmpl, elm_chat_name(t), cases[i].name);
    }
    assert_int_equal(elm_chat_detect("{{ messages }}", 14), ELM_CHAT_UNKNOWN);
    /* an unknown template is refused with its first 40 bytes shown (escaped) */
    const char *odd = "{% for m in messages %}\n{{ m['content'] }}{% endfor %} and more";
    enum elm_chat_tmpl t;
    char err[512];
    assert_int_equal(elm_chat_select(odd, strlen(odd), NULL, &t, err, sizeof err),
                     ELM_EUNSUPPORTED);
    assert_non_null(strstr(err, "chat template not recognised: "
                                "'{% for m in messages %}\\x0a{{ m[\\x27content\\x27] '"));
    assert_int_equal(elm_chat_select(NULL, 0, NULL, &t, err, sizeof err), 0);
    assert_int_equal(t, ELM_CHAT_CHATML);
    assert_int_equal(elm_chat_from_name("jinja"), ELM_CHAT_UNKNOWN);
}

/* ---- zoo2 ---------------------------------------------------------------------------------- */

static const char *const gen_files[] = {
    "zoo-llama3",        "zoo-llama3-q8_0", "zoo-llama3-q4_k_m", "zoo-llama3-q4_0",
    "zoo-qwen25",        "zoo-qwen25-q8_0", "zoo-qwen25-q4_k_m", "zoo-phi3",
    "zoo-phi3-q8_0",     "zoo-phi3-q4_k_m", "zoo-gemma2",        "zoo-gemma2-q8_0",
    "zoo-gemma2-q4_k_m",
};

static json_t *load_ref(const char *name)
{
    char rel[128];
    snprintf(rel, sizeof rel, "zoo2/%s.ref.json", name);
    const char *path = elm_test_model_path(rel);
    char *text = path ? elm_test_read_file(path, NULL) : NULL;
    json_t *ref = text ? elm_test_json(text) : NULL;
    free(text);
    return ref;
}

static struct elm_model *load_model(const char *name)
{
    char rel[128], err[512];
    snprintf(rel, sizeof rel, "zoo2/%s.gguf", name);
    const char *path = elm_test_model_path(rel);
    if (!path)
        return NULL;
    struct elm_model_params mp = {.n_threads = 2};
    struct elm_model *m;
    if (elm_model_load(path, &mp, &m, err, sizeof err))
        fail_msg("load %s: %s", path, err);
    return m;
}

struct collect {
    int32_t ids[MAX_TOK];
    int n;
};

static int on_token(void *user, const struct elm_seq_out *out)
{
    struct collect *c = user;
    if (out->token >= 0 && c->n < MAX_TOK)
        c->ids[c->n++] = out->token;
    return 0;
}

/* The messages of a reference entry as elm_chat_msg (pointing into the JSON). */
static int messages(const json_t *e, struct elm_chat_msg *msgs, int cap)
{
    const json_t *list = json_object_get(e, "messages");
    assert_non_null(list);
    assert_true((int)json_array_size(list) <= cap);
    for (size_t i = 0; i < json_array_size(list); i++) {
        const json_t *r = json_object_get(json_array_get(list, i), "role"),
                     *c = json_object_get(json_array_get(list, i), "content");
        msgs[i] = (struct elm_chat_msg){json_string_value(r), json_string_length(r),
                                        json_string_value(c), json_string_length(c)};
    }
    return (int)json_array_size(list);
}

/* One entry: rendering, ids, greedy generation. Returns the generated ids compared. */
static int check_entry(const struct elm_model *m, enum elm_chat_tmpl t, struct elm_work *w,
                       const json_t *e, double margin_cut, const char *name)
{
    struct elm_chat_msg msgs[16];
    int n = messages(e, msgs, 16);
    char *text;
    size_t len;
    assert_int_equal(elm_chat_render_alloc(t, msgs, n, true, &text, &len), 0);
    const json_t *want = json_object_get(e, "prompt_text");
    if (len != json_string_length(want) || memcmp(text, json_string_value(want), len))
        fail_msg("%s %s: rendered '%s', reference '%s'", name,
                 json_string_value(json_object_get(e, "kind")), text, json_string_value(want));
    int32_t *ids, n_ids;
    assert_int_equal(elm_prompt_tokenize(m, text, len, true, &ids, &n_ids), 0);
    free(text);
    const json_t *pids = json_object_get(e, "prompt_ids"), *gids = json_object_get(e, "greedy_ids"),
                 *margins = json_object_get(e, "logit_margins");
    assert_int_equal(n_ids, (int)json_array_size(pids));
    for (int i = 0; i < n_ids; i++)
        assert_int_equal(ids[i], (int32_t)json_number_value(json_array_get(pids, (size_t)i)));

    struct elm_seq *s;
    assert_int_equal(elm_seq_create(m, MAX_TOK, ELM_TYPE_F32, &s), 0);
    struct elm_gen_params p;
    elm_gen_params_default(&p);
    p.sampling.temp = 0;
    p.n_predict = (int32_t)json_array_size(gids);
    assert_int_equal(elm_seq_start(s, ids, n_ids, &p), 0);
    struct collect c = {.n = 0};
    assert_int_equal(elm_seq_run(s, w, on_token, &c), 0);
    int compared = 0;
    bool cut = false, same = true; /* same: every reference id generated, cut or not */
    for (size_t k = 0; k < json_array_size(gids); k++) {
        const int32_t want = (int32_t)json_number_value(json_array_get(gids, k));
        cut = cut || json_number_value(json_array_get(margins, k)) < margin_cut;
        same = same && (int)k < c.n && c.ids[k] == want;
        if (cut)
            continue;
        assert_true((int)k < c.n);
        if (c.ids[k] != want)
            fail_msg("%s %s: generated id %zu is %d, reference %d", name,
                     json_string_value(json_object_get(e, "kind")), k, c.ids[k], (int)want);
        compared++;
    }
    if (same && !strcmp(json_string_value(json_object_get(e, "stop_type")), "eos")) {
        /* the reference ended at an EOG token (its last id), and so did elm */
        assert_int_equal(c.n, (int)json_array_size(gids));
        assert_int_equal(elm_seq_done(s), ELM_STOP_EOS);
        print_message("%s %s: stopped at EOG id %d as llama.cpp\n", name,
                      json_string_value(json_object_get(e, "kind")), c.ids[c.n - 1]);
    }
    elm_seq_destroy(&s);
    free(ids);
    return compared;
}

static void test_zoo2(void **state)
{
    int files = 0;
    for (size_t f = 0; f < sizeof gen_files / sizeof *gen_files; f++) {
        json_t *ref = load_ref(gen_files[f]);
        struct elm_model *m = ref ? load_model(gen_files[f]) : NULL;
        if (!m) {
            json_decref(ref);
            continue;
        }
        enum elm_chat_tmpl t;
        char err[256];
        assert_int_equal(elm_chat_model_template(m, NULL, &t, err, sizeof err), 0);
        struct elm_work *w;
        assert_int_equal(elm_work_create(m, MAX_TOK, MAX_TOK, &w), 0);
        const bool q = strchr(gen_files[f] + 4, '-') != NULL;
        const json_t *chat = json_object_get(ref, "chat");
        int compared = 0, total = 0;
        for (size_t i = 0; i < json_array_size(chat); i++) {
            compared += check_entry(m, t, w, json_array_get(chat, i), q ? 0.3 : 0.1, gen_files[f]);
            total += (int)json_array_size(json_object_get(json_array_get(chat, i), "greedy_ids"));
        }
        print_message("%-18s %-7s %zu chats rendered and tokenized as llama.cpp, %d/%d greedy "
                      "ids compared\n",
                      gen_files[f], elm_chat_name(t), json_array_size(chat), compared, total);
        elm_work_destroy(&w);
        elm_model_destroy(&m);
        json_decref(ref);
        files++;
    }
    if (!files) {
        print_message("SKIP: no zoo2 files under %s\n", elm_test_models_dir());
        skip();
    }
    assert_int_equal(files, (int)(sizeof gen_files / sizeof *gen_files));
}

/* The EOG set is llama.cpp's, and a sequence stops at each id of it: the logits of the first
 * step are replaced by a one-hot on that id before the sequence samples from them. */
static void test_eog(void **state)
{
    const char *files[] = {"zoo-llama3", "zoo-qwen25", "zoo-phi3", "zoo-gemma2"};
    int done = 0;
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
        json_t *ref = load_ref(files[f]);
        struct elm_model *m = ref ? load_model(files[f]) : NULL;
        if (!m) {
            json_decref(ref);
            continue;
        }
        const json_t *want = json_object_get(ref, "eog_token_ids");
        int n;
        const int32_t *eog = elm_vocab_eog(m->vocab, &n);
        assert_int_equal(n, (int)json_array_size(want));
        for (size_t i = 0; i < json_array_size(want); i++)
            assert_true(
                elm_vocab_is_eog(m->vocab, (int32_t)json_number_value(json_array_get(want, i))));
        struct elm_work *w;
        assert_int_equal(elm_work_create(m, 8, 16, &w), 0);
        const int V = m->hp.n_vocab;
        for (int k = -1; k < n; k++) {
            /* k = -1: a token that is not EOG (636 <|end_of_text|> in llama3) goes on */
            int32_t tok = k >= 0 ? eog[k] : 3;
            if (k < 0) {
                int32_t e = elm_vocab_find(m->vocab, "<|end_of_text|>", 15);
                tok = e >= 0 ? e : tok;
                assert_false(elm_vocab_is_eog(m->vocab, tok));
            }
            struct elm_seq *s;
            assert_int_equal(elm_seq_create(m, 16, ELM_TYPE_F32, &s), 0);
            struct elm_gen_params p;
            elm_gen_params_default(&p);
            p.sampling.temp = 0;
            p.n_predict = 4;
            const int32_t prompt[] = {elm_vocab_bos(m->vocab) >= 0 ? elm_vocab_bos(m->vocab) : 0};
            assert_int_equal(elm_seq_start(s, prompt, 1, &p), 0);
            struct elm_batch_item it[8];
            assert_int_equal(elm_seq_plan(s, 8, it), 1);
            assert_int_equal(elm_model_forward(m, w, it, 1), 0);
            for (int i = 0; i < V; i++)
                it[0].logits[i] = i == tok ? 10.0f : 0.0f;
            struct elm_seq_out out;
            elm_seq_advance(s, 1, 0, &out);
            assert_int_equal(out.token, tok);
            assert_int_equal(out.done, k >= 0 ? ELM_STOP_EOS : ELM_STOP_NONE);
            elm_seq_destroy(&s);
        }
        print_message("%-11s EOG %d ids as llama.cpp's; generation stops at each\n", files[f], n);
        elm_work_destroy(&w);
        elm_model_destroy(&m);
        json_decref(ref);
        done++;
    }
    if (!done) {
        print_message("SKIP: no zoo2 files under %s\n", elm_test_models_dir());
        skip();
    }
}

/* An unrecognised template is refused with a message that shows its start; a name overrides. */
static void test_model_template(void **state)
{
    struct elm_model *m = load_model("zoo-phi3");
    if (!m) {
        print_message("SKIP: no zoo2 files under %s\n", elm_test_models_dir());
        skip();
    }
    enum elm_chat_tmpl t;
    char err[512];
    assert_int_equal(elm_chat_model_template(m, NULL, &t, err, sizeof err), 0);
    assert_int_equal(t, ELM_CHAT_PHI3);
    assert_int_equal(elm_chat_model_template(m, "zephyr", &t, err, sizeof err), 0);
    assert_int_equal(t, ELM_CHAT_ZEPHYR);
    assert_int_equal(elm_chat_model_template(m, "nope", &t, err, sizeof err), ELM_EUNSUPPORTED);
    assert_non_null(strstr(err, "'nope'"));
    assert_int_equal(elm_chat_model_template(m, "granite", &t, err, sizeof err), ELM_EUNSUPPORTED);
    assert_non_null(strstr(err, "granite"));
    elm_model_destroy(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats),        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_model_template), cmocka_unit_test(test_eog),
        cmocka_unit_test(test_zoo2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
