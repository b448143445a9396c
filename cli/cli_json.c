/* cli_json.c — elmctl's JSON writer (cli_json.h). Everything goes to stdout: JSON is what a
 * script reads there, errors included (cli_util.c). */
#include <math.h>
#include <stdio.h>

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

void cli_json_str(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    putchar('"');
    for (size_t i = 0; i < len;) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            printf("\\%c", c);
        } else if (c < 0x20 || c == 0x7f) {
            printf("\\u%04x", c);
        } else if (c >= 0x80) {
            size_t l = utf8_len(p + i, len - i);
            if (l == 0) {
                fputs("\\ufffd", stdout);
                i++;
                continue;
            }
            fwrite(p + i, 1, l, stdout);
            i += l;
            continue;
        } else {
            putchar(c);
        }
        i++;
    }
    putchar('"');
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

void cli_json_strz(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    cli_json_str(s, n);
}

void cli_jw_open(struct cli_jw *j)
{
    putchar('{');
    j->first = true;
}

void cli_jw_close(struct cli_jw *j)
{
    (void)j;
    putchar('}');
}

void cli_jw_key(struct cli_jw *j, const char *k)
{
    if (!j->first)
        putchar(',');
    cli_json_strz(k);
    putchar(':');
    j->first = false;
}

void cli_jw_str(struct cli_jw *j, const char *k, const char *v)
{
    cli_jw_key(j, k);
    cli_json_strz(v);
}

void cli_jw_strn(struct cli_jw *j, const char *k, const char *v, size_t len)
{
    cli_jw_key(j, k);
    cli_json_str(v, len);
}

void cli_jw_u64(struct cli_jw *j, const char *k, uint64_t v)
{
    cli_jw_key(j, k);
    printf("%llu", (unsigned long long)v);
}

void cli_jw_i64(struct cli_jw *j, const char *k, int64_t v)
{
    cli_jw_key(j, k);
    printf("%lld", (long long)v);
}

void cli_jw_f64(struct cli_jw *j, const char *k, double v)
{
    cli_jw_key(j, k);
    if (isfinite(v))
        printf("%.17g", v);
    else
        fputs("null", stdout); /* JSON has no inf or nan */
}

void cli_jw_bool(struct cli_jw *j, const char *k, bool v)
{
    cli_jw_key(j, k);
    fputs(v ? "true" : "false", stdout);
}
