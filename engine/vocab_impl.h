/* vocab_impl.h — internals shared by vocab.c (loading, special tokens, decoding), vocab_spm.c
 * (SentencePiece-style merges) and vocab_bpe.c (GPT-2 byte-level BPE). Not a public header.
 *
 * The vocabulary owns one pool of token texts; every lookup structure indexes into it. Token
 * text -> id and (left id, right id) -> merge rank are open-addressing hash tables with linear
 * probing, sized at load to at most half full, so a lookup costs one hash and a probe or two.
 */
#ifndef ELM_VOCAB_IMPL_H
#define ELM_VOCAB_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vocab.h"

/* Limits on what a file may declare: far beyond any real vocabulary, and they keep every id,
 * offset and table size in 32 bits. */
#define ELM_VOCAB_MAX_TOKENS    (1 << 26) /* tokens, and merges */
#define ELM_VOCAB_MAX_TOKEN_LEN (1 << 20) /* bytes of one token text */

/* Pre-tokenizers of byte-level BPE vocabularies (tokenizer.ggml.pre). */
enum elm_bpe_pre {
    ELM_PRE_DEFAULT,        /* missing or "default": llama.cpp's fallback regex list */
    ELM_PRE_GPT2,           /* "gpt-2" */
    ELM_PRE_DEEPSEEK_CODER, /* "deepseek-coder" */
    ELM_PRE_DEEPSEEK_LLM,   /* "deepseek-llm" */
};

struct elm_vocab {
    enum elm_vocab_kind kind;
    enum elm_bpe_pre pre; /* BPE only */
    int32_t n_tokens;

    char *text;         /* all token texts back to back */
    uint32_t *text_off; /* [n_tokens + 1]: token i is text[text_off[i] .. text_off[i+1]) */
    float *scores;      /* [n_tokens]; 0 when the file has none */
    uint8_t *types;     /* [n_tokens]: enum elm_token_type */

    char *piece;         /* decoded bytes of every token (special = true form), back to back */
    uint32_t *piece_off; /* [n_tokens + 1] */

    int32_t *tok_slots; /* [tok_mask + 1]: token id or -1; keyed by token text */
    uint32_t *tok_hash; /* [tok_mask + 1]: full hash of the slot's text, to skip memcmp */
    uint32_t tok_mask;

    uint64_t *merge_keys; /* [merge_mask + 1]: left id << 32 | right id, or UINT64_MAX */
    int32_t *merge_rank;  /* [merge_mask + 1] */
    uint32_t merge_mask;  /* 0 and NULL tables when the vocab has no merges */

    int32_t bos, eos, unk, eot, eom, pad; /* -1 when none */
    int32_t *eog;                         /* ids that end a generation */
    int n_eog;
    bool add_bos, add_eos, add_space_prefix;

    int32_t spm_byte[256]; /* SPM byte fallback: id of <0xNN> (or of the raw byte), or -1 */

    /* Special-token matching: the distinct text lengths of the tokens that may be matched in
     * the input, longest first (llama.cpp tries longer special tokens before shorter ones). One
     * list for parse_special (CONTROL, USER_DEFINED, UNKNOWN) and one for plain text, where
     * only USER_DEFINED tokens are matched. first_byte[] filters candidate positions fast. */
    uint32_t *special_lens;
    int n_special_lens;
    uint32_t *user_lens;
    int n_user_lens;
    uint8_t special_first[32]; /* bitmap over the first byte of every matchable token */
};

/* The token text of id (which must be valid). */
static inline const char *vocab_text(const struct elm_vocab *v, int32_t id, size_t *len)
{
    *len = v->text_off[id + 1] - v->text_off[id];
    return v->text + v->text_off[id];
}

/* Writes fmt into err (when errlen > 0) and returns rc: load errors name their key. */
int elm_vocab_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Slots for a hash table of n entries: the smallest power of two >= 2n (at least 16). */
uint32_t elm_vocab_table_size(size_t n);

/* Id of the token whose text is exactly s[0..len), or -1. */
int32_t elm_vocab_lookup(const struct elm_vocab *v, const char *s, size_t len);

/* Rank of the merge (left, right), or -1 when the pair is not a merge. */
int32_t elm_vocab_merge_rank(const struct elm_vocab *v, int32_t left, int32_t right);

/* --- growable output of token ids ------------------------------------------------------------ */

struct elm_ids {
    int32_t *v;
    size_t n, cap;
};

int elm_ids_push(struct elm_ids *ids, int32_t id); /* 0 or -ENOMEM */

/* --- symbols and the merge queue shared by both BPE flavours ---------------------------------- */

/* One symbol of a word being merged: a span of the text and its neighbours in the chain.
 * len == 0 marks a symbol merged into its left neighbour. */
struct elm_sym {
    int32_t prev, next;
    uint32_t start, len;
    int32_t id; /* BPE: token id of the span or -1 (unused by SPM) */
};

/* A candidate merge of two neighbouring symbols. The queue pops the lowest key first and, on a
 * tie, the leftmost pair. SPM uses key = -score (best score first), BPE key = rank. size is the
 * byte length of the pair when pushed: if either symbol changed since, the entry is stale. */
struct elm_bigram {
    double key;
    int32_t left, right;
    uint32_t size;
};

struct elm_heap {
    struct elm_bigram *a;
    size_t n, cap;
};

int elm_heap_push(struct elm_heap *h, struct elm_bigram b); /* 0 or -ENOMEM */
bool elm_heap_pop(struct elm_heap *h, struct elm_bigram *out);

/* --- the two tokenizers (raw text fragments; special tokens are already split out) ------------ */

/* SentencePiece-style: escapes spaces to U+2581, prepends one when add_prefix. */
int elm_spm_tokenize(const struct elm_vocab *v, const char *text, size_t len, bool add_prefix,
                     struct elm_ids *out);

/* Fills spm_byte[] once the token table exists. */
void elm_spm_init_bytes(struct elm_vocab *v);

/* The byte a "<0xNN>" byte-fallback token stands for, or -1 when the text is not of that form. */
int elm_spm_byte_value(const char *s, size_t len);

/* Turns a NORMAL SPM token's "▁" into spaces: writes at most len bytes to out, returns count. */
size_t elm_spm_unescape(const char *text, size_t len, char *out);

/* Reads tokenizer.ggml.merges (required for gpt2 vocabularies: both halves of every entry must
 * be tokens) into the merge table. */
int elm_bpe_load_merges(const struct elm_gguf *g, struct elm_vocab *v, char *err, size_t errlen);

/* GPT-2 byte-level BPE with the vocab's pre-tokenizer. */
int elm_bpe_tokenize(const struct elm_vocab *v, const char *text, size_t len, struct elm_ids *out);

/* Undoes GPT-2's byte-to-unicode map on a NORMAL token's text: appends the bytes to out (which
 * has room for len bytes; the result is never longer) and returns their count. Code points
 * outside the map are copied through as UTF-8. */
size_t elm_bpe_unmap(const char *text, size_t len, char *out);

#endif
