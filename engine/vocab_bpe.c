/* vocab_bpe.c — the GPT-2 style byte-level BPE tokenizer ("gpt2" vocabularies: GPT-2 and the
 * DeepSeek coder/LLM models), matching llama.cpp's BPE tokenizer token for token.
 *
 * Three steps per text fragment:
 *  1. Pre-tokenize: cut the text into words with the regex list that tokenizer.ggml.pre names
 *     (vocab_pretok.c). With llama.cpp's ignore_merges (Llama 3, Tekken), a word that is itself
 *     a token is taken whole.
 *  2. Map every byte of a word to a printable code point (GPT-2's bytes_to_unicode), so that
 *     the merge table only ever sees printable text.
 *  3. Merge: repeatedly join the neighbouring pair with the lowest merge rank (leftmost on a
 *     tie) until no pair is a merge, then look the pieces up. A doubly linked list and a heap
 *     keep this O(n log n) per word.
 *
 * The merge table, (left id, right id) -> rank, is loaded and kept here too. Keying it by ids
 * rather than by text is exact: both halves of every merge must be tokens, so a piece that is
 * no token can never take part in a merge anyway.
 *
 * Invalid UTF-8 is decoded as U+FFFD (see unicode.c), so its bytes are tokenized as the three
 * bytes of U+FFFD, exactly as llama.cpp does.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/errmsg.h"
#include "elm/status.h"
#include "engine/unicode.h"
#include "engine/vocab_bpe.h"
#include "engine/vocab_pretok.h"

/* ============================================================================================
 * GPT-2 byte <-> code point map
 * ============================================================================================ */

/* The printable Latin-1 bytes stand for themselves; the 68 others (0x00-0x20, 0x7F-0xA0, 0xAD)
 * are numbered in byte order from U+0100. Computed rather than tabled: no initialisation, so
 * no thread-safety question. */
static uint32_t byte_to_cp(uint8_t b)
{
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)
        return b;
    if (b <= 0x20)
        return 0x100u + b;
    if (b <= 0xA0)
        return 0x100u + 33 + (b - 0x7Fu);
    return 0x100u + 67; /* 0xAD */
}

/* Inverse of byte_to_cp, or -1 for a code point outside the map. */
static int cp_to_byte(uint32_t cp)
{
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF))
        return (int)cp;
    if (cp < 0x100 || cp > 0x100 + 67)
        return -1;
    uint32_t n = cp - 0x100;
    if (n < 33)
        return (int)n;
    if (n < 67)
        return (int)(0x7F + n - 33);
    return 0xAD;
}

size_t elm_bpe_unmap(const char *text, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t adv;
        uint32_t cp = elm_utf8_decode(text + i, len - i, &adv);
        int b = cp_to_byte(cp);
        if (b >= 0) {
            out[o++] = (char)b;
        } else {
            memcpy(out + o, text + i, adv); /* not a mapped byte: keep it as it is */
            o += adv;
        }
        i += adv;
    }
    return o;
}

/* ============================================================================================
 * Merge table: (left id, right id) -> rank
 * ============================================================================================ */

#define KEY_MERGES "tokenizer.ggml.merges"

static uint32_t hash_u64(uint64_t k)
{
    k ^= k >> 33; /* a 64-bit finaliser: ids are small and dense, FNV would cluster them */
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return (uint32_t)k;
}

static int32_t merge_rank_of(const struct elm_vocab *v, int32_t left, int32_t right)
{
    if (!v->merge_keys || left < 0 || right < 0)
        return -1;
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    for (uint32_t i = hash_u64(key) & v->merge_mask;; i = (i + 1) & v->merge_mask) {
        if (v->merge_keys[i] == key)
            return v->merge_rank[i];
        if (v->merge_keys[i] == UINT64_MAX)
            return -1;
    }
}

/* Keeps the first rank of a pair listed twice, as llama.cpp does. */
static void merge_insert(struct elm_vocab *v, int32_t left, int32_t right, int32_t rank)
{
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    uint32_t i = hash_u64(key) & v->merge_mask;
    for (; v->merge_keys[i] != UINT64_MAX; i = (i + 1) & v->merge_mask)
        if (v->merge_keys[i] == key)
            return;
    v->merge_keys[i] = key;
    v->merge_rank[i] = rank;
}

/* tokenizer.ggml.merges: "left right" strings, rank = position. Both halves must be tokens. */
int elm_bpe_load_merges(const struct elm_gguf *g, struct elm_vocab *v, char *err, size_t errlen)
{
    uint64_t n;
    const void *unused;
    int rc = elm_gguf_get_arr(g, KEY_MERGES, ELM_GGUF_STRING, &n, &unused);
    if (rc == -ENOENT)
        return elm_errf(err, errlen, ELM_EFORMAT, "%s: missing (required by gpt2 vocabularies)",
                        KEY_MERGES);
    if (rc)
        return elm_errf(err, errlen, ELM_EFORMAT, "%s: expected an array of strings", KEY_MERGES);
    if (n > ELM_VOCAB_MAX_TOKENS)
        return elm_errf(err, errlen, ELM_EFORMAT, "%s: %llu merges", KEY_MERGES,
                        (unsigned long long)n);
    struct elm_gguf_str *strs = malloc((n ? n : 1) * sizeof *strs);
    if (!strs)
        return -ENOMEM;
    rc = elm_gguf_get_str_arr(g, KEY_MERGES, strs, n);
    if (rc) {
        free(strs);
        return elm_errf(err, errlen, ELM_EFORMAT, "%s: unreadable strings", KEY_MERGES);
    }
    uint32_t size = elm_vocab_table_size(n);
    v->merge_mask = size - 1;
    v->merge_keys = malloc(size * sizeof *v->merge_keys);
    v->merge_rank = malloc(size * sizeof *v->merge_rank);
    if (!v->merge_keys || !v->merge_rank) {
        free(strs);
        return -ENOMEM;
    }
    memset(v->merge_keys, 0xFF, size * sizeof *v->merge_keys);
    for (uint64_t i = 0; i < n; i++) {
        const char *s = strs[i].ptr;
        size_t len = strs[i].len;
        /* split at the first space after the first byte: a token may itself be " " */
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        int32_t l = sp ? elm_vocab_lookup(v, s, (size_t)(sp - s)) : -1;
        int32_t r = sp ? elm_vocab_lookup(v, sp + 1, len - (size_t)(sp - s) - 1) : -1;
        if (l < 0 || r < 0) {
            free(strs);
            return elm_errf(err, errlen, ELM_EFORMAT, "%s[%llu]: '%.*s' is not two tokens",
                            KEY_MERGES, (unsigned long long)i, (int)(len > 64 ? 64 : len), s);
        }
        merge_insert(v, l, r, (int32_t)i);
    }
    free(strs);
    return 0;
}

/* ============================================================================================
 * Byte-level merges
 * ============================================================================================ */

struct bpe_state {
    const struct elm_vocab *v;
    char *word; /* the byte-mapped word */
    size_t word_cap;
    struct elm_sym *sym;
    size_t sym_cap;
    struct elm_heap heap;
};

static int try_merge(struct bpe_state *st, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return 0;
    const struct elm_sym *l = &st->sym[left], *r = &st->sym[right];
    int32_t rank = merge_rank_of(st->v, l->id, r->id);
    if (rank < 0)
        return 0;
    struct elm_bigram b = {.key = rank, .left = left, .right = right, .size = l->len + r->len};
    return elm_heap_push(&st->heap, b);
}

/* Byte-maps code points cp[0..n) into st->word and returns its length via *len. */
static int map_word(struct bpe_state *st, const uint32_t *cp, size_t n, size_t *len)
{
    /* at most 4 UTF-8 bytes per code point, each mapped to at most 2 bytes */
    int rc = elm_vocab_grow((void **)&st->word, &st->word_cap, n * 8, 1);
    if (rc)
        return rc;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char u8[4];
        size_t k = elm_utf8_encode(cp[i], u8);
        for (size_t j = 0; j < k; j++)
            o += elm_utf8_encode(byte_to_cp((uint8_t)u8[j]), st->word + o);
    }
    *len = o;
    return 0;
}

bool elm_bpe_covers_bytes(const struct elm_vocab *v)
{
    for (int b = 0; b < 256; b++) {
        char u8[4];
        size_t k = elm_utf8_encode(byte_to_cp((uint8_t)b), u8);
        if (elm_vocab_lookup(v, u8, k) < 0)
            return false;
    }
    return true;
}

static int merge_word(struct bpe_state *st, size_t n, struct elm_ids *out)
{
    const char *w = st->word;
    if (elm_pretok_ignores_merges(st->v->pre)) {
        int32_t id = elm_vocab_lookup(st->v, w, n); /* a whole-word token wins outright */
        if (id >= 0)
            return elm_ids_push(out, id);
    }
    int rc = elm_vocab_grow((void **)&st->sym, &st->sym_cap, n, sizeof *st->sym);
    if (rc)
        return rc;

    int32_t n_sym = elm_syms_split(st->v, w, n, st->sym);

    st->heap.n = 0;
    for (int32_t i = 1; !rc && i < n_sym; i++)
        rc = try_merge(st, i - 1, i);

    struct elm_bigram b;
    while (!rc && elm_heap_pop(&st->heap, &b)) {
        struct elm_sym *l = &st->sym[b.left], *r = &st->sym[b.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != b.size)
            continue; /* stale: a side changed since the pair was queued */
        l->len += r->len;
        l->id = elm_vocab_lookup(st->v, w + l->start, l->len);
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0)
            st->sym[r->next].prev = b.left;
        rc = try_merge(st, l->prev, b.left);
        if (!rc)
            rc = try_merge(st, b.left, l->next);
    }

    for (int32_t i = n_sym ? 0 : -1; !rc && i >= 0; i = st->sym[i].next) {
        const struct elm_sym *s = &st->sym[i];
        if (s->id >= 0) {
            rc = elm_ids_push(out, s->id);
            continue;
        }
        /* Not a token: fall back to its single bytes, dropping any that are no token either
         * (llama.cpp does the same; with a complete byte map this does not happen). */
        for (uint32_t j = 0; !rc && j < s->len; j++) {
            int32_t id = elm_vocab_lookup(st->v, w + s->start + j, 1);
            if (id >= 0)
                rc = elm_ids_push(out, id);
        }
    }
    return rc;
}

int elm_bpe_tokenize(const struct elm_vocab *v, const char *text, size_t len, struct elm_ids *out)
{
    struct bpe_state st = {.v = v};
    uint32_t *words = NULL; /* word lengths in code points */
    size_t n_words = 0;
    uint32_t *cp = NULL;
    uint8_t *fl = NULL;
    int rc = 0;

    if (len == 0)
        return 0;
    /* 32-bit spans and symbol offsets (a byte may map to 6 bytes): refuse absurd fragments. */
    if (len > UINT32_MAX / 8)
        return -EOVERFLOW;
    cp = malloc(len * sizeof *cp);
    fl = malloc(len);
    if (!cp || !fl) {
        rc = -ENOMEM;
        goto out;
    }
    size_t n_cp = 0;
    for (size_t i = 0; i < len;) {
        size_t adv;
        cp[n_cp] = elm_utf8_decode(text + i, len - i, &adv);
        fl[n_cp] = (uint8_t)elm_unicode_flags(cp[n_cp]);
        n_cp++;
        i += adv;
    }

    rc = elm_pretok_split(v->pre, cp, fl, n_cp, &words, &n_words);
    size_t lo = 0;
    for (size_t i = 0; !rc && i < n_words; i++) {
        size_t wlen;
        rc = map_word(&st, cp + lo, words[i], &wlen);
        if (!rc)
            rc = merge_word(&st, wlen, out);
        lo += words[i];
    }

out:
    free(words);
    free(st.heap.a);
    free(st.sym);
    free(st.word);
    free(fl);
    free(cp);
    return rc;
}
