/* cli_messages.c — reading a conversation for `elmctl chat` from JSON (cli_messages.h): a strict
 * little reader for the one shape elmctl accepts, with every length bounded, so a malformed or
 * hostile input is an error message, never a crash. Strings are unescaped (\uXXXX with
 * surrogate pairs to UTF-8); members other than role and content are skipped. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_messages.h"

#define MAX_DEPTH 32

struct rd {
    const char *start, *p, *end;
    char *err;
    size_t errlen;
    bool failed;
};

static bool fail(struct rd *r, const char *what)
{
    if (!r->failed)
        snprintf(r->err, r->errlen, "%s at byte %td", what, r->p - r->start);
    r->failed = true;
    return false;
}

static void ws(struct rd *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static bool eat(struct rd *r, char c)
{
    ws(r);
    if (r->p < r->end && *r->p == c) {
        r->p++;
        return true;
    }
    return false;
}

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80)
        return o[0] = (char)cp, 1;
    if (cp < 0x800)
        return o[0] = (char)(0xc0 | cp >> 6), o[1] = (char)(0x80 | (cp & 0x3f)), 2;
    if (cp < 0x10000)
        return o[0] = (char)(0xe0 | cp >> 12), o[1] = (char)(0x80 | ((cp >> 6) & 0x3f)),
               o[2] = (char)(0x80 | (cp & 0x3f)), 3;
    return o[0] = (char)(0xf0 | cp >> 18), o[1] = (char)(0x80 | ((cp >> 12) & 0x3f)),
           o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), o[3] = (char)(0x80 | (cp & 0x3f)), 4;
}

/* A string; *out (malloc'ed, NUL-terminated) when out is not NULL. An escaped NUL is refused:
 * the chat APIs take C strings. */
static bool string(struct rd *r, char **out)
{
    if (!eat(r, '"'))
        return fail(r, "expected a string");
    /* the unescaped text is never longer than the escaped one */
    const char *q = r->p;
    while (q < r->end && *q != '"')
        q += *q == '\\' && q + 1 < r->end ? 2 : 1;
    if (q >= r->end)
        return fail(r, "unterminated string");
    char *s = out ? malloc((size_t)(q - r->p) + 1) : NULL;
    if (out && !s)
        return fail(r, "out of memory");
    size_t n = 0;
    while (*r->p != '"') {
        char c = *r->p++;
        if ((unsigned char)c < 0x20) {
            free(s);
            return fail(r, "control character in a string");
        }
        if (c != '\\') {
            if (s)
                s[n] = c;
            n++;
            continue;
        }
        c = *r->p++;
        const char *esc = strchr("\"\\/bfnrt", c);
        if (esc && c) {
            if (s)
                s[n] = "\"\\/\b\f\n\r\t"[esc - "\"\\/bfnrt"];
            n++;
            continue;
        }
        int cp = c == 'u' && r->end - r->p >= 4 ? hex4(r->p) : -1;
        if (cp > 0)
            r->p += 4;
        if (cp >= 0xd800 && cp < 0xdc00 && r->end - r->p >= 6 && r->p[0] == '\\' &&
            r->p[1] == 'u') {
            int lo = hex4(r->p + 2);
            if (lo >= 0xdc00 && lo < 0xe000) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                r->p += 6;
            }
        }
        if (cp <= 0 || (cp >= 0xd800 && cp < 0xe000)) {
            free(s);
            return fail(r, "bad escape in a string");
        }
        char tmp[4];
        size_t k = put_utf8(tmp, (unsigned)cp);
        if (s)
            memcpy(s + n, tmp, k);
        n += k;
    }
    r->p++;
    if (s) {
        s[n] = 0;
        *out = s;
    }
    return true;
}

/* Skips any value (bounded nesting). */
static bool skip(struct rd *r, int depth)
{
    ws(r);
    if (depth > MAX_DEPTH)
        return fail(r, "nested too deeply");
    if (r->p >= r->end)
        return fail(r, "unexpected end");
    char c = *r->p;
    if (c == '"')
        return string(r, NULL);
    if (c == '{' || c == '[') {
        r->p++;
        char close = c == '{' ? '}' : ']';
        if (eat(r, close))
            return true;
        do {
            if (c == '{' && (!string(r, NULL) || !eat(r, ':')))
                return fail(r, "bad object");
            if (!skip(r, depth + 1))
                return false;
        } while (eat(r, ','));
        return eat(r, close) || fail(r, "bad array or object");
    }
    const char *s = r->p;
    while (r->p < r->end && strchr("+-.0123456789eEtrufalsn", *r->p))
        r->p++;
    return r->p > s || fail(r, "unexpected character");
}

/* One {"role":S,"content":S,...} object into *m. */
static bool message(struct rd *r, struct cli_msg *m)
{
    m->role = m->content = NULL;
    if (!eat(r, '{'))
        return fail(r, "expected a message object");
    if (!eat(r, '}')) {
        do {
            char *key;
            if (!string(r, &key))
                return false;
            bool ok = eat(r, ':');
            char **slot = !strcmp(key, "role")      ? &m->role
                          : !strcmp(key, "content") ? &m->content
                                                    : NULL;
            free(key);
            if (!ok)
                return fail(r, "expected ':'");
            if (slot) {
                free(*slot);
                *slot = NULL;
                if (!string(r, slot))
                    return false;
            } else if (!skip(r, 1)) {
                return false;
            }
        } while (eat(r, ','));
        if (!eat(r, '}'))
            return fail(r, "expected '}'");
    }
    if (!m->role || !m->content)
        return fail(r, "a message needs a string \"role\" and a string \"content\"");
    if (!m->role[0] || strlen(m->role) > CLI_MSG_MAX_ROLE)
        return fail(r, "a role must have 1 to 64 bytes");
    return true;
}

void cli_msgs_free(struct cli_msg *m, int n)
{
    for (int i = 0; m && i < n; i++) {
        free(m[i].role);
        free(m[i].content);
    }
    free(m);
}

int cli_msgs_push(struct cli_msg **m, int *n, const char *role, const char *content)
{
    if (*n >= CLI_MSG_MAX)
        return -E2BIG;
    struct cli_msg *g = realloc(*m, ((size_t)*n + 1) * sizeof *g);
    if (!g)
        return -ENOMEM;
    *m = g;
    g[*n].role = strdup(role);
    g[*n].content = strdup(content);
    if (!g[*n].role || !g[*n].content) {
        free(g[*n].role);
        free(g[*n].content);
        return -ENOMEM;
    }
    (*n)++;
    return 0;
}

int cli_msgs_read(const char *text, size_t len, struct cli_msg **out, int *n, char *err,
                  size_t errlen)
{
    struct rd r = {text, text, text + len, err, errlen, false};
    struct cli_msg *m = NULL;
    int k = 0;
    bool array = eat(&r, '['), ok = true;
    if (array && eat(&r, ']')) {
        ok = fail(&r, "no messages");
    } else {
        do { /* an array's elements, or JSON lines (objects one after another) */
            struct cli_msg one;
            if (k >= CLI_MSG_MAX) {
                ok = fail(&r, "too many messages");
                break;
            }
            if (!message(&r, &one)) {
                free(one.role);
                free(one.content);
                ok = false;
                break;
            }
            struct cli_msg *g = realloc(m, ((size_t)k + 1) * sizeof *g);
            if (!g) {
                free(one.role);
                free(one.content);
                ok = fail(&r, "out of memory");
                break;
            }
            m = g;
            m[k++] = one;
            ws(&r);
        } while (array ? eat(&r, ',') : r.p < r.end);
        if (ok && array && !eat(&r, ']'))
            ok = fail(&r, "expected ']'");
        ws(&r);
        if (ok && r.p != r.end)
            ok = fail(&r, "trailing text");
    }
    if (!ok || !k) {
        if (ok)
            snprintf(err, errlen, "no messages");
        cli_msgs_free(m, k);
        return -EINVAL;
    }
    *out = m;
    *n = k;
    return 0;
}
