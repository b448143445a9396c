/* vocab_wpm.c — BERT's WordPiece ("bert" vocabularies), matching llama.cpp token for token.
 *
 * Two steps:
 *  1. Words. Each code point is replaced by its NFD base (the accent of a precomposed letter is
 *     dropped, not kept as a combining mark: that is what llama.cpp's NFD step does) and
 *     lower-cased. White space ends a word; NUL, U+FFFD and control characters vanish;
 *     punctuation, ASCII symbols and CJK ideographs each make a word of their own.
 *  2. Pieces. The converter stores a word-initial piece with the phantom space "▁" in front
 *     and a continuation piece bare (HF's "##ing" is "ing"), so each word gets "▁" in front and
 *     is cut greedily from the left into the longest tokens. If some part of it is no token,
 *     the whole word becomes one unknown token.
 *
 * Known difference: unassigned code points count as control characters here (unicode.c has
 * one "other" category) and vanish, where llama.cpp keeps them in the word.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/unicode.h"
#include "engine/vocab_table.h"
#include "engine/vocab_wpm.h"

#define PHANTOM     "\xE2\x96\x81" /* U+2581, "▁" */
#define PHANTOM_LEN 3

/* The CJK ideograph blocks BERT isolates (HF's list, with its 0x2B920 start). */
static bool is_cjk_ideograph(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* The word being built: "▁" then its UTF-8 bytes. */
struct word {
    char *b;
    size_t n, cap;
};

/* Cuts w (with its "▁") into the longest tokens from the left, or one unknown token. */
static int emit_word(const struct elm_vocab *v, const struct word *w, struct elm_ids *out)
{
    size_t mark = out->n;
    int rc = 0;
    for (size_t i = 0; !rc && i < w->n;) {
        size_t j = w->n - i > v->max_token_len ? i + v->max_token_len : w->n;
        int32_t id = -1;
        while (j > i && (id = elm_vocab_lookup(v, w->b + i, j - i)) < 0)
            j--;
        if (id < 0) {
            out->n = mark; /* a part is no token: drop the pieces found so far */
            break;
        }
        rc = elm_ids_push(out, id);
        i = j;
    }
    if (!rc && out->n == mark && v->unk >= 0)
        rc = elm_ids_push(out, v->unk);
    return rc;
}

/* Ends the current word (if it has any text) and starts an empty one. */
static int flush(const struct elm_vocab *v, struct word *w, struct elm_ids *out)
{
    int rc = w->n > PHANTOM_LEN ? emit_word(v, w, out) : 0;
    w->n = PHANTOM_LEN;
    return rc;
}

static int append(struct word *w, uint32_t cp)
{
    if (elm_vocab_grow((void **)&w->b, &w->cap, w->n + 4, 1))
        return -ENOMEM;
    w->n += elm_utf8_encode(cp, w->b + w->n);
    return 0;
}

int elm_wpm_tokenize(const struct elm_vocab *v, const char *text, size_t len, struct elm_ids *out)
{
    struct word w = {0};
    int rc = elm_vocab_grow((void **)&w.b, &w.cap, PHANTOM_LEN + 4, 1);
    if (rc)
        return -ENOMEM;
    memcpy(w.b, PHANTOM, PHANTOM_LEN);
    w.n = PHANTOM_LEN;

    for (size_t i = 0; !rc && i < len;) {
        size_t adv;
        uint32_t cp = elm_unicode_nfd_base(elm_utf8_decode(text + i, len - i, &adv));
        unsigned fl = elm_unicode_flags(cp);
        i += adv;
        if (fl & ELM_UCAT_SPACE) {
            rc = flush(v, &w, out);
            continue;
        }
        if (cp == 0 || cp == ELM_UNICODE_REPLACEMENT || (fl & ELM_UCAT_OTHER))
            continue;
        uint32_t low = elm_unicode_tolower(cp);
        if ((fl & ELM_UCAT_PUNCT) || (cp < 0x7F && (fl & ELM_UCAT_SYMBOL)) ||
            is_cjk_ideograph(cp)) {
            rc = flush(v, &w, out); /* a word of its own */
            if (!rc)
                rc = append(&w, low);
            if (!rc)
                rc = flush(v, &w, out);
            continue;
        }
        rc = append(&w, low);
    }
    if (!rc)
        rc = flush(v, &w, out);
    free(w.b);
    return rc;
}
