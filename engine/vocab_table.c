/* vocab_table.c — the vocabulary's lookup primitives (see vocab_table.h): the token-text hash
 * table, the growable id list and the merge queue that both tokenizers use.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/unicode.h"
#include "engine/vocab_table.h"

/* ============================================================================================
 * Small containers: growable arrays, id list, symbol chain, merge queue
 * ============================================================================================ */

int elm_vocab_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t cap2 = *cap ? *cap : 64;
    while (cap2 < need)
        cap2 *= 2;
    void *q = realloc(*p, cap2 * elem);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = cap2;
    return 0;
}

int elm_ids_push(struct elm_ids *ids, int32_t id)
{
    if (elm_vocab_grow((void **)&ids->v, &ids->cap, ids->n + 1, sizeof *ids->v))
        return -ENOMEM;
    ids->v[ids->n++] = id;
    return 0;
}

int32_t elm_syms_split(const struct elm_vocab *v, const char *text, size_t n, struct elm_sym *sym)
{
    int32_t n_sym = 0;
    for (size_t off = 0; off < n;) {
        size_t cl = elm_utf8_seq_len((uint8_t)text[off]);
        if (cl > n - off)
            cl = n - off;
        sym[n_sym] = (struct elm_sym){.prev = n_sym - 1,
                                      .next = off + cl == n ? -1 : n_sym + 1,
                                      .start = (uint32_t)off,
                                      .len = (uint32_t)cl,
                                      .id = v ? elm_vocab_lookup(v, text + off, cl) : -1};
        n_sym++;
        off += cl;
    }
    return n_sym;
}

static bool bigram_before(const struct elm_bigram *a, const struct elm_bigram *b)
{
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

int elm_heap_push(struct elm_heap *h, struct elm_bigram b)
{
    if (elm_vocab_grow((void **)&h->a, &h->cap, h->n + 1, sizeof *h->a))
        return -ENOMEM;
    size_t i = h->n++;
    while (i > 0 && bigram_before(&b, &h->a[(i - 1) / 2])) {
        h->a[i] = h->a[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->a[i] = b;
    return 0;
}

bool elm_heap_pop(struct elm_heap *h, struct elm_bigram *out)
{
    if (h->n == 0)
        return false;
    *out = h->a[0];
    struct elm_bigram last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && bigram_before(&h->a[c + 1], &h->a[c]))
            c++;
        if (!bigram_before(&h->a[c], &last))
            break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (h->n)
        h->a[i] = last;
    return true;
}

/* ============================================================================================
 * Hash tables
 * ============================================================================================ */

static uint32_t hash_bytes(const char *s, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

/* Smallest power of two >= 2n (tables stay at most half full). */
uint32_t elm_vocab_table_size(size_t n)
{
    uint32_t s = 16;
    while (s < 2 * n)
        s *= 2;
    return s;
}

int32_t elm_vocab_lookup(const struct elm_vocab *v, const char *s, size_t len)
{
    uint32_t h = hash_bytes(s, len);
    for (uint32_t i = h & v->tok_mask;; i = (i + 1) & v->tok_mask) {
        int32_t id = v->tok_slots[i];
        if (id < 0)
            return -1;
        if (v->tok_hash[i] == h) {
            size_t tl;
            const char *t = vocab_text(v, id, &tl);
            if (tl == len && memcmp(t, s, len) == 0)
                return id;
        }
    }
}

int32_t elm_vocab_insert(struct elm_vocab *v, int32_t id)
{
    size_t len;
    const char *s = vocab_text(v, id, &len);
    uint32_t h = hash_bytes(s, len);
    uint32_t i = h & v->tok_mask;
    for (; v->tok_slots[i] >= 0; i = (i + 1) & v->tok_mask) {
        size_t tl;
        const char *t = vocab_text(v, v->tok_slots[i], &tl);
        if (v->tok_hash[i] == h && tl == len && memcmp(t, s, len) == 0)
            return v->tok_slots[i];
    }
    v->tok_slots[i] = id;
    v->tok_hash[i] = h;
    return -1;
}
