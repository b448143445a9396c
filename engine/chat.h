/* chat.h — turning a conversation (role/content messages) into the prompt text a chat model
 * was trained on, the way llama.cpp's llama_chat_apply_template does: the file's
 * tokenizer.chat_template is not run as Jinja but recognised by substrings and mapped to one of
 * a fixed set of built-in formats, with llama.cpp's names ("llama3", "chatml", "gemma",
 * "mistral-v7"...). The rendering is byte for byte llama.cpp's, so a prompt tokenizes (with
 * special tokens parsed) to the ids llama-server evaluates for the same conversation.
 *
 * One definition for every front end: elmctl chat --local and elmd (the daemon renders for
 * libelmclient's chat call) both call elm_chat_model_template and elm_chat_render.
 */
#ifndef ELM_CHAT_H
#define ELM_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/model.h"

/* The built-in formats, as llama.cpp's llm_chat_template. Those after ELM_CHAT_N_RENDERED are
 * recognised (so a file is named correctly) but not rendered by elm. */
enum elm_chat_tmpl {
    ELM_CHAT_UNKNOWN = 0,
    ELM_CHAT_CHATML,
    ELM_CHAT_LLAMA2,
    ELM_CHAT_LLAMA2_SYS,
    ELM_CHAT_LLAMA2_SYS_BOS,
    ELM_CHAT_LLAMA2_SYS_STRIP,
    ELM_CHAT_MISTRAL_V1,
    ELM_CHAT_MISTRAL_V3,
    ELM_CHAT_MISTRAL_V3_TEKKEN,
    ELM_CHAT_MISTRAL_V7,
    ELM_CHAT_PHI3,
    ELM_CHAT_PHI4,
    ELM_CHAT_FALCON3,
    ELM_CHAT_ZEPHYR,
    ELM_CHAT_MONARCH,
    ELM_CHAT_GEMMA,
    ELM_CHAT_ORION,
    ELM_CHAT_OPENCHAT,
    ELM_CHAT_VICUNA,
    ELM_CHAT_VICUNA_ORCA,
    ELM_CHAT_DEEPSEEK,
    ELM_CHAT_COMMAND_R,
    ELM_CHAT_LLAMA3,
    ELM_CHAT_N_RENDERED, /* recognised only: */
    ELM_CHAT_DEEPSEEK2 = ELM_CHAT_N_RENDERED,
    ELM_CHAT_DEEPSEEK3,
    ELM_CHAT_CHATGLM3,
    ELM_CHAT_CHATGLM4,
    ELM_CHAT_GLMEDGE,
    ELM_CHAT_MINICPM,
    ELM_CHAT_EXAONE3,
    ELM_CHAT_RWKV_WORLD,
    ELM_CHAT_GRANITE,
    ELM_CHAT_GIGACHAT,
    ELM_CHAT_MEGREZ,
    ELM_CHAT_COUNT
};

struct elm_chat_msg {
    const char *role; /* "system", "user", "assistant" (other roles pass through as text) */
    size_t role_len;
    const char *content;
    size_t content_len;
};

/* llama.cpp's name of t ("llama3"); "unknown" for ELM_CHAT_UNKNOWN. */
const char *elm_chat_name(enum elm_chat_tmpl t);
/* The template named name exactly, or ELM_CHAT_UNKNOWN. */
enum elm_chat_tmpl elm_chat_from_name(const char *name);
/* The names, comma-separated, for usage messages. */
const char *elm_chat_names(void);

/* Recognises a template text (or a bare name) as llama.cpp does: a known name first, then
 * substrings in llama.cpp's order. ELM_CHAT_UNKNOWN when nothing matches. */
enum elm_chat_tmpl elm_chat_detect(const char *tmpl, size_t len);

/* The format to render with: the one named name when not NULL, else the one template text
 * tmpl[0..len) is recognised as, chatml when tmpl is NULL (no template: llama-server's default).
 * ELM_EUNSUPPORTED, with a message naming the name or showing the template's first 40 bytes in
 * err, for an unknown one or one elm does not render. */
int elm_chat_select(const char *tmpl, size_t len, const char *name, enum elm_chat_tmpl *out,
                    char *err, size_t errlen);

/* The format for model m: the named one when name is not NULL, else the one its
 * tokenizer.chat_template is recognised as; chatml when the file has none (as llama-server).
 * Errors, with a message naming the template (its first 40 bytes) or name in err:
 * ELM_EUNSUPPORTED for an unrecognised template or name, or one elm does not render. */
int elm_chat_model_template(const struct elm_model *m, const char *name, enum elm_chat_tmpl *out,
                            char *err, size_t errlen);

/* Renders n messages in format t, followed by the assistant's opening when
 * add_generation_prompt (the formats whose llama.cpp rendering has none add nothing). Writes at
 * most cap bytes to buf (no NUL) and the full length to *len: a *len above cap means the
 * buffer was short and nothing beyond cap was written. Never allocates. Returns 0,
 * ELM_EUNSUPPORTED for a format elm does not render, or -EINVAL. */
int elm_chat_render(enum elm_chat_tmpl t, const struct elm_chat_msg *msgs, int n,
                    bool add_generation_prompt, char *buf, size_t cap, size_t *len);

/* The same into a malloc'ed, NUL-terminated string (caller frees), *len without the NUL. */
int elm_chat_render_alloc(enum elm_chat_tmpl t, const struct elm_chat_msg *msgs, int n,
                          bool add_generation_prompt, char **out, size_t *len);

#endif
