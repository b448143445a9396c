/* vocab_table.h — the vocabulary's tables and the primitives that vocab.c (loading, special
 * tokens, decoding), vocab_spm.c (SentencePiece-style merges), vocab_bpe.c (GPT-2 byte-level
 * BPE, with vocab_pretok.c) and vocab_wpm.c (WordPiece) all use. Not a public header. The
 * dependencies go one way: vocab.c calls down into the two tokenizers, and all three call down into
 * this file; nothing here or in the tokenizers calls back up into vocab.c.
 *
 * The vocabulary owns one pool of token texts; every lookup structure indexes into it. Token
 * text -> id and (left id, right id) -> merge rank are open-addressing hash tables with linear
 * probing, sized at load to at most half full, so a lookup costs one hash and a probe or two.
 */
#ifndef ELM_VOCAB_TABLE_H
#define ELM_VOCAB_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/vocab_types.h"

/* Limits on what a file may declare: far beyond any real vocabulary, and they keep every id,
 * offset and table size in 32 bits. */
#define ELM_VOCAB_MAX_TOKENS    (1 << 26) /* tokens, and merges */
#define ELM_VOCAB_MAX_TOKEN_LEN (1 << 20) /* bytes of one token text */

struct elm_pretok; /* a pre-tokenizer of vocab_pretok.c's table (static) */

struct elm_vocab {
    enum elm_vocab_kind kind;
    const struct elm_pretok *pre; /* BPE only: what tokenizer.ggml.pre names */
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
    uint32_t max_token_len; /* bytes of the longest token text */

    uint64_t *merge_keys; /* [merge_mask + 1]: left id << 32 | right id, or UINT64_MAX */
    int32_t *merge_rank;  /* [merge_mask + 1] */
    uint32_t merge_mask;  /* 0 and NULL tables when the vocab has no merges */

    int32_t bos, eos, unk, eot, eom, pad; /* -1 when none */
    int32_t fim[3];                       /* FIM pad, repo, file separator; -1 when none */
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

    /* llama.cpp's per-token LSTRIP/RSTRIP attributes (not stored in GGUF files: it sets them
     * by model name): the white space before / after such a token, when it is matched in the
     * text, is dropped. NULL when no token has one. */
    uint8_t *strip; /* [n_tokens]: enum elm_strip bits */
};

enum elm_strip {
    ELM_STRIP_LEFT = 1,
    ELM_STRIP_RIGHT = 2,
};

/* The token text of id (which must be valid). */
static inline const char *vocab_text(const struct elm_vocab *v, int32_t id, size_t *len)
{
    *len = v->text_off[id + 1] - v->text_off[id];
    return v->text + v->text_off[id];
}

/* Slots for a hash table of n entries: the smallest power of two >= 2n (at least 16). */
uint32_t elm_vocab_table_size(size_t n);

/* Id of the token whose text is exactly s[0..len), or -1. */
int32_t elm_vocab_lookup(const struct elm_vocab *v, const char *s, size_t len);

/* Inserts token id into the token-text table; returns the id already holding the same text,
 * or -1 (then id is in). */
int32_t elm_vocab_insert(struct elm_vocab *v, int32_t id);

/* Makes room for need elements of elem bytes in the growable array *p of *cap elements
 * (doubling, so n pushes cost O(n)). Returns 0 or -ENOMEM (then *p and *cap are unchanged). */
int elm_vocab_grow(void **p, size_t *cap, size_t need, size_t elem);

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

/* Splits text[0..n) into one symbol per UTF-8 character, cut by lead byte only (no validation,
 * as llama.cpp does), chained in order, into sym (room for n). Each symbol's id is the token of
 * its character when v is given, else -1. Returns the number of symbols. */
int32_t elm_syms_split(const struct elm_vocab *v, const char *text, size_t n, struct elm_sym *sym);

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

#endif
