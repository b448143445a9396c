/* chat.c — recognising a chat template and rendering conversations in llama.cpp's built-in
 * formats (src/llama-chat.cpp at the commit of shared/models/zoo2). Detection tests substrings
 * in llama.cpp's order, so a template that carries the marks of two families gets the same
 * answer as there; the renderers write exactly what llama.cpp writes, including its quirks
 * (llama3 and gemma trim content, llama2 and mistral add no generation prompt). */
#include "engine/chat.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/errmsg.h"
#include "elm/status.h"
#include "engine/gguf.h"

static const char *const names[ELM_CHAT_COUNT] = {
    [ELM_CHAT_UNKNOWN] = "unknown",
    [ELM_CHAT_CHATML] = "chatml",
    [ELM_CHAT_LLAMA2] = "llama2",
    [ELM_CHAT_LLAMA2_SYS] = "llama2-sys",
    [ELM_CHAT_LLAMA2_SYS_BOS] = "llama2-sys-bos",
    [ELM_CHAT_LLAMA2_SYS_STRIP] = "llama2-sys-strip",
    [ELM_CHAT_MISTRAL_V1] = "mistral-v1",
    [ELM_CHAT_MISTRAL_V3] = "mistral-v3",
    [ELM_CHAT_MISTRAL_V3_TEKKEN] = "mistral-v3-tekken",
    [ELM_CHAT_MISTRAL_V7] = "mistral-v7",
    [ELM_CHAT_PHI3] = "phi3",
    [ELM_CHAT_PHI4] = "phi4",
    [ELM_CHAT_FALCON3] = "falcon3",
    [ELM_CHAT_ZEPHYR] = "zephyr",
    [ELM_CHAT_MONARCH] = "monarch",
    [ELM_CHAT_GEMMA] = "gemma",
    [ELM_CHAT_ORION] = "orion",
    [ELM_CHAT_OPENCHAT] = "openchat",
    [ELM_CHAT_VICUNA] = "vicuna",
    [ELM_CHAT_VICUNA_ORCA] = "vicuna-orca",
    [ELM_CHAT_DEEPSEEK] = "deepseek",
    [ELM_CHAT_COMMAND_R] = "command-r",
    [ELM_CHAT_LLAMA3] = "llama3",
    [ELM_CHAT_DEEPSEEK2] = "deepseek2",
    [ELM_CHAT_DEEPSEEK3] = "deepseek3",
    [ELM_CHAT_CHATGLM3] = "chatglm3",
    [ELM_CHAT_CHATGLM4] = "chatglm4",
    [ELM_CHAT_GLMEDGE] = "glmedge",
    [ELM_CHAT_MINICPM] = "minicpm",
    [ELM_CHAT_EXAONE3] = "exaone3",
    [ELM_CHAT_RWKV_WORLD] = "rwkv-world",
    [ELM_CHAT_GRANITE] = "granite",
    [ELM_CHAT_GIGACHAT] = "gigachat",
    [ELM_CHAT_MEGREZ] = "megrez",
};

const char *elm_chat_name(enum elm_chat_tmpl t)
{
    return (unsigned)t < ELM_CHAT_COUNT ? names[t] : names[ELM_CHAT_UNKNOWN];
}

enum elm_chat_tmpl elm_chat_from_name(const char *name)
{
    for (int t = 1; t < ELM_CHAT_COUNT; t++)
        if (!strcmp(names[t], name))
            return (enum elm_chat_tmpl)t;
    return ELM_CHAT_UNKNOWN;
}

const char *elm_chat_names(void)
{
    static const char list[] = "chatml, llama2, llama2-sys, llama2-sys-bos, llama2-sys-strip, "
                               "mistral-v1, mistral-v3, mistral-v3-tekken, mistral-v7, phi3, "
                               "phi4, falcon3, zephyr, monarch, gemma, orion, openchat, vicuna, "
                               "vicuna-orca, deepseek, command-r, llama3";
    return list;
}

/* ---- detection ----------------------------------------------------------------------------- */

struct text {
    const char *p;
    size_t n;
};

static bool has(struct text t, const char *s)
{
    size_t k = strlen(s);
    if (k > t.n)
        return false;
    for (size_t i = 0; i + k <= t.n; i++)
        if (t.p[i] == s[0] && !memcmp(t.p + i, s, k))
            return true;
    return false;
}

/* llama.cpp's [INST] family: mistral v7 / v1 / v3 / v3-tekken, or llama2 and its variants. */
static enum elm_chat_tmpl detect_inst(struct text t)
{
    if (has(t, "[SYSTEM_PROMPT]"))
        return ELM_CHAT_MISTRAL_V7;
    /* the official v1 template, or the v3 / v3-tekken ones (which list tools) */
    if (has(t, "' [INST] ' + system_message") || has(t, "[AVAILABLE_TOOLS]")) {
        if (has(t, " [INST]"))
            return ELM_CHAT_MISTRAL_V1;
        if (has(t, "\"[INST]\""))
            return ELM_CHAT_MISTRAL_V3_TEKKEN;
        return ELM_CHAT_MISTRAL_V3;
    }
    if (has(t, "content.strip()"))
        return ELM_CHAT_LLAMA2_SYS_STRIP;
    if (has(t, "bos_token + '[INST]"))
        return ELM_CHAT_LLAMA2_SYS_BOS;
    return has(t, "<<SYS>>") ? ELM_CHAT_LLAMA2_SYS : ELM_CHAT_LLAMA2;
}

enum elm_chat_tmpl elm_chat_detect(const char *tmpl, size_t len)
{
    struct text t = {tmpl, len};
    /* a bare name (--chat-template, or a file that stores one) */
    for (int k = 1; k < ELM_CHAT_COUNT; k++)
        if (strlen(names[k]) == len && !memcmp(names[k], tmpl, len))
            return (enum elm_chat_tmpl)k;
    if (has(t, "<|im_start|>"))
        return has(t, "<|im_sep|>") ? ELM_CHAT_PHI4 : ELM_CHAT_CHATML;
    if ((len >= 7 && !memcmp(tmpl, "mistral", 7)) || has(t, "[INST]"))
        return detect_inst(t);
    if (has(t, "<|assistant|>") && has(t, "<|end|>"))
        return ELM_CHAT_PHI3;
    if (has(t, "<|assistant|>") && has(t, "<|user|>"))
        return has(t, "</s>") ? ELM_CHAT_FALCON3 : ELM_CHAT_GLMEDGE;
    if (has(t, "<|user|>") && has(t, "<|endoftext|>"))
        return ELM_CHAT_ZEPHYR;
    if (has(t, "bos_token + message['role']"))
        return ELM_CHAT_MONARCH;
    if (has(t, "<start_of_turn>"))
        return ELM_CHAT_GEMMA;
    if (has(t, "'\\n\\nAssistant: ' + eos_token"))
        return ELM_CHAT_ORION;
    if (has(t, "GPT4 Correct "))
        return ELM_CHAT_OPENCHAT;
    if (has(t, "USER: ") && has(t, "ASSISTANT: "))
        return has(t, "SYSTEM: ") ? ELM_CHAT_VICUNA_ORCA : ELM_CHAT_VICUNA;
    if (has(t, "### Instruction:") && has(t, "<|EOT|>"))
        return ELM_CHAT_DEEPSEEK;
    if (has(t, "<|START_OF_TURN_TOKEN|>") && has(t, "<|USER_TOKEN|>"))
        return ELM_CHAT_COMMAND_R;
    if (has(t, "<|start_header_id|>") && has(t, "<|end_header_id|>"))
        return ELM_CHAT_LLAMA3;
    if (has(t, "[gMASK]sop"))
        return ELM_CHAT_CHATGLM3;
    if (has(t, "[gMASK]<sop>"))
        return ELM_CHAT_CHATGLM4;
    if (has(t, "<\xE7\x94\xA8\xE6\x88\xB7>")) /* <用户> */
        return ELM_CHAT_MINICPM;
    if (has(t, "'Assistant: ' + message['content'] + eos_token"))
        return ELM_CHAT_DEEPSEEK2;
    if (has(t, "<\xEF\xBD\x9C"
               "Assistant\xEF\xBD\x9C>") &&
        has(t, "<\xEF\xBD\x9C"
               "User\xEF\xBD\x9C>") &&
        has(t, "<\xEF\xBD\x9C"
               "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"))
        return ELM_CHAT_DEEPSEEK3;
    if (has(t, "[|system|]") && has(t, "[|assistant|]") && has(t, "[|endofturn|]"))
        return ELM_CHAT_EXAONE3;
    if (has(t, "rwkv-world"))
        return ELM_CHAT_RWKV_WORLD;
    if (has(t, "<|start_of_role|>"))
        return ELM_CHAT_GRANITE;
    if (has(t, "message['role'] + additional_special_tokens[0] + message['content'] + "
               "additional_special_tokens[1]"))
        return ELM_CHAT_GIGACHAT;
    if (has(t, "<|role_start|>"))
        return ELM_CHAT_MEGREZ;
    return ELM_CHAT_UNKNOWN;
}

int elm_chat_select(const char *tmpl, size_t len, const char *name, enum elm_chat_tmpl *out,
                    char *err, size_t errlen)
{
    enum elm_chat_tmpl t;
    if (name) {
        t = elm_chat_from_name(name);
        if (t == ELM_CHAT_UNKNOWN)
            return elm_errf(err, errlen, ELM_EUNSUPPORTED,
                            "unknown chat template name '%s' (one of: %s)", name, elm_chat_names());
    } else if (!tmpl) {
        t = ELM_CHAT_CHATML; /* llama-server's default for a file without a template */
    } else {
        t = elm_chat_detect(tmpl, len);
        if (t == ELM_CHAT_UNKNOWN) {
            char shown[4 * 64 + 4];
            struct elm_gguf_str s = {len > 40 ? 40 : len, tmpl};
            return elm_errf(err, errlen, ELM_EUNSUPPORTED,
                            "chat template not recognised: '%s' (choose a format with "
                            "--chat-template NAME)",
                            elm_gguf_str_format(s, shown, sizeof shown));
        }
    }
    if (t >= ELM_CHAT_N_RENDERED)
        return elm_errf(err, errlen, ELM_EUNSUPPORTED,
                        "chat template '%s' is recognised but elm does not render it (choose "
                        "another with --chat-template NAME)",
                        elm_chat_name(t));
    *out = t;
    return 0;
}

int elm_chat_model_template(const struct elm_model *m, const char *name, enum elm_chat_tmpl *out,
                            char *err, size_t errlen)
{
    struct elm_gguf_str s;
    bool has = elm_gguf_get_str(m->gguf, "tokenizer.chat_template", &s) == 0;
    return elm_chat_select(has ? s.ptr : NULL, has ? (size_t)s.len : 0, name, out, err, errlen);
}

/* ---- rendering ----------------------------------------------------------------------------- */

struct out {
    char *buf;
    size_t cap, len;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->len < o->cap)
        memcpy(o->buf + o->len, s, n < o->cap - o->len ? n : o->cap - o->len);
    o->len += n;
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_text(struct out *o, struct text t)
{
    put(o, t.p, t.n);
}

/* llama.cpp's trim: the C locale's isspace on both ends (ASCII white space only). */
static struct text trim(struct text t)
{
    static const char ws[] = " \t\n\v\f\r";
    while (t.n && t.p[0] && strchr(ws, t.p[0]))
        t.p++, t.n--;
    while (t.n && t.p[t.n - 1] && strchr(ws, t.p[t.n - 1]))
        t.n--;
    return t;
}

static bool role_is(const struct elm_chat_msg *m, const char *r)
{
    return m->role_len == strlen(r) && !memcmp(m->role, r, m->role_len);
}

static struct text role(const struct elm_chat_msg *m)
{
    return (struct text){m->role, m->role_len};
}

static struct text content(const struct elm_chat_msg *m)
{
    return (struct text){m->content, m->content_len};
}

static void render_mistral(enum elm_chat_tmpl t, const struct elm_chat_msg *msgs, int n,
                           struct out *o)
{
    if (t == ELM_CHAT_MISTRAL_V7) {
        for (int i = 0; i < n; i++) {
            const struct elm_chat_msg *m = &msgs[i];
            if (role_is(m, "system")) {
                puts_(o, "[SYSTEM_PROMPT] ");
                put_text(o, content(m));
                puts_(o, "[/SYSTEM_PROMPT]");
            } else if (role_is(m, "user")) {
                puts_(o, "[INST] ");
                put_text(o, content(m));
                puts_(o, "[/INST]");
            } else {
                puts_(o, " ");
                put_text(o, content(m));
                puts_(o, "</s>");
            }
        }
        return;
    }
    const char *lead = t == ELM_CHAT_MISTRAL_V1 ? " " : "";
    const char *trail = t == ELM_CHAT_MISTRAL_V3_TEKKEN ? "" : " ";
    bool in_turn = false;
    for (int i = 0; i < n; i++) {
        const struct elm_chat_msg *m = &msgs[i];
        if (!in_turn) {
            puts_(o, lead);
            puts_(o, "[INST]");
            puts_(o, trail);
            in_turn = true;
        }
        if (role_is(m, "system")) {
            put_text(o, content(m));
            puts_(o, "\n\n");
        } else if (role_is(m, "user")) {
            put_text(o, content(m));
            puts_(o, lead);
            puts_(o, "[/INST]");
        } else {
            puts_(o, trail);
            put_text(o, t == ELM_CHAT_MISTRAL_V3 ? trim(content(m)) : content(m));
            puts_(o, "</s>");
            in_turn = false;
        }
    }
}

static void render_llama2(enum elm_chat_tmpl t, const struct elm_chat_msg *msgs, int n,
                          struct out *o)
{
    const bool sys = t != ELM_CHAT_LLAMA2, bos_inside = t == ELM_CHAT_LLAMA2_SYS_BOS,
               strip = t == ELM_CHAT_LLAMA2_SYS_STRIP;
    bool in_turn = true; /* the first [INST] is written here, without a BOS */
    puts_(o, "[INST] ");
    for (int i = 0; i < n; i++) {
        const struct elm_chat_msg *m = &msgs[i];
        struct text c = strip ? trim(content(m)) : content(m);
        if (!in_turn) {
            in_turn = true;
            puts_(o, bos_inside ? "<s>[INST] " : "[INST] ");
        }
        if (role_is(m, "system")) {
            /* without <<SYS>> support the system text still opens the first turn */
            puts_(o, sys ? "<<SYS>>\n" : "");
            put_text(o, c);
            puts_(o, sys ? "\n<</SYS>>\n\n" : "\n");
        } else if (role_is(m, "user")) {
            put_text(o, c);
            puts_(o, " [/INST]");
        } else {
            put_text(o, c);
            puts_(o, "</s>");
            in_turn = false;
        }
    }
}

static void render_gemma(const struct elm_chat_msg *msgs, int n, bool gen, struct out *o)
{
    struct text system = {"", 0}; /* gemma has no system turn: it opens the next user turn */
    for (int i = 0; i < n; i++) {
        const struct elm_chat_msg *m = &msgs[i];
        if (role_is(m, "system")) {
            system = trim(content(m));
            continue;
        }
        bool model = role_is(m, "assistant") || role_is(m, "model");
        puts_(o, "<start_of_turn>");
        if (role_is(m, "assistant"))
            puts_(o, "model");
        else
            put_text(o, role(m));
        puts_(o, "\n");
        if (system.n && !model) {
            put_text(o, system);
            puts_(o, "\n\n");
            system.n = 0;
        }
        put_text(o, trim(content(m)));
        puts_(o, "<end_of_turn>\n");
    }
    if (gen)
        puts_(o, "<start_of_turn>model\n");
}

/* Formats that write, per message, prefix role mid content suffix (optionally trimmed), then a
 * fixed generation prompt. */
struct simple {
    const char *prefix, *mid, *suffix, *gen;
    bool trim;
};

static const struct simple simple_formats[ELM_CHAT_N_RENDERED] = {
    [ELM_CHAT_CHATML] = {"<|im_start|>", "\n", "<|im_end|>\n", "<|im_start|>assistant\n", false},
    [ELM_CHAT_PHI3] = {"<|", "|>\n", "<|end|>\n", "<|assistant|>\n", false},
    [ELM_CHAT_PHI4] = {"<|im_start|>", "<|im_sep|>", "<|im_end|>",
                       "<|im_start|>assistant<|im_sep|>", false},
    [ELM_CHAT_FALCON3] = {"<|", "|>\n", "\n", "<|assistant|>\n", false},
    [ELM_CHAT_ZEPHYR] = {"<|", "|>\n", "<|endoftext|>\n", "<|assistant|>\n", false},
    [ELM_CHAT_LLAMA3] = {"<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>",
                         "<|start_header_id|>assistant<|end_header_id|>\n\n", true},
};

static void render_simple(const struct simple *f, const struct elm_chat_msg *msgs, int n, bool gen,
                          struct out *o)
{
    for (int i = 0; i < n; i++) {
        puts_(o, f->prefix);
        put_text(o, role(&msgs[i]));
        puts_(o, f->mid);
        put_text(o, f->trim ? trim(content(&msgs[i])) : content(&msgs[i]));
        puts_(o, f->suffix);
    }
    if (gen)
        puts_(o, f->gen);
}

/* Formats keyed on the role (system / user / anything else as assistant, unless noted). */
static void render_roles(enum elm_chat_tmpl t, const struct elm_chat_msg *msgs, int n, bool gen,
                         struct out *o)
{
    struct text pending = {"", 0}; /* orion: the system text opens the next user turn */
    for (int i = 0; i < n; i++) {
        const struct elm_chat_msg *m = &msgs[i];
        const bool sys = role_is(m, "system"), user = role_is(m, "user"),
                   asst = role_is(m, "assistant");
        struct text c = content(m);
        switch (t) {
        case ELM_CHAT_MONARCH: /* the BOS is inside the history, not before the first */
            puts_(o, i ? "<s>" : "");
            put_text(o, role(m));
            puts_(o, "\n");
            put_text(o, c);
            puts_(o, "</s>\n");
            break;
        case ELM_CHAT_ORION:
            if (sys) {
                pending = c;
            } else if (user) {
                puts_(o, "Human: ");
                if (pending.n) {
                    put_text(o, pending);
                    puts_(o, "\n\n");
                    pending.n = 0;
                }
                put_text(o, c);
                puts_(o, "\n\nAssistant: </s>");
            } else {
                put_text(o, c);
                puts_(o, "</s>");
            }
            break;
        case ELM_CHAT_OPENCHAT:
            if (!sys) {
                puts_(o, "GPT4 Correct ");
                if (m->role_len) { /* the role with its first letter upper-cased */
                    char first = m->role[0] >= 'a' && m->role[0] <= 'z' ? (char)(m->role[0] - 32)
                                                                        : m->role[0];
                    put(o, &first, 1);
                    put(o, m->role + 1, m->role_len - 1);
                }
                puts_(o, ": ");
            }
            put_text(o, c);
            puts_(o, "<|end_of_turn|>");
            break;
        case ELM_CHAT_VICUNA:
        case ELM_CHAT_VICUNA_ORCA:
            if (sys) {
                puts_(o, t == ELM_CHAT_VICUNA_ORCA ? "SYSTEM: " : "");
                put_text(o, c);
                puts_(o, t == ELM_CHAT_VICUNA_ORCA ? "\n" : "\n\n");
            } else if (user || asst) {
                puts_(o, user ? "USER: " : "ASSISTANT: ");
                put_text(o, c);
                puts_(o, user ? "\n" : "</s>\n");
            }
            break;
        case ELM_CHAT_DEEPSEEK:
            if (sys || user || asst) {
                puts_(o, user ? "### Instruction:\n" : asst ? "### Response:\n" : "");
                put_text(o, c);
                puts_(o, user ? "\n" : asst ? "\n<|EOT|>\n" : "");
            }
            break;
        default: /* ELM_CHAT_COMMAND_R */
            if (sys || user || asst) {
                puts_(o, "<|START_OF_TURN_TOKEN|>");
                puts_(o, sys ? "<|SYSTEM_TOKEN|>" : user ? "<|USER_TOKEN|>" : "<|CHATBOT_TOKEN|>");
                put_text(o, trim(c));
                puts_(o, "<|END_OF_TURN_TOKEN|>");
            }
            break;
        }
    }
    if (!gen)
        return;
    switch (t) {
    case ELM_CHAT_MONARCH:
        puts_(o, "<s>assistant\n");
        break;
    case ELM_CHAT_OPENCHAT:
        puts_(o, "GPT4 Correct Assistant:");
        break;
    case ELM_CHAT_VICUNA:
    case ELM_CHAT_VICUNA_ORCA:
        puts_(o, "ASSISTANT:");
        break;
    case ELM_CHAT_DEEPSEEK:
        puts_(o, "### Response:\n");
        break;
    case ELM_CHAT_COMMAND_R:
        puts_(o, "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>");
        break;
    default:
        break; /* orion adds none */
    }
}

int elm_chat_render(enum elm_chat_tmpl t, const struct elm_chat_msg *msgs, int n,
                    bool add_generation_prompt, char *buf, size_t cap, size_t *len)
{
    if (n < 0 || (n && !msgs) || (cap && !buf))
        return -EINVAL;
    for (int i = 0; i < n; i++)
        if ((msgs[i].role_len && !msgs[i].role) || (msgs[i].content_len && !msgs[i].content))
            return -EINVAL;
    struct out o = {buf, cap, 0};
    const bool gen = add_generation_prompt;
    switch (t) {
    case ELM_CHAT_MISTRAL_V1:
    case ELM_CHAT_MISTRAL_V3:
    case ELM_CHAT_MISTRAL_V3_TEKKEN:
    case ELM_CHAT_MISTRAL_V7:
        render_mistral(t, msgs, n, &o);
        break;
    case ELM_CHAT_LLAMA2:
    case ELM_CHAT_LLAMA2_SYS:
    case ELM_CHAT_LLAMA2_SYS_BOS:
    case ELM_CHAT_LLAMA2_SYS_STRIP:
        render_llama2(t, msgs, n, &o);
        break;
    case ELM_CHAT_GEMMA:
        render_gemma(msgs, n, gen, &o);
        break;
    case ELM_CHAT_MONARCH:
    case ELM_CHAT_ORION:
    case ELM_CHAT_OPENCHAT:
    case ELM_CHAT_VICUNA:
    case ELM_CHAT_VICUNA_ORCA:
    case ELM_CHAT_DEEPSEEK:
    case ELM_CHAT_COMMAND_R:
        render_roles(t, msgs, n, gen, &o);
        break;
    default:
        if ((unsigned)t >= ELM_CHAT_N_RENDERED || !simple_formats[t].prefix)
            return ELM_EUNSUPPORTED;
        render_simple(&simple_formats[t], msgs, n, gen, &o);
        break;
    }
    *len = o.len;
    return 0;
}

int elm_chat_render_alloc(enum elm_chat_tmpl t, const struct elm_chat_msg *msgs, int n,
                          bool add_generation_prompt, char **out, size_t *len)
{
    size_t need;
    int rc = elm_chat_render(t, msgs, n, add_generation_prompt, NULL, 0, &need);
    if (rc)
        return rc;
    char *s = malloc(need + 1);
    if (!s)
        return -ENOMEM;
    rc = elm_chat_render(t, msgs, n, add_generation_prompt, s, need + 1, &need);
    if (rc) {
        free(s);
        return rc;
    }
    s[need] = 0;
    *out = s;
    *len = need;
    return 0;
}
