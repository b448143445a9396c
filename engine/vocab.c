/* vocab.c — the vocabulary: loading and validating tokenizer.ggml.* from a GGUF file,
 * splitting special tokens out of the input, and decoding. The tokenizers (and what only they
 * need: byte-fallback tokens, the BPE merge table and pre-tokenizers) live in vocab_spm.c,
 * vocab_bpe.c (with vocab_pretok.c) and vocab_wpm.c, which this file calls; the
 * token-text table and the containers they all share live in vocab_table.c.
 *
 * Special tokens follow llama.cpp, whose output the test vectors are: before tokenizing, the
 * text is cut at every occurrence of a token that may be matched verbatim. With parse_special
 * those are the CONTROL, USER_DEFINED and UNKNOWN tokens; without it only the USER_DEFINED
 * ones, because those are ordinary vocabulary that the model's own tokenizer always matches
 * first (DeepSeek stores characters such as "ü" that way, and HF tokenizers split them out).
 * Control tokens such as "<s>" are therefore only produced from text when the caller says so.
 * Longer tokens are matched before shorter ones, each over the text left by the longer ones.
 * Some tokens also swallow the white space next to them (llama.cpp's LSTRIP/RSTRIP attributes,
 * which it sets by model name: Phi-3's chat tokens; see build_strip).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errmsg.h"
#include "common/log.h"
#include "elm/status.h"
#include "engine/vocab.h"
#include "engine/vocab_bpe.h"
#include "engine/vocab_pretok.h"
#include "engine/vocab_spm.h"
#include "engine/vocab_table.h"
#include "engine/vocab_wpm.h"

#define KEY_MODEL  "tokenizer.ggml.model"
#define KEY_PRE    "tokenizer.ggml.pre"
#define KEY_TOKENS "tokenizer.ggml.tokens"
#define KEY_SCORES "tokenizer.ggml.scores"
#define KEY_TYPES  "tokenizer.ggml.token_type"
#define KEY_BOS    "tokenizer.ggml.bos_token_id"
#define KEY_EOS    "tokenizer.ggml.eos_token_id"

/* ============================================================================================
 * Loading
 * ============================================================================================ */

static bool is_int_type(uint32_t t)
{
    return t == ELM_GGUF_U8 || t == ELM_GGUF_I8 || t == ELM_GGUF_U16 || t == ELM_GGUF_I16 ||
           t == ELM_GGUF_U32 || t == ELM_GGUF_I32 || t == ELM_GGUF_U64 || t == ELM_GGUF_I64;
}

static bool is_signed_type(uint32_t t)
{
    return t == ELM_GGUF_I8 || t == ELM_GGUF_I16 || t == ELM_GGUF_I32 || t == ELM_GGUF_I64;
}

/* Reads an optional token id key into *id (left as is when absent). "None" is stored as
 * 0xFFFFFFFF by the converters, or as -1: both give -1. */
static int get_token_id(const struct elm_gguf *g, const char *key, int32_t n, int32_t *id,
                        char *err, size_t errlen)
{
    const struct elm_gguf_kv *kv = elm_gguf_find(g, key);
    if (!kv)
        return 0;
    if (!is_int_type(kv->type))
        return elm_errf(err, errlen, ELM_EFORMAT, "%s: expected an integer, found %s", key,
                        elm_gguf_vtype_name(kv->type));
    bool neg = is_signed_type(kv->type) && kv->v.i64 < 0;
    uint64_t x = is_signed_type(kv->type) ? (uint64_t)kv->v.i64 : kv->v.u64;
    if (neg ? kv->v.i64 == -1 : x == UINT32_MAX || x == UINT64_MAX) {
        *id = -1;
        return 0;
    }
    if (neg || x >= (uint64_t)n)
        return elm_errf(err, errlen, ELM_EFORMAT, "%s: token id %lld out of range [0, %d)", key,
                        neg ? kv->v.i64 : (long long)x, (int)n);
    *id = (int32_t)x;
    return 0;
}

static int get_opt_bool(const struct elm_gguf *g, const char *key, bool *val, char *err,
                        size_t errlen)
{
    int rc = elm_gguf_get_bool(g, key, val);
    if (rc == -ENOENT)
        return 0;
    if (rc)
        return elm_errf(err, errlen, ELM_EFORMAT, "%s: expected a bool", key);
    return 0;
}

/* Reads tokenizer.ggml.model and .pre into v->kind and v->pre. */
static int load_kind(const struct elm_gguf *g, struct elm_vocab *v, char *err, size_t errlen)
{
    struct elm_gguf_str s;
    int rc = elm_gguf_get_str(g, KEY_MODEL, &s);
    if (rc == -ENOENT)
        return elm_errf(err, errlen, ELM_EFORMAT, "%s: missing", KEY_MODEL);
    if (rc)
        return elm_errf(err, errlen, ELM_EFORMAT, "%s: expected a string", KEY_MODEL);
    if (elm_gguf_str_eq(s, "llama")) {
        v->kind = ELM_VOCAB_SPM;
        return 0;
    }
    if (elm_gguf_str_eq(s, "bert")) {
        v->kind = ELM_VOCAB_WPM;
        return 0;
    }
    if (!elm_gguf_str_eq(s, "gpt2"))
        return elm_errf(err, errlen, ELM_EUNSUPPORTED, "%s: tokenizer '%.*s' is not supported",
                        KEY_MODEL, (int)(s.len > 64 ? 64 : s.len), s.ptr);
    v->kind = ELM_VOCAB_BPE;

    rc = elm_gguf_get_str(g, KEY_PRE, &s);
    if (rc == -ENOENT) {
        /* llama.cpp warns loudly and falls back to its default regex list; so do we */
        elm_warn("%s missing: using the default pre-tokenizer (quality may suffer)", KEY_PRE);
        v->pre = elm_pretok_find(NULL, 0);
        return 0;
    }
    if (rc)
        return elm_errf(err, errlen, ELM_EFORMAT, "%s: expected a string", KEY_PRE);
    v->pre = elm_pretok_find(s.ptr, s.len);
    if (!v->pre)
        return elm_errf(err, errlen, ELM_EUNSUPPORTED, "%s: pre-tokenizer '%.*s' is not supported",
                        KEY_PRE, (int)(s.len > 64 ? 64 : s.len), s.ptr);
    return 0;
}

/* Reads an array that must have exactly n elements of one of two element types; *data stays
 * NULL when the key is absent. */
static int get_parallel_arr(const struct elm_gguf *g, const char *key, uint32_t t1, uint32_t t2,
                            uint64_t n, uint32_t *type, const void **data, char *err, size_t errlen)
{
    const struct elm_gguf_kv *kv = elm_gguf_find(g, key);
    *data = NULL;
    if (!kv)
        return 0;
    if (kv->type != ELM_GGUF_ARRAY || (kv->arr_type != t1 && kv->arr_type != t2))
        return elm_errf(err, errlen, ELM_EFORMAT, "%s: expected an array of %s", key,
                        elm_gguf_vtype_name(t1));
    if (kv->arr_n != n)
        return elm_errf(err, errlen, ELM_EFORMAT, "%s: %llu entries for %llu tokens", key,
                        (unsigned long long)kv->arr_n, (unsigned long long)n);
    *type = kv->arr_type;
    *data = kv->raw;
    return 0;
}

/* Token texts, scores and types. */
static int load_tokens(const struct elm_gguf *g, struct elm_vocab *v, char *err, size_t errlen)
{
    uint64_t n;
    const void *unused;
    int rc = elm_gguf_get_arr(g, KEY_TOKENS, ELM_GGUF_STRING, &n, &unused);
    if (rc == -ENOENT)
        return elm_errf(err, errlen, ELM_EFORMAT, "%s: missing", KEY_TOKENS);
    if (rc)
        return elm_errf(err, errlen, ELM_EFORMAT, "%s: expected an array of strings", KEY_TOKENS);
    if (n == 0 || n > ELM_VOCAB_MAX_TOKENS)
        return elm_errf(err, errlen, ELM_EFORMAT, "%s: %llu tokens (expected 1..%d)", KEY_TOKENS,
                        (unsigned long long)n, ELM_VOCAB_MAX_TOKENS);
    v->n_tokens = (int32_t)n;

    struct elm_gguf_str *strs = malloc(n * sizeof *strs);
    if (!strs)
        return -ENOMEM;
    rc = elm_gguf_get_str_arr(g, KEY_TOKENS, strs, n);
    if (rc) {
        free(strs);
        return elm_errf(err, errlen, ELM_EFORMAT, "%s: unreadable strings", KEY_TOKENS);
    }
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (strs[i].len > ELM_VOCAB_MAX_TOKEN_LEN) {
            const unsigned long long len = strs[i].len;
            free(strs);
            return elm_errf(err, errlen, ELM_EFORMAT, "%s[%llu]: %llu bytes long", KEY_TOKENS,
                            (unsigned long long)i, len);
        }
        total += strs[i].len;
    }
    if (total >= UINT32_MAX) {
        free(strs);
        return elm_errf(err, errlen, ELM_EFORMAT, "%s: texts too large", KEY_TOKENS);
    }
    v->text = malloc(total + 1);
    v->text_off = malloc((n + 1) * sizeof *v->text_off);
    v->scores = calloc(n, sizeof *v->scores);
    v->types = malloc(n);
    if (!v->text || !v->text_off || !v->scores || !v->types) {
        free(strs);
        return -ENOMEM;
    }
    uint32_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        v->text_off[i] = off;
        if (strs[i].len)
            memcpy(v->text + off, strs[i].ptr, strs[i].len);
        off += (uint32_t)strs[i].len;
    }
    v->text_off[n] = off;
    free(strs);

    /* Scores (SPM merge priorities): optional, F32 or (as llama.cpp allows) I32. The data
     * sits unaligned in the file, hence memcpy. */
    uint32_t at = 0;
    const uint8_t *data;
    rc = get_parallel_arr(g, KEY_SCORES, ELM_GGUF_F32, ELM_GGUF_I32, n, &at, (const void **)&data,
                          err, errlen);
    if (rc)
        return rc;
    for (uint64_t i = 0; data && i < n; i++) {
        if (at == ELM_GGUF_F32) {
            memcpy(&v->scores[i], data + 4 * i, 4);
        } else {
            int32_t x;
            memcpy(&x, data + 4 * i, 4);
            v->scores[i] = (float)x;
        }
    }

    rc = get_parallel_arr(g, KEY_TYPES, ELM_GGUF_I32, ELM_GGUF_U32, n, &at, (const void **)&data,
                          err, errlen);
    if (rc)
        return rc;
    for (uint64_t i = 0; i < n; i++) {
        int32_t t = ELM_TOKEN_NORMAL; /* llama.cpp's assumption when types are missing */
        if (data)
            memcpy(&t, data + 4 * i, 4);
        if (t < ELM_TOKEN_UNDEFINED || t > ELM_TOKEN_BYTE)
            return elm_errf(err, errlen, ELM_EFORMAT, "%s[%llu]: unknown token type %d", KEY_TYPES,
                            (unsigned long long)i, (int)t);
        v->types[i] = (uint8_t)t;
    }
    return 0;
}

static int build_token_table(struct elm_vocab *v, char *err, size_t errlen)
{
    uint32_t size = elm_vocab_table_size((size_t)v->n_tokens);
    v->tok_mask = size - 1;
    v->tok_slots = malloc(size * sizeof *v->tok_slots);
    v->tok_hash = malloc(size * sizeof *v->tok_hash);
    if (!v->tok_slots || !v->tok_hash)
        return -ENOMEM;
    memset(v->tok_slots, 0xFF, size * sizeof *v->tok_slots);
    for (int32_t i = 0; i < v->n_tokens; i++) {
        size_t len;
        const char *s = vocab_text(v, i, &len);
        if (len == 0)
            continue; /* an empty token can never be looked up (llama.cpp renames it) */
        if (len > v->max_token_len)
            v->max_token_len = (uint32_t)len;
        int32_t dup = elm_vocab_insert(v, i);
        if (dup >= 0)
            return elm_errf(err, errlen, ELM_EFORMAT, "%s: duplicate token '%.*s' (ids %d and %d)",
                            KEY_TOKENS, (int)(len > 64 ? 64 : len), s, (int)dup, (int)i);
    }
    return 0;
}

/* BERT frames a text as [CLS] ... [SEP]: those are its BOS and EOS here, both added by default
 * (llama.cpp's defaults: [UNK] 100, [CLS] 101, [SEP] 102, [PAD] 0, when the file has them). */
static int wpm_specials(const struct elm_gguf *g, struct elm_vocab *v, char *err, size_t errlen)
{
    int32_t n = v->n_tokens;
    v->bos = n > 101 ? 101 : -1;
    v->eos = n > 102 ? 102 : -1;
    if (!elm_gguf_find(g, "tokenizer.ggml.unknown_token_id"))
        v->unk = n > 100 ? 100 : -1;
    int rc = get_token_id(g, "tokenizer.ggml.cls_token_id", n, &v->bos, err, errlen);
    if (!rc)
        rc = get_token_id(g, "tokenizer.ggml.seperator_token_id", n, &v->eos, err, errlen);
    v->add_bos = v->bos >= 0;
    v->add_eos = v->eos >= 0;
    return rc;
}

/* Special ids and the add_* flags, with llama.cpp's per-tokenizer defaults. */
static int load_specials(const struct elm_gguf *g, struct elm_vocab *v, char *err, size_t errlen)
{
    static const struct {
        const char *key;
        size_t field;
    } ids[] = {
        {KEY_BOS, offsetof(struct elm_vocab, bos)},
        {KEY_EOS, offsetof(struct elm_vocab, eos)},
        {"tokenizer.ggml.unknown_token_id", offsetof(struct elm_vocab, unk)},
        {"tokenizer.ggml.eot_token_id", offsetof(struct elm_vocab, eot)},
        {"tokenizer.ggml.eom_token_id", offsetof(struct elm_vocab, eom)},
        {"tokenizer.ggml.padding_token_id", offsetof(struct elm_vocab, pad)},
        {"tokenizer.ggml.fim_pad_token_id", offsetof(struct elm_vocab, fim[0])},
        {"tokenizer.ggml.fim_rep_token_id", offsetof(struct elm_vocab, fim[1])},
        {"tokenizer.ggml.fim_sep_token_id", offsetof(struct elm_vocab, fim[2])},
    };
    bool spm = v->kind == ELM_VOCAB_SPM;
    int32_t n = v->n_tokens;

    /* SentencePiece's conventional ids; gpt2 vocabularies have none by default (llama.cpp
     * picks 11, which is an ordinary token in most of them). */
    v->bos = spm && n > 1 ? 1 : -1;
    v->eos = spm && n > 2 ? 2 : -1;
    v->unk = spm ? 0 : -1;
    v->eot = v->eom = v->pad = -1;
    v->fim[0] = v->fim[1] = v->fim[2] = -1;
    v->add_bos = spm;
    v->add_eos = false;
    v->add_space_prefix = spm;

    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        int rc = get_token_id(g, ids[i].key, n, (int32_t *)((char *)v + ids[i].field), err, errlen);
        if (rc)
            return rc;
    }
    if (v->kind == ELM_VOCAB_WPM) {
        int rc = wpm_specials(g, v, err, errlen);
        if (rc)
            return rc;
    }
    /* Llama 3 and Tekken add BOS unless the file says otherwise (llama.cpp sets the default
     * by pre-tokenizer name); a file without a BOS id cannot, so it does not by default. */
    if (!spm && v->pre && elm_pretok_adds_bos(v->pre) && v->bos >= 0)
        v->add_bos = true;
    int rc = get_opt_bool(g, "tokenizer.ggml.add_bos_token", &v->add_bos, err, errlen);
    if (!rc)
        rc = get_opt_bool(g, "tokenizer.ggml.add_eos_token", &v->add_eos, err, errlen);
    if (!rc)
        rc = get_opt_bool(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix, err, errlen);
    if (rc)
        return rc;
    /* llama.cpp reads the key for every tokenizer, but only SPM tokenizing adds the space; a
     * byte-level vocab that claimed one would lose a real leading space on decoding. */
    v->add_space_prefix = v->add_space_prefix && spm;
    if (v->add_bos && v->bos < 0)
        return elm_errf(err, errlen, ELM_EFORMAT,
                        "tokenizer.ggml.add_bos_token is true but %s is not set", KEY_BOS);
    if (v->add_eos && v->eos < 0)
        return elm_errf(err, errlen, ELM_EFORMAT,
                        "tokenizer.ggml.add_eos_token is true but %s is not set", KEY_EOS);
    return 0;
}

/* Precomputes every token's decoded bytes (the special = true form), so that decoding is a
 * copy. A piece is never longer than its token text. */
static int build_pieces(struct elm_vocab *v, char *err, size_t errlen)
{
    v->piece = malloc(v->text_off[v->n_tokens] + 1);
    v->piece_off = malloc(((size_t)v->n_tokens + 1) * sizeof *v->piece_off);
    if (!v->piece || !v->piece_off)
        return -ENOMEM;
    uint32_t o = 0;
    for (int32_t id = 0; id < v->n_tokens; id++) {
        size_t len;
        const char *s = vocab_text(v, id, &len);
        char *d = v->piece + o;
        v->piece_off[id] = o;
        switch (v->types[id]) {
        case ELM_TOKEN_CONTROL:
        case ELM_TOKEN_UNKNOWN:
        case ELM_TOKEN_USER_DEFINED: /* stored as raw UTF-8, never escaped or byte-mapped */
            memcpy(d, s, len);
            o += (uint32_t)len;
            break;
        case ELM_TOKEN_NORMAL:
            if (v->kind == ELM_VOCAB_BPE) {
                o += (uint32_t)elm_bpe_unmap(s, len, d);
                break;
            }
            o += (uint32_t)elm_spm_unescape(s, len, d);
            break;
        case ELM_TOKEN_BYTE: {
            int b = elm_spm_byte_value(s, len);
            if (b < 0)
                return elm_errf(err, errlen, ELM_EFORMAT, "%s[%d]: byte token '%.*s' is not <0xNN>",
                                KEY_TOKENS, (int)id, (int)(len > 16 ? 16 : len), s);
            *d = (char)b;
            o++;
            break;
        }
        default: /* UNUSED, UNDEFINED: render as nothing, like llama.cpp */
            break;
        }
    }
    v->piece_off[v->n_tokens] = o;
    return 0;
}

/* End-of-generation ids, by llama.cpp's rule (llama-vocab.cpp at the zoo2 commit): EOS, EOT
 * and EOM (from their keys, or for EOT/EOM found by text), the FIM pad / repo / file-separator
 * tokens, and every token whose text is one of the turn ends below. Only these texts: an
 * "<|end_of_text|>" in a Llama 3 vocabulary is generated and decoding goes on, as in llama.cpp.
 * The one definition of "this token ends a reply", for --local and for elmd. */
static int build_eog(struct elm_vocab *v)
{
    static const char *const turn_ends[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
        "<EOT>",
    };
    /* FIM pad, repo and file-separator tokens, found by text when the file names none (Qwen2.5
     * has three); group i is v->fim[i] */
    static const char *const fim[][4] = {
        {"<|fim_pad|>", "<fim-pad>", "<PAD>"},
        {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>"},
        {"<|file_sep|>"},
    };
    /* DeepSeek's sentence end is an EOT by text (so EOG) but not on the turn-end list */
    static const char deepseek_eos[] = "<\xEF\xBD\x9C"
                                       "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>";
    enum { N_TURN = sizeof turn_ends / sizeof *turn_ends };
    int32_t cand[N_TURN + 3 * 4 + 4];
    size_t n = 0;
    cand[n++] = v->eos;
    cand[n++] = v->eom;
    cand[n++] = v->eot;
    if (v->eot < 0)
        cand[n++] = elm_vocab_lookup(v, deepseek_eos, sizeof deepseek_eos - 1);
    for (size_t i = 0; i < N_TURN; i++)
        cand[n++] = elm_vocab_lookup(v, turn_ends[i], strlen(turn_ends[i]));
    for (int k = 0; k < 3; k++) {
        if (v->fim[k] >= 0)
            cand[n++] = v->fim[k];
        for (int i = 0; v->fim[k] < 0 && i < 4 && fim[k][i]; i++)
            cand[n++] = elm_vocab_lookup(v, fim[k][i], strlen(fim[k][i]));
    }
    v->eog = malloc(n * sizeof *v->eog);
    if (!v->eog)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        bool seen = cand[i] < 0;
        for (int j = 0; !seen && j < v->n_eog; j++)
            seen = v->eog[j] == cand[i];
        if (!seen)
            v->eog[v->n_eog++] = cand[i];
    }
    return 0;
}

static int cmp_desc_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Distinct lengths of matchable special tokens, longest first; *n returns the count. */
static int distinct_lens(const struct elm_vocab *v, bool user_only, uint32_t **out, int *n)
{
    uint32_t *lens = malloc(((size_t)v->n_tokens + 1) * sizeof *lens);
    if (!lens)
        return -ENOMEM;
    size_t k = 0;
    for (int32_t id = 0; id < v->n_tokens; id++) {
        uint8_t t = v->types[id];
        bool ok = t == ELM_TOKEN_USER_DEFINED ||
                  (!user_only && (t == ELM_TOKEN_CONTROL || t == ELM_TOKEN_UNKNOWN));
        uint32_t len = v->text_off[id + 1] - v->text_off[id];
        if (ok && len)
            lens[k++] = len;
    }
    qsort(lens, k, sizeof *lens, cmp_desc_u32);
    size_t d = 0;
    for (size_t i = 0; i < k; i++)
        if (d == 0 || lens[d - 1] != lens[i])
            lens[d++] = lens[i];
    *out = lens;
    *n = (int)d;
    return 0;
}

static int build_special_index(struct elm_vocab *v)
{
    for (int32_t id = 0; id < v->n_tokens; id++) {
        uint8_t t = v->types[id];
        uint32_t off = v->text_off[id];
        if ((t == ELM_TOKEN_CONTROL || t == ELM_TOKEN_USER_DEFINED || t == ELM_TOKEN_UNKNOWN) &&
            v->text_off[id + 1] > off) {
            uint8_t c = (uint8_t)v->text[off];
            v->special_first[c >> 3] |= (uint8_t)(1u << (c & 7));
        }
    }
    int rc = distinct_lens(v, false, &v->special_lens, &v->n_special_lens);
    if (!rc)
        rc = distinct_lens(v, true, &v->user_lens, &v->n_user_lens);
    return rc;
}

static bool is_phi3_name(const struct elm_gguf *g)
{
    struct elm_gguf_str s;
    if (elm_gguf_get_str(g, "general.name", &s))
        return false;
    char low[256];
    size_t n = s.len < sizeof low - 1 ? s.len : sizeof low - 1;
    for (size_t i = 0; i < n; i++)
        low[i] = (char)(s.ptr[i] >= 'A' && s.ptr[i] <= 'Z' ? s.ptr[i] + 32 : s.ptr[i]);
    low[n] = 0;
    return strstr(low, "phi-3") || strstr(low, "phi3");
}

static void set_strip(struct elm_vocab *v, const char *text, uint8_t bits)
{
    int32_t id = elm_vocab_lookup(v, text, strlen(text));
    if (id >= 0)
        v->strip[id] = bits;
}

/* The strip attributes llama.cpp gives by model name. Phi-3 (general.name contains "phi3" or
 * "phi-3", any case): every CONTROL, USER_DEFINED and UNKNOWN token and "</s>" swallow the
 * white space after them, except "<unk>", "<s>" and "<|endoftext|>". So "<|user|>\nHi" is
 * <|user|> then "Hi" (with the SPM prefix space: "▁Hi"). llama.cpp also gives jina-v2's
 * "<mask>" LSTRIP; those pre-tokenizers are not supported here, so neither is that. */
static int build_strip(const struct elm_gguf *g, struct elm_vocab *v)
{
    if (!is_phi3_name(g))
        return 0;
    v->strip = calloc((size_t)v->n_tokens, 1);
    if (!v->strip)
        return -ENOMEM;
    for (int32_t id = 0; id < v->n_tokens; id++) {
        uint8_t t = v->types[id];
        if (t == ELM_TOKEN_CONTROL || t == ELM_TOKEN_USER_DEFINED || t == ELM_TOKEN_UNKNOWN)
            v->strip[id] = ELM_STRIP_RIGHT;
    }
    set_strip(v, "</s>", ELM_STRIP_RIGHT);
    set_strip(v, "<unk>", 0);
    set_strip(v, "<s>", 0);
    set_strip(v, "<|endoftext|>", 0);
    return 0;
}

int elm_vocab_load(const struct elm_gguf *g, struct elm_vocab **out, char *err, size_t errlen)
{
    if (!g || !out)
        return -EINVAL;
    struct elm_vocab *v = calloc(1, sizeof *v);
    if (!v)
        return -ENOMEM;

    int rc = load_kind(g, v, err, errlen);
    if (!rc)
        rc = load_tokens(g, v, err, errlen);
    if (!rc)
        rc = build_token_table(v, err, errlen);
    if (!rc && v->kind == ELM_VOCAB_BPE)
        rc = elm_bpe_load_merges(g, v, err, errlen);
    if (!rc)
        rc = load_specials(g, v, err, errlen);
    if (!rc)
        rc = build_pieces(v, err, errlen);
    if (!rc)
        rc = build_eog(v);
    if (!rc)
        rc = build_special_index(v);
    if (!rc)
        rc = build_strip(g, v);
    if (!rc)
        elm_spm_init_bytes(v);
    if (rc) {
        if (rc == -ENOMEM)
            elm_errf(err, errlen, rc, "out of memory loading the vocabulary");
        elm_vocab_destroy(&v);
        return rc;
    }
    *out = v;
    return 0;
}

void elm_vocab_destroy(struct elm_vocab **pv)
{
    if (!pv || !*pv)
        return;
    struct elm_vocab *v = *pv;
    free(v->text);
    free(v->text_off);
    free(v->scores);
    free(v->types);
    free(v->piece);
    free(v->piece_off);
    free(v->tok_slots);
    free(v->tok_hash);
    free(v->merge_keys);
    free(v->merge_rank);
    free(v->eog);
    free(v->special_lens);
    free(v->user_lens);
    free(v->strip);
    free(v);
    *pv = NULL;
}

/* ============================================================================================
 * Accessors
 * ============================================================================================ */

int32_t elm_vocab_size(const struct elm_vocab *v)
{
    return v->n_tokens;
}

size_t elm_vocab_max_bytes_per_token(const struct elm_vocab *v, bool parse_special)
{
    if (v->kind == ELM_VOCAB_WPM || (v->kind == ELM_VOCAB_BPE && !elm_bpe_covers_bytes(v)))
        return 0;
    for (int b = 0; v->kind == ELM_VOCAB_SPM && b < 256; b++)
        if (v->spm_byte[b] < 0 && v->unk < 0)
            return 0;
    for (int32_t i = 0; v->strip && i < v->n_tokens; i++)
        if (v->strip[i] && (parse_special || elm_vocab_type(v, i) == ELM_TOKEN_USER_DEFINED))
            return 0; /* user-defined tokens are matched without parse_special too */
    return v->max_token_len ? v->max_token_len : 1;
}

enum elm_vocab_kind elm_vocab_kind(const struct elm_vocab *v)
{
    return v->kind;
}

int32_t elm_vocab_bos(const struct elm_vocab *v)
{
    return v->bos;
}

int32_t elm_vocab_eos(const struct elm_vocab *v)
{
    return v->eos;
}

bool elm_vocab_add_bos(const struct elm_vocab *v)
{
    return v->add_bos;
}

bool elm_vocab_add_eos(const struct elm_vocab *v)
{
    return v->add_eos;
}

enum elm_token_type elm_vocab_type(const struct elm_vocab *v, int32_t id)
{
    if (id < 0 || id >= v->n_tokens)
        return ELM_TOKEN_UNDEFINED;
    return (enum elm_token_type)v->types[id];
}

int32_t elm_vocab_eot(const struct elm_vocab *v)
{
    return v->eot;
}

int32_t elm_vocab_unk(const struct elm_vocab *v)
{
    return v->unk;
}

int32_t elm_vocab_pad(const struct elm_vocab *v)
{
    return v->pad;
}

const int32_t *elm_vocab_eog(const struct elm_vocab *v, int *n)
{
    *n = v->n_eog;
    return v->eog;
}

bool elm_vocab_is_eog(const struct elm_vocab *v, int32_t id)
{
    for (int i = 0; i < v->n_eog; i++)
        if (v->eog[i] == id)
            return true;
    return false;
}

const char *elm_vocab_text(const struct elm_vocab *v, int32_t id, size_t *len)
{
    if (id < 0 || id >= v->n_tokens) {
        *len = 0;
        return NULL;
    }
    return vocab_text(v, id, len);
}

int32_t elm_vocab_find(const struct elm_vocab *v, const char *text, size_t len)
{
    return len ? elm_vocab_lookup(v, text, len) : -1;
}

/* ============================================================================================
 * Tokenizing: special-token partition, then the vocabulary's tokenizer per text fragment
 * ============================================================================================ */

/* A piece of the input: raw text [off, off + len) when id < 0, else the token id. */
struct frag {
    int32_t id;
    size_t off, len;
};

struct frags {
    struct frag *a;
    size_t n, cap;
};

static int frags_push(struct frags *f, int32_t id, size_t off, size_t len)
{
    if (elm_vocab_grow((void **)&f->a, &f->cap, f->n + 1, sizeof *f->a))
        return -ENOMEM;
    f->a[f->n++] = (struct frag){.id = id, .off = off, .len = len};
    return 0;
}

static bool matchable(const struct elm_vocab *v, int32_t id, bool parse_special)
{
    uint8_t t = v->types[id];
    return t == ELM_TOKEN_USER_DEFINED ||
           (parse_special && (t == ELM_TOKEN_CONTROL || t == ELM_TOKEN_UNKNOWN));
}

/* C's isspace in the "C" locale, which llama.cpp's strip uses: ASCII white space only. */
static bool is_c_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Cuts the text fragments of *cur at every matchable token of length L, left to right, and
 * drops the white space that the token's strip attributes swallow; a fragment left empty
 * disappears (so SPM's prefix space goes to the next text that remains). */
static int partition_len(const struct elm_vocab *v, const char *text, uint32_t L,
                         bool parse_special, const struct frags *cur, struct frags *next)
{
    int rc = 0;
    next->n = 0;
    for (size_t i = 0; !rc && i < cur->n; i++) {
        const struct frag *f = &cur->a[i];
        if (f->id >= 0 || f->len < L) {
            rc = frags_push(next, f->id, f->off, f->len);
            continue;
        }
        size_t start = f->off, end = f->off + f->len;
        for (size_t p = start; !rc && p + L <= end;) {
            uint8_t c = (uint8_t)text[p];
            int32_t id = -1;
            if (v->special_first[c >> 3] & (1u << (c & 7)))
                id = elm_vocab_lookup(v, text + p, L);
            if (id < 0 || !matchable(v, id, parse_special)) {
                p++;
                continue;
            }
            uint8_t strip = v->strip ? v->strip[id] : 0;
            size_t left_end = p;
            while ((strip & ELM_STRIP_LEFT) && left_end > start && is_c_space(text[left_end - 1]))
                left_end--;
            if (left_end > start)
                rc = frags_push(next, -1, start, left_end - start);
            if (!rc)
                rc = frags_push(next, id, p, L);
            p += L;
            while ((strip & ELM_STRIP_RIGHT) && p < end && is_c_space(text[p]))
                p++;
            start = p;
        }
        if (!rc && start < end)
            rc = frags_push(next, -1, start, end - start);
    }
    return rc;
}

static int partition(const struct elm_vocab *v, const char *text, size_t len, bool parse_special,
                     struct frags *out)
{
    const uint32_t *lens = parse_special ? v->special_lens : v->user_lens;
    int n_lens = parse_special ? v->n_special_lens : v->n_user_lens;
    struct frags cur = {0}, next = {0};
    int rc = frags_push(&cur, -1, 0, len);
    for (int i = 0; !rc && i < n_lens; i++) {
        rc = partition_len(v, text, lens[i], parse_special, &cur, &next);
        struct frags tmp = cur;
        cur = next;
        next = tmp;
    }
    free(next.a);
    if (rc) {
        free(cur.a);
        return rc;
    }
    *out = cur;
    return 0;
}

/* The whole of elm_tokenize into ids (which the caller frees, also on failure). */
static int tokenize_ids(const struct elm_vocab *v, const char *text, size_t len, bool add_special,
                        bool parse_special, struct elm_ids *ids)
{
    struct frags frags = {0};
    int rc = 0;

    if (add_special && v->add_bos)
        rc = elm_ids_push(ids, v->bos);
    if (!rc && len)
        rc = partition(v, text, len, parse_special, &frags);

    /* SPM puts the prefix space before the first text and after every special token, as
     * SentencePiece would see each text run as the start of a new sentence. */
    bool after_special = true;
    for (size_t i = 0; !rc && i < frags.n; i++) {
        const struct frag *f = &frags.a[i];
        if (f->id >= 0) {
            rc = elm_ids_push(ids, f->id);
            after_special = true;
        } else if (v->kind == ELM_VOCAB_SPM) {
            rc = elm_spm_tokenize(v, text + f->off, f->len, v->add_space_prefix && after_special,
                                  ids);
            after_special = false;
        } else if (v->kind == ELM_VOCAB_WPM) {
            rc = elm_wpm_tokenize(v, text + f->off, f->len, ids);
        } else {
            rc = elm_bpe_tokenize(v, text + f->off, f->len, ids);
        }
    }
    if (!rc && add_special && v->add_eos)
        rc = elm_ids_push(ids, v->eos);
    if (!rc && ids->n > INT_MAX)
        rc = -EOVERFLOW;
    free(frags.a);
    return rc;
}

int elm_tokenize(const struct elm_vocab *v, const char *text, size_t len, bool add_special,
                 bool parse_special, int32_t *out, int cap)
{
    if (!v || (!text && len) || cap < 0 || (cap > 0 && !out))
        return -EINVAL;
    struct elm_ids ids = {0};
    int rc = tokenize_ids(v, text, len, add_special, parse_special, &ids);
    if (!rc) {
        size_t k = ids.n < (size_t)cap ? ids.n : (size_t)cap;
        if (k)
            memcpy(out, ids.v, k * sizeof *out);
        rc = (int)ids.n;
    }
    free(ids.v);
    return rc;
}

int elm_tokenize_alloc(const struct elm_vocab *v, const char *text, size_t len, bool add_special,
                       bool parse_special, int32_t **out, int32_t *n)
{
    if (!v || (!text && len) || !out || !n)
        return -EINVAL;
    struct elm_ids ids = {0};
    int rc = tokenize_ids(v, text, len, add_special, parse_special, &ids);
    if (!rc && !ids.v && !(ids.v = malloc(sizeof *ids.v))) /* no tokens: still a buffer */
        rc = -ENOMEM;
    if (rc) {
        free(ids.v);
        return rc;
    }
    *out = ids.v;
    *n = (int32_t)ids.n;
    return 0;
}

/* ============================================================================================
 * Decoding
 * ============================================================================================ */

/* The bytes of token id as decoding shows them: empty for CONTROL/UNKNOWN unless special. */
static const char *piece_of(const struct elm_vocab *v, int32_t id, bool special, size_t *len)
{
    uint8_t t = v->types[id];
    if (!special && (t == ELM_TOKEN_CONTROL || t == ELM_TOKEN_UNKNOWN)) {
        *len = 0;
        return v->piece;
    }
    *len = v->piece_off[id + 1] - v->piece_off[id];
    return v->piece + v->piece_off[id];
}

int elm_token_to_piece(const struct elm_vocab *v, int32_t id, bool special, char *buf, int cap)
{
    if (!v || cap < 0 || (cap > 0 && !buf))
        return -EINVAL;
    if (id < 0 || id >= v->n_tokens)
        return ELM_ETOKEN;
    size_t len;
    const char *p = piece_of(v, id, special, &len);
    if (cap > 0)
        memcpy(buf, p, len < (size_t)cap ? len : (size_t)cap);
    return (int)len; /* <= ELM_VOCAB_MAX_TOKEN_LEN */
}

int elm_detokenize(const struct elm_vocab *v, const int32_t *ids, int n, bool special,
                   bool remove_leading_space, char *buf, int cap)
{
    if (!v || n < 0 || (n > 0 && !ids) || cap < 0 || (cap > 0 && !buf))
        return -EINVAL;
    /* Only SentencePiece adds a prefix space, so only it has one to remove: from the first
     * piece that shows anything (a leading BOS renders as nothing without special). */
    bool strip = remove_leading_space && v->add_space_prefix;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= v->n_tokens)
            return ELM_ETOKEN;
        size_t len;
        const char *p = piece_of(v, ids[i], special, &len);
        if (len == 0)
            continue;
        if (strip && p[0] == ' ') {
            p++;
            len--;
        }
        strip = false;
        if (total < (size_t)cap) {
            size_t k = (size_t)cap - total;
            memcpy(buf + total, p, len < k ? len : k);
        }
        total += len;
        if (total > INT_MAX)
            return -EOVERFLOW;
    }
    return (int)total;
}
