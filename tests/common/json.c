/* json.c — see json.h. Recursive descent, depth-limited. */
#include <stdlib.h>
#include <string.h>

#include "tests/common/json.h"

struct p {
    const char *s;
    int depth;
};

static void ws(struct p *p)
{
    while (*p->s == ' ' || *p->s == '\n' || *p->s == '\r' || *p->s == '\t')
        p->s++;
}

static struct json *node(enum json_kind k)
{
    struct json *j = calloc(1, sizeof *j);
    if (j)
        j->kind = k;
    return j;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

static bool hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(s[i]);
        if (h < 0)
            return false;
        v = v * 16 + (unsigned)h;
    }
    *out = v;
    return true;
}

static char *parse_string(struct p *p, size_t *len)
{
    if (*p->s != '"')
        return NULL;
    p->s++;
    size_t cap = 16, n = 0;
    char *o = malloc(cap);
    while (o && *p->s != '"') {
        if (!*p->s) {
            free(o);
            return NULL;
        }
        if (n + 8 > cap) {
            char *no = realloc(o, cap *= 2);
            if (!no)
                free(o);
            o = no;
            if (!o)
                return NULL;
        }
        char c = *p->s++;
        if (c != '\\') {
            o[n++] = c;
            continue;
        }
        c = *p->s++;
        switch (c) {
        case 'n': o[n++] = '\n'; break;
        case 't': o[n++] = '\t'; break;
        case 'r': o[n++] = '\r'; break;
        case 'b': o[n++] = '\b'; break;
        case 'f': o[n++] = '\f'; break;
        case '/': case '\\': case '"': o[n++] = c; break;
        case 'u': {
            unsigned cp, lo;
            if (!hex4(p->s, &cp)) {
                free(o);
                return NULL;
            }
            p->s += 4;
            if (cp >= 0xd800 && cp < 0xdc00 && p->s[0] == '\\' && p->s[1] == 'u' &&
                hex4(p->s + 2, &lo) && lo >= 0xdc00 && lo < 0xe000) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p->s += 6;
            }
            n += put_utf8(o + n, cp);
            break;
        }
        default: free(o); return NULL;
        }
    }
    if (!o)
        return NULL;
    p->s++;
    o[n] = 0;
    *len = n;
    return o;
}

static struct json *value(struct p *p);

static bool push(struct json *j, struct json *v, char *key)
{
    struct json **items = realloc(j->items, (j->n + 1) * sizeof *items);
    if (!items)
        return false;
    j->items = items;
    if (j->kind == JSON_OBJ) {
        char **keys = realloc(j->keys, (j->n + 1) * sizeof *keys);
        if (!keys)
            return false;
        j->keys = keys;
        keys[j->n] = key;
    }
    items[j->n++] = v;
    return true;
}

static struct json *container(struct p *p, enum json_kind k)
{
    char close = k == JSON_ARR ? ']' : '}';
    struct json *j = node(k);
    p->s++;
    ws(p);
    if (*p->s == close) {
        p->s++;
        return j;
    }
    while (j) {
        char *key = NULL;
        ws(p);
        if (k == JSON_OBJ) {
            size_t kl;
            if (!(key = parse_string(p, &kl)))
                goto bad;
            ws(p);
            if (*p->s++ != ':') {
                free(key);
                goto bad;
            }
        }
        struct json *v = value(p);
        if (!v || !push(j, v, key)) {
            free(key);
            json_free(v);
            goto bad;
        }
        ws(p);
        if (*p->s == ',') {
            p->s++;
            continue;
        }
        if (*p->s == close) {
            p->s++;
            return j;
        }
        goto bad;
    }
bad:
    json_free(j);
    return NULL;
}

static struct json *value(struct p *p)
{
    ws(p);
    if (++p->depth > 64)
        return NULL;
    struct json *j = NULL;
    char c = *p->s;
    if (c == '{' || c == '[') {
        j = container(p, c == '{' ? JSON_OBJ : JSON_ARR);
    } else if (c == '"') {
        j = node(JSON_STR);
        if (j && !(j->str = parse_string(p, &j->str_len))) {
            free(j);
            j = NULL;
        }
    } else if (!strncmp(p->s, "true", 4) || !strncmp(p->s, "false", 5)) {
        j = node(JSON_BOOL);
        if (j)
            j->num = c == 't';
        p->s += c == 't' ? 4 : 5;
    } else if (!strncmp(p->s, "null", 4)) {
        j = node(JSON_NULL);
        p->s += 4;
    } else {
        char *end;
        double d = strtod(p->s, &end);
        if (end != p->s && (j = node(JSON_NUM)))
            j->num = d;
        p->s = end;
    }
    p->depth--;
    return j;
}

struct json *json_parse(const char *text)
{
    struct p p = {text, 0};
    struct json *j = value(&p);
    ws(&p);
    if (j && *p.s) {
        json_free(j);
        return NULL;
    }
    return j;
}

void json_free(struct json *j)
{
    if (!j)
        return;
    for (size_t i = 0; i < j->n; i++) {
        json_free(j->items[i]);
        if (j->keys)
            free(j->keys[i]);
    }
    free(j->items);
    free(j->keys);
    free(j->str);
    free(j);
}

const struct json *json_get(const struct json *j, const char *key)
{
    if (!j || j->kind != JSON_OBJ)
        return NULL;
    for (size_t i = 0; i < j->n; i++)
        if (!strcmp(j->keys[i], key))
            return j->items[i];
    return NULL;
}

const struct json *json_at(const struct json *j, size_t i)
{
    if (!j || j->kind != JSON_ARR || i >= j->n)
        return NULL;
    return j->items[i];
}

struct json *json_parse_lines(const char *text)
{
    struct json *arr = node(JSON_ARR);
    while (arr && *text) {
        const char *nl = strchr(text, '\n');
        size_t len = nl ? (size_t)(nl - text) : strlen(text);
        char *line = strndup(text, len);
        struct json *j = line ? json_parse(line) : NULL;
        free(line);
        if (!j || !push(arr, j, NULL)) {
            json_free(j);
            json_free(arr);
            return NULL;
        }
        text += len + (nl != NULL);
    }
    if (arr && arr->n == 0) {
        json_free(arr);
        return NULL;
    }
    return arr;
}

bool json_is_error(const char *text, int exit_code, const char *needle)
{
    struct json *j = json_parse(text);
    const struct json *e = json_get(j, "error"), *c = json_get(j, "exit_code");
    bool ok = e && e->kind == JSON_STR && e->str_len > 0 && (!needle || strstr(e->str, needle)) &&
              c && c->kind == JSON_NUM && c->num == exit_code;
    json_free(j);
    return ok;
}

static bool is_num(const struct json *j)
{
    return j && j->kind == JSON_NUM;
}

bool json_is_stream(const char *text, const char *reason, int n_gen, char *buf, size_t cap)
{
    struct json *lines = json_parse_lines(text);
    size_t n = lines ? lines->n - 1 : 0, len = 0;
    bool ok = lines && (n_gen < 0 || n == (size_t)n_gen);
    for (size_t i = 0; ok && i < n; i++) {
        const struct json *t = json_get(lines->items[i], "text");
        ok = is_num(json_get(lines->items[i], "token")) && t && t->kind == JSON_STR &&
             len + t->str_len < cap;
        if (ok)
            memcpy(buf + len, t->str, t->str_len), len += t->str_len;
    }
    if (cap)
        buf[len] = 0;
    const struct json *end = ok ? lines->items[n] : NULL;
    const struct json *done = json_get(end, "done"), *r = json_get(end, "reason");
    ok = ok && done && done->kind == JSON_BOOL && done->num == 1 && r && r->kind == JSON_STR &&
         !strcmp(r->str, reason) && is_num(json_get(end, "n_prompt")) &&
         json_get(end, "n_prompt")->num >= 1 && is_num(json_get(end, "n_gen")) &&
         json_get(end, "n_gen")->num == (double)n && is_num(json_get(end, "t_first_ns")) &&
         is_num(json_get(end, "t_total_ns"));
    json_free(lines);
    return ok;
}
