/* cli_json.c — elmctl's JSON output (cli_json.h). jansson builds and escapes the documents;
 * the bytes it is given are first cleaned into valid UTF-8 (common/utf8.h). Everything goes to
 * stdout: JSON is what a script reads there, errors included (cli_util.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_json.h"
#include "common/utf8.h"

json_t *cli_json_text(const char *s, size_t len)
{
    size_t n;
    char *clean = elm_utf8_clean(s, len, &n);
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
    char *k = elm_utf8_clean(key, key_len, &n);
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
