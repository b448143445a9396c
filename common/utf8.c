/* utf8.c — cleaning bytes into valid UTF-8 (utf8.h). */
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"

/* Length of the valid UTF-8 sequence at p (at most n bytes), or 0 when it is not one. */
static size_t seq_len(const unsigned char *p, size_t n)
{
    if (p[0] < 0x80)
        return 1;
    /* 0x80-0xc1 (a continuation, an overlong 2-byte lead) and 0xf5-0xff start nothing */
    size_t len = p[0] > 0xf4 ? 0 : p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 ? 2 : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    /* Overlong 3/4-byte forms, surrogates and code points above U+10FFFF. */
    if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0) ||
        (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))
        return 0;
    return len;
}

char *elm_utf8_clean(const char *s, size_t len, size_t *out_len)
{
    const unsigned char *p = (const unsigned char *)s;
    if (len > ((size_t)-1 - 1) / 3)
        return NULL;
    char *buf = malloc(len * 3 + 1); /* every byte could become 3 */
    if (!buf)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t l = seq_len(p + i, len - i);
        if (l == 0) {
            memcpy(buf + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
            continue;
        }
        memcpy(buf + o, p + i, l);
        o += l;
        i += l;
    }
    buf[o] = 0;
    *out_len = o;
    return buf;
}

size_t elm_utf8_complete(const char *s, size_t len)
{
    for (size_t k = 1; k <= 3 && k <= len; k++) {
        unsigned char c = (unsigned char)s[len - k];
        if ((c & 0xc0) == 0x80)
            continue; /* a continuation byte: look further back for the lead */
        size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
        return need > k ? len - k : len;
    }
    return len;
}
