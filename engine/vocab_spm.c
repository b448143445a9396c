/* vocab_spm.c — the SentencePiece-style BPE tokenizer ("llama" vocabularies such as Llama 2,
 * Phi-3 and TinyLlama), matching llama.cpp's SPM tokenizer token for token.
 *
 * A text fragment is prepared by prefixing one space (when asked) and replacing every space by
 * U+2581 "▁". It is cut into UTF-8 characters, then neighbouring pieces are merged greedily:
 * always the pair whose concatenation is the token with the highest score, the leftmost one on
 * a tie, until no neighbouring pair forms a token. Pieces that are not tokens in the end (rare
 * characters) are emitted as byte-fallback tokens <0xNN>, one per byte.
 *
 * Cost: the pieces form a doubly linked list and candidate pairs wait in a binary heap. Every
 * merge pushes at most two new candidates, so a fragment of n bytes costs O(n log n), not the
 * O(n^2) of rescanning all pairs after each merge.
 *
 * Also here: the SPM-only pieces of loading and decoding (byte-fallback tokens, "▁" -> ' ').
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "elm/status.h"
#include "engine/vocab_spm.h"

#define SPACE_ESCAPE     "\xE2\x96\x81" /* U+2581 */
#define SPACE_ESCAPE_LEN 3

/* The byte-fallback tokens: "<0xNN>", else the byte itself as a token (llama.cpp's order). */
void elm_spm_init_bytes(struct elm_vocab *v)
{
    for (int b = 0; b < 256; b++) {
        char hex[7], raw = (char)b;
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        int32_t id = elm_vocab_lookup(v, hex, 6);
        v->spm_byte[b] = id >= 0 ? id : elm_vocab_lookup(v, &raw, 1);
    }
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int elm_spm_byte_value(const char *s, size_t len)
{
    if (len != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int hi = hex_digit(s[3]), lo = hex_digit(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

size_t elm_spm_unescape(const char *text, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (i + SPACE_ESCAPE_LEN <= len && memcmp(text + i, SPACE_ESCAPE, SPACE_ESCAPE_LEN) == 0) {
            out[o++] = ' ';
            i += SPACE_ESCAPE_LEN - 1;
        } else {
            out[o++] = text[i];
        }
    }
    return o;
}

struct spm_state {
    const struct elm_vocab *v;
    const char *text; /* the escaped fragment */
    struct elm_sym *sym;
    struct elm_heap heap;
};

/* Queues (left, right) when their concatenation is a token. */
static int try_pair(struct spm_state *st, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return 0;
    const struct elm_sym *l = &st->sym[left], *r = &st->sym[right];
    /* Neighbours are contiguous in the text, so the pair is one span. */
    uint32_t size = l->len + r->len;
    int32_t id = elm_vocab_lookup(st->v, st->text + l->start, size);
    if (id < 0)
        return 0;
    struct elm_bigram b = {
        .key = -(double)st->v->scores[id], .left = left, .right = right, .size = size};
    return elm_heap_push(&st->heap, b);
}

/* Emits the final piece: its token, or its bytes through the byte-fallback tokens. A piece
 * that is no token is always an unmerged single character: merges only ever form tokens. */
static int emit_piece(const struct spm_state *st, const struct elm_sym *s, struct elm_ids *out)
{
    int32_t id = elm_vocab_lookup(st->v, st->text + s->start, s->len);
    if (id >= 0)
        return elm_ids_push(out, id);
    for (uint32_t i = 0; i < s->len; i++) {
        uint8_t c = (uint8_t)st->text[s->start + i];
        int32_t b = st->v->spm_byte[c];
        /* llama.cpp gives up on the whole text when a byte has no token; a vocabulary without
         * byte tokens is still usable here: the unknown token stands in, or the byte is lost. */
        if (b < 0)
            b = st->v->unk;
        if (b >= 0) {
            int rc = elm_ids_push(out, b);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* Builds the escaped text: optional leading "▁", then the fragment with ' ' -> "▁". */
static char *escape_spaces(const char *text, size_t len, bool add_prefix, size_t *out_len)
{
    size_t n_spaces = add_prefix ? 1 : 0;
    for (size_t i = 0; i < len; i++)
        n_spaces += text[i] == ' ';
    /* each space grows by two bytes; len is an in-memory size, so this cannot overflow */
    size_t n = len + (add_prefix ? 1 : 0) + n_spaces * (SPACE_ESCAPE_LEN - 1);
    char *buf = malloc(n ? n : 1);
    if (!buf)
        return NULL;
    size_t o = 0;
    if (add_prefix) {
        memcpy(buf, SPACE_ESCAPE, SPACE_ESCAPE_LEN);
        o = SPACE_ESCAPE_LEN;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(buf + o, SPACE_ESCAPE, SPACE_ESCAPE_LEN);
            o += SPACE_ESCAPE_LEN;
        } else {
            buf[o++] = text[i];
        }
    }
    *out_len = o;
    return buf;
}

int elm_spm_tokenize(const struct elm_vocab *v, const char *text, size_t len, bool add_prefix,
                     struct elm_ids *out)
{
    struct spm_state st = {.v = v};
    size_t n = 0;
    int rc = 0;

    if (len == 0 && !add_prefix)
        return 0;
    char *buf = escape_spaces(text, len, add_prefix, &n);
    if (!buf)
        return -ENOMEM;
    /* Symbol offsets are 32-bit: a single fragment of 4 GiB is refused rather than wrapped. */
    if (n > UINT32_MAX / 2) {
        free(buf);
        return -EOVERFLOW;
    }
    st.text = buf;
    st.sym = malloc(n * sizeof *st.sym + 1);
    if (!st.sym) {
        rc = -ENOMEM;
        goto out;
    }

    int32_t n_sym = elm_syms_split(NULL, buf, n, st.sym);

    for (int32_t i = 1; i < n_sym; i++) {
        rc = try_pair(&st, i - 1, i);
        if (rc)
            goto out;
    }

    struct elm_bigram b;
    while (elm_heap_pop(&st.heap, &b)) {
        struct elm_sym *l = &st.sym[b.left], *r = &st.sym[b.right];
        /* Stale: one side was merged away or grew since the pair was queued. */
        if (l->len == 0 || r->len == 0 || l->len + r->len != b.size)
            continue;
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0)
            st.sym[r->next].prev = b.left;
        rc = try_pair(&st, l->prev, b.left);
        if (!rc)
            rc = try_pair(&st, b.left, l->next);
        if (rc)
            goto out;
    }

    for (int32_t i = n_sym ? 0 : -1; i >= 0; i = st.sym[i].next) {
        rc = emit_piece(&st, &st.sym[i], out);
        if (rc)
            goto out;
    }

out:
    free(st.heap.a);
    free(st.sym);
    free(buf);
    return rc;
}
