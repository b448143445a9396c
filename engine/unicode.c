/* unicode.c — UTF-8 decoding/encoding and category lookup for the tokenizers; see unicode.h.
 *
 * The decoder deliberately copies llama.cpp's leniency rather than a strict validator's: the
 * tokenizer test vectors were produced by llama.cpp, and a stricter decoder would turn some
 * malformed inputs into different token sequences.
 */
#include "engine/unicode.h"

size_t elm_utf8_seq_len(uint8_t c)
{
    /* 0x0-0xB: ASCII or a stray continuation byte, taken alone; 0xC-0xD: two bytes;
     * 0xE: three; 0xF: four (even for the invalid 0xF8..0xFF, which is what llama.cpp does). */
    static const uint8_t by_high_nibble[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return by_high_nibble[c >> 4];
}

static int is_cont(uint8_t c)
{
    return (c & 0xC0) == 0x80;
}

uint32_t elm_utf8_decode(const char *str, size_t len, size_t *adv)
{
    const uint8_t *s = (const uint8_t *)str;
    uint8_t c = s[0];

    *adv = 1;
    if (c < 0x80)
        return c;
    if ((c & 0xE0) == 0xC0) {
        if (len < 2 || !is_cont(s[1]))
            return ELM_UNICODE_REPLACEMENT;
        *adv = 2;
        return ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F);
    }
    if ((c & 0xF0) == 0xE0) {
        if (len < 3 || !is_cont(s[1]) || !is_cont(s[2]))
            return ELM_UNICODE_REPLACEMENT;
        *adv = 3;
        return ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    }
    if ((c & 0xF8) == 0xF0) {
        if (len < 4 || !is_cont(s[1]) || !is_cont(s[2]) || !is_cont(s[3]))
            return ELM_UNICODE_REPLACEMENT;
        *adv = 4;
        return ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
               ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    }
    /* a continuation byte in lead position, or 0xF8..0xFF */
    return ELM_UNICODE_REPLACEMENT;
}

size_t elm_utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp > ELM_UNICODE_MAX)
        cp = ELM_UNICODE_REPLACEMENT;
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

unsigned elm_unicode_flags(uint32_t cp)
{
    if (cp > ELM_UNICODE_MAX)
        return 0;
    /* Find the last run starting at or before cp. The table starts at code point 0, so lo
     * always ends on a valid entry. Comparing whole words works because the low byte only
     * holds flags: (cp << 8 | 0xFF) is >= every entry starting at cp. */
    uint32_t key = (cp << 8) | 0xFFu;
    size_t lo = 0, hi = elm_unicode_n_runs;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (elm_unicode_runs[mid] <= key)
            lo = mid;
        else
            hi = mid;
    }
    return elm_unicode_runs[lo] & 0xFFu;
}

/* The entry of the sorted map whose range holds cp, or NULL. */
static const struct elm_unicode_map *map_find(const struct elm_unicode_map *m, size_t n,
                                              uint32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < m[mid].first)
            hi = mid;
        else if (cp > m[mid].last)
            lo = mid + 1;
        else
            return &m[mid];
    }
    return NULL;
}

uint32_t elm_unicode_tolower(uint32_t cp)
{
    const struct elm_unicode_map *e = map_find(elm_unicode_lower, elm_unicode_lower_n, cp);
    return e ? e->to : cp;
}

uint32_t elm_unicode_nfd_base(uint32_t cp)
{
    const struct elm_unicode_map *e = map_find(elm_unicode_nfd, elm_unicode_nfd_n, cp);
    return e ? e->to : cp;
}
