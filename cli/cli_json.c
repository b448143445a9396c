/* cli_json.c — elmctl's JSON output (cli_json.h). jansson builds and escapes the documents;
 * this file only cleans the bytes it is given into valid UTF-8 first. Everything goes to
 * stdout: JSON is what a script reads there, errors included (cli_util.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_json.h"

/* Length of the valid UTF-8 sequence at p (at most n bytes), or 0 when it is not one. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    size_t len = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 ? 2 : 0;
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

/* s[0..len) with each invalid byte as U+FFFD (3 bytes), in a malloc'ed buffer of *out_len
 * bytes (NUL-terminated); NULL on OOM. */
static char *utf8_clean(const char *s, size_t len, size_t *out_len)
{
    const unsigned char *p = (const unsigned char *)s;
    char *buf = malloc(len * 3 + 1); /* every byte could become 3 */
    if (!buf)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t l = p[i] < 0x80 ? 1 : utf8_len(p + i, len - i);
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

json_t *cli_json_text(const char *s, size_t len)
{
    size_t n;
    char *clean = utf8_clean(s, len, &n);
    json_t *v = clean ? json_stringn_nocheck(clean, n) : NULL;
    free(clean);
    return v;
}

json_t *cli_json_real(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

void cli_json_set_text(json_t *obj, const char *key, size_t key_len, const char *s, size_t len)
{
    size_t n;
    char *k = utf8_clean(key, key_len, &n);
    if (k)
        json_object_setn_new_nocheck(obj, k, n, cli_json_text(s, len));
    free(k);
}

void cli_json_print(json_t *v)
{
    /* 15 significant digits: a decimal the daemon or a file gave reads back as written. */
    if (v)
        json_dumpf(v, stdout, JSON_COMPACT | JSON_REAL_PRECISION(15));
    putchar('\n');
    fflush(stdout);
    json_decref(v);
}

size_t cli_utf8_complete(const char *s, size_t len)
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
