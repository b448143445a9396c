/* json.c — the tests' JSON helpers (json.h), over jansson. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/common/json.h"

json_t *elm_test_json(const char *text)
{
    json_error_t err;
    return json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
}

json_t *elm_test_json_lines(const char *text)
{
    json_t *arr = json_array();
    while (arr && *text) {
        const char *nl = strchr(text, '\n');
        size_t len = nl ? (size_t)(nl - text) : strlen(text);
        json_error_t err;
        json_t *j = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        if (!j || json_array_append_new(arr, j)) {
            json_decref(arr);
            return NULL;
        }
        text += len + (nl != NULL);
    }
    if (arr && json_array_size(arr) == 0) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

static double num(const json_t *v)
{
    return json_is_number(v) ? json_number_value(v) : NAN;
}

double elm_test_jnum(const json_t *j, const char *key)
{
    return num(json_object_get(j, key));
}

double elm_test_jat(const json_t *arr, size_t i)
{
    return num(json_array_get(arr, i));
}

const char *elm_test_jstr(const json_t *j, const char *key)
{
    return json_string_value(json_object_get(j, key));
}

bool elm_test_json_is_error(const char *text, int exit_code, const char *needle)
{
    json_t *j = elm_test_json(text);
    const char *e = elm_test_jstr(j, "error");
    bool ok = e && *e && (!needle || strstr(e, needle)) &&
              json_is_integer(json_object_get(j, "exit_code")) &&
              elm_test_jnum(j, "exit_code") == exit_code;
    json_decref(j);
    return ok;
}

bool elm_test_json_is_stream(const char *text, const char *reason, int n_gen, char *buf, size_t cap)
{
    json_t *lines = elm_test_json_lines(text);
    size_t n = lines ? json_array_size(lines) - 1 : 0, len = 0;
    bool ok = lines && (n_gen < 0 || n == (size_t)n_gen);
    for (size_t i = 0; ok && i < n; i++) {
        const json_t *line = json_array_get(lines, i), *t = json_object_get(line, "text");
        ok = json_is_integer(json_object_get(line, "token")) && json_is_string(t) &&
             len + json_string_length(t) < cap;
        if (ok)
            memcpy(buf + len, json_string_value(t), json_string_length(t)),
                len += json_string_length(t);
    }
    if (cap)
        buf[len] = 0;
    const json_t *end = ok ? json_array_get(lines, n) : NULL;
    const char *r = elm_test_jstr(end, "reason");
    ok = ok && json_is_true(json_object_get(end, "done")) && r && !strcmp(r, reason) &&
         elm_test_jnum(end, "n_prompt") >= 1 && elm_test_jnum(end, "n_gen") == (double)n &&
         json_is_integer(json_object_get(end, "t_first_ns")) &&
         json_is_integer(json_object_get(end, "t_total_ns"));
    json_decref(lines);
    return ok;
}
